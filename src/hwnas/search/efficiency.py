"""Search-efficiency study: quality vs number of evaluations, per algorithm and device,
over seeds (the DyNAS-T paper's measure of a search algorithm)."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.errors import HwnasError
from hwnas.process import die_with_parent, out_dir_lock, stop_pool
from hwnas.search.runner import run_search
from hwnas.search.spec import resolve_algorithm

METRICS = ("hv_fraction", "front_recall", "igd")
# a benchmark without a full table (a surrogate such as ofa-mbv3 or ofa-resnet50) has no
# exact front to score against: its runs are judged by hypervolume at the benchmark's
# fixed reference point, as the DyNAS-T paper judges them
SURROGATE_METRICS = ("hypervolume",)
RECORDS_NAME = "records.jsonl"


def study_metrics(results: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    """The measures a study's records hold: against the exact front where the benchmark
    knows it, else the hypervolume."""
    return METRICS if results and "hv_fraction" in results[0] else SURROGATE_METRICS


def _lower_is_better(metric: str) -> bool:
    return metric == "igd"


def _job_key(job: dict[str, Any]) -> str:
    """What identifies a finished run of a study (its config, seed included)."""
    return json.dumps(job["config"], sort_keys=True)


def finished_runs(path: Path) -> dict[str, dict[str, Any]]:
    """Runs a killed study already finished: one JSON line each in ``path``; a line cut
    short by the kill is ignored (that run is simply run again)."""
    done: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
                done[entry["key"]] = entry["record"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return done


def _one(job: dict[str, Any]) -> dict[str, Any]:
    s = run_search(job["config"])
    overhead = [it["overhead_s"] for it in s.get("iterations", [])]
    if s.get("exact_hypervolume") is not None:
        quality = {
            "hv_fraction": s["hv_fraction_history"],
            "front_recall": s["front_recall_history"],
            "igd": s["igd_history"],
            "exact_front_size": s["exact_front_size"],
        }
    else:
        quality = {"hypervolume": s["hv_history"], "reference_point": s["reference_point"]}
    return {
        **{k: job[k] for k in ("device", "algorithm", "seed")},
        **quality,
        "wall_time_s": s["wall_time_s"],
        "search_overhead_s": s["search_overhead_s"],
        "overhead_per_iteration_s": float(np.median(overhead)) if overhead else None,
    }


def study_devices(
    benchmark: str, devices: Sequence[str] | None, data_dir: str | None = None
) -> list[str | None]:
    """The devices a study covers: those given, else the benchmark's ``STUDY_DEVICES``
    (NB201: pixel3, raspi4, fpga, 2080ti_1), else its one device; ``[None]`` for a
    benchmark that takes no device (its cost is not a device's)."""
    from hwnas.bench import BENCHMARKS

    cls = BENCHMARKS.get(benchmark)
    known = cls.available_devices(data_dir)
    if devices:
        if known is None:
            raise HwnasError(
                f"benchmark '{benchmark}' takes no device (its costs are no device's); "
                "leave --devices out"
            )
        return list(devices)
    if cls.STUDY_DEVICES:
        return list(cls.STUDY_DEVICES)
    if known is None:
        return [None]
    if len(known) > 1:
        raise HwnasError(f"benchmark '{benchmark}' needs --devices (known: {', '.join(known)})")
    return list(known)


def study_dataset(benchmark: str, dataset: str | None) -> str | None:
    """The dataset a study runs on: the one given, else the benchmark's default
    (NB201: cifar10); None for a benchmark without a choice of datasets."""
    from hwnas.bench import BENCHMARKS

    default = BENCHMARKS.get(benchmark).DEFAULT_OPTIONS.get("dataset")
    return dataset or (None if default is None else str(default))


def search_efficiency(
    benchmark: str,
    devices: Sequence[str | None] | None,
    algorithms: Sequence[str],
    evaluations: int,
    seeds: int,
    dataset: str | None = None,
    data_dir: str | None = None,
    jobs: int = 1,
    progress: Callable[[dict[str, Any]], None] | None = None,
    first_seed: int = 0,
    records: str | Path | None = None,
    resume: bool = False,
) -> list[dict[str, Any]]:
    """Run every (device, algorithm, seed) search; returns one record per run with its
    per-evaluation histories of hv_fraction, front_recall and igd, or of the hypervolume
    on a benchmark without a full table (``study_metrics``). ``devices`` None: the
    benchmark's (``study_devices``); ``dataset`` None: its default. An algorithm may
    carry options (``linas[class_mean=false]``, see ``hwnas.search.spec``); its record
    is labelled with the whole spec. Seeds are ``first_seed .. first_seed + seeds - 1``.

    With ``records`` (a JSONL file), each run is appended there the moment it finishes;
    with ``resume`` as well, runs of the same config already in it are not run again, so
    a killed study (tens of minutes) goes on where it stopped. Without ``resume`` the
    file is started afresh: a finished run is reused only when asked for, as a code
    change since would otherwise go unseen."""
    from hwnas.bench import get_benchmark

    if devices is None or list(devices) == [None]:
        devices = study_devices(benchmark, None, data_dir)
    # spelled out, so a run's config, and with it the key a killed study resumes by, does
    # not depend on the default
    dataset = study_dataset(benchmark, dataset)
    for what, names in (("device", devices), ("algorithm", algorithms)):
        if not names:
            raise HwnasError(f"a search-efficiency study needs at least one {what}")
        repeated = sorted({n for n in names if list(names).count(n) > 1})
        if repeated:
            raise HwnasError(f"{what} {', '.join(repeated)} given twice")
    if seeds < 1 or first_seed < 0 or evaluations < 1:
        raise HwnasError(
            f"need seeds >= 1, first_seed >= 0 and evaluations >= 1, got {seeds}, "
            f"{first_seed} and {evaluations}"
        )
    for alg in algorithms:
        resolve_algorithm(alg)  # an unknown name or bad option fails here, not in a worker

    def options(dev: str | None) -> dict[str, Any]:
        opts = {} if dataset is None else {"dataset": dataset}
        return opts if dev is None else {**opts, "devices": dev}

    # every device before any search runs (not when the study reaches it)
    named = [d for d in devices if d is not None]
    get_benchmark(benchmark, data_dir=data_dir, **options(",".join(named) if named else None))
    work = [
        {
            "device": dev,
            "algorithm": alg,
            "seed": seed,
            "config": {
                "benchmark": benchmark,
                "benchmark_options": options(dev),
                "algorithm": alg,
                "evaluations": evaluations,
                "seed": seed,
                "data_dir": data_dir,
            },
        }
        for dev in devices
        for alg in algorithms
        for seed in range(first_seed, first_seed + seeds)
    ]
    path = Path(records) if records is not None else None
    done = finished_runs(path) if path is not None and resume else {}
    results: dict[str, dict[str, Any]] = {}
    for job in work:
        if _job_key(job) in done:
            results[_job_key(job)] = done[_job_key(job)]
            if progress:
                progress(results[_job_key(job)])
    todo = [job for job in work if _job_key(job) not in results]
    with contextlib.ExitStack() as stack:
        if path is not None:  # one study at a time writes there
            stack.enter_context(out_dir_lock(path.parent, "search-efficiency study"))
            _rewrite(path, done)
        _run_jobs(todo, jobs, results, path, progress)
    return [results[_job_key(job)] for job in work]


def _rewrite(path: Path, done: dict[str, dict[str, Any]]) -> None:
    """Start the records file with what it held (other studies' runs too), atomically:
    a kill at any moment leaves the old file or the new one, never an empty one."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        for key, rec in done.items():
            f.write(json.dumps({"key": key, "record": rec}) + "\n")
    os.replace(tmp, path)


def _run_jobs(
    todo: list[dict[str, Any]],
    jobs: int,
    results: dict[str, dict[str, Any]],
    path: Path | None,
    progress: Callable[[dict[str, Any]], None] | None,
) -> None:
    """Run the searches (in ``jobs`` worker processes that die with this one), storing
    each record in ``results`` and appending it to ``path`` the moment it ends."""

    def finished(job: dict[str, Any], rec: dict[str, Any]) -> None:
        results[_job_key(job)] = rec
        if path is not None:
            with path.open("a") as f:
                f.write(json.dumps({"key": _job_key(job), "record": rec}) + "\n")
        if progress:
            progress(rec)

    if jobs <= 1:
        for job in todo:
            finished(job, _one(job))
    elif todo:
        with ProcessPoolExecutor(
            max_workers=jobs, initializer=die_with_parent, initargs=(os.getpid(),)
        ) as pool:
            try:
                futures = {pool.submit(_one, job): job for job in todo}
                for fut in as_completed(futures):
                    finished(futures[fut], fut.result())
            except BaseException:  # Ctrl-C, SIGTERM: stop now, not after every queued job
                stop_pool(pool)
                raise


def checkpoints(evaluations: int) -> list[int]:
    """The evaluation counts a study reports: 50, 100 and 200 where the budget reaches
    them, and the budget itself."""
    return sorted({n for n in (50, 100, 200) if n < evaluations} | {evaluations})


def efficiency_table(
    results: list[dict[str, Any]], at: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    """Median (min, max) of each metric at the given evaluation counts (default
    ``checkpoints`` of the longest run), per device and algorithm."""
    metrics = study_metrics(results)
    if at is None:
        at = checkpoints(max(len(r[metrics[0]]) for r in results))
    rows = []
    # in the study's order (devices and algorithms as given), as the other tables
    keys = dict.fromkeys((r["device"] or "", r["algorithm"]) for r in results)
    for dev, alg in keys:
        runs = [r for r in results if (r["device"] or "") == dev and r["algorithm"] == alg]
        for n in at:
            row: dict[str, Any] = {"device": runs[0]["device"], "algorithm": alg, "evaluations": n}
            for m in metrics:
                vals = np.array([r[m][min(n, len(r[m])) - 1] for r in runs])
                row[f"{m}_median"] = float(np.median(vals))
                row[f"{m}_min"] = float(vals.min())
                row[f"{m}_max"] = float(vals.max())
            row["seeds"] = len(runs)
            ovh = [r["overhead_per_iteration_s"] for r in runs if r["overhead_per_iteration_s"]]
            row["overhead_per_iteration_s"] = float(np.median(ovh)) if ovh else None
            rows.append(row)
    return rows


def paired_comparison(
    results: list[dict[str, Any]],
    baseline: str | None = None,
    at: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """Each algorithm against ``baseline`` (default: the first algorithm of the study),
    paired by seed, per device and evaluation count: mean difference of each metric,
    how many seeds it is ahead / behind, and the two-sided Wilcoxon signed-rank p-value.
    With medians over 10-20 seeds moving by a front cell between seed sets, this says
    whether a variant's difference is more than the luck of the seeds."""
    from scipy.stats import wilcoxon

    algorithms = list(dict.fromkeys(r["algorithm"] for r in results))
    baseline = baseline or algorithms[0]
    if baseline not in algorithms:
        raise HwnasError(f"baseline '{baseline}' is not in the study ({', '.join(algorithms)})")
    metrics = study_metrics(results)
    if at is None:
        at = checkpoints(max(len(r[metrics[0]]) for r in results))
    rows = []
    for dev in dict.fromkeys(r["device"] for r in results):
        base = {r["seed"]: r for r in results if r["device"] == dev and r["algorithm"] == baseline}
        for alg in algorithms:
            if alg == baseline:
                continue
            runs = {r["seed"]: r for r in results if r["device"] == dev and r["algorithm"] == alg}
            seeds = sorted(set(base) & set(runs))
            if not seeds:
                continue
            for n in at:
                row: dict[str, Any] = {
                    "device": dev,
                    "algorithm": alg,
                    "baseline": baseline,
                    "evaluations": n,
                    "seeds": len(seeds),
                }
                for m in metrics:
                    d = np.array(
                        [
                            runs[s][m][min(n, len(runs[s][m])) - 1]
                            - base[s][m][min(n, len(base[s][m])) - 1]
                            for s in seeds
                        ]
                    )
                    better = -d if _lower_is_better(m) else d
                    row[f"{m}_mean_diff"] = float(d.mean())
                    row[f"{m}_ahead"] = int((better > 0).sum())
                    row[f"{m}_behind"] = int((better < 0).sum())
                    with warnings.catch_warnings():  # ties: scipy's normal approximation
                        warnings.simplefilter("ignore")
                        p = float(wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
                    row[f"{m}_p"] = p
                rows.append(row)
    return rows


def evaluations_to_reach(
    results: list[dict[str, Any]], target: str, metric: str | None = None
) -> list[dict[str, Any]]:
    """The DyNAS-T paper's Table 3 measure: how many evaluations each algorithm needs to
    reach ``target``'s final value of ``metric`` (default: the study's first measure,
    hypervolume or hv_fraction), the median of ``target``'s seeds, per device. Per
    algorithm: the median over seeds of the first evaluation count at or above that
    value (None when half of its seeds or more never reach it: the median is then
    'never') and how many seeds do.
    ``target``'s own row says how its seeds spread about their median (about half reach
    it, by definition)."""
    metric = metric or study_metrics(results)[0]
    rows = []
    for dev in dict.fromkeys(r["device"] for r in results):
        runs = [r for r in results if r["device"] == dev]
        finals = [r[metric][-1] for r in runs if r["algorithm"] == target]
        if not finals:
            raise HwnasError(f"target '{target}' is not in the study")
        level = float(np.median(finals))
        for alg in dict.fromkeys(r["algorithm"] for r in runs):
            firsts = []
            for r in (r for r in runs if r["algorithm"] == alg):
                hit = np.nonzero(np.asarray(r[metric], dtype=float) >= level)[0]
                firsts.append(int(hit[0]) + 1 if hit.size else None)
            reached = sorted(f for f in firsts if f is not None)
            # the median over all seeds, a seed that never reaches counting as the worst
            median = float(np.median(reached + [np.inf] * (len(firsts) - len(reached))))
            rows.append(
                {
                    "device": dev,
                    "target": target,
                    "metric": metric,
                    "level": level,
                    "algorithm": alg,
                    "evaluations_median": median if np.isfinite(median) else None,
                    "reached": len(reached),
                    "seeds": len(firsts),
                }
            )
    return rows


def paired_cell(row: dict[str, Any], metric: str, digits: int = 4) -> str:
    """One metric of a ``paired_comparison`` row as text: mean difference, seeds
    ahead/behind and the p-value, e.g. ``+0.0123 (14/4, p=0.02)``."""
    return (
        f"{row[f'{metric}_mean_diff']:+.{digits}f} "
        f"({row[f'{metric}_ahead']}/{row[f'{metric}_behind']}, p={row[f'{metric}_p']:.2g})"
    )


def write_efficiency(results: list[dict[str, Any]], out: Path, title: str = "") -> dict[str, Path]:
    """CSV of every run's history, a summary CSV, raw JSON and one plot per metric; with
    more than one algorithm, ``paired.csv``: each against the first, paired by seed."""
    from hwnas.report.plots import plot_efficiency

    out.mkdir(parents=True, exist_ok=True)
    metrics = study_metrics(results)
    # what an earlier study in ``out`` wrote and this one does not (one algorithm: no
    # comparison; no exact front: no HV fraction) would contradict the new files
    stale = ["paired.csv", "reach.csv"]
    stale += [f"{m}.png" for m in (*METRICS, *SURROGATE_METRICS) if m not in metrics]
    for name in stale:
        (out / name).unlink(missing_ok=True)
    paths = {}
    with (out / "histories.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device", "algorithm", "seed", "evaluations", *metrics])
        for r in results:
            for i in range(len(r[metrics[0]])):
                w.writerow(
                    [r["device"] or "", r["algorithm"], r["seed"], i + 1]
                    + [f"{r[m][i]:.6g}" for m in metrics]
                )
    paths["histories"] = out / "histories.csv"
    table = efficiency_table(results)
    with (out / "summary.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    paths["summary"] = out / "summary.csv"
    paired = paired_comparison(results) if len({r["algorithm"] for r in results}) > 1 else []
    if paired:
        with (out / "paired.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(paired[0]))
            w.writeheader()
            w.writerows(paired)
        paths["paired"] = out / "paired.csv"
        # the DyNAS-T measure: evaluations each needs to reach the first one's final value
        reach = evaluations_to_reach(results, results[0]["algorithm"])
        with (out / "reach.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(reach[0]))
            w.writeheader()
            w.writerows(reach)
        paths["reach"] = out / "reach.csv"
    (out / "results.json").write_text(json.dumps(results))
    for m in metrics:
        curves: dict[str, dict[str, np.ndarray]] = {}
        for r in results:
            dev = r["device"] or ""  # no device: one panel, the title says what it is
            curves.setdefault(dev, {}).setdefault(r["algorithm"], [])  # type: ignore[arg-type]
            curves[dev][r["algorithm"]].append(r[m])  # type: ignore[union-attr]
        arrays = {
            d: {a: np.array(v, dtype=float) for a, v in algs.items()} for d, algs in curves.items()
        }
        paths[m] = plot_efficiency(arrays, out / f"{m}.png", metric=m, title=title)
    return paths
