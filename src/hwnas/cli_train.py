"""CLI commands for supernets: ``train``, ``eval`` and ``export`` (added by ``register``)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer

from hwnas.errors import HwnasError, user_errors

_user_errors = user_errors  # the name the command modules import


def _read_config(
    path: Path, what: str = "training settings", example: str = '{"dataset": "digits"}'
) -> dict[str, Any]:
    """The JSON object of a ``--config`` file (``what`` it holds, with an ``example``,
    for the error); anything else is a one-line error."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise HwnasError(f"cannot read config '{path}': not a UTF-8 JSON file") from None
    except (OSError, json.JSONDecodeError) as e:
        raise HwnasError(f"cannot read config '{path}': {e}") from None
    if not isinstance(data, dict):
        raise HwnasError(
            f"config '{path}' must hold a JSON object of {what}, e.g. {example}; got a "
            f"{type(data).__name__}"
        )
    return data


#: ``--json`` of the commands whose output is one JSON line anyway: accepted, so that
#: scripts can pass it to every command
JSON_ALWAYS = typer.Option(
    False, "--json", help="Accepted for scripts: the output is one JSON line anyway."
)


def given(ctx: typer.Context, name: str) -> bool:
    """Whether the option ``name`` was given on the command line (or by the environment),
    not left at its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


#: SIGTERMs received while an :func:`on_interrupt` handler was installed (shared, so a
#: nested block reports "terminated" too)
_TERMINATED: list[int] = []


@contextlib.contextmanager
def on_interrupt(hint: Callable[[], str]) -> Iterator[None]:
    """On Ctrl-C: one line ``interrupted; HINT`` (how to continue) on stderr, exit code
    130 (``SystemExit``, so the app adds no second line). SIGTERM (a scheduler, ``kill``)
    ends the run the same way, its clean-up done, with ``terminated; HINT`` and 143;
    only in the main thread, where SIGTERM has its default action. A forked worker that
    inherits the handler dies of the signal as before."""
    import os
    import signal
    import threading

    from hwnas.process import Terminated, keyboard_interrupt_handled

    installer = os.getpid()

    def terminate(signum: int, frame: Any) -> None:
        if os.getpid() != installer:  # a forked worker: the default action, as before
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the clean-up finish
        _TERMINATED.append(signum)
        raise KeyboardInterrupt

    own = (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    )
    if own:
        _TERMINATED.clear()
        signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    except KeyboardInterrupt:
        keyboard_interrupt_handled()
        term = list(_TERMINATED)
        print(f"{'terminated' if term else 'interrupted'}; {hint()}", file=sys.stderr)
        raise SystemExit(128 + term[0] if term else 130) from None
    except Terminated:  # a stage's own SIGTERM handling (installed before this one)
        print(f"terminated; {hint()}", file=sys.stderr)
        raise
    finally:
        if own:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            _TERMINATED.clear()


def train(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", help="JSON file of TrainConfig fields (any of them, e.g. warmup_epochs)."
    ),
    space: str | None = typer.Option(None, help="mbv3-cifar or mbv3-ramnas (default mbv3-cifar)."),
    dataset: str | None = typer.Option(
        None,
        help="digits (default), cifar10, mnist, flowers17 or folder:PATH (your images, "
        "PATH/<class>/<image>; layouts in docs/DATA.md).",
    ),
    data_dir: str | None = typer.Option(None, "--data-dir", help="Data dir (HWNAS_DATA_DIR)."),
    image_size: int | None = typer.Option(
        None,
        "--image-size",
        min=4,
        help="Resize a folder:PATH dataset's image files to NxN (mixed or non-square sizes; "
        "eval, export and pipeline take it from the checkpoint).",
    ),
    out: str | None = typer.Option(
        None, "--out", help="Output dir: checkpoint, metrics (default runs/supernet)."
    ),
    epochs: int | None = typer.Option(None, min=1, help="Training epochs (default 5)."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Batch (default 64)."),
    steps_per_epoch: int | None = typer.Option(
        None, "--steps-per-epoch", min=1, help="Cap on steps per epoch (default: the whole split)."
    ),
    lr: float | None = typer.Option(None, help="Peak SGD learning rate (default 0.1)."),
    distill: str | None = typer.Option(
        None, help="smd (default: subnet mutual distillation), inplace or none."
    ),
    kd_loss: str | None = typer.Option(
        None, "--kd-loss", help="Distillation loss: dkd (default), kl or soft_ce."
    ),
    num_random: int | None = typer.Option(
        None, "--num-random", min=0, help="Random subnets per sandwich step (default 2)."
    ),
    sampling: str | None = typer.Option(
        None,
        help="uniform (default); complexity: ElasticViT's complexity-aware sampling of the "
        "random subnets (one MFLOPs bin per step, neighbouring bins on consecutive steps); "
        "progressive: OFA's progressive shrinking (resolution, + kernel, + depth, + width)",
    ),
    grad_clip: float | None = typer.Option(
        None, "--grad-clip", help="Clip the gradient norm to this (default: no clipping)."
    ),
    seed: int | None = typer.Option(None, min=0, help="Random seed (default 0)."),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="PyTorch CPU threads (default 2)."
    ),
    resume: bool = typer.Option(
        True,
        "--resume/--no-resume",
        help="Continue from OUT/checkpoint.pt (default; the config's 'resume' if given there).",
    ),
    progress: bool = typer.Option(
        True,
        "--progress/--no-progress",
        help="Progress bar (default; the config's 'progress' if given there).",
    ),
    as_json: bool = JSON_ALWAYS,
) -> None:
    """Train a one-shot supernet (sandwich rule, SMD + DKD by default).

    Options given on the command line override the --config file's settings; a resumed
    run takes the settings it was trained with for those given neither way."""
    from hwnas.train.supernet import TrainConfig, stored_train_config, train_supernet

    fields: dict[str, Any] = {}
    if config is not None:
        fields.update(_read_config(config))
    overrides = {
        "space": space,
        "dataset": dataset,
        "data_dir": data_dir,
        "image_size": image_size,
        "out_dir": out,
        "epochs": epochs,
        "batch_size": batch_size,
        "steps_per_epoch": steps_per_epoch,
        "lr": lr,
        "distill": distill,
        "kd_loss": kd_loss,
        "num_random": num_random,
        "sampling": sampling,
        "grad_clip": grad_clip,
        "seed": seed,
        "num_threads": threads,
    }
    fields.update({k: v for k, v in overrides.items() if v is not None})
    for name, value in (("resume", resume), ("progress", progress)):
        if given(ctx, name) or name not in fields:
            fields[name] = value
    if fields["resume"]:  # what is not given again is the checkpoint's, not the default
        out_dir = fields.get("out_dir") or TrainConfig.model_fields["out_dir"].default
        fields = {**(stored_train_config(out_dir) or {}), **fields}
    cfg = TrainConfig.from_dict(fields)
    again = "run the same command again" if cfg.resume else "run it again without --no-resume"
    with on_interrupt(lambda: f"{again} to continue ({cfg.out_dir})"):
        result = train_supernet(cfg)
    if result.epochs_trained == 0:
        typer.echo(
            f"nothing to train: {result.checkpoint} already holds "
            f"{_epochs(result.resumed_epochs)} of --epochs {cfg.epochs} (raise --epochs to "
            "train on, or --no-resume to start over)",
            err=True,
        )
    summary = {"checkpoint": str(result.checkpoint), "metrics": str(result.metrics_file)}
    summary.update({k: v for k, v in result.final.items() if k.endswith("acc") or k == "loss"})
    typer.echo(json.dumps(summary))


def _epochs(n: int) -> str:
    """``1 epoch``, ``2 epochs``: the count with its noun."""
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def evaluate(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="checkpoint file or run dir"),
    subnet: str = typer.Option(
        "max", "--subnet", help="min, max, random (drawn with --seed) or JSON config"
    ),
    split: str = typer.Option("test", help="train, val or test"),
    calib_batches: int = typer.Option(
        16, "--calib-batches", min=0, help="BN recalibration batches (0: keep the supernet's)"
    ),
    data_dir: str | None = typer.Option(
        None, "--data-dir", help="data dir (default: $HWNAS_DATA_DIR, else the user cache)"
    ),
    seed: int = typer.Option(
        0, min=0, help="seed of --subnet random and of the calibration batches"
    ),
    threads: int = typer.Option(2, "--threads", help="torch CPU threads (>= 1)"),
    as_json: bool = JSON_ALWAYS,
) -> None:
    """Top-1 accuracy of a subnet (BN recalibrated) on the checkpoint's dataset.

    Prints one JSON line; ``top1`` is a fraction (0.986 = 98.6 %)."""
    from hwnas.train.evaluate import evaluate_subnet, set_threads

    set_threads(threads)
    if split not in ("train", "val", "test"):
        raise HwnasError(f"unknown split '{split}' (use train, val, test)")
    res = evaluate_subnet(
        checkpoint,
        subnet,
        split=split,
        calib_batches=calib_batches,
        data_dir=data_dir,
        seed=seed,
        num_threads=threads,
    )
    typer.echo(json.dumps(res))


def export(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="checkpoint file or run dir"),
    subnet: str = typer.Option(
        "max", "--subnet", help="min, max, random (drawn with --seed) or JSON config"
    ),
    format: str = typer.Option(
        "onnx",
        "--format",
        help="onnx (a .onnx file) or torch (a torch.export .pt2 program); both with a "
        "dynamic batch dimension",
    ),
    out: Path = typer.Option(..., "--out", help="output file"),
    calib_batches: int = typer.Option(
        16,
        "--calib-batches",
        min=0,
        help="BN recalibration batches, as hwnas eval (0: keep the supernet's BN statistics "
        "and take input at the subnet's resolution; no data needed)",
    ),
    data_dir: str | None = typer.Option(
        None, "--data-dir", help="data dir (default: $HWNAS_DATA_DIR, else the user cache)"
    ),
    seed: int = typer.Option(
        0, min=0, help="seed of --subnet random and of the calibration batches"
    ),
    threads: int = typer.Option(2, "--threads", help="torch CPU threads"),
) -> None:
    """Export a subnet as a standalone ONNX model or torch.export program.

    By default its BN statistics are recalibrated as ``hwnas eval`` does (same batches
    for the same --seed) and the input resize is inside when the data's image size is not
    the subnet's resolution, so the file computes what ``hwnas eval`` reported. Prints the
    file's path; the subnet (and how its BN was set) goes to stderr."""
    from hwnas.errors import check_output_file
    from hwnas.train.evaluate import export_subnet, load_supernet, parse_subnet, set_threads

    set_threads(threads)
    if format not in ("onnx", "torch"):
        raise HwnasError(f"unknown export format '{format}' (use onnx or torch)")
    other = {"onnx": ".pt2", "torch": ".onnx"}[format]
    if out.suffix.lower() == other:  # a program named as the other format reads as one
        kind = "an ONNX model" if format == "onnx" else "a torch.export program"
        raise HwnasError(
            f"--format {format} writes {kind}, not a {other} file; name it "
            f"{out.with_suffix('.onnx' if format == 'onnx' else '.pt2')} (or pass --format "
            f"{'torch' if format == 'onnx' else 'onnx'})"
        )
    check_output_file(out)
    ckpt, model = load_supernet(checkpoint)
    cfg = parse_subnet(model, subnet, seed)  # resolved here, to say which one it is
    path = export_subnet(
        ckpt,
        cfg,
        format,  # type: ignore[arg-type]
        out,
        calib_batches=calib_batches,
        data_dir=data_dir,
        seed=seed,
    )
    batches = "1 batch" if calib_batches == 1 else f"{calib_batches} batches"
    bn = f"BN recalibrated on {batches}" if calib_batches else "supernet's BN"
    typer.echo(f"subnet {json.dumps(cfg)} ({bn})", err=True)
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    """Add the ``train``, ``eval`` and ``export`` commands to ``app``."""
    app.command("train")(_user_errors(train))
    app.command("eval")(_user_errors(evaluate))
    app.command("export")(_user_errors(export))
