"""CLI of the differentiable constrained search (DCA-NAS): ``hwnas dsearch``.

* ``hwnas dsearch --space nb201 --constraint 'params<=8e5' --epochs 50 --out DIR
  [--resume] [--lookup lug.json] [...]``: one search; writes DIR/metrics.jsonl,
  checkpoint.pt and summary.json, prints the summary's main fields as JSON;
* ``hwnas dsearch lug --budgets 2e5,4e5,8e5 --jobs 2 --constraint 'params<=1' --out DIR``:
  the lookup graph (one short search per search budget) in DIR/lug.json.

Thin: parses options into a :class:`hwnas.dnas.search.DSearchConfig` and calls the
library; user errors print one line and exit with code 2. Ctrl-C prints the command that
continues the run (stopped before anything was saved: the command to run again) and
exits with code 130.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from hwnas.cli_train import _user_errors, given, on_interrupt
from hwnas.errors import HwnasError, reworded
from hwnas.process import out_dir_lock

#: ``--json`` of dsearch and dtrain: accepted so that scripts can pass it to every command
JSON_OPT = typer.Option(
    False,
    "--json",
    help="Accepted for scripts: the result is one JSON line on stdout anyway (notes, "
    "warnings and errors go to stderr).",
)

dsearch_app = typer.Typer(
    help="Differentiable architecture search under a device budget (DCA-NAS).",
    invoke_without_command=True,
    no_args_is_help=True,
)

# options shared by the plain search and the lookup graph
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="JSON file of DSearchConfig fields.")
]
SpaceOpt = Annotated[
    str | None, typer.Option("--space", help="darts or nb201, any case (default nb201).")
]
DatasetOpt = Annotated[
    str | None, typer.Option("--dataset", help="cifar10 (default), digits, mnist, flowers17.")
]
DataDirOpt = Annotated[
    str | None, typer.Option("--data-dir", help="Data directory (default $HWNAS_DATA_DIR).")
]
ConstraintOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--constraint",
        help="One budget, given once: 'params<=3.5e6', 'flops<=600e6' (FLOPs = 2 x "
        "multiply-adds, so this is 300M MACs) or 'latency:DEVICE<=MS' (NB201: the "
        "benchmark's 32x32 CIFAR network, so a cifar10 search; DARTS: --latency-table).",
    ),
]


def _one_constraint(values: list[str] | None) -> str | None:
    """The single --constraint of a DCA-NAS command (one budget, one Lagrange
    multiplier): a second one is refused, not silently dropped."""
    if not values:
        return None
    if len(values) > 1:
        raise HwnasError(
            f"DCA-NAS takes one --constraint (one budget through one Lagrange multiplier); "
            f"got {len(values)}: {', '.join(values)}"
        )
    return values[0]


EpochsOpt = Annotated[int | None, typer.Option("--epochs", help="Search epochs (default 50).")]
StepsOpt = Annotated[int | None, typer.Option("--steps-per-epoch", help="Cap on steps per epoch.")]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", help="Batch size (default 64).")]
ChannelsOpt = Annotated[
    int | None, typer.Option("--channels", help="Search network C (default 16).")
]
LayersOpt = Annotated[
    int | None, typer.Option("--layers", help="DARTS search network cells (default 8).")
]
StageCellsOpt = Annotated[
    int | None, typer.Option("--stage-cells", help="NB201 search cells per stage (default 5).")
]
EvalChannelsOpt = Annotated[
    int | None, typer.Option("--eval-channels", help="Evaluation network C (36 / 16).")
]
EvalLayersOpt = Annotated[
    int | None, typer.Option("--eval-layers", help="Evaluation cells (DARTS 20 / NB201 N=5).")
]
SubsetOpt = Annotated[
    int | None,
    typer.Option("--train-subset", help="Training images used (half weights, half alpha)."),
]
ImageSizeOpt = Annotated[
    int | None, typer.Option("--image-size", help="Downscale inputs to this size (speed).")
]
SeedOpt = Annotated[int | None, typer.Option("--seed", min=0, help="Random seed (default 0).")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="Torch threads (default 1).")]
SharingOpt = Annotated[
    bool | None,
    typer.Option("--weight-sharing/--no-weight-sharing", help="Share ops per source node."),
]
BottleneckOpt = Annotated[
    int | None, typer.Option("--bottleneck", help="Channel bottleneck factor (1: off; def. 2).")
]
DerivedOpt = Annotated[
    bool | None,
    typer.Option("--derived-cells/--no-derived-cells", help="Only 1-2 cells hold alpha."),
]
DerivationOpt = Annotated[
    str | None,
    typer.Option(
        "--derivation",
        help="feasible (default): best-scoring cell within the budget (NB201: connected); "
        "argmax: the plain rule.",
    ),
]
LrOpt = Annotated[float | None, typer.Option("--lr", help="Weight lr (default 0.025).")]
ArchLrOpt = Annotated[float | None, typer.Option("--arch-lr", help="Alpha lr (default 3e-4).")]
LambdaLrOpt = Annotated[
    float | None, typer.Option("--lambda-lr", help="Lagrange multiplier lr (default 0.1).")
]
PenaltyOpt = Annotated[
    str | None,
    typer.Option(
        "--penalty",
        help="How the budget enters the alpha loss: lagrange (default, DCA-NAS), linear "
        "(ProxylessNAS), log (FBNet), pow (MnasNet's soft reward).",
    ),
]
PenaltyWeightOpt = Annotated[
    float | None,
    typer.Option("--penalty-weight", help="Weight of the linear penalty (default 0.1)."),
]
PenaltyExpOpt = Annotated[
    float | None,
    typer.Option("--penalty-exponent", help="Exponent of the log / pow penalty (0.6 / 0.07)."),
]
ProgressOpt = Annotated[
    bool,
    typer.Option(
        "--progress/--no-progress",
        help="Progress bar; without it one plain line per epoch (for log files).",
    ),
]
LatencyTableOpt = Annotated[
    Path | None,
    typer.Option(
        "--latency-table",
        help="DARTS per-op latency JSON (ms, measured on the evaluation network): "
        '{"device": "pixel3", "fixed": MS, "normal": {OP: MS, ...}, "reduce": {OP: MS, '
        "...}}; OP: each of the 7 ops but none, its latency on one edge summed over all "
        "cells of that type, one number or a list of 14 (one per edge); fixed: stem, "
        "preprocessing, head; device optional.",
    ),
]


def _fields(config: Path | None, base: dict[str, Any] | None, **overrides: Any) -> dict[str, Any]:
    """Config fields: ``base`` (a resumed run's config), then --config, then flags."""
    fields: dict[str, Any] = dict(base or {})
    if config is not None:
        try:
            loaded = json.loads(Path(config).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise HwnasError(f"cannot read config '{config}': {e}") from None
        if not isinstance(loaded, dict):
            raise HwnasError(f"config '{config}' must hold a JSON object")
        fields.update(loaded)
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return fields


def _check_lambda_flag(cfg: Any, lambda_lr: float | None) -> None:
    """--lambda-lr steers the Lagrange multiplier, which a soft penalty does not have."""
    if lambda_lr is not None and cfg.penalty != "lagrange":
        raise HwnasError(
            f"--lambda-lr is for the lagrange penalty; penalty '{cfg.penalty}' has no "
            "multiplier (its strength: --penalty-weight for linear, --penalty-exponent for "
            "log and pow)"
        )


def flag_names(flags: Mapping[str, str]) -> contextlib.AbstractContextManager[None]:
    """A config validation error about a setting given as a flag names the flag
    (``--steps-per-epoch``), not the config field (``steps_per_epoch``); ``flags`` maps
    the fields given by flags to their flag."""

    @contextlib.contextmanager
    def renamed() -> Iterator[None]:
        try:
            yield
        except HwnasError as exc:
            m = re.fullmatch(r"bad \w+ config: (\w+): (.*)", str(exc), flags=re.S)
            if m is None or m.group(1) not in flags:
                raise
            raise reworded(exc, f"invalid value for {flags[m.group(1)]}: {m.group(2)}") from None

    return renamed()


def as_flags(fields: Mapping[str, Any], special: Mapping[str, str] | None = None) -> dict[str, str]:
    """The flag of each config field in ``fields`` that is set (not None): ``--`` and
    the name with dashes, or ``special``'s."""
    special = special or {}
    return {
        k: special.get(k, "--" + k.replace("_", "-")) for k, v in fields.items() if v is not None
    }


@contextlib.contextmanager
def warnings_to_stderr() -> Iterator[None]:
    """The library's UserWarnings as one ``warning:`` line on stderr each, when they
    come (an override noted at the start, not after a long run); others as Python
    shows them."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)
        python_show = warnings.showwarning

        def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
            if issubclass(category, UserWarning):
                typer.echo(f"warning: {message}", err=True)
            else:
                python_show(message, category, *args, **kwargs)

        warnings.showwarning = show
        yield


def stderr_log(line: str) -> None:
    """A run's plain line (the start, an epoch) on stderr, unwrapped."""
    typer.echo(line, err=True)


def given_options(ctx: typer.Context) -> list[Any]:
    """The options this invocation was given (on the command line or by environment
    variable), not left at their defaults."""
    return [
        p
        for p in ctx.command.params
        if p.param_type_name == "option" and p.name and given(ctx, p.name)
    ]


def rerun_command(ctx: typer.Context, command: str, add: str = "") -> str:
    """``command`` with the options this invocation was given (on the command line or by
    environment variable), ``add`` appended (e.g. ``--resume``, not repeated)."""
    words = [command]
    for param in given_options(ctx):
        value = ctx.params.get(param.name)
        if getattr(param, "is_flag", False):
            if value:
                words.append(param.opts[0])
            elif param.secondary_opts:
                words.append(param.secondary_opts[0])
        elif isinstance(value, list | tuple):  # a repeatable option: each value again
            for v in value:
                words += [param.opts[0], shlex.quote(str(v))]
        elif value is not None:
            words += [param.opts[0], shlex.quote(str(value))]
    if add and add not in words:
        words.append(add)
    return " ".join(words)


def continue_hint(
    ctx: typer.Context,
    command: str,
    add: str = "",
    saved: Callable[[], bool] | None = None,
) -> contextlib.AbstractContextManager[None]:
    """On Ctrl-C: ``interrupted; continue with: <the command>`` on stderr, exit 130;
    where ``saved()`` says nothing can be continued yet (stopped while loading), the
    command to run again instead."""

    def hint() -> str:
        if saved is not None and not saved():
            return f"nothing was saved yet; run it again: {rerun_command(ctx, command)}"
        return f"continue with: {rerun_command(ctx, command, add)}"

    return on_interrupt(hint)


def saved_in(out: Path, *names: str) -> Callable[[], bool]:
    """Whether ``out`` holds any of the files ``names`` (what a resume continues)."""
    return lambda: any((out / n).is_file() for n in names)


@contextlib.contextmanager
def holding(out: Path, what: str, resume: bool) -> Iterator[None]:
    """Hold OUT's run lock (the library takes it again: reentrant), then say so (stderr)
    when a run without --resume is about to discard an unfinished run there (a
    checkpoint without the summary written at the end; the library refuses to replace a
    finished one). A run refused by the lock says nothing."""
    from hwnas.dnas.runs import finished_run

    with out_dir_lock(out, what):
        if not resume and (out / "checkpoint.pt").is_file() and not finished_run(out):
            typer.echo(
                f"note: {out} holds an unfinished {what} (checkpoint.pt, no summary.json); "
                "starting over discards it (--resume would continue it)",
                err=True,
            )
        yield


@dsearch_app.callback()
@_user_errors
def dsearch(
    ctx: typer.Context,
    out: Annotated[
        Path | None, typer.Option("--out", help="Run directory (metrics, checkpoint, summary).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the search in --out from its checkpoint.")
    ] = False,
    lookup: Annotated[
        Path | None,
        typer.Option(
            "--lookup",
            help="Lookup graph (lug.json from 'dsearch lug'): searches with the budget whose "
            "derived cell meets the --constraint budget.",
        ),
    ] = None,
    search_budget: Annotated[
        float | None, typer.Option("--search-budget", help="Search budget B (override).")
    ] = None,
    latency_table: LatencyTableOpt = None,
    config: ConfigOpt = None,
    space: SpaceOpt = None,
    dataset: DatasetOpt = None,
    data_dir: DataDirOpt = None,
    constraint: ConstraintOpt = None,
    epochs: EpochsOpt = None,
    steps_per_epoch: StepsOpt = None,
    batch_size: BatchOpt = None,
    channels: ChannelsOpt = None,
    layers: LayersOpt = None,
    stage_cells: StageCellsOpt = None,
    eval_channels: EvalChannelsOpt = None,
    eval_layers: EvalLayersOpt = None,
    train_subset: SubsetOpt = None,
    image_size: ImageSizeOpt = None,
    seed: SeedOpt = None,
    threads: ThreadsOpt = None,
    weight_sharing: SharingOpt = None,
    bottleneck: BottleneckOpt = None,
    derived_cells: DerivedOpt = None,
    derivation: DerivationOpt = None,
    lr: LrOpt = None,
    arch_lr: ArchLrOpt = None,
    lambda_lr: LambdaLrOpt = None,
    penalty: PenaltyOpt = None,
    penalty_weight: PenaltyWeightOpt = None,
    penalty_exponent: PenaltyExpOpt = None,
    progress: ProgressOpt = True,
    as_json: bool = JSON_OPT,
) -> None:
    """Search a cell (DARTS or NB201) whose evaluation network meets a resource budget.

    Writes OUT/metrics.jsonl (per epoch), OUT/checkpoint.pt and OUT/summary.json and
    prints the main summary fields as JSON. Subcommand 'lug' builds a lookup graph.
    """
    if ctx.invoked_subcommand is not None:
        before = [p.opts[0] for p in given_options(ctx)]
        if before:  # they would be dropped: the subcommand has its own options
            sub = ctx.invoked_subcommand
            raise HwnasError(
                f"{', '.join(before)} before '{sub}' would be ignored: give "
                f"{'them' if len(before) > 1 else 'it'} after it (hwnas dsearch {sub} ...)"
            )
        return
    from hwnas.dnas.search import CHECKPOINT_NAME, CONFIG_NAME, PLOT_NAME, DSearchConfig, dsearch

    if out is None:
        raise HwnasError("--out DIR is required")
    if resume and not any((out / n).is_file() for n in (CONFIG_NAME, CHECKPOINT_NAME)):
        raise HwnasError(
            f"nothing to resume in '{out}' (no {CONFIG_NAME} or {CHECKPOINT_NAME}); drop "
            "--resume to start a search there"
        )
    base = None
    if resume and (out / CONFIG_NAME).is_file():
        try:
            base = json.loads((out / CONFIG_NAME).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise HwnasError(f"cannot read '{out / CONFIG_NAME}': {e}") from None
    flags = dict(
        space=space.lower() if space else None,
        dataset=dataset,
        data_dir=data_dir,
        constraint=_one_constraint(constraint),
        search_budget=search_budget,
        lookup=str(lookup) if lookup else None,
        latency_table=str(latency_table) if latency_table else None,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        batch_size=batch_size,
        channels=channels,
        layers=layers,
        stage_cells=stage_cells,
        eval_channels=eval_channels,
        eval_layers=eval_layers,
        train_subset=train_subset,
        image_size=image_size,
        seed=seed,
        threads=threads,
        weight_sharing=weight_sharing,
        bottleneck=bottleneck,
        derived_cells=derived_cells,
        derivation=derivation,
        lr=lr,
        arch_lr=arch_lr,
        lambda_lr=lambda_lr,
        penalty=penalty,
        penalty_weight=penalty_weight,
        penalty_exponent=penalty_exponent,
    )
    fields = _fields(config, base, **flags)
    with warnings_to_stderr():
        with flag_names(as_flags(flags)):
            cfg = DSearchConfig.from_dict(fields)
        _check_lambda_flag(cfg, lambda_lr)
        with (
            holding(out, "dsearch", resume),
            continue_hint(
                ctx, "hwnas dsearch", "--resume", saved_in(out, CONFIG_NAME, CHECKPOINT_NAME)
            ),
        ):
            result = dsearch(cfg, out, resume=resume, progress=progress, log=stderr_log)
    s = result.summary
    keys = (
        "genotype",
        "constraint",
        "budget",
        "search_budget",
        "derived",
        "satisfied",
        "derivation",
        "penalty",
        "argmax_derived",
        "params",
        "flops",
        "seconds",
    )
    brief: dict[str, Any] = {"out": str(out), **{k: s.get(k) for k in keys}}
    if (out / PLOT_NAME).is_file():
        brief["plot"] = str(out / PLOT_NAME)
    if "nb201" in s:
        nb = s["nb201"]
        brief["nb201_index"] = nb["index"]
        # the benchmark's published accuracies of the cell (percent, on NB201's own
        # datasets), not a measurement of this run: named so beside dtrain's fractions
        brief["nb201_table_test_acc_pct"] = nb["test_acc"]
        best = nb["best_under_budget"].get(cfg.dataset if cfg.dataset in nb["test_acc"] else "")
        if best:
            brief["nb201_table_best_test_acc_under_budget_pct"] = best["test_acc"]
    typer.echo(json.dumps(brief))


@dsearch_app.command("lug")
@_user_errors
def lug(
    ctx: typer.Context,
    budgets: Annotated[
        str, typer.Option("--budgets", help="Comma-separated search budgets, e.g. 2e5,4e5,8e5.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Directory for lug.json and the runs.")],
    jobs: Annotated[int, typer.Option("--jobs", help="Parallel searches (1 thread each).")] = 1,
    config: ConfigOpt = None,
    space: SpaceOpt = None,
    dataset: DatasetOpt = None,
    data_dir: DataDirOpt = None,
    constraint: ConstraintOpt = None,
    epochs: EpochsOpt = None,
    steps_per_epoch: StepsOpt = None,
    batch_size: BatchOpt = None,
    channels: ChannelsOpt = None,
    layers: LayersOpt = None,
    stage_cells: StageCellsOpt = None,
    eval_channels: EvalChannelsOpt = None,
    eval_layers: EvalLayersOpt = None,
    latency_table: LatencyTableOpt = None,
    train_subset: SubsetOpt = None,
    image_size: ImageSizeOpt = None,
    seed: SeedOpt = None,
    arch_lr: ArchLrOpt = None,
    lambda_lr: LambdaLrOpt = None,
    penalty: PenaltyOpt = None,
    penalty_weight: PenaltyWeightOpt = None,
    penalty_exponent: PenaltyExpOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Build a lookup graph: derived resource of short searches over search budgets.

    The constraint gives the metric (its budget is not used). Prints the curve as JSON.
    """
    from hwnas.dnas.lookup import LUG_NAME, LUG_PLOT_NAME, build_lookup_graph
    from hwnas.dnas.search import DSearchConfig
    from hwnas.report.progress import progress_bar

    try:
        values = [float(b) for b in budgets.split(",") if b.strip()]
    except ValueError:
        raise HwnasError(f"--budgets must be comma-separated numbers, got '{budgets}'") from None
    flags = dict(
        space=space.lower() if space else None,
        dataset=dataset,
        data_dir=data_dir,
        constraint=_one_constraint(constraint),
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        batch_size=batch_size,
        channels=channels,
        layers=layers,
        stage_cells=stage_cells,
        eval_channels=eval_channels,
        eval_layers=eval_layers,
        latency_table=str(latency_table) if latency_table else None,
        train_subset=train_subset,
        image_size=image_size,
        seed=seed,
        arch_lr=arch_lr,
        lambda_lr=lambda_lr,
        penalty=penalty,
        penalty_weight=penalty_weight,
        penalty_exponent=penalty_exponent,
    )
    with flag_names(as_flags(flags)):
        cfg = DSearchConfig.from_dict(_fields(config, None, **flags))
    _check_lambda_flag(cfg, lambda_lr)
    # the finished runs in OUT/sb_* are kept: the same command continues the graph
    with (
        continue_hint(ctx, "hwnas dsearch lug"),
        progress_bar("lookup graph", enabled=progress) as update,
    ):
        graph = build_lookup_graph(cfg, values, out, jobs=jobs, progress=update)
    xs, ys = graph.curve()
    typer.echo(
        json.dumps(
            {
                "lug": str(out / LUG_NAME),
                "plot": str(out / LUG_PLOT_NAME),
                "metric": graph.metric,
                "search_budget": xs.tolist(),
                "derived": ys.tolist(),
            }
        )
    )


def register(app: typer.Typer) -> None:
    """Add ``dsearch`` (and ``dsearch lug``) to the main app."""
    app.add_typer(dsearch_app, name="dsearch")
