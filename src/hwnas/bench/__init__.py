"""Benchmarks and evaluators: objective values for architectures."""

from hwnas.bench import nb201, ofa_mbv3  # noqa: F401  (register built-ins)
from hwnas.bench.base import Evaluator, Objective, to_minimisation
from hwnas.registry import BENCHMARKS


def get_benchmark(name: str, **kwargs: object) -> Evaluator:
    """Instantiate a registered benchmark by name with its options."""
    return BENCHMARKS.get(name)(**kwargs)


__all__ = ["BENCHMARKS", "Evaluator", "Objective", "get_benchmark", "to_minimisation"]
