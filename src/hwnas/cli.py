"""The ``hwnas`` command line: thin wrappers that parse, validate and call the library."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import sqlite3
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hwnas.cli_train import given, on_interrupt
from hwnas.errors import (
    EXIT_DEVICE,
    EXIT_NOTHING,
    DeviceUnavailableError,
    HwnasError,
    SetupError,
    reworded,
)
from hwnas.process import keyboard_interrupt_handled
from hwnas.report.progress import progress_bar

app = typer.Typer(
    name="hwnas",
    help="Hardware-aware, multi-objective neural architecture search.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
predictors_app = typer.Typer(help="Fit and judge cheap predictors.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks of the toolkit itself.", no_args_is_help=True)
data_app = typer.Typer(help="Data files: list and download.", no_args_is_help=True)
app.add_typer(predictors_app, name="predictors")
app.add_typer(bench_app, name="bench")
app.add_typer(data_app, name="data")

console = Console(stderr=True)
out_console = Console(markup=False)  # names like linas[kappa=1] are not markup

DataDir = Annotated[
    str | None,
    typer.Option("--data-dir", help="Data directory (default: $HWNAS_DATA_DIR or a cache dir)."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _benchmark_options(benchmark: str, dataset: str | None, device: str | None) -> dict[str, Any]:
    """The --dataset/--device flags as benchmark options, else the benchmark's
    ``DEFAULT_OPTIONS`` (NB201: CIFAR-10, pixel3); a benchmark refuses what it lacks.
    An unknown benchmark is one ``unknown benchmark`` line."""
    from hwnas.bench import BENCHMARKS

    defaults = BENCHMARKS.get(benchmark).DEFAULT_OPTIONS
    for flag, value in (("--dataset", dataset), ("--device", device)):
        if value is not None and not _csv(value):
            raise HwnasError(f"{flag} is empty (leave it out for the benchmark's default)")
    dataset = dataset or defaults.get("dataset")
    device = device or defaults.get("devices")
    opts: dict[str, Any] = {}
    if dataset is not None:
        opts["dataset"] = dataset
    if device is not None:
        devs = _csv(device)
        opts["devices"] = devs[0] if len(devs) == 1 else devs
    return opts


def _bench_options(benchmark: str, options: list[str]) -> dict[str, Any]:
    """``--bench-option key=value`` pairs of ``benchmark``; file paths (values with a '/'
    or a suffix that name an existing file) become absolute, so a stored run resumes from
    any directory."""
    from hwnas.bench import benchmark_options
    from hwnas.search.spec import parse_options

    opts = parse_options(options)
    flags = ("dataset", "devices", "data_dir")
    for key in flags:
        if key in opts:
            flag = {"devices": "--device", "data_dir": "--data-dir"}.get(key, f"--{key}")
            raise HwnasError(f"give {key} by {flag}, not --bench-option")
    known = [k for k in benchmark_options(benchmark) if k not in flags]
    unknown = sorted(set(opts) - set(known))
    if unknown:
        raise HwnasError(
            f"benchmark '{benchmark}' has no --bench-option {', '.join(unknown)} "
            f"(its options: {', '.join(known) or 'none'})"
        )
    for key, value in opts.items():
        pathlike = isinstance(value, str) and ("/" in value or Path(value).suffix)
        if pathlike and Path(value).is_file():
            opts[key] = str(Path(value).resolve())
    return opts


BenchOptions = Annotated[
    list[str] | None,
    typer.Option(
        help="Benchmark option key=value (repeatable), e.g. for --benchmark supernet: "
        "checkpoint=runs/sn/checkpoint.pt latency=runs/lat.joblib (and threads=N, "
        "calib_batches=N, split=NAME, batch_size=N); for ofa-mbv3 and "
        "ofa-resnet50: latency=true (measured here; with agent=URL token_file=PATH on a "
        "device agent; agent_timeout_s=S bounds a request, default: the agent's queue and "
        "measurement time-outs + 60 s), threads=N, rounds=N, "
        "anchor=false (no drift anchor beside each batch).",
    ),
]


def _print_json(obj: Any) -> None:
    from hwnas.store.sqlite import json_default

    out_console.print_json(json.dumps(obj, default=json_default))


# ---- search ----------------------------------------------------------------------------
@app.command()
def search(
    ctx: typer.Context,
    benchmark: Annotated[
        str, typer.Option(help="Benchmark to search on (see 'hwnas benchmarks').")
    ] = "nb201",
    dataset: Annotated[
        str | None,
        typer.Option(help="Accuracy dataset (nb201: cifar10 (default), cifar100, imagenet16_120)."),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            help="Target device(s), comma-separated (nb201 default: pixel3; 'hwnas devices')."
        ),
    ] = None,
    algorithm: Annotated[
        str,
        typer.Option(
            help="Search algorithm (see 'hwnas algorithms'); options in brackets, "
            "e.g. 'linas\\[batch_size=5]' or 'mnas\\[target=4,alpha=0,beta=-1]'."
        ),
    ] = "linas",
    evaluations: Annotated[
        int, typer.Option(min=1, help="Evaluation budget (distinct architectures).")
    ] = 200,
    seed: Annotated[int, typer.Option(min=0, help="Random seed.")] = 0,
    constraint: Annotated[
        list[str] | None,
        typer.Option(
            help="Hard constraint, e.g. 'latency<=5' or, per device, 'latency:pixel3<=5' "
            "(repeatable)."
        ),
    ] = None,
    option: Annotated[
        list[str] | None, typer.Option(help="Algorithm option key=value (repeatable).")
    ] = None,
    bench_option: BenchOptions = None,
    warm_start: Annotated[
        Path | None,
        typer.Option(
            help="Start from these architectures: a search directory (its front, "
            "pareto.csv) or a CSV with an arch_key column; evaluated first, counted in "
            "the budget."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Run directory for results.sqlite, CSVs, plots, summary (required unless "
            "--resume)."
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Resume the search stored in this run directory (with --evaluations: "
            "raise its budget)."
        ),
    ] = None,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed",
            help="With --resume: evaluate the search's failed evaluations again first "
            "(each result in place of its failure).",
        ),
    ] = False,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Search for Pareto-optimal architectures for a device on a benchmark."""
    from hwnas.search.runner import resume_search, run_search, warm_start_keys
    from hwnas.search.spec import parse_options

    if resume is not None:
        fixed = _given(ctx, ("benchmark", "dataset", "device", "algorithm", "seed"))
        fixed += _given(ctx, ("constraint", "option", "bench_option", "warm_start", "out"))
        if fixed:
            raise HwnasError(
                f"--resume continues the stored run with its own config: drop "
                f"{', '.join('--' + g.replace('_', '-') for g in fixed)} (only --evaluations "
                "can change it; --retry-failed evaluates its failures again)"
            )
        budget = evaluations if _given(ctx, ("evaluations",)) else None
        done_before = _finished_evaluations(resume)
        with (
            _resume_hint(resume),
            progress_bar("resuming") as update,
            _printed_nothing_feasible(),
        ):
            summary = resume_search(
                resume,
                progress=update,
                evaluations=budget,
                data_dir=data_dir,
                retry_failed=retry_failed,
            )
        if retry_failed and not summary.get("retried"):
            console.print(
                f"note: the search in {escape(str(resume))} held no failed evaluation to retry",
                highlight=False,
                soft_wrap=True,
            )
        elif done_before == summary["evaluations"] and not retry_failed:
            console.print(
                f"note: the search in {escape(str(resume))} had finished: nothing new was "
                "evaluated (--evaluations N raises its budget; --retry-failed evaluates its "
                "failures again)",
                highlight=False,
                soft_wrap=True,
            )
        out = resume
    else:
        if retry_failed:
            raise HwnasError("--retry-failed goes with --resume DIR (a stored search)")
        if out is None:
            raise HwnasError("--out DIR is required (or --resume DIR)")
        config = {
            "benchmark": benchmark,
            "benchmark_options": {
                **_benchmark_options(benchmark, dataset, device),
                **_bench_options(benchmark, bench_option or []),
            },
            "algorithm": algorithm,
            "algorithm_options": parse_options(option or []),
            "evaluations": evaluations,
            "seed": seed,
            "constraints": list(constraint or []),
            "data_dir": data_dir,
            "warm_start": [] if warm_start is None else warm_start_keys(warm_start),
        }
        with (
            _resume_hint(out),
            progress_bar(f"{algorithm} on {benchmark}") as update,
            _printed_nothing_feasible(),
        ):
            summary = run_search(config, out=out, progress=update)
    if as_json:
        _print_json({k: v for k, v in summary.items() if not k.endswith("history")})
    else:
        _print_summary(summary, out)
    if summary["constraints"] and not summary["pareto"]:
        raise typer.Exit(EXIT_NOTHING)  # a script must not go on with no front


@contextlib.contextmanager
def _printed_nothing_feasible() -> Iterator[None]:
    """Without the library's warning of a search that met no constraint: the summary
    printed after it says so, with what to do (and the command exits 4)."""
    from hwnas.search.runner import NOTHING_FEASIBLE

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=NOTHING_FEASIBLE)
        yield


def _holds_search(out: Path) -> bool:
    """Whether ``out`` holds a stored search run (not merely a store file)."""
    from hwnas.search.runner import STORE_NAME
    from hwnas.store.sqlite import ResultsStore

    if not (out / STORE_NAME).is_file():
        return False
    try:
        with ResultsStore(out / STORE_NAME) as store:
            store.latest_run("search")
    except HwnasError:
        return False
    return True


@contextlib.contextmanager
def _resume_hint(out: Path) -> Iterator[None]:
    """On Ctrl-C, or an error of the setup that stops a search (a device agent gone):
    say how to continue the search stored in ``out``."""

    def hint() -> str:
        if _holds_search(out):
            return f"continue with: hwnas search --resume {out}"
        return "the search had not started; run the same command again"

    from hwnas.process import Terminated
    from hwnas.search.problem import EvaluatorError

    with on_interrupt(hint):
        try:
            yield
        except EvaluatorError:
            raise  # says itself how to go on (--retry-failed)
        except SetupError as exc:
            raise reworded(exc, f"{exc}; the search stopped there: {hint()}") from None
        except Terminated as exc:  # SIGTERM: as Ctrl-C, with its own exit status
            print(f"terminated; {hint()}", file=sys.stderr)
            raise SystemExit(exc.code) from None


def _given(ctx: typer.Context | None, names: tuple[str, ...]) -> list[str]:
    """Which of these parameters the user set (on the command line or by env var)."""
    return [name for name in names if ctx is not None and given(ctx, name)]


def _finished_evaluations(run_dir: Path) -> int | None:
    """Evaluations of a finished search's summary.json (None: not finished, unreadable)."""
    try:
        return int(json.loads((run_dir / "summary.json").read_text())["evaluations"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def front_rows(n: int, most: int = 40) -> list[int]:
    """Which of a front's ``n`` rows (sorted by cost) a table shows: all up to ``most``,
    else ``most`` spread evenly from the cheapest to the best, both ends included."""
    if n <= most:
        return list(range(n))
    return sorted({round(k * (n - 1) / (most - 1)) for k in range(most)})


def _print_summary(summary: dict[str, Any], out: Path | None) -> None:
    s = summary
    from hwnas.search.spec import algorithm_label

    name = algorithm_label(str(s["algorithm"]), s.get("algorithm_options"))
    line = f"{name}: {s['evaluations']} evaluations"
    if s.get("warm_start"):
        line += f" ({s['warm_start']} of them the warm start)"
    if s.get("failed"):
        line += f", {s['failed']} failed (their errors: evaluations.csv)"
    if s.get("hv_fraction") is not None:
        line += (
            f", HV fraction {s['hv_fraction']:.4f}, front recall {s['front_recall']:.3f}"
            f" ({s['exact_front_size']} on the exact front), IGD "
            + (f"{s['igd']:.4f}" if s["igd"] is not None else "-")
        )
    else:
        line += f", hypervolume {s['hypervolume']:.4g}"
    line += f"; {s['wall_time_s']:.1f} s ({s['search_overhead_s']:.1f} s search overhead)"
    out_console.print(line)
    objs = [o["name"] for o in s["objectives"]]
    if s["constraints"] and not s["pareto"]:
        out_console.print(
            f"none of the {s['evaluations']} evaluated architectures satisfies "
            f"{' and '.join(s['constraints'])}: loosen the constraint or evaluate more"
        )
        if s.get("mnas"):
            _print_mnas(s["mnas"], objs, s["evaluations"])
        return
    front = s["pareto"]
    if not front:  # every evaluation failed (their errors are in evaluations.csv)
        out_console.print("no architecture was evaluated successfully: no front")
        return
    # a constrained metric that is no objective (a parameter budget's params) is shown too
    cols = objs + [k for k in front[0] if k not in (*objs, "arch_key", "arch", "vector")]
    shown = front_rows(len(front))
    table = Table(
        title=f"Pareto front ({len(front)} evaluated architectures)",
        caption=None
        if len(shown) == len(front)
        else f"{len(shown)} of {len(front)}, spread over the front; all in pareto.csv",
    )
    table.add_column("architecture", overflow="fold")
    units = {o["name"]: o.get("unit") for o in s["objectives"]}
    for name in cols:
        unit = units.get(name)
        table.add_column(f"{name} ({unit})" if unit and unit != name else name, justify="right")
    for k in shown:
        p = front[k]
        arch = p["arch"] if isinstance(p["arch"], str) else json.dumps(p["arch"])
        table.add_row(arch, *(f"{p[n]:.4g}" for n in cols))
    out_console.print(table)
    if s.get("mnas"):
        _print_mnas(s["mnas"], objs, s["evaluations"])
    if out is not None:
        out_console.print(
            f"results in {out}/ (summary.json, pareto.csv, pareto.png, progress.png, "
            "evaluations.csv)"
        )


def _print_mnas(m: dict[str, Any], objs: list[str], evaluations: int) -> None:
    """mnas's answer: the best architecture by reward and the best within its target."""
    out_console.print(
        f"mnas target {m['target']:.4g} (reward: accuracy x (cost / target)^w, "
        f"w = {m['alpha']:g} within, {m['beta']:g} beyond)"
    )
    for label, key in (
        ("best by reward", "best_reward"),
        ("best within target", "best_within_target"),
    ):
        best = m.get(key)
        if best is None:
            why = "within the target" if key == "best_within_target" else "meets the constraints"
            out_console.print(f"  {label}: none of the {evaluations} evaluated {why}")
            continue
        arch = best["arch"] if isinstance(best["arch"], str) else json.dumps(best["arch"])
        values = ", ".join(f"{n} {best[n]:.4g}" for n in objs)
        out_console.print(f"  {label}: {arch} ({values})")
    top = m.get("table_best_within_target")
    if top is not None:
        out_console.print(f"  best within the target in the whole table: {top:.4g}")


@app.command()
def evaluate(
    arch: Annotated[
        list[str],
        typer.Argument(
            help="Architecture(s): NB201 arch string, a JSON vector/config, or an arch_key "
            "from evaluations.csv / pareto.csv (1-1-1-0-1-0)."
        ),
    ],
    benchmark: Annotated[str, typer.Option(help="Benchmark.")] = "nb201",
    dataset: Annotated[
        str | None, typer.Option(help="Accuracy dataset (nb201 default: cifar10).")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="Device(s), comma-separated (nb201 default: pixel3).")
    ] = None,
    bench_option: BenchOptions = None,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Look up the objectives of given architectures on a benchmark.

    With --bench-option latency=true, latency is measured here (or on a device agent)."""
    import numpy as np

    from hwnas.bench import get_benchmark

    opts = _benchmark_options(benchmark, dataset, device)
    opts.update(_bench_options(benchmark, bench_option or []))
    bench = get_benchmark(benchmark, data_dir=data_dir, **opts)
    vectors = np.stack([_parse_arch(bench.space, a) for a in arch])
    values = bench.evaluate(vectors)
    keys = bench.space.keys(vectors)  # as evaluations.csv and pareto.csv name them
    rows = [
        {
            "arch_key": key,
            "arch": bench.space.decode(v),
            **{o.name: float(x) for o, x in zip(bench.objectives, row, strict=True)},
        }
        for key, v, row in zip(keys, vectors, values, strict=True)
    ]
    if as_json:
        _print_json(rows)
        return
    table = Table()
    table.add_column("architecture", overflow="fold")
    for o in bench.objectives:
        table.add_column(f"{o.name} ({o.unit})" if o.unit else o.name, justify="right")
    for r in rows:
        arch_text = r["arch"] if isinstance(r["arch"], str) else json.dumps(r["arch"])
        table.add_row(arch_text, *(f"{r[o.name]:.4g}" for o in bench.objectives))
    out_console.print(table)


def _parse_arch(space: Any, text: str) -> Any:
    """An architecture from the command line: a JSON vector, a JSON config, a string
    config (e.g. an NB201 arch string), or the key a search stores (``1-1-1-0-1-0``,
    the ``arch_key`` column of evaluations.csv and pareto.csv)."""
    if re.fullmatch(r"\d+(-\d+)+", text.strip()):
        return space.from_key(text.strip())
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if text.lstrip().startswith(("{", "[")):  # meant as JSON: say what is wrong
            raise HwnasError(
                f"architecture {text!r} is not valid JSON: {exc.msg} (character {exc.pos})"
            ) from None
        value = text
    if isinstance(value, list) and all(isinstance(v, int | float) for v in value):
        if any(isinstance(v, bool) or v != int(v) for v in value):
            raise HwnasError(f"{space.name}: architecture vector must hold integers, got {text}")
        return space.validate([int(v) for v in value])
    return space.encode(value)


# ---- listings --------------------------------------------------------------------------
def _listing(title: str, rows: list[tuple[str, str]], as_json: bool) -> None:
    if as_json:
        _print_json([{"name": n, "description": d} for n, d in rows])
        return
    table = Table(title=title)
    table.add_column("name")
    table.add_column("description")
    for n, d in rows:
        table.add_row(n, d)
    out_console.print(table)


@app.command()
def spaces(as_json: JsonFlag = False) -> None:
    """List the search spaces."""
    from hwnas.registry import SPACES

    rows = []
    for name in SPACES.names():
        sp = SPACES.get(name)()
        rows.append(
            (name, f"{SPACES.describe(name)} [{sp.n_dims} dims, {float(sp.size()):.3g} vectors]")
        )
    _listing("search spaces", rows, as_json)


@app.command()
def benchmarks(as_json: JsonFlag = False) -> None:
    """List the benchmarks."""
    from hwnas.registry import BENCHMARKS

    _listing("benchmarks", [(n, BENCHMARKS.describe(n)) for n in BENCHMARKS.names()], as_json)


@app.command()
def algorithms(
    name: Annotated[
        str | None, typer.Argument(help="An algorithm: list its options and defaults.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List the search algorithms, or one algorithm's options."""
    from hwnas.registry import ALGORITHMS
    from hwnas.search.spec import algorithm_options

    if name is None:
        rows = [(n, ALGORITHMS.describe(n)) for n in ALGORITHMS.names()]
        _listing("algorithms", rows, as_json)
        return
    opts = algorithm_options(name)
    if as_json:
        _print_json(opts)
        return
    if opts is None:
        out_console.print(f"{name} passes any option through to its library")
        return
    if not opts:
        out_console.print(f"{name} takes no options (--seed sets its random draws)")
        return
    table = Table(title=f"options of {name} ({name}[key=value,...] or --option key=value)")
    for col in ("option", "type", "default", "what it does"):
        table.add_column(col, overflow="fold")
    for o in opts:
        table.add_row(o["name"], o["type"], json.dumps(o["default"], default=str), o["help"])
    out_console.print(table)


@app.command()
def devices(
    benchmark: Annotated[str, typer.Option(help="Benchmark whose devices to list.")] = "nb201",
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """List the devices with measured latency in a benchmark or measured latency set.

    A benchmark whose costs are computed, not looked up, has none (a note says so)."""
    lat_set = _latency_set(benchmark)
    if lat_set is not None:
        devs = lat_set.devices(data_dir)
    else:
        from hwnas.bench import BENCHMARKS

        devs = BENCHMARKS.get(benchmark).available_devices(data_dir)
    if devs is None:
        devs = []
        console.print(
            f"note: benchmark '{benchmark}' has no devices: its costs are computed, predicted "
            "or measured here, not looked up per device (see 'hwnas benchmarks')"
        )
    if as_json:
        _print_json(devs)
    elif devs:
        out_console.print("\n".join(devs))


def _latency_set(name: str) -> Any:
    """The measured latency set of that name when no benchmark has it, else None; a name
    that is neither is one ``unknown benchmark`` line naming both kinds."""
    from hwnas.bench import BENCHMARKS
    from hwnas.predict.latency_sets import LATENCY_SETS

    if name in BENCHMARKS:
        return None
    if name in LATENCY_SETS:
        return LATENCY_SETS.get(name)
    raise HwnasError(
        f"unknown benchmark '{name}' (known: {', '.join(BENCHMARKS.names())}; "
        f"measured latency sets: {', '.join(LATENCY_SETS.names())})"
    )


# ---- predictors ------------------------------------------------------------------------
@predictors_app.command("list")
def predictors_list(as_json: JsonFlag = False) -> None:
    """List the predictor models."""
    from hwnas.registry import PREDICTORS

    _listing("predictors", [(n, PREDICTORS.describe(n)) for n in PREDICTORS.names()], as_json)


@predictors_app.command("evaluate")
def predictors_evaluate(
    benchmark: Annotated[
        str,
        typer.Option(
            help="Benchmark, or measured latency set (fbnet, ofa-mbv3-gpu, "
            "ofa-mbv3-gpu-allres, hat: latency only), holding the data; "
            "'hwnas devices --benchmark NAME' lists its devices."
        ),
    ] = "nb201",
    target: Annotated[
        str | None,
        typer.Option(
            help="'accuracy', 'latency:DEVICE' or another objective (default: the "
            "benchmark's latency on its default device, nb201: latency:pixel3; else its "
            "first cost, e.g. ofa-resnet50's mflops)."
        ),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="Accuracy dataset (nb201 default: cifar10).")
    ] = None,
    models: Annotated[
        str, typer.Option(help="Comma-separated predictor names.")
    ] = "ridge,svr,stacked,gp,rbf,mlp,cart",
    sizes: Annotated[str, typer.Option(help="Training-set sizes.")] = "25,50,100,200,500,1000",
    trials: Annotated[int, typer.Option(min=1)] = 5,
    test_size: Annotated[int, typer.Option(min=10)] = 1000,
    seed: Annotated[int, typer.Option(min=0, help="Random seed.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Directory for CSV and plot.")] = None,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Sample efficiency of predictors: MAPE, Kendall tau and Spearman rho.

    Per model and training-set size, on a fixed held-out test set, over trials."""
    from hwnas.predict.evaluate import (
        plot_sample_efficiency,
        sample_efficiency,
        summarize,
        write_csv,
    )

    with _no_bench_options("predictors evaluate"):
        target = target or _default_target(benchmark, data_dir)
        X, y, views, view_names = _predictor_data(benchmark, target, dataset, data_dir)
        if not target.startswith("latency"):  # accuracy: say on which dataset (default too)
            dataset = dataset or _benchmark_options(benchmark, None, None).get("dataset")
    what = f"{target} on {benchmark}" + (f" ({dataset})" if dataset else "")
    from hwnas.cli_measure import int_list

    model_list, size_list = _csv(models), int_list(sizes, "--sizes")
    if not model_list or not size_list:
        raise HwnasError("--models and --sizes each need at least one entry")
    n_fits = len(model_list) * len(size_list) * trials
    done = [0]
    with progress_bar("fitting") as update:

        def tick(*_: Any) -> None:
            done[0] += 1
            update(done[0], n_fits)

        rows = sample_efficiency(
            X, y, model_list, size_list, test_size, trials, seed, progress=tick, views=views
        )
    summary = summarize(rows)
    if view_names:
        for r in summary:
            if "view" in r:
                r["view_name"] = view_names[r["view"]]
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_csv(rows, out / "trials.csv")
        write_csv(summary, out / "summary.csv")
        plot_sample_efficiency(rows, out / "kendall_tau.png", metric="kendall_tau", what=what)
        plot_sample_efficiency(rows, out / "mape.png", metric="mape", what=what)
    note = _mape_note(y)
    where = (
        f"results in {out}/ (summary.csv, trials.csv, kendall_tau.png, mape.png)"
        if out is not None
        else None
    )
    if as_json:
        _print_json(summary)
        if note:
            console.print(note)
        if where:  # stdout stays one JSON document
            console.print(escape(where), highlight=False, soft_wrap=True)
        return
    table = Table(
        title=f"{what}: median over {trials} trials, test size {test_size}",
        caption="features: the view of the architecture the cross-validation chose most "
        "often (its columns of all the features)"
        if views is not None and len(views) > 1
        else None,
    )
    cols = ["model", "size", "kendall_tau", "spearman_rho", "mape"]
    if views is not None and len(views) > 1:
        cols.append("features")  # the view the CV picked most often
    for col in cols:
        table.add_column(col, justify="right")
    for r in summary:
        cells = [
            r["model"],
            str(r["size"]),
            f"{r['kendall_tau_median']:.3f}",
            f"{r['spearman_rho_median']:.3f}",
            f"{r['mape_median']:.2f}",
        ]
        if "features" in cols:
            v = views[r["view"]]
            name = view_names[r["view"]] if view_names else f"#{r['view']}"
            cells.append(f"{name} ({X.shape[1] if v is None else len(v)} of {X.shape[1]})")
        table.add_row(*cells)
    out_console.print(table)
    if note:
        console.print(note)
    if where:
        out_console.print(where, soft_wrap=True)


def _mape_note(y: Any) -> str | None:
    """A warning when values near zero make the MAPE meaningless (NB201's pixel3 has cells
    measured at 0.003 ms: a 0.1 ms error there is 3,000 %)."""
    import numpy as np

    y = np.abs(np.asarray(y, dtype=np.float64))
    small = y < 0.01 * np.median(y)
    if not small.any():
        return None
    return (
        f"note: {int(small.sum())} of the {len(y)} target values are under 1 % of their "
        f"median (smallest {y.min():.3g}): their relative errors dominate the MAPE; "
        "read Kendall tau and Spearman rho"
    )


@contextlib.contextmanager
def _no_bench_options(command: str) -> Iterator[None]:
    """A benchmark's error that points to --bench-option, in a command that takes none,
    says so (the advice would lead nowhere)."""
    try:
        yield
    except HwnasError as e:
        text = str(e)
        if "--bench-option" in text or "needs the option" in text:
            raise HwnasError(
                f"{text}; 'hwnas {command}' takes no benchmark options ('hwnas search "
                "--bench-option KEY=VALUE' does)"
            ) from None
        raise


def _default_target(benchmark: str, data_dir: str | None) -> str:
    """What ``predictors evaluate`` studies when --target is left out: latency on the
    benchmark's (or latency set's) default or first device, else its first cost."""
    from hwnas.bench import BENCHMARKS, get_benchmark

    lat_set = _latency_set(benchmark)
    if lat_set is not None:
        return f"latency:{lat_set.devices(data_dir)[0]}"
    known = BENCHMARKS.get(benchmark).available_devices(data_dir)
    if known is not None and len(known) > 1:
        default = BENCHMARKS.get(benchmark).DEFAULT_OPTIONS.get("devices") or known[0]
        return f"latency:{default}"
    bench = get_benchmark(benchmark, data_dir=data_dir)
    costs = [o.name for o in bench.objectives if o.kind == "cost"]
    return costs[0] if costs else bench.objectives[0].name


def _predictor_data(
    benchmark: str, target: str, dataset: str | None, data_dir: str | None
) -> tuple[Any, Any, Any, list[str] | None]:
    """Features, target values and (cost targets) the feature views LINAS chooses among,
    with their names."""
    from hwnas.bench import BENCHMARKS, get_benchmark

    if _latency_set(benchmark) is not None:
        from hwnas.predict.latency_sets import get_latency_set, latency_set_data

        X, y, views = latency_set_data(benchmark, target, dataset, data_dir)
        space = getattr(get_latency_set(benchmark), "space", None)
        names = space.predictor_view_names("cost") if views and space is not None else None
        return X, y, views, names

    if "," in target:
        raise HwnasError(f"target '{target}': one target at a time (e.g. latency:DEVICE)")
    kind, colon, device = target.partition(":")
    if colon and not device:
        raise HwnasError(f"target '{target}' names no device after ':' (latency:DEVICE)")
    if device and kind != "latency":
        raise HwnasError(
            f"target '{target}': only latency takes a device (accuracy, latency:DEVICE)"
        )
    known = BENCHMARKS.get(benchmark).available_devices(data_dir)
    if device and known is not None and device not in known:
        # said here: the benchmark's own message names search's flags (--bench-option)
        raise HwnasError(
            f"unknown device '{device}' for {benchmark} (its devices: {', '.join(known)}; "
            "'hwnas devices --benchmark NAME' lists them)"
        )
    # a benchmark with a choice of devices (NB201: 27) is told which; OFA has one
    if kind == "latency" and not device and known is not None and len(known) > 1:
        raise HwnasError("target 'latency' needs a device: --target latency:DEVICE")
    if device and known is None:
        raise HwnasError(
            f"benchmark '{benchmark}' has no devices: --target is one of its objectives, "
            "without ':DEVICE' ('hwnas benchmarks' lists them)"
        )
    opts = _benchmark_options(benchmark, dataset, device or None)
    bench = get_benchmark(benchmark, data_dir=data_dir, **opts)
    names = [o.name for o in bench.objectives]
    if kind not in names:
        dev = "latency:DEVICE" if known is not None and len(known) > 1 else "latency"
        expected = ", ".join(dev if n == "latency" else n for n in names)
        raise HwnasError(f"unknown target '{target}' for {benchmark} (its objectives: {expected})")
    table = bench.table()
    if table is not None:
        X, values = table
    else:
        import numpy as np

        X = bench.space.sample(5000, np.random.default_rng(0))
        values = bench.evaluate(X)
    # the features LINAS fits on: what a cell computes for quality, what it runs for costs
    i = names.index(kind)
    okind = bench.objectives[i].kind
    return (
        bench.space.predictor_features(X, okind),
        values[:, i],
        bench.space.predictor_views(okind),
        bench.space.predictor_view_names(okind),
    )


# ---- bench -----------------------------------------------------------------------------
@bench_app.command("search-efficiency")
def bench_search_efficiency(
    benchmark: Annotated[str, typer.Option()] = "nb201",
    devices: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated devices (nb201 default: pixel3,raspi4,fpga,2080ti_1; "
            "a benchmark with one device or none needs no flag)."
        ),
    ] = None,
    algorithms: Annotated[
        str,
        typer.Option(
            help="Comma-separated algorithms; options in brackets compare variants, "
            "e.g. 'linas,linas\\[class_mean=false]'."  # \\[: not rich markup
        ),
    ] = "random,nsga2,linas",
    evaluations: Annotated[int, typer.Option(min=1)] = 200,
    seeds: Annotated[int, typer.Option(min=1)] = 10,
    first_seed: Annotated[int, typer.Option(min=0, help="Seeds run from this one up.")] = 0,
    dataset: Annotated[
        str | None, typer.Option(help="Accuracy dataset (nb201 default: cifar10).")
    ] = None,
    jobs: Annotated[int, typer.Option(min=1, help="Parallel worker processes.")] = 1,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("runs/search-efficiency"),
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Reuse the runs OUT/records.jsonl already holds (a killed study goes on).",
        ),
    ] = False,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Median HV fraction, front recall and IGD vs evaluations, per device and algorithm.

    Median over seeds with min/max bands; on a benchmark without a full table (ofa-mbv3,
    ofa-resnet50) the hypervolume at its fixed reference point. CSV and plots in OUT.
    Each finished run is stored in OUT/records.jsonl at once, so a killed study continues
    with --resume."""
    from hwnas.search.efficiency import (
        RECORDS_NAME,
        checkpoints,
        efficiency_table,
        evaluations_to_reach,
        paired_cell,
        paired_comparison,
        search_efficiency,
        study_dataset,
        study_devices,
        study_metrics,
        write_efficiency,
    )
    from hwnas.search.spec import split_algorithms

    if devices is not None and not _csv(devices):
        raise HwnasError("--devices is empty (leave it out for the benchmark's default)")
    algs = split_algorithms(algorithms)
    with _no_bench_options("bench search-efficiency"):
        devs = study_devices(benchmark, _csv(devices) if devices else None, data_dir)
    n = len(algs) * len(devs) * seeds
    done = [0]
    for name in ("results.sqlite", "summary.json"):  # a study's files would mix with them
        if (out / name).is_file():
            raise HwnasError(
                f"{out} holds a search or profile ({name}), not a search-efficiency study: "
                "choose another --out"
            )
    if resume and (out / RECORDS_NAME).is_file():
        from hwnas.search.efficiency import finished_runs

        console.print(
            f"note: {len(finished_runs(out / RECORDS_NAME))} finished runs in "
            f"{escape(str(out / RECORDS_NAME))}; those this study asks for are reused",
            highlight=False,
            soft_wrap=True,
        )
    if not resume and (out / RECORDS_NAME).is_file():
        console.print(
            f"note: starting {escape(str(out / RECORDS_NAME))} afresh; --resume reuses the "
            "runs it holds",
            highlight=False,
            soft_wrap=True,
        )
    hint = f"the finished runs are in {out / RECORDS_NAME}: the same command with --resume goes on"
    with (
        _no_bench_options("bench search-efficiency"),
        on_interrupt(lambda: hint),
        progress_bar("searches") as update,
    ):

        def tick(_: dict[str, Any]) -> None:
            done[0] += 1
            update(done[0], n)

        results = search_efficiency(
            benchmark,
            devs,
            algs,
            evaluations,
            seeds,
            dataset,
            data_dir,
            jobs,
            progress=tick,
            first_seed=first_seed,
            records=out / RECORDS_NAME,
            resume=resume,
        )
    what = " ".join(x for x in (benchmark, study_dataset(benchmark, dataset)) if x)
    write_efficiency(results, out, title=f"{what}, {seeds} seeds")
    metrics = study_metrics(results)
    table_rows = efficiency_table(results, at=checkpoints(evaluations))
    paired = paired_comparison(results, at=checkpoints(evaluations)) if len(algs) > 1 else []
    reached = evaluations_to_reach(results, algs[0]) if len(algs) > 1 else []
    if as_json:  # the three tables the text prints
        _print_json({"summary": table_rows, "paired": paired, "reach": reached})
        return

    def cell(r: dict[str, Any], m: str) -> str:
        if m == "hypervolume":  # raw units: significant digits, not decimals
            return f"{r[m + '_median']:.6g} [{r[m + '_min']:.6g}, {r[m + '_max']:.6g}]"
        return f"{r[m + '_median']:.4f} [{r[m + '_min']:.3f}, {r[m + '_max']:.3f}]"

    _print_study_table(
        f"search efficiency, median [min, max] over {seeds} seeds",
        table_rows,
        metrics,
        lambda r: [cell(r, m) for m in metrics],
    )
    if len(algs) > 1:
        digits = {"front_recall": 3, "hypervolume": 1}
        _print_study_table(
            f"each against {algs[0]}, paired by seed: mean difference "
            "(seeds ahead/behind, Wilcoxon p)",
            paired,
            metrics,
            lambda r: [paired_cell(r, m, digits.get(m, 4)) for m in metrics],
        )
        reach = Table(
            title=f"evaluations to reach {algs[0]}'s final {metrics[0]} (its median over "
            "seeds: the level)"
        )
        for col in ("device", "algorithm", "level", "evaluations", "seeds reaching it"):
            reach.add_column(col, justify="right", overflow="fold")
        for r in reached:
            n = r["evaluations_median"]
            own = r["algorithm"] == algs[0]  # about half its seeds reach their median
            reach.add_row(
                r["device"] or "-",
                r["algorithm"],
                f"{r['level']:.6g}",
                "(sets the level)"
                if own
                else f"{n:g}"
                if n is not None
                else "never"
                if not r["reached"]
                else f"median never ({r['seeds'] - r['reached']} of {r['seeds']} seeds never)",
                f"{r['reached']}/{r['seeds']}",
            )
        out_console.print(reach)
    out_console.print(f"CSV and plots in {out}/")


def _print_study_table(
    title: str,
    rows: list[dict[str, Any]],
    metrics: Sequence[str],
    cells: Callable[[dict[str, Any]], list[str]],
) -> None:
    """A search-efficiency table: device, algorithm, evaluations, then one cell per metric."""
    table = Table(title=title)
    for col in ("device", "algorithm", "evals", *metrics):
        table.add_column(col, justify="right", overflow="fold")
    for r in rows:
        table.add_row(r["device"] or "-", r["algorithm"], str(r["evaluations"]), *cells(r))
    out_console.print(table)


# ---- compare ---------------------------------------------------------------------------
@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Search directories (hwnas search --out).")],
    out: Annotated[
        Path, typer.Option(help="Plot of the fronts found (a directory: DIR/compare.png).")
    ] = Path("runs/compare.png"),
    as_json: JsonFlag = False,
) -> None:
    """Finished searches side by side: quality per search and their fronts in one plot."""
    from hwnas.report.compare import compare_rows, load_summaries, plot_compare

    summaries = load_summaries(runs)
    rows = compare_rows(summaries)
    plot = plot_compare(summaries, out)
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"searches compared (fronts in {plot})")
    cols = ("run", "algorithm", "seed", "on", "evals", "front", "HV fraction", "recall")
    for col in (*cols, "HV*"):
        table.add_column(col, justify="right", overflow="fold")
    for r in rows:
        known = r["hv_fraction"] is not None
        table.add_row(
            r["run_dir"],
            r["algorithm"],
            str(r["seed"]),
            r["on"],
            str(r["evaluations"]),
            str(r["front_size"]),
            f"{r['hv_fraction']:.4f}" if known else "-",
            f"{r['front_recall']:.3f}" if known else "-",
            f"{r['hypervolume_common']:.5g}",
        )
    out_console.print(table)
    if rows and rows[0]["common_reference"]:
        ref = ", ".join(f"{v:.4g}" for v in rows[0]["common_reference"])
        out_console.print(
            f"HV*: each front's hypervolume at one reference point ({ref}: the fronts' worst "
            "corner plus 10 % of their range), so runs whose own references differ compare",
            soft_wrap=True,
        )


# ---- data ------------------------------------------------------------------------------
@data_app.command("list")
def data_list(
    data_dir: DataDir = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Check each present file's checksum (or content) as fetch does; exit 1 "
            "if one fails.",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """The data sets hwnas knows, their files and whether they are present."""
    from hwnas.config import data_dir as resolve_data_dir
    from hwnas.fetch import data_status

    rows = data_status(data_dir, verify=verify)
    if as_json:
        _print_json(rows)
        if any(r.get("verified") is False for r in rows):
            raise typer.Exit(1)  # as without --json: a script's check fails
        return
    where = resolve_data_dir(data_dir)
    state = "" if where.is_dir() else (" (a file!)" if where.exists() else " (missing)")
    table = Table(title=f"data sets in {escape(str(where))}{state}")
    for col in ("name", "file", "present", "source"):
        # paths are what one copies: folded onto more lines, never cut with an ellipsis
        table.add_column(col, overflow="fold" if col in ("file", "source") else "ellipsis")
    for r in rows:
        present = "yes" if r["present"] else "no"
        if r.get("verified") is not None:
            present += ", verified" if r["verified"] else ", FAILS its check: hwnas data fetch"
        table.add_row(r["name"], r["file"], present, r["source"])
    out_console.print(table)
    bad = [r["file"] for r in rows if r.get("verified") is False]
    if bad:
        console.print(
            f"[yellow]{len(bad)} file(s) fail their check (damaged, or another version): "
            f"{', '.join(bad)}[/yellow]"
        )
        raise typer.Exit(1)  # a script's check fails


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="Data set name (see 'hwnas data list').")],
    data_dir: DataDir = None,
    force: Annotated[bool, typer.Option(help="Download again even if present.")] = False,
) -> None:
    """Download a data set from its upstream source into the data dir, verifying checksums."""
    from hwnas.fetch import fetch

    for path in fetch(name, data_dir, force=force, log=lambda m: console.print(m)):
        out_console.print(str(path))


def _register_extensions() -> None:
    """Commands of the measurement and training stages live in their own modules."""
    import importlib

    for mod in (
        "hwnas.cli_measure",
        "hwnas.cli_train",
        "hwnas.cli_profile",
        "hwnas.cli_dnas",
        "hwnas.cli_dtrain",
        "hwnas.cli_pipeline",
    ):
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name == mod:
                continue
            raise
        module.register(app)


_register_extensions()


def _show_warning(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """Our own warnings (``UserWarning``: a skipped training size, a budget no cell fits)
    as one ``warning:`` line, without Python's source-file and code lines; other
    libraries' warnings keep Python's form."""
    if category is UserWarning:
        console.print(
            f"[yellow]warning:[/yellow] {escape(str(message))}", highlight=False, soft_wrap=True
        )
    else:
        _python_showwarning(message, category, *args, **kwargs)


_python_showwarning = warnings.showwarning


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; user errors, bad flags included, become one ``error:``
    line on stderr and exit code 2."""
    warnings.showwarning = _show_warning
    try:
        code = app(args=argv, standalone_mode=False)
    except DeviceUnavailableError as exc:  # not the input: the same command again goes on
        _exit_with_error(str(exc), EXIT_DEVICE)
    except HwnasError as exc:
        _exit_with_error(str(exc), 2)
    except typer.Abort:
        console.print("aborted")
        sys.exit(1)
    except OSError as exc:
        # a path the user gave that cannot be read or written (an --out that is a file,
        # a read-only dir or file system, a name too long, a symlink loop) or a full
        # disk: one line; other OS errors keep their traceback
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        ours = isinstance(exc, _PATH_ERRORS) or exc.errno in _PATH_ERRNOS or full
        if not ours or (exc.filename is None and not full):
            raise
        where = f"'{exc.filename}'" + (f" -> '{exc.filename2}'" if exc.filename2 else "")
        text = f"{exc.strerror or exc}: {where}" if exc.filename else str(exc.strerror or exc)
        _exit_with_error(text + ("; free some space and run it again" if full else ""), 2)
    except sqlite3.OperationalError as exc:
        # the results store on a full or read-only disk: what happened, not a traceback
        if not any(t in str(exc) for t in ("disk is full", "readonly database", "disk I/O")):
            raise
        _exit_with_error(f"results store: {exc}", 2)
    except Exception as exc:
        # typer's (click's) usage errors: a missing argument, an unknown option, a value
        # out of range; recognised by shape, as typer vendors click privately
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":
            sys.exit(exc.exit_code)  # the help is already printed
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        _exit_with_error(f"{exc.format_message()}{hint}", exc.exit_code)
    if code == 130:  # commands that can continue print their own hint (SystemExit 130)
        keyboard_interrupt_handled()  # exit 130, not death by SIGINT (python -m)
        console.print("interrupted")
    if isinstance(code, int) and code:
        sys.exit(code)


_PATH_ERRORS = (
    FileExistsError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)
_PATH_ERRNOS = (errno.EROFS, errno.ENAMETOOLONG, errno.ELOOP)


def _exit_with_error(message: str, code: int) -> None:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
