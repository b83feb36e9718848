"""Search efficiency on NAS-Bench-201 (CIFAR-10 accuracy vs device latency): every
algorithm, 4 devices, N seeds; writes CSVs and plots to OUT and a Markdown table to
OUT/table.md (pasted into docs/BENCHMARKS.md).

    HWNAS_DATA_DIR=../shared/data python benchmarks/search_efficiency.py \
        --seeds 10 --jobs 2 --out runs/bench-search-efficiency

Variants of one algorithm are compared by giving options in brackets, e.g.
``--algorithms 'linas,linas[class_mean=false]'``; table.md then also holds each against
the first, paired by seed (mean difference, seeds ahead/behind, Wilcoxon p). Finished runs are stored in
OUT/records.jsonl as they end; ``--resume`` reuses them after a kill.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from hwnas.search.efficiency import (
    RECORDS_NAME,
    checkpoints,
    efficiency_table,
    paired_cell,
    paired_comparison,
    search_efficiency,
    write_efficiency,
)
from hwnas.search.spec import split_algorithms

ALGORITHMS = "random,nsga2,agemoea,unsga3,moead,ctaea,motpe,nsga2-optuna,linas"
DEVICES = "pixel3,raspi4,fpga,2080ti_1"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--algorithms", default=ALGORITHMS)
    ap.add_argument("--devices", default=DEVICES)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--evaluations", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-search-efficiency"))
    ap.add_argument("--resume", action="store_true", help="reuse OUT/records.jsonl")
    args = ap.parse_args()
    t0 = time.time()
    done = [0]

    def tick(r: dict) -> None:
        done[0] += 1
        print(
            f"[{done[0]}] {r['device']} {r['algorithm']} seed {r['seed']}: "
            f"hv {r['hv_fraction'][-1]:.4f} recall {r['front_recall'][-1]:.3f}",
            flush=True,
        )

    results = search_efficiency(
        "nb201",
        args.devices.split(","),
        split_algorithms(args.algorithms),
        args.evaluations,
        args.seeds,
        jobs=args.jobs,
        progress=tick,
        first_seed=args.first_seed,
        records=args.out / RECORDS_NAME,
        resume=args.resume,
    )
    write_efficiency(results, args.out, title=f"NB201 CIFAR-10, {args.seeds} seeds")
    rows = efficiency_table(results, at=checkpoints(args.evaluations))
    lines = [
        "| device | algorithm | evals | hv_fraction median [min, max] | front_recall median "
        "[min, max] | igd median | overhead/iteration (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ovh = r["overhead_per_iteration_s"]
        lines.append(
            f"| {r['device']} | {r['algorithm']} | {r['evaluations']} | "
            f"{r['hv_fraction_median']:.4f} [{r['hv_fraction_min']:.4f}, {r['hv_fraction_max']:.4f}] | "
            f"{r['front_recall_median']:.3f} [{r['front_recall_min']:.3f}, {r['front_recall_max']:.3f}] | "
            f"{r['igd_median']:.4f} | {'' if ovh is None else f'{ovh:.2f}'} |"
        )
    algs = split_algorithms(args.algorithms)
    if len(algs) > 1:  # variants against the first, paired by seed
        lines += [
            "",
            f"Each against {algs[0]}, paired by seed: mean difference (seeds ahead/behind, "
            "Wilcoxon p)",
            "",
            "| device | algorithm | evals | hv_fraction | front_recall | igd |",
            "|---|---|---|---|---|---|",
        ]
        for r in paired_comparison(results, at=checkpoints(args.evaluations)):
            lines.append(
                f"| {r['device']} | {r['algorithm']} | {r['evaluations']} | "
                f"{paired_cell(r, 'hv_fraction')} | {paired_cell(r, 'front_recall', 3)} | "
                f"{paired_cell(r, 'igd')} |"
            )
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    sizes = sorted({r["exact_front_size"] for r in results})
    meta = {"wall_time_s": time.time() - t0, "exact_front_sizes": sizes, "args": vars(args)}
    (args.out / "meta.json").write_text(json.dumps(meta, default=str))
    print("\n".join(lines))
    print(f"done in {time.time() - t0:.0f} s; front sizes {sizes}; median over seeds")
    _ = np


if __name__ == "__main__":
    main()
