"""Plots a person would rather look at than read: fronts and search-efficiency curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from hwnas.search.problem import SearchProblem


class _Figures:
    """pyplot's ``subplots``/``close`` without pyplot: each figure on its own Agg canvas,
    so drawing never switches the process's backend (a notebook's inline or interactive
    plots stay as they were) and needs no display."""

    @staticmethod
    def subplots(nrows: int = 1, ncols: int = 1, **kw: Any) -> tuple[Any, Any]:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        grid = ("sharex", "sharey", "squeeze", "width_ratios", "height_ratios", "subplot_kw")
        grid_kw = {k: kw.pop(k) for k in (*grid, "gridspec_kw") if k in kw}
        fig = Figure(**kw)
        FigureCanvasAgg(fig)
        return fig, fig.subplots(nrows, ncols, **grid_kw)

    @staticmethod
    def close(fig: Any) -> None:
        """Nothing to free: no pyplot registry holds the figure."""


def _plt() -> _Figures:
    return _Figures()


def _algorithm(summary: dict[str, Any]) -> str:
    """The search's algorithm as its titles name it (the bracket form, options included)."""
    from hwnas.search.spec import algorithm_label

    return algorithm_label(str(summary["algorithm"]), summary.get("algorithm_options"))


def _save(plt: Any, fig: Any, path: Path) -> Path:
    """Lay out, write and close a figure (closing frees it: searches draw many)."""
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def zoom_on_fronts(
    ax: Any,
    ys: list[np.ndarray],
    keep: Sequence[float] = (),
    drawn: Sequence[tuple[np.ndarray, np.ndarray, Any]] = (),
) -> None:
    """Zoom a maximised y axis on where the fronts ``ys`` are: a few degenerate points
    (e.g. 10 % accuracy at zero latency, far below the rest) would otherwise squash the
    interesting region into a line; a front's cheap end that merely trails off stays in
    view (only points more than 3 interquartile ranges below the lower quartile are
    left out). The values in ``keep`` (a constraint's bound) stay in view, and the
    points of ``drawn`` series ((x, y, colour)) below the view are drawn on its lower
    edge and counted in the legend: the zoom hides none."""
    lo, hi = front_ylim(ys)
    if hi is None:
        return
    lo, hi = min([lo, *keep]), max([hi, *keep])
    pad = 0.08 * (hi - lo if hi > lo else 1.0)
    ax.set_ylim(lo - pad, hi + pad)
    floor = lo - pad
    points: set[tuple[float, float]] = set()  # a point in several series counts once
    for x, y, color in drawn:
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        below = y < floor
        if below.any():
            ax.scatter(
                x[below],
                np.full(int(below.sum()), floor),
                marker="v",
                s=20,
                color=color,
                clip_on=False,
                zorder=4,
            )
            points.update(zip(x[below].tolist(), y[below].tolist(), strict=True))
    if n := len(points):
        ax.scatter([], [], marker="v", s=20, color="0.4", label=f"{n} below the axis (on its edge)")


def front_ylim(ys: list[np.ndarray]) -> tuple[float, float | None]:
    """The (low, high) y range :func:`zoom_on_fronts` shows; (0, None) without points."""
    if not ys or not sum(len(y) for y in ys):
        return 0.0, None
    y = np.concatenate(ys)
    q1, q3 = np.percentile(y, [25, 75])
    return float(max(y.min(), q1 - 3.0 * (q3 - q1))), float(y.max())


def plot_pareto(problem: SearchProblem, summary: dict[str, Any], path: Path) -> Path:
    """Evaluated architectures, the front found and (where known) the exact front, on the
    first two objectives in their raw units."""
    plt = _plt()
    objs = problem.objectives
    X, raw = problem.evaluated_arrays()
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=110)
    i, j = (1, 0) if len(objs) > 1 else (0, 0)
    # with 3+ objectives the front is not a staircase in these two: points only
    stairs = len(objs) <= 2
    drawn: list[tuple[np.ndarray, np.ndarray, Any]] = []  # (x, y, colour) of each series
    if problem.exact is not None:
        E = problem.exact.F * problem.signs[None, :]
        o = np.argsort(E[:, i])
        if stairs:
            ax.step(E[o, i], E[o, j], where="post", color="0.3", lw=1)
        ax.scatter(E[:, i], E[:, j], s=14, facecolors="none", edgecolors="0.3", label="exact front")
        drawn.append((E[:, i], E[:, j], "0.3"))
    if len(raw):
        ok = problem._feasible(raw, X)
        if ok.any():
            ax.scatter(raw[ok, i], raw[ok, j], s=8, color="tab:blue", alpha=0.35, label="evaluated")
            drawn.append((raw[ok, i], raw[ok, j], "tab:blue"))
        if problem.constraints and (~ok).any():  # over a budget (a metric's included)
            with np.errstate(invalid="ignore"):
                broken = problem.constraint_values(raw, X) > 0  # (n, constraints)
            # one marker per set of budgets broken: which one a point broke, not all
            kinds = sorted({tuple(b) for b in broken[~ok] if b.any()}, key=lambda k: (-sum(k), k))
            for n, kind in enumerate(kinds):
                rows = (~ok) & np.all(broken == np.array(kind)[None, :], axis=1)
                cs = [str(c) for c, b in zip(problem.constraints, kind, strict=True) if b]
                grey = f"{0.35 + 0.15 * (n % 3):.2f}"
                ax.scatter(
                    raw[rows, i],
                    raw[rows, j],
                    s=12,
                    marker="x+12"[n % 4],
                    color=grey,
                    label=f"breaks {' and '.join(cs)}",
                )
                drawn.append((raw[rows, i], raw[rows, j], grey))
    if summary["pareto"]:
        P = np.array([[p[objs[i].name], p[objs[j].name]] for p in summary["pareto"]])
        o = np.argsort(P[:, 0])
        if stairs:
            ax.step(P[o, 0], P[o, 1], where="post", color="tab:red", lw=1.5)
        ax.scatter(P[:, 0], P[:, 1], s=22, color="tab:red", label="front found", zorder=3)
        drawn.append((P[:, 0], P[:, 1], "tab:red"))
    ys = [E[:, j]] if problem.exact is not None else []
    if summary["pareto"]:
        ys.append(P[:, 1])
    if objs[j].direction == "max":
        bounds = [c.bound for c in problem.constraints if c.objective == objs[j].name]
        zoom_on_fronts(ax, ys, keep=bounds, drawn=drawn)
    ax.set_xlabel(f"{objs[i].name} ({objs[i].unit})" if objs[i].unit else objs[i].name)
    ax.set_ylabel(f"{objs[j].name} ({objs[j].unit})" if objs[j].unit else objs[j].name)
    # a constraint on a plotted objective: its bound as a dashed line
    for c in problem.constraints:
        if c.objective == objs[i].name:
            ax.axvline(c.bound, color="tab:orange", ls="--", lw=1, label=str(c))
        elif c.objective == objs[j].name and len(objs) > 1:
            ax.axhline(c.bound, color="tab:orange", ls="--", lw=1, label=str(c))
    opts = summary.get("benchmark_options") or {}
    where = ", ".join(
        ",".join(v) if isinstance(v, list) else str(v)
        for k, v in opts.items()
        if k in ("dataset", "devices") and v
    )
    title = (
        f"{_algorithm(summary)} on {summary['benchmark']}"
        + (f" ({where})" if where else "")
        + f", {summary['evaluations']} evaluations"
    )
    if not stairs:
        rest = ", ".join(o.name for k, o in enumerate(objs) if k not in (i, j))
        title += f"\n(not shown: {rest}; the fronts are over all {len(objs)} objectives)"
    if summary.get("hv_fraction") is not None:
        title += (
            f"\nHV fraction {summary['hv_fraction']:.4f}, "
            f"front recall {summary['front_recall']:.2f}"
        )
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # nothing to label when every evaluation failed
        ax.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_progress(summary: dict[str, Any], path: Path) -> Path:
    """Quality of one search after every evaluation: HV fraction and front recall where
    the exact front is known, else the hypervolume of the front found (whether the
    budget was spent while still improving, or after it had levelled off)."""
    plt = _plt()
    best = (summary.get("mnas") or {}).get("best_within_target_history") or []
    if any(v is not None for v in best):  # mnas: also the answer it is after
        fig, (ax, ax2) = plt.subplots(2, 1, figsize=(6.4, 5.6), dpi=110, sharex=True)
        y = np.array([np.nan if v is None else v for v in best], dtype=float)
        ax2.plot(np.arange(1, len(y) + 1), y, color="tab:green", lw=1.5, label="found")
        top = summary["mnas"].get("table_best_within_target")
        if top is not None:
            ax2.axhline(top, color="0.4", ls="--", lw=1, label="best in the table")
            ax2.legend(fontsize=8, loc="lower right")
        quality = next(o["name"] for o in summary["objectives"] if o["direction"] == "max")
        cost = next(o["name"] for o in summary["objectives"] if o["direction"] == "min")
        ax2.set_ylabel(f"best {quality}\nwithin {cost} <= {summary['mnas']['target']:.4g}")
        ax2.grid(alpha=0.3)
        ax2.set_xlabel("evaluations")
    else:
        fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    hv_frac = summary.get("hv_fraction_history")
    if hv_frac:
        x = np.arange(1, len(hv_frac) + 1)
        ax.plot(x, hv_frac, color="tab:red", lw=1.5, label="HV fraction")
        ax.set_ylabel("HV fraction")
        lo = float(np.min(hv_frac[len(hv_frac) // 10 :]))
        ax.set_ylim(max(0.0, lo - 0.02), 1.0)
        right = ax.twinx()
        recall = summary["front_recall_history"]
        right.plot(x, recall, color="tab:blue", lw=1.2)
        right.set_ylabel("front recall", color="tab:blue")
        right.set_ylim(0.0, min(1.0, max(0.2, 1.15 * max(recall))))
        ax.plot([], [], color="tab:blue", lw=1.2, label="front recall")  # legend entry
        ax.legend(fontsize=8, loc="lower right")
    else:
        hv = summary.get("hv_history") or []
        ax.plot(np.arange(1, len(hv) + 1), hv, color="tab:red", lw=1.5)
        ax.set_ylabel("hypervolume of the front found")
    ax.set_xlabel("evaluations")
    ax.set_title(
        f"{_algorithm(summary)} on {summary['benchmark']}: quality per evaluation", fontsize=9
    )
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def plot_efficiency(
    curves: dict[str, dict[str, np.ndarray]],
    path: Path,
    metric: str = "hv_fraction",
    title: str = "",
) -> Path:
    """Median of ``metric`` vs evaluations with a min/max band, one panel per device.

    ``curves[device][algorithm]`` is an array (seeds, evaluations).
    """
    plt = _plt()
    devices: Sequence[str] = list(curves)
    fig, axes = plt.subplots(
        1, len(devices), figsize=(4.2 * len(devices), 3.6), dpi=110, squeeze=False
    )
    for ax, dev in zip(axes[0], devices, strict=True):
        for alg, arr in curves[dev].items():
            x = np.arange(1, arr.shape[1] + 1)
            med = np.median(arr, axis=0)
            ax.plot(x, med, lw=1.4, label=alg)
            ax.fill_between(x, arr.min(axis=0), arr.max(axis=0), alpha=0.15)
        ax.set_title(dev, fontsize=10)
        ax.set_xlabel("evaluations")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if metric in ("hv_fraction", "hypervolume"):
            # from where the medians are after the first 5 % of the budget (HV fraction:
            # 0.8 or lower): the first evaluations' steep rise would flatten the
            # differences that matter, and no algorithm's curve may fall out of view
            arrs = list(curves[dev].values())
            lo = min(float(np.median(a, axis=0)[a.shape[1] // 20]) for a in arrs)
            hi = max(float(a.max()) for a in arrs)
            if metric == "hv_fraction":
                lo, hi = min(lo, 0.8), 1.0
            if hi > lo:
                ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.02 * (hi - lo))
    axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(plt, fig, path)


def plot_dsearch(
    history: Sequence[dict[str, Any]],
    summary: dict[str, Any],
    alphas: Sequence[Any],
    op_names: Sequence[str],
    path: Path,
) -> Path:
    """A DCA-NAS search at a glance: expected and argmax-derived resource per epoch against
    the budgets, lambda and alpha entropy, and the final op weights per edge."""
    plt = _plt()
    n_heat = len(alphas)
    fig, axes = plt.subplots(
        1, 2 + n_heat, figsize=(4.2 * (2 + n_heat), 3.8), dpi=110, squeeze=False
    )
    ax, ax_l = axes[0][0], axes[0][1]
    ep = [r["epoch"] + 1 for r in history]
    unit = summary.get("resource_model", {}).get("unit", "")
    ax.plot(ep, [r["expected"] for r in history], marker=".", label="expected (eq. 3)")
    ax.plot(ep, [r["derived"] for r in history], marker=".", label="argmax cell")
    if summary.get("budget") is not None:
        ax.axhline(summary["budget"], color="tab:red", lw=1, label="device budget")
    sb = summary.get("search_budget")
    if sb is not None and sb != summary.get("budget"):
        ax.axhline(sb, color="tab:red", lw=1, ls="--", label="search budget")
    if ep:
        ax.scatter([ep[-1]], [summary["derived"]], marker="*", s=90, color="k", zorder=3,
                   label=f"answer ({summary.get('derivation', 'argmax')})")  # fmt: skip
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{summary.get('metric', 'resource')} ({unit})" if unit else "resource")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    entropy = [r["alpha_entropy"] for r in history]
    if all(r.get("lambda") is not None for r in history):
        ax_l.plot(ep, [r["lambda"] for r in history], color="tab:purple", marker=".")
        ax_l.set_ylabel("lambda", color="tab:purple")
        ax_e = ax_l.twinx()
    else:  # a soft penalty: no multiplier, the entropy alone
        ax_e = ax_l
        pen = (summary.get("penalty") or {}).get("kind", "soft")
        ax_l.set_title(f"{pen} penalty: no multiplier", fontsize=9)
    ax_e.plot(ep, entropy, color="tab:green", marker=".")
    ax_e.set_ylabel("alpha entropy (nats)", color="tab:green")
    ax_l.set_xlabel("epoch")
    ax_l.grid(alpha=0.3)
    names = ["normal cells", "reduction cells"] if n_heat == 2 else ["all cells"]
    for k, (a, name) in enumerate(zip(alphas, names, strict=False)):
        w = np.exp(a - a.max(axis=-1, keepdims=True))
        w = w / w.sum(axis=-1, keepdims=True)
        axh = axes[0][2 + k]
        im = axh.imshow(w, aspect="auto", cmap="viridis", vmin=0, vmax=1)
        axh.set_xticks(range(len(op_names)))
        axh.set_xticklabels(op_names, rotation=60, ha="right", fontsize=7)
        axh.set_ylabel("edge")
        axh.set_title(f"softmax(alpha), {name}", fontsize=9)
        fig.colorbar(im, ax=axh, fraction=0.05)
    ok = summary.get("satisfied")
    pen = (summary.get("penalty") or {}).get("kind", "lagrange")
    fig.suptitle(
        f"{summary.get('space')} search, {summary.get('constraint') or 'no constraint'}"
        f"{'' if pen == 'lagrange' else f' ({pen} penalty)'}: "
        f"answer {summary['derived']:.4g} {unit}"
        + ("" if ok is None else (" (fits)" if ok else " (VIOLATES)")),
        fontsize=10,
    )
    return _save(plt, fig, path)


def plot_lookup_graph(
    points: Sequence[tuple[float, float]],
    curve: tuple[np.ndarray, np.ndarray],
    metric: str,
    path: Path,
) -> Path:
    """The lookup graph: derived resource of each short search against its search budget,
    the isotonic curve used to invert it, and the identity for reference."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 4.4), dpi=110)
    P = np.asarray(points, dtype=np.float64)
    xs, ys = curve
    ax.scatter(P[:, 0], P[:, 1], s=18, alpha=0.6, label="searches")
    ax.plot(xs, ys, color="tab:red", marker=".", label="isotonic curve")
    lo, hi = float(min(P.min(), 0)), float(P.max())
    ax.plot([lo, hi], [lo, hi], color="0.5", ls=":", lw=1, label="derived = search budget")
    ax.set_xlabel(f"search budget ({metric})")
    ax.set_ylabel(f"derived cell ({metric})")
    ax.set_title("DCA-NAS lookup graph", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_training(
    metrics_jsonl: Path,
    panels: Sequence[tuple[str, Sequence[str]]],
    path: Path,
    title: str = "",
) -> Path | None:
    """Per-epoch curves from a ``metrics.jsonl`` log (one JSON object per epoch, key
    ``epoch``): one panel per ``(label, keys)``, keys missing from every record skipped.
    A line that is not such an object (one cut short by a kill) is skipped. Returns
    ``None`` (and writes nothing) when the log has no epoch yet."""
    import json

    records = []
    for line in Path(metrics_jsonl).read_text(errors="replace").splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(r, dict) and isinstance(r.get("epoch"), int | float):
            records.append(r)
    if not records:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), dpi=110,
                             squeeze=False)  # fmt: skip
    for ax, (label, keys) in zip(axes[0], panels, strict=True):
        drawn = 0
        for key in keys:
            pts = [(r["epoch"] + 1, r[key]) for r in records if r.get(key) is not None]
            if pts:
                x, y = zip(*pts, strict=True)
                ax.plot(x, y, marker="." if len(pts) < 60 else None, label=key)
                drawn += 1
        ax.set_xlabel("epochs trained")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if drawn > 1:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(plt, fig, path)
