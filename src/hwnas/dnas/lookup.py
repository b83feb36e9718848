"""The lookup graph (LUG) of DCA-NAS (paper 001, section 3.2.1).

The expected resource that the search constrains (softmax-weighted, eq. 3) differs from
the resource of the derived discrete cell. The LUG records, for a range of *search*
budgets, the derived resource a short search ends with, so a *device* budget can be
translated into the search budget that yields a derived cell within it.

``build_lookup_graph(base_config, search_budgets, out_dir, jobs)`` runs one search per
search budget (in parallel processes, one torch thread each, when ``jobs > 1``) and
writes ``lug.json`` and a plot, ``lug.png``;
``LookupGraph.load(path).search_budget_for(device_budget)`` inverts the isotonic
(non-decreasing) fit of derived resource against search budget by linear interpolation.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hwnas.errors import HwnasError
from hwnas.process import die_with_parent, out_dir_lock, stop_pool

if TYPE_CHECKING:  # pragma: no cover
    from hwnas.dnas.search import DSearchConfig

LUG_NAME = "lug.json"
LUG_PLOT_NAME = "lug.png"

__all__ = ["LookupGraph", "build_lookup_graph"]


def _isotonic(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least-squares non-decreasing fit (pool adjacent violators)."""
    vals: list[float] = []
    wts: list[float] = []
    sizes: list[int] = []
    for yi, wi in zip(y, w, strict=True):
        vals.append(float(yi))
        wts.append(float(wi))
        sizes.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            wsum = wts[-2] + wts[-1]
            merged = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / wsum
            size = sizes[-2] + sizes[-1]
            del vals[-1], wts[-1], sizes[-1]
            vals[-1], wts[-1], sizes[-1] = merged, wsum, size
    return np.repeat(vals, sizes)


@dataclass
class LookupGraph:
    """Measured (search budget, derived resource) points and their monotone inverse."""

    metric: str
    points: list[tuple[float, float]]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        pts = [(float(s), float(d)) for s, d in self.points]
        if not pts:
            raise HwnasError("a lookup graph needs at least one (search budget, derived) point")
        if not all(math.isfinite(s) and math.isfinite(d) and s > 0 for s, d in pts):
            raise HwnasError("lookup graph points must be finite with positive search budgets")
        self.points = sorted(pts)

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(distinct search budgets, isotonic derived resource at each): duplicates are
        averaged, then the derived values made non-decreasing (pool adjacent violators)."""
        s = np.array([p[0] for p in self.points])
        d = np.array([p[1] for p in self.points])
        xs, inv, counts = np.unique(s, return_inverse=True, return_counts=True)
        means = np.bincount(inv, weights=d) / counts
        return xs, _isotonic(means, counts.astype(np.float64))

    def derived_for(self, search_budget: float) -> float:
        """Interpolated derived resource of a search budget (clamped to the range)."""
        xs, ys = self.curve()
        return float(np.interp(search_budget, xs, ys))

    def search_budget_for(self, device_budget: float, strict: bool = False) -> float:
        """The largest search budget whose (interpolated) derived resource is within
        ``device_budget``. Outside the measured range it clamps to the nearest measured
        search budget with a warning (``strict=True``: raise :class:`HwnasError`)."""
        if not math.isfinite(device_budget) or device_budget <= 0:
            raise HwnasError(f"device budget must be positive, got {device_budget}")
        xs, ys = self.curve()
        if device_budget < ys[0]:
            msg = (
                f"device budget {device_budget:g} is below the lookup graph's range "
                f"(smallest derived {self.metric} {ys[0]:g} at search budget {xs[0]:g}); "
                "extend the graph with smaller search budgets"
            )
            if strict:
                raise HwnasError(msg)
            warnings.warn(msg + f"; using {xs[0]:g}", stacklevel=2)
            return float(xs[0])
        if device_budget >= ys[-1]:
            if device_budget > ys[-1]:
                msg = (
                    f"device budget {device_budget:g} is above the lookup graph's range "
                    f"(largest derived {self.metric} {ys[-1]:g} at search budget {xs[-1]:g})"
                )
                if strict:
                    raise HwnasError(msg)
                warnings.warn(msg + f"; using {xs[-1]:g}", stacklevel=2)
            return float(xs[-1])
        i = int(np.flatnonzero(ys <= device_budget)[-1])  # ys[i] <= budget < ys[i + 1]
        if ys[i] == device_budget:
            return float(xs[i])
        t = (device_budget - ys[i]) / (ys[i + 1] - ys[i])
        return float(xs[i] + t * (xs[i + 1] - xs[i]))

    def to_dict(self) -> dict[str, Any]:
        xs, ys = self.curve()
        return {
            "metric": self.metric,
            "points": [{"search_budget": s, "derived": d} for s, d in self.points],
            "curve": {"search_budget": xs.tolist(), "derived": ys.tolist()},
            **self.meta,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LookupGraph:
        """Read ``lug.json`` (a file or a directory holding one)."""
        p = Path(path)
        if p.is_dir():
            p = p / LUG_NAME
        try:
            d = json.loads(p.read_text())
            points = [(float(q["search_budget"]), float(q["derived"])) for q in d["points"]]
            metric = str(d["metric"])
        except (OSError, json.JSONDecodeError) as exc:
            raise HwnasError(f"cannot read lookup graph '{p}': {exc}") from None
        except KeyError as exc:
            raise HwnasError(
                f"lookup graph '{p}' is malformed: it lacks {exc} (give a file that 'hwnas "
                "dsearch lug' wrote)"
            ) from None
        except (TypeError, ValueError) as exc:
            raise HwnasError(f"lookup graph '{p}' is malformed: {exc}") from None
        meta = {k: v for k, v in d.items() if k not in ("metric", "points", "curve")}
        return cls(metric, points, meta)


def _run_one(config: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """One search of the graph (also the worker-process entry point)."""
    from hwnas.dnas.search import dsearch

    res = dsearch(config, out_dir, resume=True, progress=False)
    s = res.summary
    return {
        "search_budget": s["search_budget"],
        "derived": s.get("argmax_derived", s["derived"]),
        "expected": s["expected"],
        "satisfied_search_budget": s.get("argmax_derived", s["derived"]) <= s["search_budget"],
        "genotype": s["genotype"],
        "run_dir": out_dir,
    }


def _budget_name(budget: float) -> str:
    """A lossless directory name for a search budget: the shortest decimal that reads
    back as the same float (``200000``, ``1000001``, ``1.5e-05``), so distinct budgets
    never share a run directory."""
    text = repr(float(budget))
    return text[:-2] if text.endswith(".0") else text


def run_dir(out_dir: str | os.PathLike[str], budget: float) -> Path:
    """The run directory of ``budget`` in a lookup graph's ``out_dir``: ``sb_<budget>``
    (lossless, :func:`_budget_name`). A run of an older graph in ``sb_<budget:.6g>`` is
    reused when its saved config holds exactly this search budget."""
    out = Path(out_dir)
    new = out / f"sb_{_budget_name(budget)}"
    old = out / f"sb_{float(budget):.6g}"
    if old != new and not new.exists() and old.is_dir():
        try:
            saved = json.loads((old / "config.json").read_text())
            if float(saved["search_budget"]) == float(budget):
                return old
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return new


def build_lookup_graph(
    base_config: Any,
    search_budgets: Sequence[float],
    out_dir: str | os.PathLike[str],
    jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> LookupGraph:
    """Run one short search per search budget and write ``out_dir/lug.json``.

    ``base_config`` (a :class:`~hwnas.dnas.search.DSearchConfig` or dict) needs a
    constraint: its metric is the graph's (its budget is ignored; each run's search
    budget is one of ``search_budgets``). Runs go to ``out_dir/sb_<budget>`` (a lossless
    name, :func:`run_dir`) and resume there if interrupted. ``jobs > 1`` runs them in
    that many processes with one torch thread each (they end with this process, killed
    or not). ``progress(done, total)`` is called as runs finish. One graph at a time
    writes to ``out_dir`` (:func:`hwnas.process.out_dir_lock`).
    """
    from hwnas.dnas.resources import parse_constraint
    from hwnas.dnas.search import DSearchConfig

    cfg = DSearchConfig.from_dict(base_config) if isinstance(base_config, dict) else base_config
    if cfg.constraint is None:
        raise HwnasError("a lookup graph needs a constraint to give its metric (params<=...)")
    budgets = sorted({float(b) for b in search_budgets})
    if not budgets or any(not math.isfinite(b) or b <= 0 for b in budgets):
        raise HwnasError("search budgets must be positive numbers")
    if jobs < 1:
        raise HwnasError(f"jobs must be >= 1, got {jobs}")
    metric = parse_constraint(cfg.constraint).key
    out = Path(out_dir)
    with out_dir_lock(out, "lookup graph"):  # the runs lock their own sb_* directories
        return _build(cfg, budgets, out, metric, jobs, progress)


def _build(
    cfg: DSearchConfig,
    budgets: list[float],
    out: Path,
    metric: str,
    jobs: int,
    progress: Callable[[int, int], None] | None,
) -> LookupGraph:
    """The runs and the graph of :func:`build_lookup_graph` (``out`` locked)."""
    from hwnas.dnas.search import DSearchConfig

    base = cfg.model_dump()
    # the graph records what the search itself ends with: the plain argmax cell
    base.update(lookup=None, derivation="argmax", plot=False)
    tasks = []
    for b in budgets:
        c = dict(base, search_budget=b)
        if jobs > 1:
            c["threads"] = 1
        DSearchConfig.from_dict(c)  # fail early on a bad config
        tasks.append((c, str(run_dir(out, b))))
    results: list[dict[str, Any]] = []
    if jobs == 1:
        for i, (c, d) in enumerate(tasks):
            results.append(_run_one(c, d))
            if progress:
                progress(i + 1, len(tasks))
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=mp.get_context("spawn"),
            initializer=die_with_parent,  # no orphan keeps writing sb_* runs
            initargs=(os.getpid(),),
        ) as ex:
            try:
                futures = [ex.submit(_run_one, c, d) for c, d in tasks]
                for i, f in enumerate(as_completed(futures)):
                    results.append(f.result())
                    if progress:
                        progress(i + 1, len(tasks))
            except BaseException:  # Ctrl-C, SIGTERM: stop now, not after every queued job
                stop_pool(ex)
                raise
    results.sort(key=lambda r: r["search_budget"])
    lug = LookupGraph(
        metric,
        [(r["search_budget"], r["derived"]) for r in results],
        {"space": cfg.space, "dataset": cfg.dataset, "runs": results, "config": base},
    )
    lug.save(out / LUG_NAME)
    if cfg.plot:
        from hwnas.report.plots import plot_lookup_graph

        plot_lookup_graph(lug.points, lug.curve(), metric, out / LUG_PLOT_NAME)
    return lug
