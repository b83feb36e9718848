"""How much of NAS-Bench-201's measured latency no model of the cell can explain: cells
that compute the same function (equal live edges, see ``NB201Space.function_features``)
are grouped, and the spread of latency within groups is compared with the overall spread.

    HWNAS_DATA_DIR=../shared/data python benchmarks/nb201_latency_noise.py
"""

from __future__ import annotations

import argparse

import numpy as np

from hwnas.bench import get_benchmark
from hwnas.space.nb201 import live_edges


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", default="pixel3,raspi4,fpga,2080ti_1")
    args = ap.parse_args()
    print(
        "| device | groups | latency std (ms) | within-group std (ms) | accuracy within-group std (%) |"
    )
    print("|---|---|---|---|---|")
    for dev in args.devices.split(","):
        bench = get_benchmark("nb201", devices=dev)
        X, V = bench.table()
        live, _ = live_edges(X)
        _, group = np.unique(np.where(live, X, 0), axis=0, return_inverse=True)
        group = group.ravel()
        size = np.bincount(group)
        resid = [V[:, j] - (np.bincount(group, V[:, j]) / size)[group] for j in (0, 1)]
        print(
            f"| {dev} | {group.max() + 1} | {V[:, 1].std():.3f} | {resid[1].std():.3f} | "
            f"{resid[0].std():.3f} |"
        )


if __name__ == "__main__":
    main()
