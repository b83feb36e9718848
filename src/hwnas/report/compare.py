"""Several finished searches side by side: their quality in one table and their fronts in
one plot (e.g. two algorithms, or two seeds, on the same benchmark and device)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.errors import HwnasError
from hwnas.search.spec import algorithm_label

SUMMARY_NAME = "summary.json"


def _has_values(entry: Any, names: Sequence[str]) -> bool:
    """Whether a front entry holds a number for each objective."""
    return isinstance(entry, dict) and all(
        isinstance(entry.get(n), int | float) and not isinstance(entry.get(n), bool) for n in names
    )


def load_summaries(run_dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """The ``summary.json`` of each finished search in ``run_dirs``, with ``run_dir``
    added. All must share benchmark and objectives (or their fronts would not compare);
    devices and datasets may differ (e.g. one space's fronts on two devices)."""
    if len(run_dirs) < 1:
        raise HwnasError("compare needs at least one search directory")
    out = []
    for d in run_dirs:
        path = Path(d) / SUMMARY_NAME
        running = _running(Path(d))
        if not path.is_file():
            if running:
                raise HwnasError(f"the search in '{d}' is still running: wait for it to end")
            raise HwnasError(
                f"no {SUMMARY_NAME} in '{d}' (a finished 'hwnas search --out {d}'; "
                f"a killed one: 'hwnas search --resume {d}' first)"
            )
        try:
            s = json.loads(path.read_text())
            names = [o["name"] for o in s["objectives"]]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise HwnasError(f"'{path}' is not a search summary ({e})") from None
        missing = [k for k in ("benchmark", "algorithm", "evaluations", "pareto") if k not in s]
        missing += [] if names else ["objectives"]
        if missing:
            raise HwnasError(f"'{path}' is not a search summary (no {', '.join(missing)})")
        front = s["pareto"] if isinstance(s["pareto"], list) else None
        bad = [i for i, p in enumerate(front or []) if not _has_values(p, names)]
        if front is None or bad:
            where = f"front entry {bad[0]} lacks a value of" if bad else "its front is no list of"
            raise HwnasError(
                f"'{path}' is not a search summary ({where} {', '.join(names)}); was it "
                "edited by hand?"
            )
        s["run_dir"] = str(d)
        s["objective_names"] = names
        stored = _stored(Path(d))
        if running or stored > s["evaluations"]:
            why = "is still running" if running else "was stopped before it finished again"
            warnings.warn(
                f"the search in '{d}' {why}: its {SUMMARY_NAME} is from when it last finished "
                f"({s['evaluations']} evaluations; the store holds {stored}); "
                f"'hwnas search --resume {d}' brings it up to date",
                stacklevel=2,
            )
        out.append(s)
    first = out[0]["objective_names"]
    for s in out[1:]:
        if s["benchmark"] != out[0]["benchmark"]:
            raise HwnasError(
                f"'{s['run_dir']}' searched {s['benchmark']}, '{out[0]['run_dir']}' "
                f"{out[0]['benchmark']}: fronts of different spaces do not compare"
            )
        if s["objective_names"] != first:
            raise HwnasError(
                f"'{s['run_dir']}' has objectives {', '.join(s['objective_names'])}, "
                f"'{out[0]['run_dir']}' {', '.join(first)}: fronts of different objectives "
                "do not compare"
            )
    constraints = {tuple(s.get("constraints") or ()) for s in out}
    if len(constraints) > 1:
        warnings.warn(
            "these searches ran under different constraints: each HV fraction and recall "
            "is measured against the exact front under its own constraints",
            stacklevel=2,
        )
    datasets = {str((s.get("benchmark_options") or {}).get("dataset")) for s in out}
    if len(datasets) > 1:  # accuracy on one task beside another's: one axis, two meanings
        shown = "; ".join(
            f"{s['run_dir']}: {(s.get('benchmark_options') or {}).get('dataset')}" for s in out
        )
        warnings.warn(
            f"these searches scored accuracy on different datasets ({shown}): their common "
            "hypervolume and one plot put two tasks' accuracies on one axis",
            stacklevel=2,
        )
    how = {_how(s) for s in out}
    if len(how) > 1:  # e.g. latency measured here beside a device's table
        shown = "; ".join(f"{s['run_dir']}: {_how(s) or 'the defaults'}" for s in out)
        warnings.warn(
            f"these searches took their objectives differently ({shown}): their fronts and "
            "common hypervolumes compare those settings as much as the searches",
            stacklevel=2,
        )
    return out


def _running(d: Path) -> bool:
    """Whether a search (or another run) is writing in ``d`` now (it holds the lock)."""
    from hwnas.process import out_dir_lock

    if not d.is_dir():
        return False
    try:
        with out_dir_lock(d, "compare read"):
            return False
    except HwnasError:
        return True
    except OSError:  # a read-only directory: nothing can be writing there
        return False


def _stored(d: Path) -> int:
    """Distinct architectures the latest search stored in ``d`` holds (0: no store)."""
    from hwnas.search.runner import _stored_distinct

    try:
        return _stored_distinct(d)
    except HwnasError:  # no search run in the store
        return 0


#: benchmark options that say where, not how (shown by value), or nothing worth showing
_WHERE_OPTIONS = ("dataset", "devices")
_UNSHOWN_OPTIONS = ("data_dir", "token_file")


def _how(s: dict[str, Any]) -> str:
    """The benchmark options beyond dataset and devices that a search was given
    (``latency=true``, ``agent=URL``, ...), as ``key=value`` words."""
    opts = s.get("benchmark_options") or {}
    skip = (*_WHERE_OPTIONS, *_UNSHOWN_OPTIONS)
    return " ".join(
        f"{k}={str(v).lower() if isinstance(v, bool) else v}"
        for k, v in sorted(opts.items())
        if k not in skip and v is not None
    )


def _where(s: dict[str, Any]) -> str:
    """Benchmark, dataset and devices, and how the objectives were taken (``_how``)."""
    opts = s.get("benchmark_options") or {}
    parts = [s["benchmark"]] + [
        ",".join(v) if isinstance(v, list) else str(v)
        for k, v in opts.items()
        if k in _WHERE_OPTIONS and v
    ]
    return " ".join([*parts, _how(s)]).strip()


def common_hypervolumes(summaries: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """Each search's front's hypervolume at one reference point: the worst corner of all
    the fronts together pushed out by 10 % of their range (raw units; maximised
    objectives negated), so that runs whose own references differ (measured latency, or
    no fixed reference) compare. Returns (hypervolumes, reference point in raw units)."""
    from hwnas.search.pareto import hypervolume, reference_point

    objectives = summaries[0]["objectives"]
    names = [o["name"] for o in objectives]
    signs = np.array([-1.0 if o.get("direction") == "max" else 1.0 for o in objectives])
    fronts = [
        np.array([[p[n] for n in names] for p in s["pareto"]], dtype=np.float64).reshape(
            -1, len(names)
        )
        * signs
        for s in summaries
    ]
    both = np.concatenate(fronts)
    if not len(both):
        return [0.0] * len(summaries), []
    ref = reference_point(both)
    hvs = [float(hypervolume(F, ref)) if len(F) else 0.0 for F in fronts]
    return hvs, [float(v) for v in ref * signs]


def compare_rows(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per search: where it ran, its budget and its quality measures, and its
    front's hypervolume at a reference common to all (``common_hypervolumes``)."""
    keys = ("hv_fraction", "front_recall", "igd", "hypervolume")
    common, ref = common_hypervolumes(summaries)
    return [
        {
            "run_dir": s["run_dir"],
            "algorithm": algorithm_label(s["algorithm"], s.get("algorithm_options")),
            "seed": s.get("seed"),
            "on": _where(s),
            "evaluations": s["evaluations"],
            "front_size": len(s["pareto"]),
            **{k: s.get(k) for k in keys},
            "hypervolume_common": hv,
            "common_reference": ref,
        }
        for s, hv in zip(summaries, common, strict=True)
    ]


def _label(objective: dict[str, Any]) -> str:
    unit = objective.get("unit")
    return f"{objective['name']} ({unit})" if unit else objective["name"]


def plot_compare(summaries: list[dict[str, Any]], path: str | Path) -> Path:
    """The fronts found by each search, as staircases on the first two objectives."""
    from matplotlib.backend_bases import FigureCanvasBase

    from hwnas.report.plots import _plt, _save, zoom_on_fronts

    path = Path(path)
    if path.is_dir() or (not path.suffix and not path.exists()):  # a directory, maybe new
        path = path / "compare.png"
    kinds = FigureCanvasBase.get_supported_filetypes()
    if path.suffix.lstrip(".").lower() not in kinds:
        raise HwnasError(
            f"cannot write a plot to '{path}': use one of the suffixes "
            f"{', '.join('.' + k for k in sorted(kinds))}"
        )
    plt = _plt()
    objs = summaries[0]["objectives"]
    i, j = (1, 0) if len(objs) > 1 else (0, 0)
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=110)
    stairs = len(objs) <= 2  # with 3+ objectives a front is no staircase in two of them
    ys, drawn = [], []
    places = sorted({_where(s) for s in summaries})
    for s in summaries:
        if not s["pareto"]:
            continue
        P = np.array([[p[objs[i]["name"]], p[objs[j]["name"]]] for p in s["pareto"]])
        o = np.argsort(P[:, 0])
        alg = algorithm_label(s["algorithm"], s.get("algorithm_options"))
        label = f"{alg} seed {s.get('seed')} ({Path(s['run_dir']).name})"
        if len(places) > 1:
            label += f" on {_where(s)}"
        if s.get("hv_fraction") is not None:
            label += f", HV {s['hv_fraction']:.4f}"
        if stairs:
            (line,) = ax.step(P[o, 0], P[o, 1], where="post", lw=1.4, label=label)
            dots = ax.scatter(P[:, 0], P[:, 1], s=14, color=line.get_color())
        else:
            dots = ax.scatter(P[:, 0], P[:, 1], s=14, label=label)
        ys.append(P[:, 1])
        drawn.append((P[:, 0], P[:, 1], dots.get_facecolor()[0]))
    if objs[j].get("direction") == "max":
        zoom_on_fronts(ax, ys, drawn=drawn)
    ax.set_xlabel(_label(objs[i]))
    ax.set_ylabel(_label(objs[j]))
    title = "fronts found" + (f": {places[0]}" if len(places) == 1 else "")
    if not stairs:
        rest = ", ".join(o["name"] for k, o in enumerate(objs) if k not in (i, j))
        title += f"\n(not shown: {rest}; the fronts are over all {len(objs)} objectives)"
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if ys:
        ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(plt, fig, path)
