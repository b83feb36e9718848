"""Does fitting LINAS's accuracy predictor with rank weights rank the accurate cells better?

LINAS fits its quality predictor (MLP on function features) with sample weights rising
linearly with the measured rank, 0.5 for the worst to 2.5 for the best
(``hwnas.search.linas.rank_weights``, ``quality_weights="rank"``). This script draws
training sets of random NB201 cells, fits the MLP with and without those weights, and
reports Kendall tau on all other cells and among those above 92.5 % (where the Pareto
front's accuracies lie), mean over draws. ``--steep`` adds steeper weights, 0.2 + 3 r^2
for rank fraction r (0 = worst, 1 = best), a variant tried and not kept; ``--average K``
adds the mean of K rank-weighted MLPs with different seeds (session 7, not kept either).

    HWNAS_DATA_DIR=../shared/data python benchmarks/accuracy_weights.py --trials 10 \
        [--steep] [--average 3]
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import kendalltau

from hwnas.bench import get_benchmark
from hwnas.predict import fit_weighted, make_predictor
from hwnas.search.linas import rank_weights

TOP = 92.5


class _Mean:
    """The mean prediction of fitted models."""

    def __init__(self, models: list) -> None:
        self.models = models

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.mean([m.predict(X) for m in self.models], axis=0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,200")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steep", action="store_true", help="also 0.2 + 3 r^2 weights")
    ap.add_argument("--average", type=int, default=0, help="also the mean of K weighted MLPs")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.trials < 1 or not all(2 <= s < 15625 for s in sizes):
        ap.error("--trials must be >= 1 and each of --sizes in 2..15624 (the rest is the test set)")
    bench = get_benchmark("nb201", dataset=args.dataset)
    X, V = bench.table()
    acc = V[:, 0]
    F = bench.space.function_features(X)
    rng = np.random.default_rng(args.seed)
    print(f"MLP accuracy predictor, mean of {args.trials} draws: Kendall tau all / above {TOP} %")
    names = ["unweighted", "rank weights"] + (["steep rank weights"] if args.steep else [])
    if args.average > 1:
        names.append(f"mean of {args.average} rank-weighted")
    print("\n| training cells | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for size in (int(s) for s in args.sizes.split(",")):
        res: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
        for t in range(args.trials):
            train = rng.choice(len(X), size, replace=False)
            test = np.setdiff1d(np.arange(len(X)), train)
            top = acc[test] > TOP
            for name in res:
                model = make_predictor("mlp", seed=t)
                w = rank_weights(-acc[train])  # 0.5 .. 2.5
                if name == "rank weights":
                    fit_weighted(model, F[train], acc[train], w)
                elif name == "steep rank weights":
                    fit_weighted(model, F[train], acc[train], 0.2 + 3.0 * ((w - 0.5) / 2) ** 2)
                elif name.startswith("mean of"):
                    seeds = [t + 1000 * k for k in range(args.average)]  # member 0: seed t
                    members = [make_predictor("mlp", seed=s) for s in seeds]
                    model = _Mean([fit_weighted(m, F[train], acc[train], w) for m in members])
                else:
                    model.fit(F[train], acc[train])
                pred = model.predict(F[test])
                res[name].append(
                    (kendalltau(pred, acc[test])[0], kendalltau(pred[top], acc[test][top])[0])
                )
        cells = [
            f"{np.mean([a for a, _ in r]):.3f} / {np.mean([b for _, b in r]):.3f}"
            for r in res.values()
        ]
        print(f"| {size} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
