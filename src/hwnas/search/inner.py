"""A vectorised NSGA-II for LINAS's inner search over predicted objectives.

The inner search runs every LINAS iteration on predictors that answer thousands of
candidates in one call, so its own bookkeeping must cost microseconds per candidate.
pymoo's NSGA-II keeps one Python object per individual; measured here it spent about
90 ms per generation of a 200-candidate population in that bookkeeping, i.e. about 9 s
for a 20,000-candidate inner search. This version keeps the population as one integer
matrix and does selection, two-point crossover, categorical mutation, deduplication,
non-dominated sorting and crowding with whole-array operations.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from hwnas.space.base import SearchSpace


def crowding_distance(F: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of the rows of ``F`` (boundary points get inf)."""
    n, m = F.shape
    if n <= 2:
        return np.full(n, np.inf)
    d = np.zeros(n)
    for j in range(m):
        order = np.argsort(F[:, j], kind="stable")
        f = F[order, j]
        span = f[-1] - f[0]
        d[order[0]] = d[order[-1]] = np.inf
        if span > 0:
            d[order[1:-1]] += (f[2:] - f[:-2]) / span
    return d


def nondominated_rank(F: np.ndarray) -> np.ndarray:
    """Front number (0 = non-dominated) of each row of ``F`` (pymoo's compiled sort)."""
    return NonDominatedSorting().do(F, return_rank=True)[1].astype(np.int64)


def _survive(F: np.ndarray, G: np.ndarray | None, k: int) -> np.ndarray:
    """Indices of the ``k`` survivors: feasibility, then rank, then crowding."""
    n = F.shape[0]
    if n <= k:
        return np.arange(n)
    viol = np.zeros(n) if G is None or G.size == 0 else np.clip(G, 0, None).sum(axis=1)
    feas = viol <= 0
    rank = np.full(n, np.iinfo(np.int64).max // 2, dtype=np.int64)
    if feas.any():
        rank[feas] = nondominated_rank(F[feas])
    rank[~feas] += np.argsort(np.argsort(viol[~feas]))  # infeasible: by violation
    crowd = np.zeros(n)
    taken = 0
    for r in np.unique(rank[feas]):  # crowding only where it can decide survival
        idx = np.nonzero(rank == r)[0]
        crowd[idx] = crowding_distance(F[idx])
        taken += len(idx)
        if taken >= k:
            break
    order = np.lexsort((-crowd, rank))
    return order[:k]


def vectorized_nsga2(
    space: SearchSpace,
    objective: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]],
    pop_size: int,
    generations: int,
    rng: np.random.Generator,
    initial: np.ndarray | None = None,
    mutation_prob: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run NSGA-II; ``objective(X) -> (F minimised, G <= 0 feasible or None)``.

    Returns every distinct candidate it generated and their objective values, so the
    caller can choose from all of them, not only the final population. A child that was
    generated before is dropped rather than predicted again.
    """
    card = space.cardinalities
    n_var = space.n_dims
    p_mut = mutation_prob if mutation_prob is not None else 1.0 / n_var
    X = space.sample(pop_size, rng) if initial is None else space.canonicalize(initial)
    if len(X) < pop_size:
        X = np.concatenate([X, space.sample(pop_size - len(X), rng)])
    X = np.unique(X, axis=0)
    F, G = objective(X)
    seen_X, seen_F = [X], [F]
    archive = {row.tobytes() for row in X}
    keep = _survive(F, G, pop_size)
    X, F = X[keep], F[keep]
    G = G[keep] if G is not None else None
    for _ in range(generations):
        n = len(X)
        # binary tournament: X is kept in survival order (feasibility, rank, crowding),
        # so the better of two is the one with the smaller index
        a, b = rng.integers(0, n, size=(2, 2 * pop_size))
        parents = np.minimum(a, b).reshape(pop_size, 2)
        p1, p2 = X[parents[:, 0]], X[parents[:, 1]]
        # two-point crossover
        cuts = np.sort(rng.integers(0, n_var + 1, size=(pop_size, 2)), axis=1)
        cols = np.arange(n_var)[None, :]
        swap = (cols >= cuts[:, :1]) & (cols < cuts[:, 1:])
        child = np.where(swap, p2, p1)
        # categorical reset mutation (at least one variable changes on average)
        mut = rng.random(child.shape) < p_mut
        child = np.where(mut, rng.integers(0, card, size=child.shape), child)
        child = space.canonicalize(child)
        # keep only children never generated before: each candidate is predicted once
        _, first = np.unique(child, axis=0, return_index=True)
        first.sort()
        keys = [row.tobytes() for row in child[first]]
        fresh = [i for i, key in zip(first.tolist(), keys, strict=True) if key not in archive]
        if not fresh:
            continue
        child = child[fresh]
        archive.update(row.tobytes() for row in child)
        Fc, Gc = objective(child)
        seen_X.append(child)
        seen_F.append(Fc)
        X = np.concatenate([X, child])
        F = np.concatenate([F, Fc])
        if G is not None and Gc is not None:
            G = np.concatenate([G, Gc])
        keep = _survive(F, G, pop_size)
        X, F = X[keep], F[keep]
        G = G[keep] if G is not None else None
    return np.concatenate(seen_X), np.concatenate(seen_F)
