"""Run a search end to end: config -> evaluator -> algorithm -> store -> outputs."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hwnas.bench import get_benchmark
from hwnas.config import validate_model
from hwnas.errors import HwnasError
from hwnas.process import out_dir_lock, sigterm_ends
from hwnas.search.pareto import hypervolume, reference_point
from hwnas.search.problem import Constraint, SearchProblem
from hwnas.search.spec import algorithm_label, build_algorithm, resolve_algorithm
from hwnas.store.sqlite import ResultsStore, arch_text, json_default

STORE_NAME = "results.sqlite"


class SearchConfig(BaseModel):
    """Everything that defines a search run (stored with the run, used to resume it)."""

    model_config = ConfigDict(extra="forbid")

    benchmark: str = Field("nb201", description="a registered benchmark ('hwnas benchmarks')")
    benchmark_options: dict[str, Any] = Field(
        default_factory=dict, description="the benchmark's options, e.g. {'devices': 'pixel3'}"
    )
    algorithm: str = Field("linas", description="an algorithm, options in brackets allowed")
    algorithm_options: dict[str, Any] = Field(
        default_factory=dict, description="the algorithm's options ('hwnas algorithms NAME')"
    )
    evaluations: int = Field(200, ge=1, strict=True, description="distinct architectures")
    # numpy seeds are >= 0; SQLite int64
    seed: int = Field(0, ge=0, lt=2**63, strict=True, description="the algorithm's seed")
    constraints: list[str] = Field(
        default_factory=list, description="hard constraints, e.g. 'latency<=5', 'params<=2e6'"
    )
    data_dir: str | None = Field(None, description="the data folder (else HWNAS_DATA_DIR)")
    #: architecture keys evaluated first (a warm start, e.g. the front of a search for
    #: another device, or of an MFLOPs search), counted in the budget
    warm_start: list[str] = Field(default_factory=list)

    @field_validator("data_dir", mode="before")
    @classmethod
    def _path_as_text(cls, value: Any) -> Any:
        """A ``Path`` is taken as ``out`` is (stored as text)."""
        return os.fspath(value) if isinstance(value, os.PathLike) else value


def _build(config: SearchConfig) -> tuple[Any, Any, list[Constraint]]:
    opts = dict(config.benchmark_options)
    if config.data_dir is not None:
        opts["data_dir"] = config.data_dir
    evaluator = get_benchmark(config.benchmark, **opts)
    algorithm = build_algorithm(config.algorithm, config.seed, config.algorithm_options)
    constraints = [Constraint.parse(c) for c in config.constraints]
    return evaluator, algorithm, constraints


def run_search(
    config: SearchConfig | dict[str, Any],
    out: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    resume: bool = False,
    retry_failed: bool = False,
) -> dict[str, Any]:
    """Run (or, with ``resume``, continue) a search; returns the summary.

    ``config`` takes :class:`SearchConfig`'s fields (benchmark, benchmark_options,
    algorithm, algorithm_options, evaluations, seed, constraints, data_dir, warm_start);
    the summary holds evaluations, failed, hypervolume, the exact-front measures where
    the benchmark knows its table (hv_fraction, front_recall, igd, their histories),
    pareto, wall_time_s and search_overhead_s (docs/API.md shows them in use).
    With ``out``, everything lands in that directory: ``results.sqlite``,
    ``evaluations.csv``, ``pareto.csv``, ``pareto.png``, ``progress.png`` (quality per
    evaluation) and ``summary.json``. ``retry_failed`` (with ``resume``) evaluates the
    run's stored failures again first, each result in place of its failure.
    """
    if retry_failed and not resume:
        raise HwnasError("retrying failed evaluations needs a stored search to resume")
    if resume and out is None:
        raise HwnasError("resume needs the run directory (out) holding the search")
    if resume and not (Path(out) / STORE_NAME).is_file():
        raise HwnasError(f"no results store at '{Path(out) / STORE_NAME}' to resume")
    earlier = out is not None and not resume and _check_search_out(Path(out))
    if not isinstance(config, dict | SearchConfig):
        raise HwnasError(
            f"a search config is a dict of SearchConfig's fields (or a SearchConfig), not "
            f"{type(config).__name__}"
        )
    if isinstance(config, dict):
        if isinstance(config.get("warm_start"), str | Path):  # a directory or CSV file
            config = {**config, "warm_start": warm_start_keys(config["warm_start"])}
        config = validate_model(SearchConfig, config, "search")
    if resume:
        _check_resumed_config(Path(out), config)
    t0 = time.perf_counter()
    evaluator, algorithm, constraints = _build(config)
    # check everything before a run is stored: a bad constraint or an algorithm that
    # cannot take this many objectives must not leave a run behind in ``out``
    problem = SearchProblem(
        evaluator, config.evaluations, constraints=constraints, on_evaluation=progress
    )
    algorithm.check(problem)
    if earlier:  # said once nothing can refuse the search: a refused one stores nothing
        warnings.warn(
            f"{out} holds an earlier search: this one is stored beside it in {STORE_NAME}, "
            "and its CSVs, plots and summary replace the old ones (resume=True, or "
            f"'hwnas search --resume {out}', continues the latest stored search)",
            stacklevel=2,
        )
    if resume and out is not None:
        for described in _segment_details(Path(out))[:1]:  # how the run began measuring
            evaluator.restore(described)
    more = resume and out is not None and _stored_distinct(Path(out)) < config.evaluations
    if not resume or more or retry_failed:
        evaluator.prepare()  # e.g. reach the device agent; nothing to do: no agent needed
    if config.warm_start:
        if not hasattr(algorithm, "initial"):  # not a SearchAlgorithm: cannot start from it
            raise HwnasError(f"algorithm '{config.algorithm}' takes no warm start")
        algorithm.initial = _warm_vectors(problem, config.warm_start)
    with contextlib.ExitStack() as stack:
        if out is not None:  # one search at a time writes there
            stack.enter_context(out_dir_lock(out, "search"))
        summary = _run(config, algorithm, problem, out, resume, t0, retry_failed)
    if summary["constraints"] and not summary["pareto"]:
        warnings.warn(
            f"{NOTHING_FEASIBLE} {' and '.join(summary['constraints'])} (of "
            f"{summary['evaluations']} evaluated): loosen the constraint or evaluate more",
            stacklevel=2,
        )
    return summary


#: the start of the warning of a search whose evaluations all broke a constraint
NOTHING_FEASIBLE = "no evaluated architecture satisfies"


def _check_search_out(out: Path) -> bool:
    """A search writes summary.json, CSVs and plots into ``out``: a folder holding another
    kind of run (a profile, whose summary.json would be replaced and which could not be
    grown any more) or such files of something else is refused. True where ``out`` holds
    an earlier search (the new one goes beside it)."""
    if (out / STORE_NAME).is_file():
        try:
            with ResultsStore(out / STORE_NAME, readonly=True) as store:
                kinds = {r["kind"] for r in store.runs()}
            others = kinds - {"search"}
        except (HwnasError, sqlite3.Error):
            return False  # not a store at all: opening it for the search says so
        if others:
            raise HwnasError(
                f"{out} holds a {', '.join(sorted(others))} run in {STORE_NAME}, not a "
                "search; search into another --out"
            )
        return "search" in kinds
    found = [n for n in ("summary.json", "evaluations.csv", "pareto.csv") if (out / n).exists()]
    if found:
        raise HwnasError(
            f"{out} holds {', '.join(found)} but no {STORE_NAME}: not a search's folder (or "
            "one whose store was removed); search into another --out, or remove them"
        )
    return False


def _check_resumed_config(out: Path, config: SearchConfig) -> None:
    """Resuming goes on with the stored search: a config that differs in more than its
    budget and data folder (another device, algorithm or seed) would mix two searches in
    one run, so it is refused (``resume_search`` takes the stored config itself)."""
    with ResultsStore(out / STORE_NAME, readonly=True) as store:
        stored_raw = store.latest_run("search")["config"]
    with warnings.catch_warnings():  # retired options: resume_search warns of them
        warnings.simplefilter("ignore")
        stored = _drop_retired_options(SearchConfig(**stored_raw))

    def plain(c: SearchConfig) -> dict[str, Any]:
        """The config as it searches: the data folder (top level or option) left out,
        options in brackets or apart alike, constraints parsed (spaces do not count)."""
        dumped = c.model_dump(exclude={"evaluations", "data_dir", "algorithm_options"})
        dumped["benchmark_options"].pop("data_dir", None)
        name, _, options = resolve_algorithm(c.algorithm, c.algorithm_options)
        dumped["algorithm"] = algorithm_label(name, dict(sorted(options.items())))
        dumped["constraints"] = [str(Constraint.parse(k)) for k in c.constraints]
        return json.loads(json.dumps(dumped, default=json_default, sort_keys=True))

    was, now = plain(stored), plain(config)
    differ = [k for k in was if was[k] != now.get(k)]
    if differ:
        shown = "; ".join(f"{k}: stored {was[k]!r}, given {now.get(k)!r}" for k in differ)
        raise HwnasError(
            f"the search in '{out}' was run with another config ({shown}): resume it with "
            "its own (resume_search, or hwnas search --resume), or search into another out"
        )


def _segment_details(out: Path) -> list[dict[str, Any]]:
    """What the processes of the latest search in ``out`` recorded of their evaluator
    (``describe()``), oldest first."""
    if not (out / STORE_NAME).is_file():
        return []
    with ResultsStore(out / STORE_NAME) as store:
        return store.segment_details(store.latest_run("search")["run_id"])


def _stored_distinct(out: Path) -> int:
    """Distinct architectures the latest search in ``out`` has evaluated (0: none yet)."""
    if not (out / STORE_NAME).is_file():
        return 0
    with ResultsStore(out / STORE_NAME) as store:
        run = store.latest_run("search")
        return len({r.arch_key for r in store.evaluations(run["run_id"])})


def _run(
    config: SearchConfig,
    algorithm: Any,
    problem: SearchProblem,
    out: str | Path | None,
    resume: bool,
    t0: float,
    retry_failed: bool = False,
) -> dict[str, Any]:
    """The checked search, run and (with ``out``) stored: see :func:`run_search`."""
    store = run_id = None
    segment = 0
    earlier_wall = 0.0  # a resumed run's earlier segments (processes)
    earlier: list[dict[str, Any]] = []  # and how they took the objectives
    stored_summary: dict[str, Any] = {}
    details = json.loads(json.dumps(problem.evaluator.describe(), default=str))
    if out is not None:
        out = Path(out)
        store = ResultsStore(out / STORE_NAME)
        if resume:
            run = store.latest_run("search")
            run_id = run["run_id"]
            stored_summary = run["summary"] or {}
            earlier_wall, n_earlier = store.segments_wall_s(run_id)
            if not n_earlier:  # stored before segments were: its last summary's
                earlier_wall = float(stored_summary.get("wall_time_s") or 0.0)
            earlier = store.segment_details(run_id)
            # a raised budget is stored only now, once every check has passed
            if run["config"].get("evaluations") != config.evaluations:
                raised = {**run["config"], "evaluations": config.evaluations}
                store.update_run_config(run_id, raised)
            store.mark_resumed(run_id)
        else:
            run_id = store.create_run(config.model_dump(), config.seed, kind="search")
        _check_same_machine(details, earlier, out)
        # from when this process began the search (its checks and set-up included)
        began = time.time() - (time.perf_counter() - t0)
        segment = store.begin_segment(run_id, details, started=began)
        problem.attach_store(store, run_id)
    replayed = problem.n_stored
    try:
        # SIGTERM ends a stored search as Ctrl-C does (hwnas.process.Terminated, 143)
        with sigterm_ends() if store is not None else contextlib.nullcontext():
            if retry_failed:  # a device still failing stops here as a search would
                problem.retry_failed()
            algorithm.run(problem)
    except BaseException:  # Ctrl-C, SIGTERM, or a SetupError (a device agent gone): resumable
        if store is not None:
            store.end_segment(segment)
            store.close()
        raise
    problem.finish_replay()
    wall = time.perf_counter() - t0 + earlier_wall
    if not problem.exhausted:
        warnings.warn(
            f"the search stopped at {problem.n_evaluated} of {problem.budget} evaluations: "
            f"'{config.algorithm}' kept proposing only architectures it had evaluated "
            f"(converged); a larger population or another algorithm may find more",
            stacklevel=2,
        )
    summary = summarize(problem, config, wall)
    untouched = not problem.n_new and not problem.n_retried
    if resume and untouched and stored_summary.get("evaluations") == problem.n_evaluated:
        # nothing evaluated since the run finished: its times stand (this process's look
        # at it is no part of the search), and where it measured (an agent not asked)
        for key in ("wall_time_s", "evaluation_time_s", "search_overhead_s"):
            if key in stored_summary:
                summary[key] = stored_summary[key]
        if stored_summary.get("benchmark_details"):
            summary["benchmark_details"] = stored_summary["benchmark_details"]
        if store is not None:
            store.drop_segment(segment)
        # where the last run that evaluated anything took up the search (not this look)
        summary["resumed_from"] = stored_summary.get("resumed_from")
    else:
        summary["resumed_from"] = replayed if resume else None
    summary["evaluated_now"] = problem.n_new + problem.n_retried  # by this call
    if retry_failed:
        summary["retried"] = problem.n_retried  # stored failures evaluated again
    # distinct architectures the search started from (keys of one network counted once)
    initial = getattr(algorithm, "initial", None)
    summary["warm_start"] = 0 if initial is None else len(initial)
    if hasattr(algorithm, "iterations"):
        summary["iterations"] = algorithm.iterations
    report = getattr(algorithm, "report", None)  # what an algorithm adds (mnas: its target)
    if callable(report):
        summary.update(report(problem))
    if out is not None and store is not None and run_id is not None:
        store.end_segment(segment)  # (none left when dropped above)
        write_outputs(problem, summary, Path(out), store, run_id)
        store.finish_run(run_id, {k: v for k, v in summary.items() if k != "hv_history"})
        store.close()
    return summary


def _check_same_machine(details: dict[str, Any], earlier: list[dict[str, Any]], out: Path) -> None:
    """Warn when a resumed search measures latency on another machine than its earlier
    segments did: its front would mix two machines' latencies."""
    from hwnas.bench.measured import measured_on

    now = measured_on(details)
    before = [h for h in map(measured_on, earlier) if h is not None]
    if now is None or not before or before[0] == now:
        return

    def show(h: dict[str, Any]) -> str:
        return f"{h.get('hostname')} ({h.get('cpu_model')}, {h.get('logical_cores')} cores)"

    warnings.warn(
        f"the search in {out} measured latency on {show(before[0])} and now measures it on "
        f"{show(now)}: its evaluations mix two machines' latencies (start a new search "
        "there to keep one)",
        stacklevel=3,
    )


def _warm_vectors(problem: SearchProblem, keys: list[str]) -> np.ndarray:
    """The warm start's distinct architectures, checked against the space and budget."""
    return warm_vectors(problem.space, keys, problem.budget)


def warm_vectors(space: Any, keys: list[str], budget: int) -> np.ndarray:
    """The distinct architectures of ``space`` that ``keys`` name (canonical vectors);
    a key of another space, or more than ``budget`` of them, is an error."""
    vectors = []
    for key in keys:
        try:
            vectors.append(space.from_key(key))
        except HwnasError as exc:
            raise HwnasError(
                f"warm start: '{key}' is no architecture of {space.name}: {exc}"
            ) from None
    x = np.unique(space.canonicalize(np.stack(vectors)), axis=0)
    if len(x) > budget:
        raise HwnasError(
            f"warm start holds {len(x)} distinct architectures, more than the budget of "
            f"{budget} evaluations"
        )
    return x


def warm_start_keys(path: str | Path) -> list[str]:
    """The architecture keys to warm-start a search from: a search directory's front
    (its ``pareto.csv``), or any CSV with an ``arch_key`` column (``pareto.csv``,
    ``evaluations.csv``: only rows whose status is ok)."""
    import csv

    p = Path(path)
    if p.is_dir():
        try:  # a search still writing there has no final front yet
            with out_dir_lock(p, "warm-start read"):
                pass
        except HwnasError:
            raise HwnasError(
                f"warm start: the search in '{path}' is still running (its pareto.csv is "
                "not final); wait for it to end"
            ) from None
        except OSError:  # a read-only directory: nothing can be writing there
            pass
        p = p / "pareto.csv"
        if not p.is_file():
            raise HwnasError(
                f"warm start: no pareto.csv in '{path}' (a finished search's directory, or "
                "a CSV with an arch_key column)"
            )
    elif not p.is_file():
        raise HwnasError(f"warm start: '{path}' is neither a search directory nor a CSV file")
    try:
        with p.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise HwnasError(f"warm start: cannot read '{p}': {exc}") from None
    if not rows or "arch_key" not in rows[0]:
        raise HwnasError(f"warm start: '{p}' has no arch_key column (or no rows)")
    # evaluations.csv: only what was evaluated (status ok; a blank status counts as ok)
    ok = [r for r in rows if (r.get("status") or "ok").strip().lower() == "ok"]
    keys = [k for k in ((r["arch_key"] or "").strip() for r in ok) if k]
    if not keys:
        raise HwnasError(
            f"warm start: none of the {len(rows)} rows of '{p}' is an evaluated architecture "
            "(an arch_key with status ok)"
        )
    return list(dict.fromkeys(keys))


#: options an algorithm once took and never used: a stored run holding them resumes
#: without them (a fresh search is refused them)
RETIRED_OPTIONS = {"linas": frozenset({"pop_size"}), "random": frozenset({"pop_size"})}


def _drop_retired_options(config: SearchConfig) -> SearchConfig:
    """A stored config without the options its algorithm no longer takes (warned of)."""
    from hwnas.search.spec import algorithm_label, parse_algorithm

    name, bracket = parse_algorithm(config.algorithm)
    gone = RETIRED_OPTIONS.get(name, frozenset())
    dropped = sorted(gone & (set(bracket) | set(config.algorithm_options)))
    if not dropped:
        return config
    warnings.warn(
        f"the stored run's {name} option {', '.join(dropped)} never did anything and is "
        "no longer taken: resumed without it (the same search)",
        stacklevel=3,
    )
    kept = {k: v for k, v in bracket.items() if k not in gone}
    return config.model_copy(
        update={
            "algorithm": algorithm_label(name, kept),
            "algorithm_options": {
                k: v for k, v in config.algorithm_options.items() if k not in gone
            },
        }
    )


def resume_search(
    run_dir: str | Path,
    progress: Callable[[int, int], None] | None = None,
    evaluations: int | None = None,
    data_dir: str | None = None,
    retry_failed: bool = False,
) -> dict[str, Any]:
    """Continue the search stored in ``run_dir`` with its own config; ``evaluations``
    raises its budget (a finished search then goes on); ``retry_failed`` evaluates its
    stored failures again first, in place (the budget they took stays taken). The
    algorithm re-runs from its seed with the new budget, and every stored evaluation is
    reused, none repeated; where its settings follow the budget (LINAS's initial
    population and batch size), the continued run is not the run a fresh search with
    that budget would make.
    ``data_dir`` says where the benchmark's data is now (the run may have moved)."""
    path = Path(run_dir) / STORE_NAME
    if not path.is_file():
        raise HwnasError(f"no results store at '{path}' to resume")
    with ResultsStore(path) as store:
        run = store.latest_run("search")
        config = _drop_retired_options(SearchConfig(**run["config"]))
        if evaluations is not None and evaluations != config.evaluations:
            done = len({r.arch_key for r in store.evaluations(run["run_id"])})
            if evaluations < done:
                raise HwnasError(
                    f"the run in '{run_dir}' already has {done} evaluations; "
                    f"a budget of {evaluations} cannot take it back"
                )
            config = config.model_copy(update={"evaluations": evaluations})
    if data_dir is not None:
        config = config.model_copy(update={"data_dir": data_dir})
    return run_search(
        config, out=run_dir, progress=progress, resume=True, retry_failed=retry_failed
    )


def summarize(problem: SearchProblem, config: SearchConfig, wall_time_s: float) -> dict[str, Any]:
    """Summary of a finished search: quality measures, history and the measured front."""
    front_idx = problem.front_indices()
    front_F = problem.front_F()
    if problem.exact is not None:
        ref = problem.exact.ref
        exact_hv: float | None = problem.exact.hv
        last = problem.history[-1] if problem.history else {}
        hv_history = [h.get("hypervolume", 0.0) for h in problem.history]
        quality = {
            "hypervolume": last.get("hypervolume", 0.0),
            "exact_hypervolume": exact_hv,
            "hv_fraction": last.get("hv_fraction", 0.0),
            "front_recall": last.get("front_recall", 0.0),
            # no feasible architecture yet: no distance (null, not JSON's invalid Infinity)
            "igd": _finite(last.get("igd", float("inf"))),
            "exact_front_size": len(problem.exact.keys),
            "hv_fraction_history": [h["hv_fraction"] for h in problem.history],
            "front_recall_history": [h["front_recall"] for h in problem.history],
            "igd_history": [_finite(h["igd"]) for h in problem.history],
        }
    else:
        # no known table: the evaluator's fixed reference, else the nadir of the measured
        # front + 10 % of its range (then hypervolumes of different runs do not compare)
        fixed = problem.evaluator.reference_point()
        if fixed is not None:
            ref = np.asarray(fixed, dtype=np.float64) * problem.signs
        else:
            ref = reference_point(front_F) if len(front_F) else np.zeros(problem.n_obj)
        hv_history = _hv_history(problem, ref)
        quality = {
            "hypervolume": hv_history[-1] if hv_history else 0.0,
            "exact_hypervolume": None,
            "hv_fraction": None,
            "front_recall": None,
            "igd": None,
        }
    pareto = []
    order = np.argsort(front_F[:, -1]) if len(front_F) else []
    for j in order:
        i = front_idx[j]
        metrics = problem.metric_values(problem.vectors[i])  # what a constraint bounds
        pareto.append(
            {
                "arch_key": problem.keys[i],
                "arch": problem.space.decode(problem.vectors[i]),
                "vector": problem.vectors[i].tolist(),
                **{o.name: float(problem.raw[i][k]) for k, o in enumerate(problem.objectives)},
                **{m: float(v[0]) for m, v in metrics.items()},
            }
        )
    return {
        "benchmark": config.benchmark,
        "benchmark_options": config.benchmark_options,
        # how the objectives were obtained (e.g. where latency was measured: host, agent)
        "benchmark_details": json.loads(json.dumps(problem.evaluator.describe(), default=str)),
        "algorithm": config.algorithm,
        # options in brackets and given apart, merged and typed as the algorithm took them
        "algorithm_options": resolve_algorithm(config.algorithm, config.algorithm_options)[2],
        "seed": config.seed,
        "objectives": [o.__dict__ for o in problem.objectives],
        "constraints": [str(c) for c in problem.constraints],
        "evaluations": problem.n_evaluated,
        "failed": int(sum(not ok for ok in problem.ok)),
        "feasible": len(problem.feasible_set()[0]),
        "budget": problem.budget,
        **quality,
        # raw units, as the objectives (and compare's common reference): the hypervolume
        # is the same with a maximised objective and its bound both negated
        "reference_point": [float(v) for v in np.asarray(ref) * problem.signs],
        "hv_history": hv_history,
        "pareto": pareto,
        "wall_time_s": wall_time_s,
        # a resumed run's: every segment's (runner.run_search adds the earlier ones' wall)
        "evaluation_time_s": problem.eval_time_s + problem.stored_eval_time_s,
        "search_overhead_s": max(
            wall_time_s - problem.eval_time_s - problem.stored_eval_time_s, 0.0
        ),
    }


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _hv_history(problem: SearchProblem, ref: np.ndarray) -> list[float]:
    out, pts = [], []
    for i in range(problem.n_evaluated):
        if problem.ok[i] and problem._feasible(problem.raw[i], problem.vectors[i])[0]:
            pts.append(problem.raw[i] * problem.signs)
        out.append(hypervolume(np.array(pts), ref) if pts else 0.0)
    return out


def write_outputs(
    problem: SearchProblem, summary: dict[str, Any], out: Path, store: ResultsStore, run_id: str
) -> None:
    """evaluations.csv, pareto.csv, summary.json, pareto.png and progress.png in ``out``,
    each written whole or not at all (a kill leaves the old file or the new one)."""
    from hwnas.report.plots import plot_pareto, plot_progress

    with _atomic(out / "evaluations.csv") as tmp:
        store.export_csv(run_id, tmp, extra=_constraint_columns(problem))
    names = [o.name for o in problem.objectives] + problem.constrained_metrics
    with _atomic(out / "pareto.csv") as tmp, tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch_key", "arch", *names])
        for p in summary["pareto"]:
            # full precision, as summary.json and evaluations.csv: rows join on values
            w.writerow([p["arch_key"], arch_text(p["arch"]), *(repr(float(p[n])) for n in names)])
    with _atomic(out / "pareto.png") as tmp:
        plot_pareto(problem, summary, tmp)
    with _atomic(out / "progress.png") as tmp:
        plot_progress(summary, tmp)
    with _atomic(out / "summary.json") as tmp:  # last: its presence means all is written
        tmp.write_text(json.dumps(summary, indent=2, default=json_default))


def _constraint_columns(problem: SearchProblem) -> dict[str, dict[str, object]] | None:
    """Per evaluated arch_key: the constrained metrics that are no objectives (a
    parameter budget's params) and whether it meets every constraint; None without
    constraints."""
    if not problem.constraints or not problem.keys:
        return None
    feasible = set(problem.feasible_set()[0])
    metrics = problem.metric_values(np.stack(problem.vectors))
    return {
        key: {
            **{m: f"{float(v[i]):.10g}" for m, v in metrics.items()},
            "feasible": key in feasible,
        }
        for i, key in enumerate(problem.keys)
    }


@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix, for plot formats), renamed onto it
    when the block ends without an error."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
