"""How good and how sample-efficient the predictors are: error and rank metrics, learning
curves over training-set size, their summary, plot and CSV."""

from __future__ import annotations

import csv
import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from hwnas.errors import HwnasError

METRICS: tuple[str, ...] = ("mape", "kendall_tau", "spearman_rho", "fit_time_s")
# Called once per fit with (fits done so far, total fits, the row just produced).
ProgressFn = Callable[[int, int, dict[str, Any]], None]


def _as_pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both sides as 1-D float arrays of one length and finite values: a 2-D array would
    be flattened into a meaningless score, and a NaN prediction is a broken predictor,
    not an uncorrelated one."""
    out = []
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        a = np.asarray(y, dtype=np.float64)
        if a.ndim > 2 or (a.ndim == 2 and a.shape[1] > 1):
            raise HwnasError(f"{name} must be one value per architecture, got shape {a.shape}")
        a = a.ravel()
        bad = int((~np.isfinite(a)).sum())
        if bad:
            raise HwnasError(f"{name} holds {bad} non-finite value(s) of {a.size}")
        out.append(a)
    t, p = out
    if t.shape != p.shape:
        raise HwnasError(f"y_true has {t.size} values but y_pred has {p.size}")
    return t, p


def _rank_corr(fn: Callable[..., Any], t: np.ndarray, p: np.ndarray) -> float:
    """A rank correlation that is 0.0 (not nan, and silent) for constant or tiny inputs."""
    if t.size < 2:
        return 0.0
    if np.ptp(t) == 0 or np.ptp(p) == 0:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(fn(t, p).statistic)
    return value if math.isfinite(value) else 0.0


def kendall_tau(y_true: Any, y_pred: Any) -> float:
    """Kendall's tau-b; 0.0 when either side is constant."""
    return _rank_corr(stats.kendalltau, *_as_pair(y_true, y_pred))


def spearman_rho(y_true: Any, y_pred: Any) -> float:
    """Spearman's rho; 0.0 when either side is constant."""
    return _rank_corr(stats.spearmanr, *_as_pair(y_true, y_pred))


def rank_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """``mape`` (mean absolute percentage error, in %; zero targets count as
    ``|error| / 1e-12`` like scikit-learn's), ``kendall_tau`` and ``spearman_rho``."""
    t, p = _as_pair(y_true, y_pred)
    if t.size == 0:
        raise HwnasError("rank_metrics needs at least one value")
    mape = float(np.mean(np.abs(p - t) / np.maximum(np.abs(t), 1e-12)) * 100.0)
    return {
        "mape": mape,
        "kendall_tau": _rank_corr(stats.kendalltau, t, p),
        "spearman_rho": _rank_corr(stats.spearmanr, t, p),
    }


def sample_efficiency(
    X: Any,
    y: Any,
    models: Sequence[str],
    sizes: Sequence[int],
    test_size: int = 1000,
    trials: int = 5,
    seed: int = 0,
    progress: ProgressFn | None = None,
    views: Sequence[Sequence[int] | None] | None = None,
) -> list[dict[str, Any]]:
    """Learning curves: held-out metrics of each model vs. training-set size.

    One test set of ``test_size`` rows is drawn once (seeded); the rest is the training
    pool. Each trial shuffles the pool once and trains on its first ``size`` rows, so a
    trial's training sets are nested and every model sees the same ones. Sizes larger
    than the pool are skipped with a ``UserWarning`` that says so.

    Returns one row per (trial, size, model) with ``model, size, trial, mape,
    kendall_tau, spearman_rho, fit_time_s`` (fit time only). ``progress(done, total,
    row)`` is called after every fit. With ``views`` (column subsets, as a space's
    ``cost_feature_views``) each model fits on the view that cross-validates best, as in
    LINAS; rows then also say which (``view``).
    """
    from hwnas.predict.models import ViewSelectPredictor, make_predictor, make_view_predictor

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise HwnasError(f"X must be (n, d) with n == len(y); got {X.shape} and {y.shape}")
    if not np.all(np.isfinite(y)):
        raise HwnasError("y holds non-finite values; drop those rows first")
    if not np.all(np.isfinite(X)):
        raise HwnasError("X holds non-finite values; drop those rows first")
    n = X.shape[0]
    if isinstance(test_size, bool) or not isinstance(test_size, int | np.integer):
        raise HwnasError(f"test_size must be a whole number of rows, got {test_size!r}")
    if not 1 <= test_size < n:
        raise HwnasError(f"test_size must be between 1 and {n - 1} (have {n} rows)")
    if trials < 1:
        raise HwnasError("trials must be >= 1")
    models = list(dict.fromkeys(models))  # a name given twice is one model
    if not models:
        raise HwnasError("sample_efficiency needs at least one model")
    for name in models:
        make_predictor(name)  # fail fast on unknown names
    pool_size = n - test_size
    valid: list[int] = []
    too_large: list[int] = []
    for size in sizes:
        size = int(size)
        if size < 2:
            raise HwnasError(f"training size {size} is too small (need >= 2)")
        if size > pool_size:
            too_large.append(size)
        elif size not in valid:
            valid.append(size)
    valid.sort()
    if not valid:
        raise HwnasError(
            f"no training size fits: {pool_size} rows are left after the {test_size}-row "
            "test set (lower --test-size or give smaller --sizes)"
        )
    for size in too_large:
        warnings.warn(
            f"skipping training size {size}: only {pool_size} rows are left after "
            f"the {test_size}-row test set",
            UserWarning,
            stacklevel=2,
        )

    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    test_idx, pool = perm[:test_size], perm[test_size:]
    X_test, y_test = X[test_idx], y[test_idx]
    total = trials * len(valid) * len(models)
    rows: list[dict[str, Any]] = []
    for trial in range(trials):
        order = np.random.default_rng([seed, trial]).permutation(pool)
        for size in valid:
            train = order[:size]
            for name in models:
                model = make_view_predictor(name, views, seed=seed + trial)
                start = time.perf_counter()
                try:
                    model.fit(X[train], y[train])
                except HwnasError:
                    raise
                except Exception as exc:
                    raise HwnasError(
                        f"predictor '{name}' failed to fit {size} samples: {exc}"
                    ) from exc
                fit_time = time.perf_counter() - start
                row: dict[str, Any] = {"model": name, "size": size, "trial": trial}
                pred = np.asarray(model.predict(X_test), dtype=np.float64)
                if np.isfinite(pred).all():
                    row.update(rank_metrics(y_test, pred))
                else:  # a broken fit: scored nan, named, and the study goes on
                    warnings.warn(
                        f"predictor '{name}' at {size} samples (trial {trial}) predicted "
                        f"{int((~np.isfinite(pred)).sum())} non-finite value(s): scored nan",
                        stacklevel=2,
                    )
                    row.update({"mape": np.nan, "kendall_tau": np.nan, "spearman_rho": np.nan})
                row["fit_time_s"] = fit_time
                if isinstance(model, ViewSelectPredictor):
                    row["view"] = model.view_
                rows.append(row)
                if progress is not None:
                    progress(len(rows), total, row)
    return rows


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median, min and max of each metric per (model, size): keys ``model``, ``size``,
    ``trials`` and ``<metric>_median`` / ``_min`` / ``_max`` (and ``view``, the feature view
    chosen most often, where views were given). Models keep their first-seen order; sizes
    ascend."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    model_order: dict[str, int] = {}
    for row in rows:
        model_order.setdefault(row["model"], len(model_order))
        groups.setdefault((row["model"], int(row["size"])), []).append(row)
    out: list[dict[str, Any]] = []
    for model, size in sorted(groups, key=lambda k: (model_order[k[0]], k[1])):
        group = groups[(model, size)]
        summary: dict[str, Any] = {"model": model, "size": size, "trials": len(group)}
        for metric in METRICS:
            values = np.array([float(r[metric]) for r in group if metric in r], dtype=float)
            values = values[np.isfinite(values)]
            if values.size:
                summary[f"{metric}_median"] = float(np.median(values))
                summary[f"{metric}_min"] = float(values.min())
                summary[f"{metric}_max"] = float(values.max())
            else:
                for stat in ("median", "min", "max"):
                    summary[f"{metric}_{stat}"] = float("nan")
        chosen = [int(r["view"]) for r in group if "view" in r]
        if chosen:  # the feature view picked most often (see ``sample_efficiency``)
            summary["view"] = int(np.bincount(chosen).argmax())
        out.append(summary)
    return out


_LABELS = {
    "mape": "MAPE (%)",
    "kendall_tau": "Kendall tau",
    "spearman_rho": "Spearman rho",
    "fit_time_s": "fit time (s)",
}


def plot_sample_efficiency(
    rows: Sequence[dict[str, Any]],
    path: str | Path,
    metric: str = "kendall_tau",
    what: str = "",
) -> Path:
    """Line plot of the median ``metric`` vs. training size (log x), one line per model
    with its min-max band over trials; saved as PNG at ``path`` (returned). ``what``
    (e.g. ``latency:pixel3 on fbnet``) goes into the title."""
    if metric not in METRICS:
        raise HwnasError(f"unknown metric '{metric}' (known: {', '.join(METRICS)})")
    if not rows:
        raise HwnasError("nothing to plot: no sample-efficiency rows")
    from hwnas.report.plots import _plt

    fig, ax = _plt().subplots(figsize=(6.4, 4.4), layout="constrained")
    summary = summarize(rows)
    for model in dict.fromkeys(s["model"] for s in summary):
        sub = [s for s in summary if s["model"] == model]
        x = [s["size"] for s in sub]
        (line,) = ax.plot(x, [s[f"{metric}_median"] for s in sub], marker="o", label=model)
        ax.fill_between(
            x,
            [s[f"{metric}_min"] for s in sub],
            [s[f"{metric}_max"] for s in sub],
            color=line.get_color(),
            alpha=0.2,
            linewidth=0,
        )
    ax.set_xscale("log")
    sizes = sorted({s["size"] for s in summary})
    ax.set_xticks(sizes, [str(n) for n in sizes])  # the sizes studied, not 3x10^1
    ax.minorticks_off()
    if metric == "fit_time_s":
        ax.set_yscale("log")
    ax.set_xlabel("training samples")
    ax.set_ylabel(_LABELS[metric])
    ax.set_title(
        f"{what}: {_LABELS[metric]}" if what else f"Predictor sample efficiency: {_LABELS[metric]}"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=120)
    return path


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write dict rows as CSV (columns: the union of keys, first-seen order)."""
    fields: list[str] = list(dict.fromkeys(k for row in rows for k in row))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path
