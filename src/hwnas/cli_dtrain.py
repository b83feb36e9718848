"""CLI command ``dtrain``: train a derived DARTS/NB201 cell from scratch and measure it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from hwnas.cli_train import _user_errors
from hwnas.errors import HwnasError


def dtrain_command(
    space: str | None = typer.Option(
        None, help="darts or nb201 (default: from --from-search/--arch, else darts)"
    ),
    genotype: str | None = typer.Option(
        None, "--genotype", help="DARTS genotype: JSON, a name (DARTS_V2) or a JSON file"
    ),
    arch: str | None = typer.Option(None, "--arch", help="NB201 arch string |op~0|+|...|"),
    from_search: Path | None = typer.Option(
        None, "--from-search", help="search run dir: use the genotype of its summary.json"
    ),
    dataset: str = typer.Option("cifar10", help="cifar10, mnist, digits, flowers17"),
    data_dir: str | None = typer.Option(None, "--data-dir", help="data dir (HWNAS_DATA_DIR)"),
    out: Path = typer.Option(..., "--out", help="output dir (checkpoint, metrics, summary)"),
    epochs: int | None = typer.Option(None, help="training epochs (default 600)"),
    batch_size: int | None = typer.Option(None, "--batch-size", help="default 96"),
    lr: float | None = typer.Option(None, help="initial learning rate (default 0.025)"),
    channels: int | None = typer.Option(None, "--C", help="initial channels (darts 36, nb201 16)"),
    layers: int | None = typer.Option(None, help="darts: cells (20); nb201: cells per stage (5)"),
    cutout: int | None = typer.Option(None, help="cutout length, 0 off (default 16 on cifar10)"),
    drop_path: float | None = typer.Option(
        None, "--drop-path", help="final drop-path probability (darts default 0.2)"
    ),
    auxiliary: bool = typer.Option(False, "--auxiliary", help="auxiliary head (darts, 32x32)"),
    auxiliary_weight: float | None = typer.Option(None, "--auxiliary-weight"),
    train_subset: int | None = typer.Option(None, "--train-subset", help="random train examples"),
    test_subset: int | None = typer.Option(None, "--test-subset", help="random test examples"),
    steps_per_epoch: int | None = typer.Option(None, "--steps-per-epoch"),
    seed: int | None = typer.Option(None),
    threads: int | None = typer.Option(None, "--threads", help="torch CPU threads"),
    device: str | None = typer.Option(None, "--device", help="cpu (default), cuda[:N] or auto"),
    latency: bool = typer.Option(
        True, "--latency/--no-latency", help="export ONNX and measure CPU latency at the end"
    ),
    resume: bool = typer.Option(False, "--resume", help="continue from OUT/checkpoint.pt"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Train a derived cell's evaluation network from scratch (DARTS recipe), then write
    OUT/summary.json with test accuracy, parameters, FLOPs and ONNX Runtime latency."""
    from hwnas.dnas.dtrain import DTrainConfig, dtrain, genotype_from_search

    given = [n for n, v in (("--genotype", genotype), ("--arch", arch)) if v is not None]
    if from_search is not None:
        given.append("--from-search")
    if len(given) != 1:
        raise HwnasError(
            "give exactly one of --genotype, --arch or --from-search"
            + (f" (got {', '.join(given)})" if given else "")
        )
    value: Any
    if from_search is not None:
        found_space, value = genotype_from_search(from_search)
        if space is not None and space != found_space:
            raise HwnasError(f"--space {space} does not match the {found_space} search result")
        space = found_space
    elif arch is not None:
        if space not in (None, "nb201"):
            raise HwnasError("--arch is an NB201 arch string; use --genotype for darts")
        space, value = "nb201", arch
    else:
        value = genotype
    fields: dict[str, Any] = {
        "space": space or "darts",
        "genotype": value,
        "dataset": dataset,
        "data_dir": data_dir,
        "measure_latency": latency,
        "auxiliary": auxiliary,
    }
    overrides = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "C": channels,
        "layers": layers,
        "cutout": cutout,
        "drop_path_prob": drop_path,
        "auxiliary_weight": auxiliary_weight,
        "train_subset": train_subset,
        "test_subset": test_subset,
        "steps_per_epoch": steps_per_epoch,
        "seed": seed,
        "threads": threads,
        "device": device,
    }
    fields.update({k: v for k, v in overrides.items() if v is not None})
    result = dtrain(DTrainConfig.from_dict(fields), out, resume=resume, progress=progress)
    s = result.summary or {}
    keys = ("test_acc", "params", "flops", "macs", "latency_ms")
    report = {"out": str(out), **{k: s.get(k) for k in keys}}
    report["summary"] = str(result.summary_file) if result.summary_file else None
    typer.echo(json.dumps(report))


def register(app: typer.Typer) -> None:
    """Add the ``dtrain`` command to ``app``."""
    app.command("dtrain")(_user_errors(dtrain_command))
