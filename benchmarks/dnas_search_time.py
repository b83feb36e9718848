"""DCA-NAS search-time ablation on the DARTS space (issue 5, target 3; paper 001, Fig. 3a).

Five variants of the same small search on CIFAR-10, added cumulatively as in the paper:

* ``darts``       plain first-order DARTS (no weight sharing, no bottleneck, all cells mixed);
* ``+ws``         + weight sharing (one op per (source node, op), eq. 5);
* ``+bottleneck`` + 1x1 channel bottleneck (factor ``--bottleneck``);
* ``+derived``    + derived cells (only the first normal and reduction cell mixed);
* ``dca-nas``     + the resource constraint (``--constraint``), i.e. full DCA-NAS.

Each variant runs alone in its own fresh (spawned) process, one torch thread, one after
the other, so timings do not compete with each other and the peak RSS is per variant.
Measured per variant: seconds per search epoch (``metrics.jsonl``; mean over all epochs
and over the epochs after the first); peak RSS of the search: after torch import and the
CIFAR-10 load (shared by every variant) the kernel's peak-RSS mark is reset (write 5 to
/proc/self/clear_refs), the search runs, and ``VmHWM`` is read (also given minus the RSS
just before the search, and the process's ``getrusage`` ru_maxrss, which includes the
dataset-load transient); the search-network parameter count, the final train loss and the
genotype. Results per variant in
``OUT/<variant>/result.json`` (reused when present); writes OUT/table.md, OUT/result.json.

    HWNAS_DATA_DIR=../shared/data nice -n 5 python benchmarks/dnas_search_time.py \
        --channels 8 --layers 5 --train-subset 512 --batch-size 32 --epochs 2 \
        --out runs/bench-dnas-search-time
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import re
import resource
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

VARIANTS: dict[str, tuple[bool, bool, bool, bool, str]] = {
    # name: (weight_sharing, bottleneck on, derived_cells, constraint, label)
    "darts": (False, False, False, False, "plain DARTS (1st order)"),
    "+ws": (True, False, False, False, "+ weight sharing"),
    "+bottleneck": (True, True, False, False, "+ channel bottleneck"),
    "+derived": (True, True, True, False, "+ derived cells"),
    "dca-nas": (True, True, True, True, "DCA-NAS (+ params constraint)"),
}


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _status_mib(field: str) -> float | None:
    """``VmRSS`` / ``VmHWM`` of this process from /proc/self/status (MiB; None if absent)."""
    try:
        m = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    except OSError:
        return None
    return int(m.group(1)) / 1024.0 if m else None


def _reset_hwm() -> bool:
    """Reset the peak-RSS mark (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def run_variant(variant: str, budget: dict[str, Any], out: str) -> dict[str, Any]:
    """One search in this (fresh) process."""
    import torch

    torch.set_num_threads(1)
    from hwnas.dnas.search import _load_train, dsearch

    ws, bn, derived, constrained, _ = VARIANTS[variant]
    cfg = {
        "space": "darts",
        "dataset": "cifar10",
        "epochs": budget["epochs"],
        "batch_size": budget["batch_size"],
        "channels": budget["channels"],
        "layers": budget["layers"],
        "train_subset": budget["train_subset"],
        "image_size": budget["image_size"],
        "weight_sharing": ws,
        "bottleneck": budget["bottleneck"] if bn else 1,
        "derived_cells": derived,
        "constraint": budget["constraint"] if constrained else None,
        "seed": budget["seed"],
        "threads": 1,
    }
    _load_train("cifar10", None)  # the shared dataset load, before the baseline RSS
    gc.collect()
    hwm_reset = _reset_hwm()  # so VmHWM after the search is the search's own peak
    rss_before = _status_mib("VmRSS") if hwm_reset else _maxrss_mib()
    run_dir = Path(out) / variant
    t0 = time.perf_counter()
    res = dsearch(cfg, run_dir, progress=False, return_model=True)
    wall = time.perf_counter() - t0
    secs = [h["seconds"] for h in res.history]
    assert res.model is not None
    n_weights = sum(p.numel() for p in res.model.weight_parameters())
    rec = {
        "variant": variant,
        "budget": budget,
        "config": cfg,
        "epoch_seconds": secs,
        "s_per_epoch": statistics.mean(secs),
        "s_per_epoch_after_first": statistics.mean(secs[1:]) if len(secs) > 1 else secs[0],
        "steps_per_epoch": res.history[0]["steps"],
        "search_wall_s": wall,
        "rss_before_mib": rss_before,
        "peak_rss_mib": _maxrss_mib(),
        "hwm_reset": hwm_reset,
        "search_peak_rss_mib": (_status_mib("VmHWM") if hwm_reset else None) or _maxrss_mib(),
        "search_weights": n_weights,
        "final_train_loss": res.history[-1]["train_loss"],
        "derived_params": res.summary.get("params"),
        "satisfied": res.summary.get("satisfied"),
        "genotype": res.summary.get("genotype"),
    }
    rec["peak_rss_delta_mib"] = rec["search_peak_rss_mib"] - (rss_before or 0.0)
    (run_dir / "checkpoint.pt").unlink(missing_ok=True)
    (run_dir / "result.json").write_text(json.dumps(rec, indent=1))
    return rec


def report(rows: list[dict[str, Any]], budget: dict[str, Any]) -> str:
    base = next((r for r in rows if r["variant"] == "darts"), None)
    lines = [
        f"Budget: {json.dumps(budget)}",
        "",
        "| variant | s / epoch (all) | s / epoch (after 1st) | speed-up vs DARTS "
        "| peak RSS during search (MiB) | minus pre-search RSS (MiB) | process peak RSS (MiB) "
        "| search-net weights | final train loss | derived params (eval net) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v, (*_, label) in VARIANTS.items():
        r = next((x for x in rows if x["variant"] == v), None)
        if r is None:
            continue
        speed = base["s_per_epoch_after_first"] / r["s_per_epoch_after_first"] if base else None
        dp = r["derived_params"]
        lines.append(
            f"| {label} | {r['s_per_epoch']:.1f} | {r['s_per_epoch_after_first']:.1f} | "
            f"{f'{speed:.2f}x' if speed else '-'} | {r['search_peak_rss_mib']:.0f} | "
            f"{r['peak_rss_delta_mib']:.0f} | {r['peak_rss_mib']:.0f} | "
            f"{r['search_weights'] / 1e3:.1f}k | "
            f"{r['final_train_loss']:.3f} | "
            f"{f'{dp / 1e6:.2f}M' if dp else '-'}"
            f"{' (ok)' if r['satisfied'] else ' (violated)' if r['satisfied'] is False else ''} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--train-subset", type=int, default=512)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--bottleneck", type=int, default=2)
    ap.add_argument("--constraint", default="params<=2e6", help="DCA-NAS variant's budget")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-dnas-search-time"))
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    budget = {
        "channels": args.channels,
        "layers": args.layers,
        "train_subset": args.train_subset,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "bottleneck": args.bottleneck,
        "constraint": args.constraint,
        "seed": args.seed,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    variants = args.variants.split(",")
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r} (known: {', '.join(VARIANTS)})")
    t0 = time.time()
    rows = []
    for v in variants:
        p = args.out / v / "result.json"
        if p.is_file() and json.loads(p.read_text())["budget"] == budget:
            rows.append(json.loads(p.read_text()))
            continue
        if args.report_only:
            continue
        # a fresh spawned process per variant: its peak RSS is its own
        with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as ex:
            r = ex.submit(run_variant, v, budget, str(args.out)).result()
        rows.append(r)
        print(
            f"[{time.time() - t0:6.0f}s] {v}: {r['s_per_epoch']:.1f} s/epoch, "
            f"search peak RSS {r['search_peak_rss_mib']:.0f} MiB (+{r['peak_rss_delta_mib']:.0f})",
            flush=True,
        )
    table = report(rows, budget)
    (args.out / "table.md").write_text(table + "\n")
    (args.out / "result.json").write_text(
        json.dumps({"budget": budget, "wall_s": time.time() - t0, "runs": rows}, indent=1)
    )
    print(table)
    print(f"\ntotal wall time {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
