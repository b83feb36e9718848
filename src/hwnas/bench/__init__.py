"""Benchmarks and evaluators: objective values for architectures."""

from hwnas.bench import nb201, ofa_mbv3, ofa_resnet50, supernet  # noqa: F401  (register built-ins)
from hwnas.bench.base import Evaluator, Objective, to_minimisation
from hwnas.errors import HwnasError
from hwnas.registry import BENCHMARKS


def benchmark_options(name: str) -> list[str]:
    """The options a registered benchmark takes (its factory's named parameters)."""
    import inspect

    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    params = inspect.signature(BENCHMARKS.get(name)).parameters.values()
    return [p.name for p in params if p.kind in named]


def get_benchmark(name: str, **kwargs: object) -> Evaluator:
    """Instantiate a registered benchmark by name with its options."""
    factory = BENCHMARKS.get(name)
    known = benchmark_options(name)
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise HwnasError(
            f"benchmark '{name}' has no option {', '.join(unknown)} (options: {', '.join(known)})"
        )
    return factory(**kwargs)


__all__ = [
    "BENCHMARKS",
    "Evaluator",
    "Objective",
    "benchmark_options",
    "get_benchmark",
    "to_minimisation",
]
