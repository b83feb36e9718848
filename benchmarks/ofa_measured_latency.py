"""OFA-MobileNetV3 latency measured on this machine against Note10's lookup table: do
the published table's rankings hold on the device at hand? The same random subnets are
measured twice here (``--bench-option latency=true``: built in PyTorch, exported to
ONNX, timed with ONNX Runtime), so the table's agreement with this machine is read
against this machine's agreement with itself.

    HWNAS_DATA_DIR=../shared/data python benchmarks/ofa_measured_latency.py --n 64
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import kendalltau, spearmanr

from hwnas.bench import get_benchmark
from hwnas.search.pareto import non_dominated_mask


def measure(bench, x: np.ndarray) -> np.ndarray:
    """Measured latency (ms) of each subnet, in the search's batches of max_batch."""
    out = []
    for i in range(0, len(x), bench.max_batch):
        out.append(bench.evaluate(x[i : i + bench.max_batch])[:, 1])
        print(f"  {min(i + bench.max_batch, len(x))}/{len(x)} measured", flush=True)
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="random subnets")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per measurement")
    ap.add_argument("--csv", help="write each subnet's key, Note10 and measured latency here")
    ap.add_argument("--no-anchor", action="store_true", help="plain medians (before session 15)")
    args = ap.parse_args()

    table = get_benchmark("ofa-mbv3")
    here = get_benchmark(
        "ofa-mbv3",
        latency=True,
        threads=args.threads,
        rounds=args.rounds,
        anchor=not args.no_anchor,
    )
    x = table.space.sample(args.n, np.random.default_rng(args.seed))
    acc, note10 = table.evaluate(x).T
    start = time.perf_counter()
    runs = [measure(here, x), measure(here, x)]
    wall = time.perf_counter() - start
    mean = (runs[0] + runs[1]) / 2
    res = np.asarray([table.space.decode(v)["r"] for v in x])

    print(
        f"\n{args.n} random OFA-MBv3 subnets, {args.threads} thread(s), {args.rounds} rounds, "
        f"{wall:.0f} s"
    )
    print("| comparison | Kendall tau | Spearman rho |")
    print("|---|---|---|")
    pairs = (
        ("this machine, run 1 vs run 2", runs[0], runs[1]),
        ("Note10 table vs this machine (mean of 2 runs)", note10, mean),
    )
    for name, a, b in pairs:
        print(f"| {name} | {kendalltau(a, b)[0]:.3f} | {spearmanr(a, b)[0]:.3f} |")
    diff = np.abs(runs[0] - runs[1]) / mean
    print(
        f"\nrun 1 vs run 2: median difference {100 * np.median(diff):.1f} % of the mean, "
        f"90th percentile {100 * np.quantile(diff, 0.9):.1f} %"
    )
    ratio = mean / note10
    print(
        f"\nthis machine / Note10: median {np.median(ratio):.2f}x, range {ratio.min():.2f}-{ratio.max():.2f}x"
    )
    for r in np.unique(res):
        m = res == r
        print(f"  r={r}: {m.sum()} subnets, median ratio {np.median(ratio[m]):.2f}x")
    f10 = non_dominated_mask(np.stack([-acc, note10], axis=1))
    fhere = non_dominated_mask(np.stack([-acc, mean], axis=1))
    both = (f10 & fhere).sum()
    print(
        f"\nPareto fronts of the sample (accuracy vs latency): Note10 {f10.sum()}, this "
        f"machine {fhere.sum()}, on both {both}"
    )
    print(
        f"median measured latency {np.median(mean):.2f} ms (min {mean.min():.2f}, max {mean.max():.2f})"
    )
    if args.csv:
        import pandas as pd

        df = pd.DataFrame({"arch_key": table.space.keys(x), "accuracy": acc, "note10_ms": note10})
        df.assign(run1_ms=runs[0], run2_ms=runs[1]).to_csv(args.csv, index=False)
        print(f"each subnet's latencies: {args.csv}")


if __name__ == "__main__":
    main()
