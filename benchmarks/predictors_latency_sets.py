"""Latency predictors on the published measured latency sets (FBNet and OFA-MBv3 from HELP,
HAT's SubTransformers): median Kendall tau and MAPE over trials at each training size
(default 25, 100, 500), per model and device, on a fixed held-out test set (1000 rows;
500 for HAT and for the 1,013 OFA subnets the ofa-mbv3 space can encode). Writes
OUT/predictors.csv and OUT/table.md and prints the tables.

    OMP_NUM_THREADS=1 HWNAS_DATA_DIR=../shared/data python benchmarks/predictors_latency_sets.py \
        --trials 5 --out runs/bench-latency-sets
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

from hwnas.predict.evaluate import sample_efficiency, summarize, write_csv
from hwnas.predict.latency_sets import HAT_FILES, get_latency_set

MODELS = "ridge,svr,stacked,gp,mlp,cart"
# (set, devices, test size); FBNet: the brief's six plus two phones measured end to end
TARGETS: list[tuple[str, list[str], int]] = [
    (
        "fbnet",
        ["pixel3", "raspi4", "eyeriss", "fpga", "gold_6226", "2080ti_1", "pixel2", "samsung_a50"],
        1000,
    ),
    ("ofa-mbv3-gpu", ["2080ti_1", "2080ti_64", "v100_1"], 500),
    ("ofa-mbv3-gpu-allres", ["2080ti_1", "2080ti_64", "v100_1"], 1000),
    ("hat", list(HAT_FILES), 500),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--sizes", default="25,100,500")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--sets", default="all", help="comma-separated set names (default: all)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench-latency-sets"))
    args = ap.parse_args()
    if args.trials < 1:
        ap.error("--trials must be >= 1")
    models = args.models.split(",")
    sizes = [int(s) for s in args.sizes.split(",")]
    chosen = None if args.sets == "all" else set(args.sets.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    rows = []
    for name, devices, test_size in TARGETS:
        if chosen is not None and name not in chosen:
            continue
        lat_set = get_latency_set(name)
        for dev in devices:
            with warnings.catch_warnings():  # the OFA note on left-out rows, said once below
                warnings.simplefilter("ignore", UserWarning)
                X, y, views = lat_set.load(dev)
            res = sample_efficiency(X, y, models, sizes, test_size, args.trials, views=views)
            for r in summarize(res):
                rows.append({"set": name, "device": dev, "rows": len(y), "test": test_size, **r})
            best = max(
                (r for r in rows if (r["set"], r["device"]) == (name, dev) and r["size"] == 100),
                key=lambda r: r["kendall_tau_median"],
                default=None,
            )
            took = time.time() - t0
            if best is not None:
                tau = best["kendall_tau_median"]
                print(f"{name} {dev}: best@100 {best['model']} tau {tau:.3f} ({took:.0f} s)")
    write_csv(rows, args.out / "predictors.csv")
    keys = list(dict.fromkeys((r["set"], r["device"], r["rows"], r["test"]) for r in rows))
    lines: list[str] = []
    for size in sizes:
        lines += [
            f"\n**{size} training samples**: median Kendall tau / MAPE (%) over "
            f"{args.trials} trials\n",
            f"| set | device | rows (test) | {' | '.join(models)} | best tau |",
            "|---|---|---|" + "---|" * (len(models) + 1),
        ]
        for s, d, n, t in keys:
            rs = {r["model"]: r for r in rows if (r["set"], r["device"], r["size"]) == (s, d, size)}
            if not rs:
                continue
            cells = [
                f"{rs[m]['kendall_tau_median']:.3f} / {rs[m]['mape_median']:.1f}" for m in models
            ]
            best = max(rs.values(), key=lambda r: r["kendall_tau_median"])["model"]
            lines.append(f"| {s} | {d} | {n} ({t}) | {' | '.join(cells)} | {best} |")
    text = "\n".join(lines).lstrip("\n") + "\n"
    (args.out / "table.md").write_text(text)
    print(text)
    print(f"{len(keys)} set/device pairs, {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
