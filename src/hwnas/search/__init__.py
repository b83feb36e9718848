"""Multi-objective search: algorithms, LINAS, constraints and search quality."""

from hwnas.search import algorithms, linas, mnas, optuna_algos  # noqa: F401  (register built-ins)
from hwnas.search.algorithms import SearchAlgorithm
from hwnas.search.pareto import ExactFront, hypervolume, non_dominated_mask, reference_point
from hwnas.search.problem import Constraint, SearchProblem
from hwnas.search.runner import SearchConfig, resume_search, run_search

__all__ = [
    "Constraint",
    "ExactFront",
    "SearchAlgorithm",
    "SearchConfig",
    "SearchProblem",
    "hypervolume",
    "non_dominated_mask",
    "reference_point",
    "resume_search",
    "run_search",
]
