"""Latency and accuracy predictors on NAS-Bench-201: Kendall tau, Spearman rho and MAPE
at a given training size (default 100), per model and device, on 1000 held-out
architectures, median over trials. Writes OUT/predictors.csv and OUT/table.md.

    HWNAS_DATA_DIR=../shared/data python benchmarks/predictors_nb201.py \
        --size 100 --trials 5 --out runs/bench-predictors
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from hwnas.bench import get_benchmark
from hwnas.bench.nb201 import nb201_devices
from hwnas.predict.evaluate import sample_efficiency, summarize, write_csv

MODELS = "ridge,svr,stacked,gp,rbf,mlp,cart"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--devices", default="all")
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-predictors"))
    ap.add_argument(
        "--latency-views",
        choices=("select", "all"),
        default="select",
        help="latency models choose their feature view by CV as in LINAS, or use all features",
    )
    args = ap.parse_args()
    pool = 15625 - 1000  # the table less the fixed test set
    if not 1 <= args.size <= pool or args.trials < 1:
        ap.error(f"--size must be in 1..{pool} (NB201 less the test set), --trials >= 1")
    args.out.mkdir(parents=True, exist_ok=True)
    models = args.models.split(",")
    devices = nb201_devices() if args.devices == "all" else args.devices.split(",")
    t0 = time.time()
    rows = []
    bench = get_benchmark("nb201", devices=devices)
    X, V = bench.table()
    space = bench.space
    graph, function = space.predictor_features(X, "cost"), space.predictor_features(X, "quality")
    targets = [("accuracy_cifar10", function, V[:, 0])] + [
        (f"latency_{d}", graph, V[:, i + 1]) for i, d in enumerate(devices)
    ]
    cost_views = space.predictor_views("cost") if args.latency_views == "select" else None
    for name, feats, y in targets:
        views = cost_views if name.startswith("latency") else None
        res = sample_efficiency(
            feats, y, models, [args.size], 1000, args.trials, seed=0, views=views
        )
        for r in summarize(res):
            rows.append({"target": name, **r})
        best = max((r for r in rows if r["target"] == name), key=lambda r: r["kendall_tau_median"])
        print(f"{name}: best {best['model']} tau {best['kendall_tau_median']:.3f}", flush=True)
    write_csv(rows, args.out / "predictors.csv")
    lines = [
        f"| target | {' | '.join(models)} | best |",
        "|---|" + "---|" * (len(models) + 1),
    ]
    for name, _, _ in targets:
        rs = {r["model"]: r for r in rows if r["target"] == name}
        best = max(rs.values(), key=lambda r: r["kendall_tau_median"])
        cells = [f"{rs[m]['kendall_tau_median']:.3f}" for m in models]
        lines.append(f"| {name} | {' | '.join(cells)} | {best['model']} |")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    taus = np.array(
        [
            max(r["kendall_tau_median"] for r in rows if r["target"] == f"latency_{d}")
            for d in devices
        ]
    )
    print("\n".join(lines))
    print(
        f"best-model latency tau >= 0.9 on {int((taus >= 0.9).sum())} of {len(devices)} devices;"
        f" {time.time() - t0:.0f} s"
    )


if __name__ == "__main__":
    main()
