"""CLI command ``dtrain``: train a derived DARTS/NB201 cell from scratch and measure it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from hwnas.cli_dnas import continue_hint, holding
from hwnas.cli_train import JSON_ALWAYS, _user_errors
from hwnas.cli_train import given as given_option
from hwnas.errors import HwnasError


def dtrain_command(
    ctx: typer.Context,
    space: str | None = typer.Option(
        None, help="darts or nb201 (default: from --from-search/--arch, else darts)"
    ),
    genotype: str | None = typer.Option(
        None,
        "--genotype",
        help="DARTS genotype: JSON, a name (DARTS_V2) or a JSON file (a search summary.json "
        "counts as --from-search)",
    ),
    arch: str | None = typer.Option(
        None, "--arch", help="NB201 arch string |op~0|+|...| or a search summary.json"
    ),
    from_search: Path | None = typer.Option(
        None,
        "--from-search",
        help="search run dir or summary.json: its cell, and its evaluation network "
        "(--C, --layers) and dataset unless given",
    ),
    dataset: str | None = typer.Option(
        None, help="cifar10 (default), mnist, digits, flowers17 (default: the search's)"
    ),
    data_dir: str | None = typer.Option(None, "--data-dir", help="data dir (HWNAS_DATA_DIR)"),
    out: Path = typer.Option(..., "--out", help="output dir (checkpoint, metrics, summary)"),
    epochs: int | None = typer.Option(None, help="training epochs (default 600)"),
    batch_size: int | None = typer.Option(None, "--batch-size", help="default 96"),
    lr: float | None = typer.Option(None, help="initial learning rate (default 0.025)"),
    channels: int | None = typer.Option(
        None, "--C", help="initial channels (darts 36, nb201 16; default: the search's)"
    ),
    layers: int | None = typer.Option(
        None, help="darts: cells (20); nb201: cells per stage (5) (default: the search's)"
    ),
    cutout: int | None = typer.Option(None, help="cutout length, 0 off (default 16 on cifar10)"),
    drop_path: float | None = typer.Option(
        None, "--drop-path", help="final drop-path probability (darts default 0.2)"
    ),
    auxiliary: bool = typer.Option(False, "--auxiliary", help="auxiliary head (darts, 32x32)"),
    auxiliary_weight: float | None = typer.Option(None, "--auxiliary-weight"),
    train_subset: int | None = typer.Option(None, "--train-subset", help="random train examples"),
    test_subset: int | None = typer.Option(None, "--test-subset", help="random test examples"),
    steps_per_epoch: int | None = typer.Option(None, "--steps-per-epoch"),
    seed: int | None = typer.Option(None, min=0),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="torch CPU threads (default 2)"
    ),
    device: str | None = typer.Option(None, "--device", help="cpu (default), cuda[:N] or auto"),
    latency: bool = typer.Option(
        True, "--latency/--no-latency", help="export ONNX and measure CPU latency at the end"
    ),
    resume: bool = typer.Option(False, "--resume", help="continue from OUT/checkpoint.pt"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    as_json: bool = JSON_ALWAYS,
) -> None:
    """Train a derived cell's evaluation network from scratch (DARTS recipe).

    Then write OUT/summary.json with test accuracy, parameters, FLOPs and ONNX Runtime
    latency.

    From a search result (--from-search, or a summary.json given to --genotype/--arch)
    the evaluation network (--C, --layers) and dataset the search's budget was about are
    used unless given; the output says which were taken from the search. Ctrl-C prints
    the command that continues the run (the same options and --resume)."""
    from hwnas.dnas.training import (
        DTrainConfig,
        dtrain,
        read_search,
        search_summary_file,
        stored_dtrain_config,
    )

    # the training settings given on the command line, by DTrainConfig field
    options = {
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
    overrides = {k: v for k, v in options.items() if v is not None}
    given = [n for n, v in (("--genotype", genotype), ("--arch", arch)) if v is not None]
    if from_search is not None:
        given.append("--from-search")
    if resume and not given:  # the run's own settings; only what changes needs giving
        stored = stored_dtrain_config(out)
        if stored is None:
            raise HwnasError(
                f"--resume: {out} holds no dtrain run to continue; give one of --genotype, "
                "--arch or --from-search to start one"
            )
        flags = {"measure_latency": ("latency", latency), "auxiliary": ("auxiliary", auxiliary)}
        changed = {k: v for k, (name, v) in flags.items() if given_option(ctx, name)}
        named = {"space": space, "dataset": dataset, "data_dir": data_dir}
        changed.update({k: v for k, v in named.items() if v is not None})
        if auxiliary_weight is not None and not changed.get("auxiliary", stored.get("auxiliary")):
            raise HwnasError(
                "--auxiliary-weight weighs the auxiliary head's loss; it needs --auxiliary"
            )
        cfg = DTrainConfig.from_dict({**stored, **overrides, **changed})
        with holding(out, "training", resume), continue_hint(ctx, "hwnas dtrain", "--resume"):
            result = dtrain(cfg, out, resume=resume, progress=progress)
        _report(out, result, None, {})
        return
    if len(given) != 1:
        raise HwnasError(
            "give exactly one of --genotype, --arch or --from-search"
            + (f" (got {', '.join(given)})" if given else "")
        )
    summary_file = from_search or search_summary_file(genotype if arch is None else arch)
    value: Any
    source = None
    if summary_file is not None:
        source = read_search(summary_file)
        home = source.path if source.path.is_dir() else source.path.parent
        if home.resolve() == out.resolve():
            raise HwnasError(
                f"--out {out} is the search's own directory: training there would replace "
                "its summary, checkpoint and metrics; choose another --out"
            )
        if space is not None and space != source.space:
            raise HwnasError(f"--space {space} does not match the {source.space} search result")
        if arch is not None and source.space != "nb201":
            raise HwnasError(
                f"--arch takes an NB201 cell; '{arch}' holds a {source.space} genotype "
                "(use --from-search or --genotype)"
            )
        space, value = source.space, source.arch
    elif arch is not None:
        if space not in (None, "nb201"):
            raise HwnasError("--arch is an NB201 arch string; use --genotype for darts")
        space, value = "nb201", arch
    else:
        value = genotype
    if auxiliary_weight is not None and not auxiliary:
        raise HwnasError(
            "--auxiliary-weight weighs the auxiliary head's loss; it needs --auxiliary"
        )
    explicit = {"C": channels, "layers": layers, "dataset": dataset}
    taken = _from_search(source, explicit)
    fields: dict[str, Any] = {
        "space": space or "darts",
        "genotype": value,
        "dataset": dataset if dataset is not None else taken.get("dataset", "cifar10"),
        "data_dir": data_dir,
        "measure_latency": latency,
        "auxiliary": auxiliary,
    }
    fields.update({"C": taken.get("C"), "layers": taken.get("layers")})
    fields = {k: v for k, v in fields.items() if v is not None}
    cfg = DTrainConfig.from_dict({**fields, **overrides})
    with holding(out, "training", resume), continue_hint(ctx, "hwnas dtrain", "--resume"):
        result = dtrain(cfg, out, resume=resume, progress=progress)
    _report(out, result, source, taken)


def _report(out: Path, result: Any, source: Any, taken: dict[str, Any]) -> None:
    """The run's one JSON line: test accuracy, size, latency, where its settings came
    from and its summary file."""
    s = result.summary or {}
    keys = ("test_acc", "params", "flops", "macs", "latency_ms")
    report = {"out": str(out), **{k: s.get(k) for k in keys}}
    if source is not None:
        report["from_search"] = taken
    report["summary"] = str(result.summary_file) if result.summary_file else None
    typer.echo(json.dumps(report))


def _from_search(source: Any, explicit: dict[str, Any]) -> dict[str, Any]:
    """The settings taken from a search result (those not given on the command line);
    prints them, and a warning for each given one that differs from the search's."""
    if source is None:
        return {}
    taken = {k: v for k, v in source.settings.items() if explicit.get(k) is None}
    if taken:
        shown = ", ".join(f"{k}={v}" for k, v in taken.items())
        typer.echo(f"note: taken from the search ({source.path}): {shown}", err=True)
    for k, v in explicit.items():
        if v is not None and k in source.settings and source.settings[k] != v:
            typer.echo(
                f"warning: {k}={v} overrides the search's {k}={source.settings[k]}; its "
                "budget was for the search's network",
                err=True,
            )
    for note in source.notes:
        typer.echo(f"warning: {note}", err=True)
    return taken


def register(app: typer.Typer) -> None:
    """Add the ``dtrain`` command to ``app``."""
    app.command("dtrain")(_user_errors(dtrain_command))
