"""Plots a person would rather look at than read: fronts and search-efficiency curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from hwnas.search.problem import SearchProblem


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_pareto(problem: SearchProblem, summary: dict[str, Any], path: Path) -> Path:
    """Evaluated architectures, the front found and (where known) the exact front, on the
    first two objectives in their raw units."""
    plt = _plt()
    objs = problem.objectives
    _, raw = problem.evaluated_arrays()
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=110)
    i, j = (1, 0) if len(objs) > 1 else (0, 0)
    if problem.exact is not None:
        E = problem.exact.F * problem.signs[None, :]
        o = np.argsort(E[:, i])
        ax.step(E[o, i], E[o, j], where="post", color="0.3", lw=1, label="exact front")
        ax.scatter(E[:, i], E[:, j], s=14, facecolors="none", edgecolors="0.3")
    if len(raw):
        ax.scatter(raw[:, i], raw[:, j], s=8, color="tab:blue", alpha=0.35, label="evaluated")
    if summary["pareto"]:
        P = np.array([[p[objs[i].name], p[objs[j].name]] for p in summary["pareto"]])
        o = np.argsort(P[:, 0])
        ax.step(P[o, 0], P[o, 1], where="post", color="tab:red", lw=1.5)
        ax.scatter(P[:, 0], P[:, 1], s=22, color="tab:red", label="front found", zorder=3)
    # zoom on where the fronts are: a few degenerate points (e.g. 10 % accuracy at zero
    # latency) would otherwise squash the interesting region into a line
    ys = [E[:, j]] if problem.exact is not None else []
    if summary["pareto"]:
        ys.append(P[:, 1])
    if ys:
        y = np.concatenate(ys)
        lo, hi = np.percentile(y, 10), y.max()
        pad = 0.08 * (hi - lo if hi > lo else 1.0)
        if objs[j].direction == "max":
            ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel(f"{objs[i].name} ({objs[i].unit})" if objs[i].unit else objs[i].name)
    ax.set_ylabel(f"{objs[j].name} ({objs[j].unit})" if objs[j].unit else objs[j].name)
    title = (
        f"{summary['algorithm']} on {summary['benchmark']}, {summary['evaluations']} evaluations"
    )
    if summary.get("hv_fraction") is not None:
        title += (
            f"\nHV fraction {summary['hv_fraction']:.4f}, "
            f"front recall {summary['front_recall']:.2f}"
        )
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


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
        if metric == "hv_fraction":
            ax.set_ylim(0.8, 1.0)
    axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
