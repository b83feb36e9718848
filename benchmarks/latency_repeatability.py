"""Repeatability of measured latency: two independent profiling sessions of the same N
subnets of a space (ONNX Runtime, batch 1, 1 thread by default), each with its own
ONNX Runtime sessions and its own round order. Reports the Kendall tau and Spearman rho
between the sessions, the median relative difference, the median robust CV within a
session, the share of unstable measurements, and the cost per subnet in seconds (export,
cost counting and measurement). Writes OUT/table.md and OUT/result.json.

    HWNAS_DATA_DIR=../shared/data python benchmarks/latency_repeatability.py \
        --n 100 --out runs/bench-latency-repeatability
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from hwnas.measure.latency import MeasureSettings
from hwnas.measure.profile import load_profile, profile_space
from hwnas.predict.evaluate import kendall_tau, spearman_rho


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="mbv3-cifar")
    ap.add_argument("--n", type=int, default=100, help="subnets per session")
    ap.add_argument("--seed", type=int, default=0, help="seed of the subnet sample")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--no-anchor", action="store_true", help="no drift anchor (raw latency only)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench-latency-repeatability"))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(max(1, args.threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, args.threads)))
    args.out.mkdir(parents=True, exist_ok=True)
    sessions = []
    for s in (1, 2):
        settings = MeasureSettings(
            runtime="onnxruntime",
            batch_size=args.batch_size,
            intra_op_threads=args.threads,
            inter_op_threads=1,
            warmup=args.warmup,
            rounds=args.rounds,
            repeats_per_round=args.repeats,
            seed=s,  # a different round order per session
        )
        t0 = time.perf_counter()
        summary = profile_space(
            args.space,
            args.n,
            args.out / f"session{s}",
            settings,
            seed=args.seed,
            group_size=args.group_size,
            anchor=not args.no_anchor,
        )
        wall = time.perf_counter() - t0
        data = load_profile(args.out / f"session{s}")
        keys = [r.arch_key for r in data.records]
        lat = dict(zip(keys, data.target("latency"), strict=True))
        raw = dict(
            zip(keys, data.objectives.get("latency_raw_ms", data.target("latency")), strict=True)
        )
        cv = [r.extra["stats"]["robust_cv"] for r in data.records]
        unstable = [bool(r.extra["stats"]["unstable"]) for r in data.records]
        prep = [r.extra.get("prepare_s", 0.0) for r in data.records]
        sessions.append(
            {
                "latency": lat,
                "raw": raw,
                "robust_cv_median": float(np.median(cv)),
                "unstable_share": float(np.mean(unstable)),
                "seconds_per_subnet": summary.get("seconds_per_subnet", wall / max(1, args.n)),
                "prepare_s_per_subnet": float(np.mean(prep)),
                "measured": summary["measured"],
                "host": data.host.get("cpu_model"),
            }
        )
        print(
            f"session {s}: {summary['ok']} subnets, {sessions[-1]['seconds_per_subnet']:.2f} "
            "s/subnet",
            flush=True,
        )
    common = sorted(set(sessions[0]["latency"]) & set(sessions[1]["latency"]))
    a = np.array([sessions[0]["latency"][k] for k in common])
    b = np.array([sessions[1]["latency"][k] for k in common])
    a_raw = np.array([sessions[0]["raw"][k] for k in common])
    b_raw = np.array([sessions[1]["raw"][k] for k in common])
    result = {
        "space": args.space,
        "n": len(common),
        "settings": {
            "threads": args.threads,
            "batch_size": args.batch_size,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "repeats": args.repeats,
            "group_size": args.group_size,
            "anchor": not args.no_anchor,
        },
        "kendall_tau": kendall_tau(a, b),
        "kendall_tau_raw": kendall_tau(a_raw, b_raw),
        "spearman_rho": spearman_rho(a, b),
        "median_abs_rel_diff": float(np.median(np.abs(a - b) / np.minimum(a, b))),
        "latency_ms_range": [float(min(a.min(), b.min())), float(max(a.max(), b.max()))],
        "sessions": [{k: v for k, v in s.items() if k not in ("latency", "raw")} for s in sessions],
    }
    lines = [
        f"Latency repeatability, {args.space}, {len(common)} subnets, ONNX Runtime, batch "
        f"{args.batch_size}, {args.threads} thread(s), {args.rounds} rounds x {args.repeats} "
        f"runs, groups of {args.group_size}, drift anchor {'off' if args.no_anchor else 'on'}, host: {sessions[0]['host']}",
        "",
        "| metric | value |",
        "|---|---|",
        f"| Kendall tau, session 1 vs 2 | {result['kendall_tau']:.3f} |",
        f"| Kendall tau without the anchor correction | {result['kendall_tau_raw']:.3f} |",
        f"| Spearman rho, session 1 vs 2 | {result['spearman_rho']:.3f} |",
        f"| median relative difference | {100 * result['median_abs_rel_diff']:.2f} % |",
        f"| latency range (ms) | {result['latency_ms_range'][0]:.3f} - "
        f"{result['latency_ms_range'][1]:.3f} |",
    ]
    for i, s in enumerate(result["sessions"], 1):
        lines += [
            f"| session {i}: median robust CV | {s['robust_cv_median']:.4f} |",
            f"| session {i}: unstable share | {100 * s['unstable_share']:.1f} % |",
            f"| session {i}: cost per subnet (s) | {s['seconds_per_subnet']:.2f} "
            f"(export + cost {s['prepare_s_per_subnet']:.2f}) |",
        ]
    table = "\n".join(lines) + "\n"
    (args.out / "table.md").write_text(table)
    (args.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table)


if __name__ == "__main__":
    main()
