"""How much of NAS-Bench-201's exact Pareto front 200 evaluations can find when the
predictors are as good as a model of the cell gets: each cell's accuracy and latency are
predicted by models fitted on the other 80 % of the table (5-fold cross-validation, so
12,500 training cells instead of LINAS's <= 200), and 200 cells are chosen from the
predictions alone.

Two ways to choose: ``ranking`` takes the predictions' non-dominated layers in order;
``bayes`` takes the 200 cells most often on the front when the cross-validation residuals
(drawn from cells with similar predictions) are added to the predictions, i.e. the best
non-adaptive choice under the models' real error. Rows with one objective replaced by its
true table value show which predictor limits front recall.

    HWNAS_DATA_DIR=../shared/data python benchmarks/front_ceiling.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import KFold

from hwnas.bench import get_benchmark
from hwnas.predict import make_predictor
from hwnas.search.pareto import ExactFront


def front_mask_2d(F: np.ndarray) -> np.ndarray:
    """Non-dominated mask of 2-objective minimisation points (sort, then running min)."""
    order = np.lexsort((F[:, 1], F[:, 0]))
    best = np.minimum.accumulate(F[order, 1])
    prev = np.concatenate([[np.inf], best[:-1]])
    keep = F[order, 1] < prev
    # equal points: a duplicate of a front point is also non-dominated
    same = np.zeros(len(F), dtype=bool)
    same[1:] = np.all(F[order][1:] == F[order][:-1], axis=1)
    for k in np.nonzero(same)[0]:
        keep[k] = keep[k - 1]
    mask = np.zeros(len(F), dtype=bool)
    mask[order] = keep
    return mask


def layers(F: np.ndarray) -> np.ndarray:
    """Non-dominated layer (0 = front) of each point."""
    rank = np.full(len(F), -1)
    idx = np.arange(len(F))
    r = 0
    while (rank < 0).any():
        rem = idx[rank < 0]
        rank[rem[front_mask_2d(F[rem])]] = r
        r += 1
    return rank


def cv_predict(make, X: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Prediction of each cell by a model fitted on the other folds."""
    pred = np.empty_like(y)
    for tr, te in KFold(5, shuffle=True, random_state=seed).split(X):
        pred[te] = make().fit(X[tr], y[tr]).predict(X[te])
    return pred


def local_residuals(
    pred: np.ndarray, resid: np.ndarray, n: int, rng: np.random.Generator, window: int = 150
) -> np.ndarray:
    """``n`` draws of a residual for every cell, each taken from one of the ``window``
    cells on either side of it in predicted value (the error is not the same everywhere)."""
    order = np.argsort(pred)
    pos = np.empty(len(pred), dtype=np.int64)
    pos[order] = np.arange(len(pred))
    off = rng.integers(-window, window + 1, size=(n, len(pred)))
    src = np.clip(pos[None, :] + off, 0, len(pred) - 1)
    return resid[order[src]]


def choose(Fp: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    rank = layers(Fp)
    return np.lexsort((rng.random(len(rank)), rank))[:budget]


def choose_bayes(
    Fp: np.ndarray, R: np.ndarray, budget: int, scenarios: int, rng: np.random.Generator
) -> np.ndarray:
    """The ``budget`` cells most often non-dominated when residuals ``R`` (per objective)
    are added to the predictions ``Fp``."""
    hits = np.zeros(len(Fp))
    n0 = local_residuals(Fp[:, 0], R[0], scenarios, rng) if R[0] is not None else 0.0
    n1 = local_residuals(Fp[:, 1], R[1], scenarios, rng) if R[1] is not None else 0.0
    for s in range(scenarios):
        e0 = n0[s] if R[0] is not None else 0.0
        e1 = n1[s] if R[1] is not None else 0.0
        hits += front_mask_2d(np.stack([Fp[:, 0] + e0, Fp[:, 1] + e1], axis=1))
    return np.lexsort((rng.random(len(Fp)), -hits))[:budget]


def table(dev: str) -> tuple[np.ndarray, np.ndarray, ExactFront, np.ndarray, np.ndarray]:
    """CIFAR-10 accuracy and ``dev`` latency of all cells (keyed by row), the exact
    front, and the function (accuracy) and graph (cost) features LINAS uses."""
    bench = get_benchmark("nb201", devices=dev)
    V, Y = bench.table()
    acc, lat = Y[:, 0], Y[:, 1]
    exact = ExactFront.from_table([str(i) for i in range(len(V))], np.stack([-acc, lat], 1))
    return acc, lat, exact, bench.space.function_features(V), bench.space.cost_features(V)


def score(
    exact: ExactFront, acc: np.ndarray, lat: np.ndarray, sel: np.ndarray
) -> tuple[float, float]:
    """Front recall and hv_fraction of evaluating the cells ``sel``."""
    Fs = np.stack([-acc[sel], lat[sel]], axis=1)
    s = exact.scores(Fs[front_mask_2d(Fs)], [str(i) for i in sel], Fs)
    return s["front_recall"], s["hv_fraction"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", default="pixel3,raspi4,fpga,2080ti_1")
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--scenarios", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--sizes",
        default="200,1000,3000",
        help="training-set sizes for the learning curve of LINAS's predictors ('' to skip)",
    )
    ap.add_argument("--curve-seeds", type=int, default=3)
    args = ap.parse_args()
    models = {
        "hgb": lambda: HistGradientBoostingRegressor(
            max_iter=500, max_leaf_nodes=63, random_state=args.seed
        ),
        "linas": None,  # LINAS's defaults: MLP for accuracy, ridge for latency
    }
    print(f"front recall / hv_fraction of {args.budget} cells chosen from the predictions")
    print(
        "| device | front | predictors (fitted on 12,500 cells) | accuracy | latency |"
        " ranking | bayes |"
    )
    print("|---|---|---|---|---|---|---|")
    for dev in args.devices.split(","):
        t0 = time.perf_counter()
        acc, lat, exact, fx, cx = table(dev)
        for mname, make in models.items():
            if make is None:
                pacc = cv_predict(lambda: make_predictor("mlp", seed=args.seed), fx, acc, args.seed)
                plat = cv_predict(
                    lambda: make_predictor("ridge", seed=args.seed), cx, lat, args.seed
                )
            else:
                X = np.hstack([fx, cx])
                pacc = cv_predict(make, X, acc, args.seed)
                plat = cv_predict(make, X, lat, args.seed)
            ra, rl = -(acc - pacc), lat - plat  # residuals in minimisation units
            gap = np.median(np.diff(np.sort(exact.F[:, 1])))
            print(
                f"<!-- {dev} {mname}: median |CV error| accuracy {np.median(np.abs(ra)):.3f} "
                f"points, latency {np.median(np.abs(rl)):.3f} ms; front's median latency gap "
                f"{gap:.3f} ms -->"
            )
            rows = [
                ("predicted", "predicted", np.stack([-pacc, plat], 1), (ra, rl)),
                ("**true**", "predicted", np.stack([-acc, plat], 1), (None, rl)),
                ("predicted", "**true**", np.stack([-pacc, lat], 1), (ra, None)),
            ]
            for a_name, l_name, Fp, R in rows:
                rng = np.random.default_rng(args.seed)
                cells = []
                for sel in (
                    choose(Fp, args.budget, rng),
                    choose_bayes(Fp, R, args.budget, args.scenarios, rng),
                ):
                    rec, hvf = score(exact, acc, lat, sel)
                    cells.append(f"{rec:.3f} / {hvf:.4f}")
                print(
                    f"| {dev} | {len(exact.keys)} | {mname} | {a_name} | {l_name} | "
                    f"{cells[0]} | {cells[1]} |",
                    flush=True,
                )
        print(f"<!-- {dev}: {time.perf_counter() - t0:.0f} s -->", flush=True)
    sizes = [int(n) for n in args.sizes.split(",") if n]
    if sizes:
        print(f"\nLINAS's predictors fitted on n random cells, {args.budget} cells ranked,")
        print(f"median (min-max) over {args.curve_seeds} draws: front recall / hv_fraction")
        print("| device | " + " | ".join(f"n = {n}" for n in sizes) + " |")
        print("|---|" + "---|" * len(sizes))
        for dev in args.devices.split(","):
            print(f"| {dev} | " + " | ".join(curve(dev, n, args) for n in sizes) + " |", flush=True)


def curve(dev: str, n: int, args: argparse.Namespace) -> str:
    """Front recall and hv_fraction of the top ``budget`` cells by LINAS's predictors
    fitted on ``n`` random cells (several draws)."""
    acc, lat, exact, fx, cx = table(dev)
    rec, hvf = [], []
    for s in range(args.curve_seeds):
        rng = np.random.default_rng(args.seed + s)
        tr = rng.choice(len(acc), size=n, replace=False)
        pacc = make_predictor("mlp", seed=s).fit(fx[tr], acc[tr]).predict(fx)
        plat = make_predictor("ridge", seed=s).fit(cx[tr], lat[tr]).predict(cx)
        sel = choose(np.stack([-pacc, plat], axis=1), args.budget, rng)
        r, h = score(exact, acc, lat, sel)
        rec.append(r)
        hvf.append(h)
    r, h = np.array(rec), np.array(hvf)
    return (
        f"{np.median(r):.3f} ({r.min():.3f}-{r.max():.3f}) / "
        f"{np.median(h):.4f} ({h.min():.4f}-{h.max():.4f})"
    )


if __name__ == "__main__":
    main()
