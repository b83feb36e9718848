"""LINAS's own overhead per iteration (predictor fits + inner search + selection, no
evaluation), with the default 20,000-candidate inner search (400 x 50 generations), at
N architectures already measured on NAS-Bench-201. Prints the median over repeats and
the machine's load average, since this host is shared.

    HWNAS_DATA_DIR=../shared/data python benchmarks/linas_overhead.py --measured 190
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from threadpoolctl import threadpool_limits

from hwnas.bench import get_benchmark
from hwnas.search.linas import LINAS
from hwnas.search.problem import SearchProblem
from hwnas.search.spec import build_algorithm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--measured", type=int, default=190)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="pixel3")
    ap.add_argument("--algorithm", default="linas", help="a LINAS spec, e.g. linas[kappa=1]")
    args = ap.parse_args()
    if not 1 <= args.measured <= 15625 - 10 or args.repeats < 1:
        ap.error("--measured must be in 1..15615 (NB201's cells less a batch), --repeats >= 1")
    bench = get_benchmark("nb201", devices=args.device)
    problem = SearchProblem(bench, args.measured + 10)
    problem.evaluate(bench.space.sample(args.measured, 0))
    alg = build_algorithm(args.algorithm, seed=0)
    if not isinstance(alg, LINAS):
        raise SystemExit(f"--algorithm must be a LINAS spec, got '{args.algorithm}'")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(args.repeats):
        with threadpool_limits(limits=1):  # as LINAS.run does
            t0 = time.perf_counter()
            models = alg._fit(problem, i)
            t1 = time.perf_counter()
            cand = alg._inner_search(problem, models, rng)
            t2 = time.perf_counter()
            alg._select(problem, models, cand, 10)
            t3 = time.perf_counter()
        rows.append((t1 - t0, t2 - t1, t3 - t2, t3 - t0, len(cand)))
    fit, inner, sel, total, n = np.median(np.array(rows), axis=0)
    print(
        "| measured | fit (s) | inner search (s) | select (s) | total (s) | candidates | load avg |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {args.measured} | {fit:.3f} | {inner:.3f} | {sel:.3f} | {total:.3f} | {n:.0f} | "
        f"{os.getloadavg()[0]:.1f} |"
    )


if __name__ == "__main__":
    main()
