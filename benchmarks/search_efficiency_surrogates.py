"""Search efficiency on the once-for-all surrogates, as the DyNAS-T paper measures it
(its Fig. 9 and Table 3): OFA-MobileNetV3 (ImageNet top-1 from OFA's predictor vs
Note10 latency from OFA's lookup table) and OFA-ResNet50 (top-1 from OFA's ResNet50
predictor vs MFLOPs). No exact front is known, so each run is scored by hypervolume at
the benchmark's fixed reference point, and algorithms by how many evaluations they need
to reach random search's and NSGA-II's final hypervolume. Writes CSVs, plots and
OUT/table.md (pasted into docs/BENCHMARKS.md).

    HWNAS_DATA_DIR=../shared/data python benchmarks/search_efficiency_surrogates.py \\
        --seeds 10 --evaluations 1000 --out runs/bench-se-surrogates

Finished runs are stored in OUT/<benchmark>/records.jsonl; ``--resume`` reuses them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hwnas.search.efficiency import (
    RECORDS_NAME,
    checkpoints,
    efficiency_table,
    evaluations_to_reach,
    paired_cell,
    paired_comparison,
    search_efficiency,
    write_efficiency,
)
from hwnas.search.spec import split_algorithms

BENCHMARKS = "ofa-mbv3,ofa-resnet50"
ALGORITHMS = "random,nsga2,linas"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--benchmarks", default=BENCHMARKS)
    ap.add_argument("--algorithms", default=ALGORITHMS)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--evaluations", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-se-surrogates"))
    ap.add_argument("--resume", action="store_true", help="reuse OUT/*/records.jsonl")
    args = ap.parse_args()
    algs = split_algorithms(args.algorithms)
    t0 = time.time()
    lines = []
    for bench in args.benchmarks.split(","):
        out = args.out / bench
        started = time.time()

        def tick(r: dict, bench: str = bench) -> None:
            print(
                f"{bench} {r['algorithm']} seed {r['seed']}: hv {r['hypervolume'][-1]:.6g} "
                f"({r['wall_time_s']:.0f} s)",
                flush=True,
            )

        results = search_efficiency(
            bench,
            None,
            algs,
            args.evaluations,
            args.seeds,
            jobs=args.jobs,
            progress=tick,
            records=out / RECORDS_NAME,
            resume=args.resume,
        )
        write_efficiency(results, out, title=f"{bench}, {args.seeds} seeds")
        ref = results[0]["reference_point"]
        lines += [
            f"### {bench} ({args.seeds} seeds, reference point {ref}, "
            f"{time.time() - started:.0f} s)",
            "",
            "| algorithm | evals | hypervolume median [min, max] | overhead/iteration (s) |",
            "|---|---|---|---|",
        ]
        at = sorted({n for n in (50, 100, 250, 500) if n < args.evaluations} | {args.evaluations})
        for r in efficiency_table(results, at=at):
            ovh = r["overhead_per_iteration_s"]
            lines.append(
                f"| {r['algorithm']} | {r['evaluations']} | {r['hypervolume_median']:.6g} "
                f"[{r['hypervolume_min']:.6g}, {r['hypervolume_max']:.6g}] | "
                f"{'' if ovh is None else f'{ovh:.2f}'} |"
            )
        lines += [
            "",
            "Evaluations to reach the median final hypervolume of random search and of "
            f"NSGA-II at {args.evaluations} evaluations (median over seeds; seeds that reach it):",
            "",
            "| algorithm | to random's | to NSGA-II's |",
            "|---|---|---|",
        ]
        reach = {
            t: {r["algorithm"]: r for r in evaluations_to_reach(results, t)}
            for t in ("random", "nsga2")
            if t in algs
        }

        def cell(r: dict, own: bool) -> str:
            n = r["evaluations_median"]
            text = "(the level)" if own else "never" if n is None else f"{n:.0f}"
            return f"{text} ({r['reached']}/{r['seeds']})"

        for alg in algs:
            cells = [
                cell(reach[t][alg], alg == t) if t in reach else "" for t in ("random", "nsga2")
            ]
            lines.append(f"| {alg} | {cells[0]} | {cells[1]} |")
        if len(algs) > 1:
            lines += [
                "",
                f"Each against {algs[0]}, paired by seed: mean hypervolume difference (seeds "
                "ahead/behind, Wilcoxon p)",
                "",
                "| algorithm | evals | hypervolume |",
                "|---|---|---|",
            ]
            for r in paired_comparison(results, at=checkpoints(args.evaluations)):
                lines.append(
                    f"| {r['algorithm']} | {r['evaluations']} | "
                    f"{paired_cell(r, 'hypervolume', 1)} |"
                )
        lines.append("")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    meta = {"wall_time_s": time.time() - t0, "args": vars(args)}
    (args.out / "meta.json").write_text(json.dumps(meta, default=str))
    print("\n".join(lines))
    print(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
