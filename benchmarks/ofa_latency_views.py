"""Which features predict OFA-MobileNetV3 latency measured on this machine from few
measurements: OFA's one-hot encoding, the subnet's MACs per part (fixed layers, each
stage's 1x1 and depthwise convolutions) with its resolution, or both, as a latency
predictor chooses among them by cross-validation (``SearchSpace.cost_feature_views``).
Reads the CSV ``ofa_measured_latency.py --csv`` writes (the mean of its two runs is the
target; Note10's table latency is shown as a one-feature reference).

    HWNAS_DATA_DIR=../shared/data python benchmarks/ofa_measured_latency.py --n 128 --csv runs/ofa128.csv
    HWNAS_DATA_DIR=../shared/data python benchmarks/ofa_latency_views.py runs/ofa128.csv
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from hwnas.predict import make_predictor
from hwnas.predict.models import make_view_predictor
from hwnas.space import get_space


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("--sizes", default="16,32,64")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--models", default="ridge,auto")
    args = ap.parse_args()

    df = pd.read_csv(args.csv)
    space = get_space("ofa-mbv3")
    x = np.stack([space.from_key(k) for k in df["arch_key"]])
    y = ((df["run1_ms"] + df["run2_ms"]) / 2).to_numpy()
    feats = space.cost_features(x)
    views = space.cost_feature_views()
    names = space.cost_feature_view_names()
    res = feats[:, views[0][-1]][:, None]
    columns = {
        names[0]: feats[:, views[0]],
        "one-hot (OFA's encoding)": space.features(x),
        names[1]: feats,
        "Note10 table latency + resolution": np.hstack([df[["note10_ms"]].to_numpy(), res]),
    }
    print(
        f"{len(df)} subnets; target: mean of two measured runs (run 1 vs 2 tau "
        f"{kendalltau(df['run1_ms'], df['run2_ms'])[0]:.3f})"
    )
    print("| model | features | " + " | ".join(f"n={n}" for n in args.sizes.split(",")) + " |")
    print("|---|---|" + "---|" * len(args.sizes.split(",")))
    for model in args.models.split(","):
        rows = dict(columns)
        rows["chosen by CV (what LINAS fits)"] = None
        for name, X in rows.items():
            cells = []
            for n in (int(v) for v in args.sizes.split(",")):
                taus = []
                for t in range(args.trials):
                    idx = np.random.default_rng(t).permutation(len(y))
                    tr, te = idx[:n], idx[n:]
                    if X is None:
                        m = make_view_predictor(model, views, seed=t)
                        m.fit(feats[tr], y[tr])
                        pred = m.predict(feats[te])
                    else:
                        m = make_predictor(model, seed=t)
                        m.fit(X[tr], y[tr])
                        pred = m.predict(X[te])
                    taus.append(kendalltau(pred, y[te])[0])
                cells.append(f"{np.median(taus):.3f}")
            print(f"| {model} | {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
