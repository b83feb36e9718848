"""Warm-starting a search from another device's front (NAS-Bench-201, CIFAR-10): for
each seed, LINAS searches the source device; then LINAS searches the target device cold
and warm-started from the source run's front (``warm_start``: evaluated first, counted
in the budget). Reports the target runs' HV fraction and front recall at a few budgets,
paired by seed, and writes OUT/table.md.

    HWNAS_DATA_DIR=../shared/data python benchmarks/warm_start.py --seeds 10 \\
        --out runs/bench-warm-start

DyNAS-T (paper 003, appendix E) suggests the front of a cheap search (e.g. on MACs) as
the warm start of a latency search; here the cheap search is another device's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from hwnas.search import run_search

PAIRS = "raspi4:pixel3,pixel3:raspi4,2080ti_1:fpga,fpga:2080ti_1"
AT = (20, 50, 100, 200)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", default=PAIRS, help="source:target device pairs")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--evaluations", type=int, default=200)
    ap.add_argument("--algorithm", default="linas")
    ap.add_argument("--out", type=Path, default=Path("runs/bench-warm-start"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    records_path = args.out / "records.jsonl"
    done = {}
    if records_path.is_file():
        for line in records_path.read_text().splitlines():
            r = json.loads(line)
            done[(r["source"], r["target"], r["seed"])] = r
    t0 = time.time()
    for pair in args.pairs.split(","):
        source, target = pair.split(":")
        for seed in range(args.seeds):
            if (source, target, seed) in done:
                continue

            def search(device: str, warm: list[str], seed: int = seed) -> dict:
                return run_search(
                    {
                        "algorithm": args.algorithm,
                        "evaluations": args.evaluations,
                        "seed": seed,
                        "benchmark_options": {"devices": device},
                        "warm_start": warm,
                    }
                )

            src = search(source, [])
            keys = [p["arch_key"] for p in src["pareto"]]
            cold, warm = search(target, []), search(target, keys)
            rec = {
                "source": source,
                "target": target,
                "seed": seed,
                "warm_size": len(keys),
                **{
                    f"{name}_{m}": s[f"{m}_history"]
                    for name, s in (("cold", cold), ("warm", warm))
                    for m in ("hv_fraction", "front_recall")
                },
            }
            done[(source, target, seed)] = rec
            with records_path.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            print(
                f"{source}->{target} seed {seed}: warm start {len(keys)} cells; hv_fraction "
                f"cold {cold['hv_fraction']:.4f} warm {warm['hv_fraction']:.4f}; recall "
                f"{cold['front_recall']:.3f} / {warm['front_recall']:.3f}",
                flush=True,
            )
    lines = [
        "| source -> target | warm start (cells, median) | evals | hv_fraction cold / warm "
        "(median) | warm ahead / behind | front recall cold / warm (median) |",
        "|---|---|---|---|---|---|",
    ]
    for pair in args.pairs.split(","):
        source, target = pair.split(":")
        recs = [r for (s, t, _), r in sorted(done.items()) if (s, t) == (source, target)]
        if not recs:
            continue
        size = np.median([r["warm_size"] for r in recs])
        for n in [a for a in AT if a <= args.evaluations]:
            hv = {
                k: np.array([r[f"{k}_hv_fraction"][n - 1] for r in recs]) for k in ("cold", "warm")
            }
            rc = {
                k: np.array([r[f"{k}_front_recall"][n - 1] for r in recs]) for k in ("cold", "warm")
            }
            ahead = int((hv["warm"] > hv["cold"]).sum())
            behind = int((hv["warm"] < hv["cold"]).sum())
            lines.append(
                f"| {source} -> {target} | {size:.0f} | {n} | {np.median(hv['cold']):.4f} / "
                f"{np.median(hv['warm']):.4f} | {ahead} / {behind} | "
                f"{np.median(rc['cold']):.3f} / {np.median(rc['warm']):.3f} |"
            )
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"done in {time.time() - t0:.0f} s ({len(done)} seed pairs)")


if __name__ == "__main__":
    main()
