"""Pareto fronts, reference points and the quality measures of a search."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from hwnas.errors import HwnasError


def non_dominated_mask(F: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``F`` (all objectives minimised).

    Rows with identical values do not dominate each other, so all copies are kept.
    """
    F = np.asarray(F, dtype=np.float64)
    if np.isnan(F).any():  # NaN compares false both ways: it would break the sort and pymoo
        raise HwnasError("non_dominated_mask: objective values hold NaN (drop failed rows)")
    n = F.shape[0]
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    if F.shape[1] == 2:
        # O(n log n): sort by f1 then f2; a point survives if its f2 beats every point
        # with a strictly smaller f1 and it is minimal among equal-f1 points.
        order = np.lexsort((F[:, 1], F[:, 0]))
        f1, f2 = F[order, 0], F[order, 1]
        _, start = np.unique(f1, return_index=True)
        group_min = np.minimum.reduceat(f2, start)
        prev_best = np.concatenate([[np.inf], np.minimum.accumulate(group_min)[:-1]])
        sizes = np.diff(np.append(start, n))
        # the first f1 group has nothing before it (its f2 may be inf, which inf does not beat)
        first = np.repeat(np.arange(len(start)) == 0, sizes)
        keep = (f2 == np.repeat(group_min, sizes)) & (first | (f2 < np.repeat(prev_best, sizes)))
        mask[order[keep]] = True
        return mask
    # pymoo's sorting crashes on mixed infinities: the largest finite floats order alike
    big = np.finfo(np.float64).max
    front = NonDominatedSorting().do(
        np.nan_to_num(F, posinf=big, neginf=-big), only_non_dominated_front=True
    )
    mask[np.asarray(front, dtype=np.int64)] = True
    return mask


def reference_point(front: np.ndarray, margin: float = 0.1) -> np.ndarray:
    """Nadir of a front plus ``margin`` of its range in each objective (minimisation:
    a maximised objective such as accuracy enters negated)."""
    front = np.asarray(front, dtype=np.float64)
    if front.ndim != 2 or len(front) == 0 or not np.isfinite(front).all():
        raise HwnasError(
            "reference_point needs a non-empty (points, objectives) array of finite values, "
            f"got shape {front.shape}"
        )
    lo, hi = front.min(axis=0), front.max(axis=0)
    span = np.where(hi > lo, hi - lo, np.maximum(np.abs(hi), 1.0))
    return hi + margin * span


def hypervolume(F: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume of the points of ``F`` that strictly dominate ``ref`` (pymoo's HV), all
    objectives minimised (negate a maximised one, e.g. accuracy, in both)."""
    F = np.asarray(F, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if ref.ndim != 1 or not np.isfinite(ref).all():
        raise HwnasError(f"hypervolume: the reference point must be finite numbers, got {ref}")
    if F.size == 0:
        return 0.0
    if F.ndim != 2 or F.shape[1] != len(ref):
        raise HwnasError(
            f"hypervolume: points of shape {F.shape} do not match a reference point of "
            f"{len(ref)} objectives"
        )
    if np.isnan(F).any():
        raise HwnasError("hypervolume: objective values hold NaN (drop failed rows)")
    inside = np.all(F < ref[None, :], axis=1)
    if not inside.any():
        return 0.0
    pts = F[inside]
    pts = pts[non_dominated_mask(pts)]
    return float(HV(ref_point=ref)(pts))


@dataclass
class ExactFront:
    """The true Pareto front of a fully known benchmark, for judging searches."""

    keys: list[str]
    F: np.ndarray  # minimisation values of the front
    ref: np.ndarray
    hv: float
    lo: np.ndarray  # table min/max per objective, for scaled IGD
    hi: np.ndarray

    @classmethod
    def from_table(
        cls, keys: list[str], F_all: np.ndarray, feasible: np.ndarray | None = None
    ) -> ExactFront:
        F_all = np.asarray(F_all, dtype=np.float64)
        lo, hi = F_all.min(axis=0), F_all.max(axis=0)
        idx = np.arange(len(keys)) if feasible is None else np.nonzero(feasible)[0]
        mask = non_dominated_mask(F_all[idx])
        front_idx = idx[mask]
        F = F_all[front_idx]
        ref = reference_point(F)
        return cls([keys[i] for i in front_idx], F, ref, hypervolume(F, ref), lo, hi)

    def _scaled(self, F: np.ndarray) -> np.ndarray:
        """Objectives scaled by the table's min/max (the space IGD is measured in)."""
        span = np.where(self.hi > self.lo, self.hi - self.lo, 1.0)
        return (F - self.lo) / span

    def distances(self, point: np.ndarray) -> np.ndarray:
        """Distance of each front point to ``point``, on min/max-scaled objectives."""
        return np.sqrt(((self._scaled(self.F) - self._scaled(point[None, :])) ** 2).sum(axis=1))

    def scores(self, front_F: np.ndarray, keys: list[str], F: np.ndarray) -> dict[str, float]:
        """Quality of a search against this front: ``hypervolume`` and ``hv_fraction`` of
        its current front ``front_F``; ``front_recall`` and ``igd`` of everything it
        evaluated (``keys``, minimisation values ``F``)."""
        hv = hypervolume(front_F, self.ref)
        found = set(keys)
        recall = sum(k in found for k in self.keys) / len(self.keys)
        F = np.asarray(F, dtype=np.float64).reshape(-1, self.F.shape[1])
        if F.shape[0]:
            a, b = self._scaled(self.F), self._scaled(F)
            d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
            igd = float(d.mean())
        else:
            igd = float("inf")
        return {
            "hypervolume": hv,
            "hv_fraction": hv / self.hv if self.hv > 0 else 0.0,
            "front_recall": recall,
            "igd": igd,
        }
