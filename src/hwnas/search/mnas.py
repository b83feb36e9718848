"""MnasNet's latency-aware reward (Tan et al. 2019, paper 002), searched by regularized
evolution: for a user who wants the one most accurate network at a latency (or MFLOPs)
target T rather than a whole front.

The reward of an architecture m with quality ACC(m) (maximised) and cost LAT(m)
(minimised) is ``ACC(m) * (LAT(m) / T) ** w`` with ``w = alpha`` where LAT(m) <= T and
``w = beta`` beyond it. MnasNet's soft target is alpha = beta = -0.07 (a network twice
as fast is worth about 5 % relative accuracy, either side of T); its hard target is
alpha = 0, beta = -1 (accuracy alone counts under T, a steep penalty above).

MnasNet maximised the reward with an RNN controller trained by PPO; here it is
maximised by regularized (aging) evolution (Real et al. 2019), which needs no
controller, matches RL on NAS benchmarks and keeps every evaluation a real one:
tournament of ``sample_size`` from a population of ``pop_size``, the winner mutated in
one choice, the oldest member retired. Every evaluation is stored, so the run's measured
front and hypervolume are reported as for any other algorithm, and the summary names the
best architecture by reward and the best one within the target.
"""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar

import numpy as np

from hwnas.errors import HwnasError
from hwnas.registry import ALGORITHMS
from hwnas.search.algorithms import MAX_STALLED_BATCHES, SearchAlgorithm
from hwnas.search.problem import SearchProblem

# one-choice mutations tried for a child the search has not evaluated yet
_MUTATION_TRIES = 32


def mnas_reward(
    quality: np.ndarray, cost: np.ndarray, target: float, alpha: float, beta: float
) -> np.ndarray:
    """MnasNet's reward ``quality * (cost / target) ** w`` (w = alpha within the target,
    beta beyond it); nan where either value is missing or the cost is not positive."""
    quality = np.asarray(quality, dtype=np.float64)
    cost = np.asarray(cost, dtype=np.float64)
    ratio = np.where(cost > 0, cost / target, np.nan)
    w = np.where(ratio <= 1.0, alpha, beta)
    with np.errstate(invalid="ignore", divide="ignore"):
        return quality * np.power(ratio, w)


@ALGORITHMS.register("mnas")
class MnasSearch(SearchAlgorithm):
    """MnasNet's latency-aware reward ACC x (LAT/T)^w maximised by regularized evolution
    (one quality and one cost objective; ``target`` defaults to the median cost of the
    first population)."""

    name = "mnas"
    option_help: ClassVar[dict[str, str]] = {
        "target": "the cost target T of the reward (default: the first population's median cost)",
        "alpha": "reward exponent w when the cost is at or under T (<= 0)",
        "beta": "reward exponent w when the cost is over T (<= 0)",
        "sample_size": "tournament size of regularized evolution (default: pop_size / 4)",
    }
    min_objectives = 2
    max_objectives = 2

    def __init__(
        self,
        seed: int = 0,
        pop_size: int | None = None,
        target: float | None = None,
        alpha: float = -0.07,
        beta: float = -0.07,
        sample_size: int | None = None,
    ) -> None:
        super().__init__(seed=seed, pop_size=pop_size)
        if target is not None and not (np.isfinite(target) and target > 0):
            raise HwnasError(f"mnas: target must be a positive number, got {target}")
        if alpha > 0 or beta > 0:
            raise HwnasError(
                f"mnas: alpha and beta must be <= 0 (got {alpha:g}, {beta:g}): a positive "
                "exponent rewards slower networks"
            )
        if sample_size is not None and sample_size < 1:
            raise HwnasError(f"mnas: sample_size must be >= 1, got {sample_size}")
        self.target = target
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.sample_size = sample_size
        #: the target the run used (``target``, or the first population's median cost)
        self.target_used: float | None = None

    def check(self, problem: SearchProblem) -> None:
        super().check(problem)
        dirs = sorted(o.direction for o in problem.objectives)
        if dirs != ["max", "min"]:
            names = ", ".join(f"{o.name} ({o.direction})" for o in problem.objectives)
            raise HwnasError(
                "algorithm 'mnas' takes one maximised objective (accuracy) and one "
                f"minimised one (latency, MFLOPs), got {names}"
            )

    def _columns(self, problem: SearchProblem) -> tuple[int, int]:
        q = next(i for i, o in enumerate(problem.objectives) if o.direction == "max")
        return q, 1 - q

    def _rewards(self, problem: SearchProblem, raw: np.ndarray, G: np.ndarray) -> np.ndarray:
        """Rewards of evaluated rows; failed rows -inf, rows that break a constraint below
        every feasible one (ordered by how far they break it)."""
        q, c = self._columns(problem)
        r = mnas_reward(raw[:, q], raw[:, c], self.target_used or 1.0, self.alpha, self.beta)
        r = np.where(np.isfinite(r), r, -np.inf)
        if G.shape[1]:
            viol = np.where(np.isfinite(G), np.clip(G, 0, None), 1e12).sum(axis=1)
            r = np.where(viol > 0, -1e12 - viol, r)
        return r

    def run(self, problem: SearchProblem) -> None:
        self.check(problem)
        rng = np.random.default_rng(self.seed)
        space = problem.space
        cards = space.cardinalities
        P = self.pop(problem)
        S = min(self.sample_size or max(2, P // 4), P)
        first = space.canonicalize(self.initial_population(problem, P, rng))
        raw, G, answered = problem.evaluate(first)
        _, c = self._columns(problem)
        if self.target is not None:
            self.target_used = float(self.target)
        else:
            costs = raw[answered, c]
            costs = costs[np.isfinite(costs) & (costs > 0)]
            if not len(costs):
                raise HwnasError("mnas: no evaluation of the first population succeeded")
            self.target_used = float(np.median(costs))
        rewards = self._rewards(problem, raw, G)
        keep = np.nonzero(answered)[0]
        if len(keep) > P:  # a warm start larger than the population: its best P
            keep = keep[np.argsort(-rewards[keep], kind="stable")[:P]]
        population: deque[tuple[np.ndarray, float]] = deque(
            (first[i], float(rewards[i])) for i in keep
        )
        stalled = 0
        while not problem.exhausted and stalled < MAX_STALLED_BATCHES * 10 and population:
            picks = rng.choice(len(population), size=min(S, len(population)), replace=False)
            parent = population[max(picks, key=lambda i: population[i][1])][0]
            child = parent
            for _ in range(_MUTATION_TRIES):
                child = parent.copy()
                d = int(rng.integers(len(cards)))
                if cards[d] > 1:  # redraw one choice among the other values
                    child[d] = (child[d] + 1 + rng.integers(cards[d] - 1)) % cards[d]
                child = space.canonicalize(child[None, :])[0]
                if not problem.is_evaluated(child[None, :])[0]:
                    break
            before = problem.n_seen
            raw, G, answered = problem.evaluate(child[None, :])
            if not answered[0]:
                break
            stalled = stalled + 1 if problem.n_seen == before else 0
            population.append((child, float(self._rewards(problem, raw, G)[0])))
            if len(population) > P:
                population.popleft()  # aging: the oldest retires, however good

    def report(self, problem: SearchProblem) -> dict[str, Any]:
        """The target used and the best evaluated architectures: by reward, and the most
        accurate within the target (both among those that meet every constraint)."""
        q, c = self._columns(problem)
        vecs, raw = problem.evaluated_arrays()
        out: dict[str, Any] = {
            "target": self.target_used,
            "alpha": self.alpha,
            "beta": self.beta,
            "best_reward": None,
            "best_within_target": None,
            # the best quality within the target after each evaluation (None before any)
            "best_within_target_history": [],
        }
        if not len(raw) or self.target_used is None:
            return {"mnas": out}
        all_raw = np.array(problem.raw, dtype=np.float64)
        all_G = problem.constraint_values(all_raw, np.array(problem.vectors))
        ok = np.isfinite(all_raw).all(axis=1) & (all_G <= 0).all(axis=1)
        ok &= all_raw[:, c] <= self.target_used
        running = np.maximum.accumulate(np.where(ok, all_raw[:, q], -np.inf))
        out["best_within_target_history"] = [float(v) if np.isfinite(v) else None for v in running]
        table = problem.evaluator.table() if problem.exact is not None else None
        if table is not None:  # a fully known benchmark: the best there is within the target
            t_vecs, t_raw = table
            t_ok = (problem.constraint_values(t_raw, t_vecs) <= 0).all(axis=1)
            t_ok &= t_raw[:, c] <= self.target_used
            out["table_best_within_target"] = float(t_raw[t_ok, q].max()) if t_ok.any() else None
        G = problem.constraint_values(raw, vecs)
        feasible = np.all(G <= 0, axis=1) if G.shape[1] else np.ones(len(raw), dtype=bool)
        rewards = np.where(feasible, self._rewards(problem, raw, G), -np.inf)

        def entry(i: int) -> dict[str, Any]:
            return {
                "arch_key": problem.space.keys(vecs[i : i + 1])[0],
                "arch": problem.space.decode(vecs[i]),
                **{o.name: float(raw[i, k]) for k, o in enumerate(problem.objectives)},
                "reward": float(rewards[i]),
            }

        if np.isfinite(rewards).any():
            out["best_reward"] = entry(int(np.argmax(rewards)))
        within = feasible & (raw[:, c] <= self.target_used)
        if within.any():
            idx = np.nonzero(within)[0]
            out["best_within_target"] = entry(int(idx[np.argmax(raw[idx, q])]))
        return {"mnas": out}
