"""Latency predictors on measured data: profile TRAIN + TEST subnets of a space (or reuse a
profile run), fit each predictor on TRAIN of them (default 100) and rank the TEST held-out
ones (default 200), from the space's cost features and from one-hot choices. Compared with the ranking by FLOPs alone and by the sum of a per-block
latency lookup table (built here for the profiled networks, or read with --lut).
Writes OUT/table.md and OUT/result.json.

    HWNAS_DATA_DIR=../shared/data python benchmarks/latency_predictors_measured.py \
        --train 100 --test 200 --out runs/bench-latency-predictors
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from hwnas.measure.latency import MeasureSettings
from hwnas.measure.lut import LatencyLUT, build_lut
from hwnas.measure.profile import load_profile, profile_space
from hwnas.predict.evaluate import rank_metrics
from hwnas.predict.models import make_predictor
from hwnas.space import get_space

MODELS = "ridge,svr,stacked,gp,rbf,mlp,cart,auto"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="mbv3-cifar")
    ap.add_argument("--train", type=int, default=100)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run", type=Path, default=None, help="reuse this profile run")
    ap.add_argument("--lut", type=Path, default=None, help="reuse this lookup table")
    ap.add_argument("--no-lut", action="store_true", help="skip the lookup-table baseline")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-latency-predictors"))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(max(1, args.threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, args.threads)))
    args.out.mkdir(parents=True, exist_ok=True)
    settings = MeasureSettings(
        runtime="onnxruntime",
        batch_size=1,
        intra_op_threads=args.threads,
        inter_op_threads=1,
        warmup=args.warmup,
        rounds=args.rounds,
        repeats_per_round=args.repeats,
    )
    run_dir = args.run or args.out / "profile"
    t0 = time.perf_counter()
    if args.run is None:
        profile_space(args.space, args.train + args.test, run_dir, settings, seed=args.seed)
    profile_s = time.perf_counter() - t0
    data = load_profile(run_dir)
    space = get_space(data.space_name)
    n = len(data)
    if n < args.train + 2:
        raise SystemExit(f"{run_dir} holds {n} measurements; need more than --train")
    perm = np.random.default_rng(args.seed).permutation(n)
    train, test = perm[: args.train], perm[args.train : args.train + args.test]
    y = data.target("latency")
    rows = []
    # cost features (per-stage MACs, activations, block counts: the default) and the
    # one-hot choices they replaced
    for feats, X in (
        ("cost features", space.cost_features(data.vectors)),
        ("one-hot", space.features(data.vectors)),
    ):
        for name in args.models.split(","):
            t1 = time.perf_counter()
            model = make_predictor(name, seed=args.seed).fit(X[train], y[train])
            fit_s = time.perf_counter() - t1
            m = rank_metrics(y[test], model.predict(X[test]))
            label = f"{name} ({model.chosen_})" if name == "auto" else name
            label = f"{label}, {feats}"
            rows.append({"method": label, **m, "fit_time_s": fit_s})
            print(f"{label}: tau {m['kendall_tau']:.3f}", flush=True)
    rows.append({"method": "FLOPs only", **rank_metrics(y[test], data.objectives["flops"][test])})
    rows[-1]["mape"] = float("nan")  # FLOPs are not in ms
    lut_info = None
    if not args.no_lut:
        t1 = time.perf_counter()
        if args.lut is not None:
            lut = LatencyLUT.load(args.lut)
        else:
            lut = build_lut(
                data.space_name, settings, vectors=data.vectors, out=args.out / "lut.json"
            )
        lut_s = time.perf_counter() - t1
        pred = lut.predict(data.vectors[test], strict=False)
        ok = np.isfinite(pred)
        m = rank_metrics(y[test][ok], pred[ok])
        rows.append({"method": "LUT sum", **m})
        lut_info = {"entries": len(lut), "covered": int(ok.sum()), "build_s": lut_s}
    result = {
        "space": data.space_name,
        "n_measured": n,
        "train": len(train),
        "test": len(test),
        "host": data.host.get("cpu_model"),
        "settings": data.settings,
        "profile_s": profile_s,
        "lut": lut_info,
        "rows": rows,
    }
    lines = [
        f"Latency predictors on measured {data.space_name} subnets: {len(train)} training, "
        f"{len(test)} held-out, host {result['host']}",
        "",
        "| method | Kendall tau | Spearman rho | MAPE % | fit s |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        mape = "-" if not np.isfinite(r["mape"]) else f"{r['mape']:.2f}"
        fit = f"{r['fit_time_s']:.2f}" if "fit_time_s" in r else "-"
        lines.append(
            f"| {r['method']} | {r['kendall_tau']:.3f} | {r['spearman_rho']:.3f} | {mape} | {fit} |"
        )
    table = "\n".join(lines) + "\n"
    (args.out / "table.md").write_text(table)
    (args.out / "result.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(table)


if __name__ == "__main__":
    main()
