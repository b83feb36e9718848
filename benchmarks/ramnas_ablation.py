"""RAM-NAS distillation ablation in miniature (issue 3; paper 000, Table V).

Trains the ``mbv3-cifar`` supernet on CIFAR-10 with four distillation settings, all with
the same seed(s), schedule, data and budget:

* ``inplace-kl``  baseline: BigNAS in-place distillation (students learn from the max
  subnet), KL divergence;
* ``smd-kl``      RAM-NAS subnet mutual distillation, KL;
* ``inplace-dkd`` in-place distillation, decoupled KD;
* ``smd-dkd``     RAM-NAS (SMD + DKD).

After training, the smallest and largest subnets are extracted, their BN statistics
recalibrated on ``--calib-batches`` training batches, and their top-1 measured on the
CIFAR-10 test images (all 10,000 by default). The budget is a set of flags (``--epochs``,
``--train-subset`` images drawn once with ``--data-seed``, ``--seeds``); each run writes
``OUT/<variant>-s<seed>/result.json``, so several invocations (e.g. more seeds later) add
up; ``--report-only`` prints the tables from what is there for the same budget.

Runs go in parallel over ``--jobs`` processes, one thread each.

    HWNAS_DATA_DIR=../shared/data python benchmarks/ramnas_ablation.py \
        --epochs 2 --train-subset 2560 --seeds 0 --jobs 2
    HWNAS_DATA_DIR=../shared/data python benchmarks/ramnas_ablation.py \
        --epochs 2 --train-subset 2560 --seeds 1,2 --variants inplace-kl,smd-dkd --jobs 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

VARIANTS: dict[str, tuple[str, str, str]] = {
    # name: (distill, kd_loss, label)
    "inplace-kl": ("inplace", "kl", "baseline: in-place KD + KL"),
    "smd-kl": ("smd", "kl", "SMD + KL"),
    "inplace-dkd": ("inplace", "dkd", "in-place KD + DKD"),
    "smd-dkd": ("smd", "dkd", "SMD + DKD (RAM-NAS)"),
}
BUDGET_KEYS = (
    "epochs",
    "train_subset",
    "data_seed",
    "batch_size",
    "lr",
    "warmup_epochs",
    "num_random",
    "calib_batches",
    "test_limit",
)


def load_data(train_subset: int | None, data_seed: int, test_limit: int | None):
    import torch

    from hwnas.data import load_dataset

    data = load_dataset("cifar10", None, val_fraction=0.0, seed=data_seed)
    gen = torch.Generator().manual_seed(data_seed)
    if train_subset is not None and train_subset < len(data.y_train):
        keep = torch.randperm(len(data.y_train), generator=gen)[:train_subset].sort().values
        data.x_train, data.y_train = data.x_train[keep], data.y_train[keep]
    if test_limit is not None and test_limit < len(data.y_test):
        keep = torch.randperm(len(data.y_test), generator=gen)[:test_limit].sort().values
        data.x_test, data.y_test = data.x_test[keep], data.y_test[keep]
    return data


def run_one(variant: str, seed: int, budget: dict[str, Any], out: str) -> dict[str, Any]:
    """Train one supernet and evaluate its min and max subnets on the test split."""
    import torch

    torch.set_num_threads(1)
    from hwnas.train.supernet import TrainConfig, evaluate_config, train_supernet

    distill, kd_loss, _ = VARIANTS[variant]
    data = load_data(budget["train_subset"], budget["data_seed"], budget["test_limit"])
    run_dir = Path(out) / f"{variant}-s{seed}"
    cfg = TrainConfig(
        space="mbv3-cifar",
        dataset="cifar10",
        out_dir=str(run_dir),
        epochs=budget["epochs"],
        batch_size=budget["batch_size"],
        lr=budget["lr"],
        warmup_epochs=budget["warmup_epochs"],
        num_random=budget["num_random"],
        distill=distill,
        kd_loss=kd_loss,
        val_fraction=0.0,
        eval_every=0,
        seed=seed,
        num_threads=1,
        channels_last=True,
        resume=False,
        progress=False,
    )
    t0 = time.perf_counter()
    res = train_supernet(cfg, data=data, return_model=True)
    train_s = time.perf_counter() - t0
    model = res.model
    model.eval()
    out_rec: dict[str, Any] = {
        "variant": variant,
        "seed": seed,
        "budget": budget,
        "steps": sum(h["steps"] for h in res.history),
        "final_loss": res.history[-1]["loss"],
        "final_ce_max": res.history[-1]["ce_max"],
        "train_s": train_s,
        "test_n": len(data.y_test),
    }
    t1 = time.perf_counter()
    for which in ("min", "max"):
        out_rec[f"{which}_top1"] = evaluate_config(
            model,
            model.canonical(which),
            data,
            "test",
            budget["calib_batches"],
            256,
            seed,
            channels_last=True,
        )
    out_rec["eval_s"] = time.perf_counter() - t1
    (run_dir / "checkpoint.pt").unlink(missing_ok=True)  # ~60 MB each; not needed
    (run_dir / "result.json").write_text(json.dumps(out_rec, indent=1))
    return out_rec


def collect(out: Path, budget: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for p in sorted(out.glob("*/result.json")):
        r = json.loads(p.read_text())
        if all(r["budget"].get(k) == budget[k] for k in BUDGET_KEYS):
            rows.append(r)
    return rows


def _ms(v: list[float]) -> str:
    if len(v) == 1:
        return f"{100 * v[0]:.2f}"
    return f"{100 * statistics.mean(v):.2f} ± {100 * statistics.stdev(v):.2f}"


def report(rows: list[dict[str, Any]], budget: dict[str, Any]) -> str:
    lines = [
        f"Budget: {json.dumps(budget)}",
        "",
        "Per variant, seed 0 (top-1 %, CIFAR-10 test, BN recalibrated):",
        "",
        f"| variant | min subnet top-1 | max subnet top-1 | final train loss (sum of "
        f"{budget['num_random'] + 2}) "
        "| train time (s) |",
        "|---|---|---|---|---|",
    ]
    for v, (_, _, label) in VARIANTS.items():
        r = [x for x in rows if x["variant"] == v and x["seed"] == 0]
        if r:
            x = r[0]
            lines.append(
                f"| {label} | {100 * x['min_top1']:.2f} | {100 * x['max_top1']:.2f} | "
                f"{x['final_loss']:.3f} | {x['train_s']:.0f} |"
            )
    lines += [
        "",
        "Over seeds (mean ± sample std, top-1 %):",
        "",
        "| variant | seeds | min subnet top-1 | max subnet top-1 |",
        "|---|---|---|---|",
    ]
    for v, (_, _, label) in VARIANTS.items():
        r = sorted((x for x in rows if x["variant"] == v), key=lambda x: x["seed"])
        if r:
            lines.append(
                f"| {label} | {','.join(str(x['seed']) for x in r)} | "
                f"{_ms([x['min_top1'] for x in r])} | {_ms([x['max_top1'] for x in r])} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--seeds", default="0", help="comma-separated training seeds")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-subset", type=int, default=2560, help="0: all 10,000")
    ap.add_argument("--data-seed", type=int, default=0, help="seed of the train subset")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--warmup-epochs", type=float, default=0.25)
    ap.add_argument("--num-random", type=int, default=2)
    ap.add_argument("--calib-batches", type=int, default=4, help="BN recalibration batches")
    ap.add_argument("--test-limit", type=int, default=0, help="0: all 10,000 test images")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-ramnas-ablation"))
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    budget = {
        "epochs": args.epochs,
        "train_subset": args.train_subset or None,
        "data_seed": args.data_seed,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "warmup_epochs": args.warmup_epochs,
        "num_random": args.num_random,
        "calib_batches": args.calib_batches,
        "test_limit": args.test_limit or None,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        jobs = [(v, int(s)) for s in args.seeds.split(",") for v in args.variants.split(",")]
        for v, _ in jobs:
            if v not in VARIANTS:
                raise SystemExit(f"unknown variant {v!r} (known: {', '.join(VARIANTS)})")
        # a run whose result is stored is not repeated (continue a killed invocation)
        jobs = [(v, s) for v, s in jobs if not (args.out / f"{v}-s{s}" / "result.json").is_file()]
        t0 = time.time()
        with ProcessPoolExecutor(max_workers=args.jobs) as ex:
            futs = {ex.submit(run_one, v, s, budget, str(args.out)): (v, s) for v, s in jobs}
            for f in as_completed(futs):
                r = f.result()
                print(
                    f"[{time.time() - t0:6.0f}s] {r['variant']} seed {r['seed']}: "
                    f"min {100 * r['min_top1']:.2f}% max {100 * r['max_top1']:.2f}% "
                    f"({r['steps']} steps, train {r['train_s']:.0f}s, eval {r['eval_s']:.0f}s)",
                    flush=True,
                )
        print(f"total wall time {time.time() - t0:.0f} s\n")
    print(report(collect(args.out, budget), budget))


if __name__ == "__main__":
    main()
