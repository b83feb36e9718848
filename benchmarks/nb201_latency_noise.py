"""How much of NAS-Bench-201's measured latency no model of the cell can explain.

1. Cells that compute the same function (equal live edges, see
   ``NB201Space.function_features``) are grouped, and the spread of latency within
   groups is compared with the overall spread.
2. Per device, the median absolute residual of latency models fitted on the whole table:
   least squares on all op counts (every op runs), on the counts of computed ops (ops
   feeding a dead-end node pruned, ``computed_edges``), and gradient-boosted trees on
   the edges' ops plus both masks, scored out of fold (5-fold, 12,500 training cells).
   When the trees barely beat four op prices, what is left is measurement noise.
3. Whether that noise drifts with measurement order: the trees' out-of-fold residuals
   sorted by NAS-Bench-201's architecture index (the order HW-NAS-Bench measured in),
   their lag-1 autocorrelation, and what is left after subtracting the mean residual of
   the two cells either side in that order. A drift is a property of the measurement
   session, not of the cell: no predictor of the cell can learn it.
4. Whether the latencies the other devices publish for each cell explain it (a HELP-style
   transfer: a user profiling a new device has them): ridge from n random cells on the
   cost features, with and without the log latencies of the other devices (the same
   GPU at other batch sizes left out), median absolute error on the other cells, mean
   over 3 draws.

    HWNAS_DATA_DIR=../shared/data python benchmarks/nb201_latency_noise.py
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import kendalltau
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression, RidgeCV
from sklearn.model_selection import KFold, cross_val_predict

from hwnas.bench import get_benchmark
from hwnas.bench.nb201 import nb201_devices
from hwnas.space.nb201 import computed_edges, live_edges


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", default="pixel3,raspi4,fpga,2080ti_1")
    args = ap.parse_args()
    print(
        "| device | groups | latency std (ms) | within-group std (ms) | accuracy within-group std (%) |"
    )
    print("|---|---|---|---|---|")
    tables = {}
    for dev in args.devices.split(","):
        bench = get_benchmark("nb201", devices=dev)
        X, V = bench.table()
        tables[dev] = (bench, X, V)
        live, _ = live_edges(X)
        _, group = np.unique(np.where(live, X, 0), axis=0, return_inverse=True)
        group = group.ravel()
        size = np.bincount(group)
        resid = [V[:, j] - (np.bincount(group, V[:, j]) / size)[group] for j in (0, 1)]
        print(
            f"| {dev} | {group.max() + 1} | {V[:, 1].std():.3f} | {resid[1].std():.3f} | "
            f"{resid[0].std():.3f} |"
        )
    print()
    print(
        "| device | all op counts, LSQ | computed-op counts, LSQ | boosted trees, out of fold "
        "| trees' Kendall tau |"
    )
    print("|---|---|---|---|---|")
    drift = []
    for dev, (bench, X, V) in tables.items():
        y = V[:, 1]
        C = bench.space.cost_features(X)
        med = []
        for cols in (slice(79, 83), slice(83, 87)):
            Z = C[:, cols]
            med.append(np.median(np.abs(y - LinearRegression().fit(Z, y).predict(Z))))
        live, _ = live_edges(X)
        Z = np.concatenate([X, C[:, :30], computed_edges(X), live], axis=1).astype(np.float64)
        trees = HistGradientBoostingRegressor(max_iter=500, max_leaf_nodes=63, random_state=0)
        pred = cross_val_predict(trees, Z, y, cv=KFold(5, shuffle=True, random_state=0))
        tau = kendalltau(pred, y)[0]
        print(
            f"| {dev} | {med[0]:.3f} ms | {med[1]:.3f} ms | "
            f"{np.median(np.abs(pred - y)):.3f} ms | {tau:.3f} |"
        )
        drift.append((dev, (y - pred)[np.argsort(bench.benchmark_index(X))]))
    print()
    bench, X, _ = next(iter(tables.values()))
    Xo = X[np.argsort(bench.benchmark_index(X))]
    shuffled = Xo[np.random.default_rng(0).permutation(len(Xo))]
    print(
        f"(cells adjacent in index order differ in {(Xo[1:] != Xo[:-1]).sum(1).mean():.2f} "
        f"of 6 edges, random pairs in {(shuffled != Xo).sum(1).mean():.2f})\n"
    )
    print(
        "| device | trees' residual, median | lag-1 autocorrelation in index order "
        "| minus the mean of 2 neighbours either side |"
    )
    print("|---|---|---|---|")
    for dev, r in drift:
        kernel = np.array([1.0, 1.0, 0.0, 1.0, 1.0])
        near = np.convolve(r, kernel, "same") / np.convolve(np.ones_like(r), kernel, "same")
        print(
            f"| {dev} | {np.median(np.abs(r)):.3f} ms | {np.corrcoef(r[:-1], r[1:])[0, 1]:.3f} "
            f"| {np.median(np.abs(r - near)):.3f} ms |"
        )
    transfer(tables)


def transfer(tables: dict) -> None:
    """Section 4: other devices' published latencies as extra latency features."""
    sizes = (100, 200, 12500)
    print()
    print("| device | cost features, n = " + " / ".join(map(str, sizes)) + " | + other devices |")
    print("|---|---|---|")
    everyone = nb201_devices()
    for dev, (bench, X, V) in tables.items():
        family = dev.rsplit("_", 1)[0] if dev.rsplit("_", 1)[-1].isdigit() else dev
        others = [d for d in everyone if d != dev and not d.startswith(family + "_")]
        _, W = get_benchmark("nb201", devices=",".join(others)).table()
        C = bench.space.cost_features(X).astype(np.float64)
        y = V[:, 1]
        cells = []
        for Z in (C, np.concatenate([C, np.log(W[:, 1:])], axis=1)):
            errs = []
            for n in sizes:
                e = []
                for draw in range(3):
                    idx = np.random.default_rng(draw).permutation(len(y))
                    fit = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(Z[idx[:n]], y[idx[:n]])
                    e.append(np.median(np.abs(fit.predict(Z[idx[n:]]) - y[idx[n:]])))
                errs.append(f"{np.mean(e):.3f}")
            cells.append(" / ".join(errs) + " ms")
        print(f"| {dev} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
