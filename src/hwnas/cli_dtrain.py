"""CLI command ``dtrain``: train a derived DARTS/NB201 cell from scratch and measure it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from hwnas.cli_dnas import (
    JSON_OPT,
    as_flags,
    continue_hint,
    flag_names,
    holding,
    saved_in,
    stderr_log,
    warnings_to_stderr,
)
from hwnas.cli_train import _user_errors
from hwnas.cli_train import given as given_option
from hwnas.errors import HwnasError

# the flags of the DTrainConfig fields not named --FIELD-WITH-DASHES
_FLAGS = {"C": "--C", "drop_path_prob": "--drop-path"}


def dtrain_command(
    ctx: typer.Context,
    space: str | None = typer.Option(
        None, help="darts or nb201, any case (default: from --from-search/--arch, else darts)"
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
    auxiliary_weight: float | None = typer.Option(
        None, "--auxiliary-weight", help="weight of the auxiliary head's loss (default 0.4)"
    ),
    train_subset: int | None = typer.Option(None, "--train-subset", help="random train examples"),
    test_subset: int | None = typer.Option(None, "--test-subset", help="random test examples"),
    steps_per_epoch: int | None = typer.Option(
        None, "--steps-per-epoch", help="cap on training steps per epoch (default: all)"
    ),
    seed: int | None = typer.Option(
        None, min=0, help="seed of the initialisation, batches and subsets (default 0)"
    ),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="torch CPU threads (default 2)"
    ),
    device: str | None = typer.Option(None, "--device", help="cpu (default), cuda[:N] or auto"),
    latency: bool = typer.Option(
        True, "--latency/--no-latency", help="export ONNX and measure CPU latency at the end"
    ),
    resume: bool = typer.Option(False, "--resume", help="continue from OUT/checkpoint.pt"),
    progress: bool = typer.Option(
        True,
        "--progress/--no-progress",
        help="progress bar; without it one plain line per epoch (for log files)",
    ),
    as_json: bool = JSON_OPT,
) -> None:
    """Train a derived cell's evaluation network from scratch (DARTS recipe).

    Then write OUT/summary.json with test accuracy, parameters, FLOPs and ONNX Runtime
    latency.

    From a search result (--from-search, or a summary.json given to --genotype/--arch)
    the evaluation network (--C, --layers) and dataset the search's budget was about are
    used unless given; the output says which were taken from the search. Ctrl-C prints
    the command that continues the run (the same options and --resume); --resume with
    more --epochs trains on (the schedule stretched, as 'hwnas train')."""
    from hwnas.dnas.training import (
        CHECKPOINT_NAME,
        DTrainConfig,
        dtrain,
        read_search,
        search_summary_file,
        stored_dtrain_config,
    )

    space = space.strip().lower() if space else None
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
    named = {"space": space, "dataset": dataset, "data_dir": data_dir}
    given = [n for n, v in (("--genotype", genotype), ("--arch", arch)) if v is not None]
    if from_search is not None:
        given.append("--from-search")
    fields: dict[str, Any]
    if resume and not given:  # the run's own settings; only what changes needs giving
        stored = stored_dtrain_config(out)
        if stored is None:
            raise HwnasError(
                f"--resume: {out} holds no dtrain run to continue; give one of --genotype, "
                "--arch or --from-search to start one"
            )
        flags = {"measure_latency": ("latency", latency), "auxiliary": ("auxiliary", auxiliary)}
        changed = {k: v for k, (name, v) in flags.items() if given_option(ctx, name)}
        changed.update({k: v for k, v in named.items() if v is not None})
        if auxiliary_weight is not None and not changed.get("auxiliary", stored.get("auxiliary")):
            raise HwnasError(
                "--auxiliary-weight weighs the auxiliary head's loss; it needs --auxiliary"
            )
        fields = {**stored, **changed}
    else:
        if len(given) != 1:
            raise HwnasError(
                "give exactly one of --genotype, --arch or --from-search"
                + (f" (got {', '.join(given)})" if given else "")
            )
        value: Any = genotype
        if from_search is not None:  # the library reads the summary: its path
            value = str(read_search(from_search).path)
        elif arch is not None:
            value = arch
            if search_summary_file(arch) is not None:
                found = read_search(arch).space
                if found != "nb201":
                    raise HwnasError(
                        f"--arch takes an NB201 cell; '{arch}' holds a {found} genotype "
                        "(use --from-search or --genotype)"
                    )
            elif space not in (None, "nb201"):
                raise HwnasError("--arch is an NB201 arch string; use --genotype for darts")
            else:
                named["space"] = "nb201"
        if auxiliary_weight is not None and not auxiliary:
            raise HwnasError(
                "--auxiliary-weight weighs the auxiliary head's loss; it needs --auxiliary"
            )
        fields = {"genotype": value, "measure_latency": latency, "auxiliary": auxiliary}
        fields.update({k: v for k, v in named.items() if v is not None})
    with warnings_to_stderr():
        with flag_names(as_flags({**named, **overrides}, _FLAGS)):
            cfg = DTrainConfig.from_dict({**fields, **overrides})
        with (
            holding(out, "training", resume),
            continue_hint(ctx, "hwnas dtrain", "--resume", saved_in(out, CHECKPOINT_NAME)),
        ):
            result = dtrain(cfg, out, resume=resume, progress=progress, log=stderr_log)
    _report(out, result, search_summary_file(cfg.genotype) is not None)


def _report(out: Path, result: Any, from_search: bool) -> None:
    """The run's one JSON line: test accuracy, size, latency, what was taken from the
    search result (when one was given) and its summary file."""
    s = result.summary or {}
    keys = ("test_acc", "params", "flops", "macs", "latency_ms")
    report = {"out": str(out), **{k: s.get(k) for k in keys}}
    if from_search:
        report["from_search"] = result.from_search
    report["summary"] = str(result.summary_file) if result.summary_file else None
    typer.echo(json.dumps(report))


def register(app: typer.Typer) -> None:
    """Add the ``dtrain`` command to ``app``."""
    app.command("dtrain")(_user_errors(dtrain_command))
