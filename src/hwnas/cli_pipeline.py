"""CLI command ``hwnas pipeline``: the whole one-shot pipeline (added by ``register``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from hwnas.cli_train import _read_config, _user_errors, given, on_interrupt


def pipeline(
    ctx: typer.Context,
    out: Path = typer.Option(Path("runs/pipeline"), "--out", help="Run directory."),
    config: Path | None = typer.Option(
        None, "--config", help="JSON file of pipeline settings (flags override it)."
    ),
    dataset: str | None = typer.Option(
        None,
        help="Training data: digits (default, no files needed), cifar10, mnist, "
        "flowers17 or folder:PATH.",
    ),
    epochs: int | None = typer.Option(None, min=1, help="Supernet training epochs (5)."),
    samples: int | None = typer.Option(
        None, min=5, help="Subnets measured on this machine for the latency predictor (60)."
    ),
    predictor: str | None = typer.Option(
        None, help="Latency predictor (auto: by cross-validation; 'hwnas predictors list')."
    ),
    algorithm: str | None = typer.Option(None, help="Search algorithm (linas)."),
    evaluations: int | None = typer.Option(
        None, min=2, help="Subnets evaluated by the search (100); raise it to search on."
    ),
    constraint: list[str] | None = typer.Option(
        None, help="Hard constraint, e.g. 'latency<=1.5' (ms; repeatable)."
    ),
    export: str | None = typer.Option(
        None, help="Formats of the front's models: onnx (default), torch, or onnx,torch."
    ),
    threads: int | None = typer.Option(None, min=1, help="PyTorch threads (2)."),
    measure_threads: int | None = typer.Option(
        None, "--measure-threads", min=1, help="ONNX Runtime threads when measuring (1)."
    ),
    seed: int | None = typer.Option(None, min=0, help="Random seed (0)."),
    data_dir: str | None = typer.Option(None, "--data-dir", help="Data dir (HWNAS_DATA_DIR)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Train a supernet, profile this machine, fit a latency predictor, search, then test,
    export and measure the front, and write OUT/report.md. Run it again to continue."""
    from rich.console import Console
    from rich.table import Table

    from hwnas.errors import HwnasError
    from hwnas.pipeline import run_pipeline
    from hwnas.report.progress import progress_bar

    fields: dict[str, Any] = _read_config(config) if config is not None else {}
    train = dict(fields.get("train") or {})
    for key, value in (("dataset", dataset), ("epochs", epochs)):
        if value is not None:
            train[key] = value
    if train:
        fields["train"] = train
    flags = {
        "profile_samples": samples,
        "predictor": predictor,
        "algorithm": algorithm,
        "evaluations": evaluations,
        "threads": threads,
        "measure_threads": measure_threads,
        "seed": seed,
        "data_dir": data_dir,
    }
    fields.update({k: v for k, v in flags.items() if v is not None})
    if given(ctx, "constraint"):
        fields["constraints"] = list(constraint or [])
    if export is not None:
        formats = [f.strip() for f in export.split(",") if f.strip()]
        bad = [f for f in formats if f not in ("onnx", "torch")]
        if bad or not formats:
            raise HwnasError(f"--export takes onnx, torch or onnx,torch; got '{export}'")
        fields["export_formats"] = sorted(set(formats), key=formats.index)
    err = Console(stderr=True)
    with on_interrupt(lambda: f"run the same command again to continue ({out})"):
        summary = run_pipeline(
            fields,
            out,
            progress=progress_bar,
            log=lambda line: err.print(f"[bold]{line}[/bold]"),
        )
    if as_json:
        typer.echo(json.dumps(summary, default=str))
        return
    ag = summary["front_latency_agreement"]
    table = Table(title=f"front: {len(summary['shipped'])} networks to ship (measured here)")
    for col in ("val top-1 %", "test top-1 %", "predicted ms", "measured ms", "MFLOPs", "file"):
        table.add_column(col, justify="left" if col == "file" else "right")
    for r in summary["shipped"]:
        table.add_row(
            f"{r['val_top1']:.2f}",
            f"{r['test_top1']:.2f}",
            f"{r['predicted_latency_ms']:.3f}",
            f"{r['measured_latency_ms']:.3f}",
            f"{r['mflops']:.1f}",
            f"front/{r['onnx']}",
        )
    con = Console()
    con.print(table)
    drift = ag.get("drift")
    con.print(
        f"latency predicted vs measured on the front: MAPE {ag.get('mape', 0):.1f} %"
        + (f" (machine {drift:.2f}x as slow as during the profile)" if drift else "")
    )
    con.print(f"report: {out / 'report.md'}   summary: {out / 'summary.json'}")


def register(app: typer.Typer) -> None:
    """Add the ``pipeline`` command to ``app``."""
    app.command("pipeline")(_user_errors(pipeline))
