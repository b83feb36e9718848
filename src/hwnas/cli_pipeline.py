"""CLI command ``hwnas pipeline``: the whole one-shot pipeline (added by ``register``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from hwnas.cli_train import _read_config, _user_errors, given, on_interrupt
from hwnas.errors import EXIT_NOTHING


def pipeline(
    ctx: typer.Context,
    out: Path = typer.Option(Path("runs/default"), "--out", help="Run directory."),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="JSON file of pipeline settings (flags override it): its keys are "
        "PipelineConfig's fields, which are not all the flags' names (profile_samples, "
        "constraints, export_formats, ...); a run's OUT/pipeline.json is a complete config "
        "to copy.",
    ),
    dataset: str | None = typer.Option(
        None,
        help="Training data: digits (default, no files needed), cifar10, mnist, "
        "flowers17 or folder:PATH.",
    ),
    epochs: int | None = typer.Option(None, min=1, help="Supernet training epochs (5)."),
    samples: int | None = typer.Option(
        None, min=5, help="Subnets measured on the target device for the latency predictor (60)."
    ),
    predictor: str | None = typer.Option(
        None, help="Latency predictor (auto: by cross-validation; 'hwnas predictors list')."
    ),
    algorithm: str | None = typer.Option(None, help="Search algorithm (linas)."),
    evaluations: int | None = typer.Option(
        None, min=2, help="Subnets evaluated by the search (100); raise it to search on."
    ),
    constraint: list[str] | None = typer.Option(
        None,
        help="Hard constraint (repeatable): latency (ms), accuracy (%), mflops or params, "
        "e.g. 'latency<=1.5' or 'params<=2000000' (a memory budget).",
    ),
    export: str | None = typer.Option(
        None,
        help="Formats of the front's models: onnx (the default), torch or onnx,torch. ONNX "
        "files are always written, as their latency is measured; torch adds torch.export "
        "programs beside them.",
    ),
    threads: int | None = typer.Option(None, min=1, help="PyTorch threads (2)."),
    measure_threads: int | None = typer.Option(
        None, "--measure-threads", min=1, help="ONNX Runtime threads when measuring (1)."
    ),
    seed: int | None = typer.Option(None, min=0, help="Random seed (0)."),
    data_dir: str | None = typer.Option(None, "--data-dir", help="Data dir (HWNAS_DATA_DIR)."),
    agent: str | None = typer.Option(
        None,
        "--agent",
        help="Target device: measure latency on the device agent at this URL ('hwnas agent "
        "serve' there) instead of on this machine; fixed for the run directory.",
    ),
    token_file: str | None = typer.Option(
        None, "--token-file", help="Token file for --agent (mode 0600)."
    ),
    agent_timeout_s: float | None = typer.Option(
        None, "--agent-timeout-s", help="Time-out of one agent request, seconds (600)."
    ),
    supernet: str | None = typer.Option(
        None,
        "--supernet",
        help="Reuse a trained supernet instead of training one: its checkpoint, its 'hwnas "
        "train' directory or another pipeline run's directory (train once, then profile "
        "and search for each device).",
    ),
    warm_start: str | None = typer.Option(
        None,
        "--warm-start",
        help="Evaluate a front first, counted in --evaluations: another pipeline run's "
        "directory (e.g. the same --supernet searched for another device), a search "
        "directory or a CSV with an arch_key column.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """The main job: supernet, device profile, latency predictor, search, measured front.

    Trains a supernet, profiles the target device (this machine, or a device agent with
    --agent), fits a latency predictor, searches, then tests, exports and measures the
    front, and writes OUT/report.md (default: digits, about 7-11 minutes on 2 cores). Run
    it again to continue. ('hwnas run' and 'hwnas pipeline' are the same command.)"""
    from rich.console import Console
    from rich.table import Table

    from hwnas.errors import HwnasError
    from hwnas.pipeline import drift_warning, run_pipeline
    from hwnas.report.progress import progress_bar

    fields: dict[str, Any] = (
        _read_config(config, "pipeline settings", '{"evaluations": 200}')
        if config is not None
        else {}
    )
    train = fields.get("train") or {}
    if not isinstance(train, dict):
        raise HwnasError(
            f"config '{config}': train must be an object of training settings, e.g. "
            f'{{"train": {{"epochs": 3}}}}; got a {type(train).__name__}'
        )
    train = dict(train)
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
        "agent": agent,
        "token_file": token_file,
        "agent_timeout_s": agent_timeout_s,
        "supernet": supernet,
        "warm_start": warm_start,
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
        if not summary["shipped"]:
            raise typer.Exit(EXIT_NOTHING)
        return
    ag = summary["front_latency_agreement"]
    con = Console()
    if not summary["shipped"]:
        cons = " and ".join(summary["config"]["constraints"]) or "the constraints"
        how = "as measured" if summary["front"] else "by the search's values"
        con.print(
            f"no searched subnet satisfies {cons} {how}: loosen the constraint or search "
            f"more (--evaluations); report: {out / 'report.md'}"
        )
        raise typer.Exit(EXIT_NOTHING)  # a script must not deploy nothing
    table = Table(
        title=f"{len(summary['shipped'])} networks to ship (measured on "
        f"{summary['device']['label']})",
        caption="judged ms: what the latency budgets and the choice of networks use, the "
        "measured latency divided by the drift where the device is slower now than during "
        "the profile; noise: the measurement's robust CV",
    )
    cols = ("#", "val %", "test %", "predicted ms", "measured ms", "noise", "judged ms")
    for col in (*cols, "params", "MFLOPs"):
        table.add_column(col, justify="right")
    for i, r in enumerate(summary["shipped"], 1):
        cv = r.get("latency_cv")
        table.add_row(
            str(i),
            f"{r['val_top1']:.2f}",
            f"{r['test_top1']:.2f}",
            f"{r['predicted_latency_ms']:.3f}",
            f"{r['measured_latency_ms']:.3f}",
            "-" if cv is None else f"{100 * cv:.1f} %",
            f"{r['latency_ms']:.3f}",
            f"{r['params']:,}",
            f"{r['mflops']:.1f}",
        )
    con.print(table)
    for i, r in enumerate(summary["shipped"], 1):
        files = " ".join(f"{out / 'front' / r[k]}" for k in ("onnx", "torch") if r.get(k))
        con.print(f"#{i}: {files}", soft_wrap=True)
    drift = ag.get("drift")
    con.print(
        f"latency predicted vs measured on the front: MAPE {ag.get('mape', 0):.1f} %"
        + (
            f"; the device is {drift:.2f}x as slow as during the profile (MAPE "
            f"{ag.get('mape_drift_corrected', 0):.1f} % with that taken out)"
            if drift
            else ""
        )
    )
    warning = drift_warning(drift)
    if warning:
        con.print(f"[yellow]warning: {warning}[/yellow]")
    con.print(f"report: {out / 'report.md'}   summary: {out / 'summary.json'}")


def register(app: typer.Typer) -> None:
    """Add the ``run`` and ``pipeline`` commands (one and the same) to ``app``."""
    app.command("run")(_user_errors(pipeline))
    app.command("pipeline")(_user_errors(pipeline))
