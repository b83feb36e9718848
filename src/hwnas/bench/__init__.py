"""Benchmarks and evaluators: objective values for architectures."""

from hwnas.bench import nb201, ofa_mbv3, ofa_resnet50, supernet  # noqa: F401  (register built-ins)
from hwnas.bench.base import Evaluator, Objective, to_minimisation
from hwnas.errors import HwnasError
from hwnas.registry import BENCHMARKS


def get_benchmark(name: str, **kwargs: object) -> Evaluator:
    """Instantiate a registered benchmark by name with its options."""
    import inspect

    factory = BENCHMARKS.get(name)
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    known = [p.name for p in inspect.signature(factory).parameters.values() if p.kind in named]
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise HwnasError(
            f"benchmark '{name}' has no option {', '.join(unknown)} (options: {', '.join(known)})"
        )
    return factory(**kwargs)


__all__ = ["BENCHMARKS", "Evaluator", "Objective", "get_benchmark", "to_minimisation"]
