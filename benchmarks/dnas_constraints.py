"""DCA-NAS constraint satisfaction on NAS-Bench-201 (issue 5, targets 1 and 2; paper 001).

For each device budget (``--metric params`` or ``latency:DEVICE``) and each seed, one short
DCA-NAS search (:func:`hwnas.dnas.search.dsearch`) on a CIFAR-10 training subset; the
derived cell is looked up in the NB201 table (true 200-epoch test accuracy, the 27 device
latencies) and compared with the best table cell under the same budget. Two modes:

* ``plain``: the search budget B is the device budget;
* ``lug``: the paper's remedy (section 3.2.1): a lookup graph of short searches over
  ``--lug-budgets`` (one per search budget and LUG seed, via
  :func:`hwnas.dnas.lookup.build_lookup_graph`, the points of all LUG seeds merged into
  one :class:`~hwnas.dnas.lookup.LookupGraph`) maps each device budget to a search budget;
* ``lug-max``: the same searches, per search budget the largest derived value over the
  LUG seeds (a conservative graph);
* ``linear``, ``log``, ``pow``: B is the device budget as in ``plain``, but the alpha loss
  holds a soft penalty instead of the Lagrange multiplier (ProxylessNAS, FBNet, MnasNet;
  ``DSearchConfig.penalty``; the papers' weight and exponents unless ``--penalty-weight``
  (linear) or ``--penalty-exponent`` (log, pow) say otherwise): the baselines DCA-NAS
  argues against.

Every run lives in ``OUT/<mode>/b<budget>/s<seed>`` (LUG runs in ``OUT/lug-graph``) and is
not repeated when its ``summary.json`` exists, so a killed invocation continues. Runs go in
parallel over ``--jobs`` processes, one torch thread each. Writes OUT/table.md and
OUT/result.json and prints the table.

    HWNAS_DATA_DIR=../shared/data nice -n 5 python benchmarks/dnas_constraints.py \
        --metric params --budgets 1.5e5,4e5,8e5 --lug-budgets 2e5,3e5,3.5e5,4e5,4.5e5,5e5,6e5,8e5 \
        --seeds 0-9 --mode plain,lug,lug-max --jobs 2 --out runs/bench-dnas-params
    HWNAS_DATA_DIR=../shared/data nice -n 5 python benchmarks/dnas_constraints.py \
        --metric latency:pixel3 --budgets 3,7,14 --lug-budgets 4,6,8,10,12,14,18 \
        --seeds 0-9 --jobs 2 --out runs/bench-dnas-pixel3
    HWNAS_DATA_DIR=../shared/data python benchmarks/dnas_constraints.py \
        --metric latency:pixel3 --budgets 3,7,14 --seeds 0-9 --mode plain,linear,log,pow \
        --jobs 2 --out runs/bench-dnas-penalties
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

MODES = ("plain", "lug", "lug-max", "linear", "log", "pow")
PENALTIES = ("linear", "log", "pow")
LUG_MAX_NAME = "lug_max.json"


def parse_seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            out += list(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def run_one(config: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """One search (worker entry point); returns its compact record."""
    import torch

    torch.set_num_threads(1)
    from hwnas.dnas.search import SUMMARY_NAME, dsearch

    p = Path(run_dir) / SUMMARY_NAME
    if not p.is_file() or "argmax_genotype" not in json.loads(p.read_text()):
        # a finished run made before the derivation rules only re-derives (no training)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dsearch(config, run_dir, resume=True, progress=False)
    return record(json.loads(p.read_text()), run_dir)


def _argmax(s: dict[str, Any]) -> dict[str, Any]:
    """The plain argmax cell's facts (the search's own outcome before the feasible rule)."""
    from hwnas.dnas.derivation import nb201_record
    from hwnas.dnas.resources import EvalNetConfig, resource_model

    arch = s["argmax_genotype"]
    rec = nb201_record(arch, s["config"].get("data_dir"))
    ev = s["resource_model"]["eval_network"]
    params = resource_model("params", EvalNetConfig(**ev)).derived(arch)
    return {
        "genotype": arch,
        "derived": s["argmax_derived"],
        "satisfied": s["argmax_satisfied"],
        "acc": rec["test_acc"]["cifar10"],
        "params": params,
        "latency_ms": rec["latency_ms"],
    }


def record(s: dict[str, Any], run_dir: str) -> dict[str, Any]:
    nb = s["nb201"]
    best = nb["best_under_budget"]["cifar10"]
    return {
        "argmax": _argmax(s),
        "run_dir": run_dir,
        "seed": s["config"]["seed"],
        "budget": s["budget"],
        "search_budget": s["search_budget"],
        "search_budget_source": s["search_budget_source"],
        "genotype": s["genotype"],
        "index": nb["index"],
        "derived": s["derived"],
        "expected": s["expected"],
        "params": s["params"],
        "satisfied": s["satisfied"],
        "lambda": s["lambda"],
        "seconds": s["seconds"],
        "acc": nb["test_acc"]["cifar10"],
        "best_acc": best["test_acc"] if best else None,
        "best_arch": best["arch_str"] if best else None,
        "best_resource": best["resource"] if best else None,
        "feasible_cells": nb["best_under_budget"]["feasible_cells"],
        "latency_ms": nb["latency_ms"],
    }


def base_config(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "space": args.space,
        "dataset": "cifar10",
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "channels": args.channels,
        "stage_cells": args.stage_cells,
        "train_subset": args.train_subset,
        "image_size": args.image_size,
        "arch_lr": args.arch_lr,
        "lambda_lr": args.lambda_lr,
        "threads": 1,
    }


def constraint_text(metric: str, budget: float) -> str:
    return f"{metric}<={budget:g}"


def build_lug(args: argparse.Namespace) -> Path:
    """One lookup graph per LUG seed (library function), merged into OUT/lug-graph/lug.json
    (duplicate search budgets averaged, the library's rule) and lug_max.json (the largest
    derived value per search budget: a conservative graph). Returns OUT/lug-graph."""
    from hwnas.dnas.lookup import LUG_NAME, LookupGraph, build_lookup_graph

    budgets = [float(b) for b in args.lug_budgets.split(",")]
    points: list[tuple[float, float]] = []
    runs: list[dict[str, Any]] = []
    root = args.out / "lug-graph"
    for seed in parse_seeds(args.lug_seeds):
        cfg = dict(base_config(args), seed=seed, constraint=constraint_text(args.metric, 1.0))
        t0 = time.time()
        g = build_lookup_graph(cfg, budgets, root / f"seed{seed}", jobs=args.jobs)
        print(f"LUG seed {seed}: {len(budgets)} searches in {time.time() - t0:.0f} s", flush=True)
        points += g.points
        runs += [dict(r, seed=seed) for r in g.meta["runs"]]
    lug = LookupGraph(g.metric, points, {"seeds": args.lug_seeds, "runs": runs})
    lug.save(root / LUG_NAME)
    # conservative variant: per search budget the largest derived value over the LUG seeds
    worst: dict[float, float] = {}
    for sb, d in points:
        worst[sb] = max(d, worst.get(sb, d))
    lug_max = LookupGraph(g.metric, sorted(worst.items()), {"seeds": args.lug_seeds})
    lug_max.save(root / LUG_MAX_NAME)
    for name, graph in (("mean", lug), ("max", lug_max)):
        xs, ys = graph.curve()
        print(f"LUG curve (search budget -> {name} derived over LUG seeds, isotonic):")
        for x, y in zip(xs, ys, strict=True):
            print(f"  {x:10.4g} -> {y:10.4g}")
    return root


def run_all(args: argparse.Namespace, modes: list[str]) -> list[dict[str, Any]]:
    budgets = [float(b) for b in args.budgets.split(",")]
    seeds = parse_seeds(args.seeds)
    lug_root = None
    if any(m.startswith("lug") for m in modes):
        lug_root = build_lug(args)
    tasks = []
    for mode in modes:
        for b in budgets:
            for seed in seeds:
                cfg = dict(base_config(args), seed=seed, constraint=constraint_text(args.metric, b))
                if mode == "lug":
                    cfg["lookup"] = str(lug_root / "lug.json")
                elif mode == "lug-max":
                    cfg["lookup"] = str(lug_root / LUG_MAX_NAME)
                elif mode in PENALTIES:
                    cfg["penalty"] = mode
                    if mode == "linear" and args.penalty_weight is not None:
                        cfg["penalty_weight"] = args.penalty_weight
                    if mode != "linear" and args.penalty_exponent is not None:
                        cfg["penalty_exponent"] = args.penalty_exponent
                tasks.append((mode, b, cfg, str(args.out / mode / f"b{b:g}" / f"s{seed}")))
    rows: list[dict[str, Any]] = []
    t0 = time.time()
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=mp.get_context("spawn")) as ex:
        futs = {ex.submit(run_one, cfg, d): (mode, b) for mode, b, cfg, d in tasks}
        for f in as_completed(futs):
            mode, b = futs[f]
            r = dict(f.result(), mode=mode)
            rows.append(r)
            print(
                f"[{time.time() - t0:6.0f}s] {mode} {args.metric}<={b:g} seed {r['seed']}: "
                f"B={r['search_budget']:.4g} derived {r['derived']:.4g} "
                f"(expected {r['expected']:.4g}) ok={r['satisfied']} acc {r['acc']:.2f} "
                f"(best {_acc(r['best_acc'])}) {r['genotype']}; argmax {r['argmax']['derived']:.4g} "
                f"acc {r['argmax']['acc']:.2f}",
                flush=True,
            )
    print(f"searches: {len(tasks)}, wall time {time.time() - t0:.0f} s\n")
    return rows


def _acc(value: float | None) -> str:
    return "none fits" if value is None else f"{value:.2f}"


def _best(r: dict[str, Any], fmt: Any, unit: str) -> str:
    """The table's best cell under the budget, or 'none fits' (a budget below every
    connected cell)."""
    if r["best_acc"] is None:
        return "none fits"
    return f"{r['best_acc']:.2f} ({fmt(r['best_resource'])}{unit})"


def _med(v: list[float]) -> float:
    return float(statistics.median(v))


def report(rows: list[dict[str, Any]], args: argparse.Namespace, derivation: str) -> str:
    """Markdown tables of the ``feasible`` (the library default) or ``argmax`` cells."""
    if derivation == "argmax":
        rows = [dict(r, **r["argmax"]) for r in rows]
    metric = args.metric
    unit = " ms" if metric.startswith("latency") else ""
    fmt = (lambda x: f"{x:.3g}") if unit else (lambda x: f"{x / 1e3:.0f}k")
    lines = [
        f"**Derivation: {derivation}.** Metric {metric}; search: "
        f"{json.dumps(base_config(args))}; seeds {args.seeds}; "
        f"LUG budgets {args.lug_budgets} (seeds {args.lug_seeds}); penalty weight "
        f"{args.penalty_weight or 'default'}, exponent {args.penalty_exponent or 'default'}",
        "",
        f"| mode | budget | search B | satisfied | derived {metric} median [min, max] "
        "| derived params median | CIFAR-10 acc of derived: mean / median [min, max] "
        "| best in table under budget | collapsed (acc < 15 %) | distinct cells | modal cell |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["mode"], r["budget"]), []).append(r)
    order = sorted(groups, key=lambda k: (MODES.index(k[0]), k[1]))
    for mode, b in order:
        rs = groups[(mode, b)]
        der = [r["derived"] for r in rs]
        acc = [r["acc"] for r in rs]
        sbs = sorted({round(r["search_budget"], 6) for r in rs})
        modal, cnt = Counter(r["genotype"] for r in rs).most_common(1)[0]
        lines.append(
            f"| {mode} | {fmt(b)}{unit} | {', '.join(fmt(s) for s in sbs)} "
            f"| {sum(bool(r['satisfied']) for r in rs)}/{len(rs)} "
            f"| {fmt(_med(der))} [{fmt(min(der))}, {fmt(max(der))}] "
            f"| {_med([r['params'] for r in rs]) / 1e3:.0f}k "
            f"| {statistics.mean(acc):.2f} / {_med(acc):.2f} [{min(acc):.2f}, {max(acc):.2f}] "
            f"| {_best(rs[0], fmt, unit)} "
            f"| {sum(a < 15 for a in acc)} | {len({r['genotype'] for r in rs})} "
            f"| `{modal.replace('|', chr(92) + '|')}` ({cnt}x) |"
        )
    devices = sorted(rows[0]["latency_ms"]) if rows else []
    lines += [
        "",
        "Median latency (ms, NB201 table) of the derived cells over seeds, per device:",
        "",
        "| device | " + " | ".join(f"{m} {fmt(b)}" for m, b in order) + " |",
        "|---|" + "---|" * len(groups),
    ]
    for d in devices:
        vals = [_med([r["latency_ms"][d] for r in groups[k]]) for k in order]
        lines.append(f"| {d} | " + " | ".join(f"{v:.3g}" for v in vals) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="nb201", choices=["nb201"])
    ap.add_argument("--metric", default="params", help="params or latency:DEVICE")
    ap.add_argument("--budgets", default="1.5e5,3e5,6e5", help="device budgets")
    ap.add_argument("--seeds", default="0-9", help="e.g. 0-9 or 0,1,2")
    ap.add_argument(
        "--mode",
        default="both",
        help="comma-separated plain, lug, lug-max, linear, log, pow; both = plain,lug",
    )
    ap.add_argument("--penalty-weight", type=float, help="linear mode's weight (default 0.1)")
    ap.add_argument(
        "--penalty-exponent", type=float, help="log / pow modes' exponent (default 0.6 / 0.07)"
    )
    ap.add_argument("--lug-budgets", default="1e5,1.5e5,2e5,3e5,4e5,5e5", help="search budgets")
    ap.add_argument("--lug-seeds", default="100,101", help="seeds of the LUG searches")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--channels", type=int, default=8, help="search network C")
    ap.add_argument("--stage-cells", type=int, default=1, help="search cells per stage (N)")
    ap.add_argument("--image-size", type=int, default=16)
    ap.add_argument("--train-subset", type=int, default=1000)
    ap.add_argument("--arch-lr", type=float, default=0.1)
    ap.add_argument("--lambda-lr", type=float, default=0.1)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-dnas-constraints"))
    ap.add_argument("--report-only", action="store_true", help="table from stored runs")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    modes = ["plain", "lug"] if args.mode == "both" else args.mode.split(",")
    if any(m not in MODES for m in modes):
        raise SystemExit(f"unknown mode in {args.mode!r} (known: {', '.join(MODES)}, both)")
    t0 = time.time()
    if args.report_only:
        budgets = {f"b{float(b):g}" for b in args.budgets.split(",")}
        rows = [
            dict(run_one(json.loads(p.read_text())["config"], str(p.parent)), mode=p.parts[-4])
            for mode in modes
            for p in sorted((args.out / mode).glob("b*/s*/summary.json"))
            if p.parts[-3] in budgets and int(p.parts[-2][1:]) in parse_seeds(args.seeds)
        ]
    else:
        rows = run_all(args, modes)
    table = "\n\n".join(report(rows, args, d) for d in ("feasible", "argmax"))
    wall = time.time() - t0
    (args.out / "table.md").write_text(table + "\n")
    if not args.report_only:  # keep the runs' own result.json (with the wall time)
        (args.out / "result.json").write_text(
            json.dumps(
                {"args": {k: str(v) for k, v in vars(args).items()}, "wall_s": wall, "runs": rows},
                indent=1,
            )
        )
    print(table)
    print(f"\ntotal wall time {wall:.0f} s")


if __name__ == "__main__":
    main()
