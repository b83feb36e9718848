"""Which subnets the sandwich rule trains, in miniature: uniform sampling (default),
complexity-aware sampling (ElasticViT) and progressive shrinking (OFA; both paper 002).
The ``mbv3-cifar`` supernet is trained on a dataset with each, same seed, schedule and
data; then the same subnets, drawn evenly over the MFLOPs range (``--per-bin`` per bin
of ``--bins``), are extracted, BN-recalibrated and evaluated on the test split. Reports
mean top-1 per MFLOPs bin and overall, per sampling, over seeds, with each sampling's
difference to uniform; writes OUT/table.md and OUT/records.jsonl (resumable).

    python benchmarks/supernet_sampling.py --seeds 0,1,2 --out runs/bench-sampling
    HWNAS_DATA_DIR=../shared/data python benchmarks/supernet_sampling.py --dataset cifar10 \\
        --epochs 2 --limit 2560 --seeds 0 --out runs/bench-sampling-c10
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def run(args: argparse.Namespace, sampling: str, seed: int, subnets: np.ndarray) -> dict:
    from hwnas.data import load_dataset
    from hwnas.train.supernet import TrainConfig, evaluate_config, train_supernet

    data = load_dataset(args.dataset, None, 0.1, 0, args.limit)
    cfg = TrainConfig(
        dataset=args.dataset,
        out_dir=str(args.out / f"{sampling}-s{seed}"),
        epochs=args.epochs,
        seed=seed,
        sampling=sampling,
        sampling_bins=args.bins,
        limit=args.limit,
        num_threads=1,
        progress=False,
        eval_every=0,
    )
    t0 = time.perf_counter()
    res = train_supernet(cfg, data=data, return_model=True)
    train_s = time.perf_counter() - t0
    model = res.model
    accs = [evaluate_config(model, model.space.decode(v), data, "test", 4, 256, 0) for v in subnets]
    return {
        "sampling": sampling,
        "seed": seed,
        "accuracy": accs,
        "train_s": train_s,
        "loss": res.final.get("loss"),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--limit", type=int, default=None, help="cap examples per split")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--bins", type=int, default=8)
    ap.add_argument("--per-bin", type=int, default=4)
    ap.add_argument("--samplings", default="uniform,complexity,progressive")
    ap.add_argument("--out", type=Path, default=Path("runs/bench-sampling"))
    args = ap.parse_args()

    import torch

    from hwnas.data import load_dataset
    from hwnas.space import get_space
    from hwnas.train.sampling import ComplexityAwareSampler

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(args.dataset, None, 0.1, 0, args.limit)
    space = get_space("mbv3-cifar")
    shape = (data.in_channels, data.num_classes)
    sampler = ComplexityAwareSampler(space, args.bins, shape)
    rng = np.random.default_rng(12345)
    subnets = np.concatenate([sampler.sample_in(b, args.per_bin, rng) for b in range(args.bins)])
    mflops = space.mflops_batch(subnets, *shape)
    path = args.out / "records.jsonl"
    records = [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []
    done = {(r["sampling"], r["seed"]) for r in records}
    t0 = time.time()
    for seed in [int(s) for s in args.seeds.split(",")]:
        for sampling in args.samplings.split(","):
            if (sampling, seed) in done:
                continue
            rec = run(args, sampling, seed, subnets)
            rec["mflops"] = mflops.tolist()
            records.append(rec)
            with path.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            print(
                f"{sampling} seed {seed}: mean top-1 {np.mean(rec['accuracy']):.4f}, "
                f"train {rec['train_s']:.0f} s",
                flush=True,
            )
    names = [n for n in args.samplings.split(",") if n != "uniform"]
    seeds = sorted(
        {r["seed"] for r in records if r["sampling"] == "uniform"}
        & set.intersection(*({r["seed"] for r in records if r["sampling"] == n} for n in names))
    )
    lines = [
        f"{args.dataset}, {args.epochs} epochs, {len(subnets)} subnets ({args.per_bin} per "
        f"MFLOPs bin), test top-1 (%), mean over seeds {seeds}; in brackets the difference "
        "to uniform sampling (seeds ahead of it)",
        "",
        "| MFLOPs bin | uniform | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    acc = {(r["sampling"], r["seed"]): 100 * np.array(r["accuracy"]) for r in records}
    edges = sampler.edges
    for b in [*range(args.bins), None]:
        sl = slice(None) if b is None else slice(b * args.per_bin, (b + 1) * args.per_bin)
        u = np.array([acc["uniform", s][sl].mean() for s in seeds])
        cells = []
        for n in names:
            c = np.array([acc[n, s][sl].mean() for s in seeds])
            cells.append(
                f"{c.mean():.2f} ({c.mean() - u.mean():+.2f}, {int((c > u).sum())}/{len(seeds)})"
            )
        label = "all" if b is None else f"{edges[b]:.1f}-{edges[b + 1]:.1f}"
        lines.append(f"| {label} | {u.mean():.2f} | " + " | ".join(cells) + " |")
    md = "\n".join(lines)
    (args.out / "table.md").write_text(md + "\n")
    print(md)
    print(f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
