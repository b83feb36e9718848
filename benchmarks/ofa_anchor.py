"""Does the drift anchor of ``--bench-option latency=true`` make OFA-MobileNetV3 latency
measured here repeatable? The same random subnets are measured twice in a search's
batches of 8, each batch in one interleaved call with the anchor subnet (as the
benchmark measures them); from the very same calls, each subnet's plain median and its
anchor-corrected latency (median per-round ratio to the anchor x the anchor's reference)
are compared run 1 vs run 2 and against Note10's table.

    HWNAS_DATA_DIR=../shared/data python benchmarks/ofa_anchor.py --n 64 --seed 0
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import kendalltau

from hwnas.bench import get_benchmark
from hwnas.measure.measurer import measure_beside_anchor
from hwnas.measure.profile import AnchorCorrection


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="random subnets")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per measurement")
    args = ap.parse_args()

    table = get_benchmark("ofa-mbv3")
    here = get_benchmark("ofa-mbv3", latency=True, threads=args.threads, rounds=args.rounds)
    here.prepare()  # the anchor's reference, measured alone as a search starts
    m = here.measured
    assert m.anchor is not None and m.reference_ms is not None
    sp = table.space
    x = sp.sample(args.n, np.random.default_rng(args.seed))
    note10 = table.evaluate(x)[:, 1]
    start = time.perf_counter()
    runs = []
    for run in range(2):
        plain, corrected = np.zeros(args.n), np.zeros(args.n)
        for i in range(0, args.n, here.max_batch):
            rows = x[i : i + here.max_batch]
            anchor = (m._anchor_module(), m._shape(m.anchor))
            modules = [m._build(v).eval() for v in rows]
            pairs = measure_beside_anchor(m._measurer, anchor, modules, [m._shape(v) for v in rows])
            for j, (s, a) in enumerate(pairs):
                plain[i + j] = s.stats.median_ms
                corr = AnchorCorrection(m.reference_ms, a.stats.median_ms)
                corrected[i + j] = corr.apply(s, a)["latency_ms"]
            print(f"  run {run + 1}: {i + len(rows)}/{args.n}, anchor {a.stats.median_ms:.2f} ms")
        runs.append((plain, corrected))
    wall = time.perf_counter() - start
    print(
        f"\n{args.n} random OFA-MBv3 subnets (seed {args.seed}), {args.threads} thread(s), "
        f"{args.rounds} rounds, anchor {sp.keys(m.anchor[None])[0]} "
        f"(reference {m.reference_ms:.2f} ms), {wall:.0f} s"
    )
    print(
        "| latency | tau run 1 vs run 2 | run-to-run difference, median / 90th pct | tau Note10 vs here |"
    )
    print("|---|---|---|---|")
    for k, name in ((0, "plain median"), (1, "anchor-corrected")):
        a, b = runs[0][k], runs[1][k]
        diff = np.abs(a - b) / ((a + b) / 2) * 100
        print(
            f"| {name} | {kendalltau(a, b)[0]:.3f} | {np.median(diff):.1f} % / "
            f"{np.percentile(diff, 90):.1f} % | {kendalltau(note10, (a + b) / 2)[0]:.3f} |"
        )


if __name__ == "__main__":
    main()
