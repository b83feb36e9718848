"""Search algorithms: random search and pymoo's evolutionary algorithms, driven by
ask/tell against a ``SearchProblem`` until its evaluation budget is spent."""

from __future__ import annotations

import types
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from pymoo.core.mutation import Mutation
from pymoo.core.problem import Problem
from pymoo.core.termination import NoTermination
from pymoo.operators.crossover.pntx import TwoPointCrossover
from pymoo.operators.sampling.rnd import IntegerRandomSampling
from pymoo.problems.static import StaticProblem
from pymoo.util.ref_dirs import get_reference_directions

from hwnas.errors import HwnasError
from hwnas.registry import ALGORITHMS
from hwnas.search.problem import SearchProblem

# Stop an algorithm that keeps proposing only evaluated architectures (converged, or the
# space is smaller than the budget) after this many batches with nothing new.
MAX_STALLED_BATCHES = 200
#: rounds of extra samples :func:`sample_feasible` draws looking for feasible ones
FEASIBLE_DRAWS = 20


def default_pop_size(budget: int) -> int:
    """Population of an evolutionary search for a given evaluation budget."""
    return int(np.clip(budget // 10, 10, 50))


class SearchAlgorithm(ABC):
    """Proposes architectures to a ``SearchProblem`` until its budget is spent."""

    name: ClassVar[str] = "algorithm"
    min_objectives: ClassVar[int] = 1
    max_objectives: ClassVar[int | None] = None
    supports_constraints: ClassVar[bool] = True
    #: what each option does, for ``hwnas algorithms NAME`` (merged along the class tree)
    option_help: ClassVar[dict[str, str]] = {
        "pop_size": "population per generation (default: budget / 10, within 10..50)"
    }

    def __init__(self, seed: int = 0, pop_size: int | None = None) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise HwnasError(f"{self.name}: seed must be an integer >= 0, got {seed!r}")
        if pop_size is not None and pop_size < 1:
            raise HwnasError(f"{self.name}: pop_size must be >= 1, got {pop_size}")
        self.seed = seed
        self.pop_size = pop_size
        #: architectures to start from (a warm start: e.g. the front of a search for
        #: another device or on MFLOPs), evaluated first; None: a random start
        self.initial: np.ndarray | None = None

    def initial_population(
        self, problem: SearchProblem, n: int, rng: np.random.Generator
    ) -> np.ndarray:
        """The first ``n`` architectures to evaluate: the warm start's (all of them,
        even beyond ``n``), then random ones up to ``n``."""
        warm = (
            np.zeros((0, problem.space.n_dims), dtype=np.int64)
            if self.initial is None
            else np.asarray(self.initial, dtype=np.int64)
        )
        fill = max(n - len(warm), 0)
        return np.concatenate([warm, sample_feasible(problem, fill, rng)]) if fill else warm

    def check(self, problem: SearchProblem) -> None:
        """Raise a clear error when the problem is one this algorithm cannot take."""
        m = problem.n_obj
        if m < self.min_objectives or (self.max_objectives is not None and m > self.max_objectives):
            hi = self.max_objectives
            if hi is None:
                span = f"{self.min_objectives} or more"
            elif hi == self.min_objectives:
                span = f"exactly {hi}"
            else:
                span = f"{self.min_objectives} to {hi}"
            from hwnas.registry import ALGORITHMS

            able = [
                n
                for n in ALGORITHMS.names()
                if (c := ALGORITHMS.get(n)).min_objectives <= m
                and (c.max_objectives is None or m <= c.max_objectives)
            ]
            raise HwnasError(
                f"algorithm '{self.name}' takes {span} objectives, got {m}"
                + (f" (these take {m}: {', '.join(able)})" if able else "")
            )
        if problem.n_constr and not self.supports_constraints:
            raise HwnasError(f"algorithm '{self.name}' does not support constraints")

    def pop(self, problem: SearchProblem) -> int:
        return self.pop_size or default_pop_size(problem.budget)

    @abstractmethod
    def run(self, problem: SearchProblem) -> None:
        """Evaluate architectures through ``problem.evaluate`` until it is exhausted."""


@ALGORITHMS.register("random")
class RandomSearch(SearchAlgorithm):
    """Uniform random sampling of distinct architectures (the baseline to beat)."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed=seed)  # no population: a pop_size option would do nothing

    def run(self, problem: SearchProblem) -> None:
        rng = np.random.default_rng(self.seed)
        if self.initial is not None:
            problem.evaluate(self.initial)
        stalled = 0
        while not problem.exhausted and stalled < MAX_STALLED_BATCHES:
            before = problem.n_seen
            n = min(problem.remaining, 16)
            # near the end of a small space uniform draws keep hitting evaluated cells:
            # draw from the ones left instead
            x = sample_feasible(problem, n, rng) if stalled < 3 else _unevaluated(problem, n, rng)
            problem.evaluate(x)
            stalled = stalled + 1 if problem.n_seen == before else 0


def sample_feasible(problem: SearchProblem, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random architectures that meet the constraints known before evaluation
    (params, MFLOPs, a predicted latency: :meth:`SearchProblem.known_violation`), so no
    evaluation is spent on one that cannot be feasible; plain samples when no such
    constraint exists. Where too few feasible ones turn up, the least violating fill in.
    Distinct networks (canonical vectors); each draw's violation is computed once."""
    first = problem.space.sample(n, rng)
    if n == 0 or not problem.known_constraints:
        return first
    space = problem.space
    seen: dict[str, tuple[np.ndarray, float]] = {}
    draw = first
    for _ in range(FEASIBLE_DRAWS):
        draw = space.canonicalize(draw)
        fresh = {k: i for i, k in enumerate(space.keys(draw)) if k not in seen}
        if fresh:
            rows = draw[list(fresh.values())]
            v = problem.known_violation(rows)
            assert v is not None
            seen.update({k: (row, float(x)) for k, row, x in zip(fresh, rows, v, strict=True)})
        if sum(x <= 0 for _, x in seen.values()) >= n:
            break
        draw = space.sample(max(16 * n, 256), rng)
    pool = np.stack([row for row, _ in seen.values()])
    v = np.array([x for _, x in seen.values()])
    # feasible ones in random order, then the least violating
    order = np.lexsort((rng.random(len(pool)), np.where(v <= 0, 0.0, v)))
    return pool[order[:n]]


def _unevaluated(problem: SearchProblem, n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` random architectures not evaluated yet, drawn from the whole space
    where it is small enough to list (else plain samples); those that meet the
    constraints known before evaluation first."""
    space = problem.space
    if space.size() > 2**20:
        return sample_feasible(problem, n, rng)
    every = np.stack(np.unravel_index(np.arange(space.size()), space.cardinalities), axis=1)
    left = every[~problem.is_evaluated(every)]
    left = left[rng.permutation(len(left))]
    v = problem.known_violation(left) if len(left) else None
    if v is not None:
        left = left[np.argsort(v > 0, kind="stable")]
    return left[: 4 * n]


class ResetMutation(Mutation):
    """Categorical mutation: each variable is redrawn uniformly with probability
    ``prob_var`` (default 1/n_var). Architecture choices are categories, so polynomial
    mutation's bias towards neighbouring integers has no meaning here."""

    def _do(
        self, problem: Problem, X: np.ndarray, *args: Any, random_state: Any = None, **kwargs: Any
    ) -> np.ndarray:
        rng = random_state if random_state is not None else np.random.default_rng()
        X = np.round(X).astype(np.int64)
        p = self.get_prob_var(problem, size=len(X))
        p = np.broadcast_to(np.asarray(p, dtype=float).reshape(-1, 1), X.shape)
        mask = rng.random(X.shape) < p
        xl, xu = problem.bounds()
        draws = rng.integers(xl.astype(np.int64), xu.astype(np.int64) + 1, size=X.shape)
        return np.where(mask, draws, X)


def pymoo_operators(initial: np.ndarray | None = None) -> dict[str, Any]:
    """Integer sampling (or a given initial population), two-point crossover and
    categorical reset mutation."""
    return {
        "sampling": IntegerRandomSampling() if initial is None else initial,
        "crossover": TwoPointCrossover(prob=0.9),
        "mutation": ResetMutation(),
    }


def pymoo_problem(problem: SearchProblem) -> Problem:
    xl, xu = problem.space.bounds
    return Problem(
        n_var=problem.space.n_dims,
        n_obj=problem.n_obj,
        n_ieq_constr=problem.n_constr,
        xl=xl,
        xu=xu,
        vtype=int,
    )


def run_pymoo(algorithm: Any, problem: SearchProblem, seed: int) -> None:
    """Drive a pymoo algorithm by ask/tell until the problem's budget is spent."""
    from pymoo.core.evaluator import Evaluator as PymooEvaluator

    pm = pymoo_problem(problem)
    algorithm.setup(pm, termination=NoTermination(), seed=seed, verbose=False)
    xl, xu = problem.space.bounds
    stalled = 0
    while not problem.exhausted and stalled < MAX_STALLED_BATCHES:
        pop = algorithm.ask()
        X = np.clip(np.round(pop.get("X")).astype(np.int64), xl, xu)
        pop.set("X", X)
        before = problem.n_seen
        raw, G, answered = problem.evaluate(X)
        if not answered.all():  # budget ran out inside this batch
            break
        stalled = stalled + 1 if problem.n_seen == before else 0
        kwargs = {"F": problem.minimisation(raw)}
        if problem.n_constr:
            kwargs["G"] = np.where(np.isfinite(G), G, 1e12)
        PymooEvaluator().eval(StaticProblem(pm, **kwargs), pop)
        algorithm.tell(infills=pop)


def reference_directions(n_obj: int, n_points: int, seed: int) -> np.ndarray:
    if n_obj == 2:
        return get_reference_directions("das-dennis", 2, n_partitions=max(n_points - 1, 1))
    return get_reference_directions("energy", n_obj, n_points, seed=seed)


class PymooAlgorithm(SearchAlgorithm):
    """Base of the pymoo-backed algorithms: build the algorithm, then ask/tell."""

    def build(self, problem: SearchProblem) -> Any:
        raise NotImplementedError

    def operators(self, problem: SearchProblem, exact: int | None = None) -> dict[str, Any]:
        """pymoo's operators; a warm start is the first population (random ones added
        up to the population size; cut to ``exact`` rows for an algorithm whose first
        population must have that size, as MOEA/D's one per reference direction). A
        random first population meets the constraints known before evaluation."""
        if self.initial is None and not problem.known_constraints:
            return pymoo_operators()
        rng = np.random.default_rng(self.seed)
        first = self.initial_population(problem, exact or self.pop(problem), rng)
        return pymoo_operators(first if exact is None else first[:exact])

    def run(self, problem: SearchProblem) -> None:
        if self.initial is not None:  # all of it first, also what a population cannot hold
            problem.evaluate(self.initial)
        run_pymoo(self.build(problem), problem, self.seed)


@ALGORITHMS.register("nsga2")
class NSGA2Search(PymooAlgorithm):
    """NSGA-II (pymoo): non-dominated sorting with crowding distance."""

    name = "nsga2"
    max_objectives = 3

    def build(self, problem: SearchProblem) -> Any:
        from pymoo.algorithms.moo.nsga2 import NSGA2

        return NSGA2(
            pop_size=self.pop(problem), eliminate_duplicates=True, **self.operators(problem)
        )


@ALGORITHMS.register("agemoea")
class AGEMOEASearch(PymooAlgorithm):
    """AGE-MOEA (pymoo): adaptive geometry estimation of the front."""

    name = "agemoea"
    min_objectives = 2

    def build(self, problem: SearchProblem) -> Any:
        from pymoo.algorithms.moo.age import AGEMOEA

        return AGEMOEA(
            pop_size=self.pop(problem), eliminate_duplicates=True, **self.operators(problem)
        )


@ALGORITHMS.register("unsga3")
class UNSGA3Search(PymooAlgorithm):
    """U-NSGA-III (pymoo): reference-direction niching, for many objectives."""

    name = "unsga3"
    min_objectives = 2

    def build(self, problem: SearchProblem) -> Any:
        from pymoo.algorithms.moo.unsga3 import UNSGA3

        pop = self.pop(problem)
        ref = reference_directions(problem.n_obj, pop, self.seed)
        return UNSGA3(ref, pop_size=pop, eliminate_duplicates=True, **self.operators(problem))


@ALGORITHMS.register("moead")
class MOEADSearch(PymooAlgorithm):
    """MOEA/D (pymoo): decomposition into scalar subproblems (no constraints)."""

    name = "moead"
    min_objectives = 2
    supports_constraints = False

    def build(self, problem: SearchProblem) -> Any:
        from pymoo.algorithms.moo.moead import MOEAD

        ref = reference_directions(problem.n_obj, self.pop(problem), self.seed)
        return MOEAD(
            ref,
            n_neighbors=min(15, len(ref)),
            prob_neighbor_mating=0.7,
            **self.operators(problem, exact=len(ref)),
        )


@ALGORITHMS.register("ctaea")
class CTAEASearch(PymooAlgorithm):
    """C-TAEA (pymoo): two-archive algorithm built for constrained problems."""

    name = "ctaea"
    min_objectives = 2

    def build(self, problem: SearchProblem) -> Any:
        from pymoo.algorithms.moo.ctaea import CTAEA

        ref = reference_directions(problem.n_obj, self.pop(problem), self.seed)
        algorithm = CTAEA(ref, eliminate_duplicates=True, **self.operators(problem))
        algorithm.survival._updateDA = types.MethodType(_update_da, algorithm.survival)
        return algorithm


def _update_da(survival: Any, pop: Any, Hd: Any, n_survive: int) -> Any:
    """pymoo 0.6's C-TAEA diversity-archive update (``CADASurvival._updateDA``), ending:
    pymoo's visits only the first ``n_survive`` niches, so a population smaller than the
    reference directions (a small space, 64 architectures: fewer distinct ones than the
    population) left members it never took, and the loop never ended. Here every niche
    is visited, and at most as many members are kept as there are."""
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    n_survive = min(n_survive, len(Hd))
    niche_Hd, FV = survival._associate(Hd)
    niche_CA, _ = survival._associate(pop)
    n_niches = len(survival.ref_dirs)
    itr, S = 1, []
    while len(S) < n_survive:
        for i in range(n_niches):
            (current_ca,) = np.where(niche_CA == i)
            for _ in range(max(itr - len(current_ca), 0)):
                current_da = np.where(niche_Hd == i)[0]
                if current_da.size == 0:
                    break
                F = Hd[current_da].get("F")
                nd = NonDominatedSorting().do(F, only_non_dominated_front=True, n_stop_if_ranked=0)
                i_best = current_da[nd[np.argmin(FV[current_da[nd]])]]
                niche_Hd[i_best] = -1
                if len(S) < n_survive:
                    S.append(i_best)
            if len(S) == n_survive:
                break
        itr += 1
    return Hd[S]
