"""LINAS on a trained supernet: cheap objectives taken exactly vs learnt again.

In the pipeline's search (the ``supernet`` benchmark) only accuracy needs the supernet;
predicted latency is the fitted predictor's, exact for any subnet. LINAS takes it from
the evaluator (``cheap=True``, default) or fits its own model of it from the evaluated
subnets (``cheap=False``, as before session 10). This script runs both on a pipeline's
run directory (its supernet checkpoint and latency predictor) for several seeds and
prints the hypervolume after 20, 40, ... evaluations and the search's own overhead.

    python benchmarks/linas_cheap_objectives.py runs/pipeline-default --evaluations 80 \
        --seeds 0,1,2,3,4,5 --out runs/bench-linas-cheap
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from hwnas.search.runner import run_search

VARIANTS = {"cheap (default)": {}, "learnt (cheap=false)": {"cheap": False}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a pipeline run directory (hwnas run --out DIR)")
    ap.add_argument("--evaluations", type=int, default=80)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=1, help="PyTorch threads (1)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench-linas-cheap"))
    args = ap.parse_args()
    ckpt = args.run / "supernet" / "checkpoint.pt"
    latency = args.run / "predictor" / "latency.joblib"
    for path in (ckpt, latency):
        if not path.is_file():
            ap.error(f"{path} not found: give a finished pipeline run directory")
    if args.evaluations < 20:
        ap.error("--evaluations must be >= 20")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        ap.error(f"--seeds takes comma-separated integers, got {args.seeds!r}")
    marks = list(range(20, args.evaluations + 1, 20))
    hv: dict[str, dict[int, list[float]]] = {v: {m: [] for m in marks} for v in VARIANTS}
    overhead: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for seed in seeds:
        for name, opts in VARIANTS.items():
            t0 = time.time()
            s = run_search(
                {
                    "benchmark": "supernet",
                    "benchmark_options": {
                        "checkpoint": str(ckpt),
                        "latency": str(latency),
                        "threads": args.threads,
                    },
                    "algorithm": "linas",
                    "algorithm_options": opts,
                    "evaluations": args.evaluations,
                    "seed": seed,
                },
                out=args.out / f"seed{seed}-{'cheap' if not opts else 'learnt'}",
            )
            for m in marks:
                hv[name][m].append(s["hv_history"][m - 1])
            overhead[name].append(s["search_overhead_s"])
            print(json.dumps({"seed": seed, "variant": name, "wall_s": round(time.time() - t0),
                              "hv": {m: round(hv[name][m][-1], 4) for m in marks}}),
                  flush=True)  # fmt: skip
    (first, a), (second, b) = hv.items()
    print(f"\n| evaluations | {first} | {second} | mean difference | seeds ahead |")
    print("|---|---|---|---|---|")
    for m in marks:
        diff = [x - y for x, y in zip(a[m], b[m], strict=True)]
        print(
            f"| {m} | {statistics.mean(a[m]):.2f} | {statistics.mean(b[m]):.2f} | "
            f"{statistics.mean(diff):+.2f} | {sum(d > 0 for d in diff)} of {len(diff)} |"
        )
    for name, values in overhead.items():
        print(f"{name}: search overhead median {statistics.median(values):.1f} s")


if __name__ == "__main__":
    main()
