"""Search spaces: architectures as integer vectors, and the built-in spaces."""

from hwnas.registry import SPACES
from hwnas.space import (  # noqa: F401  (register built-ins)
    fbnet,
    mbv3_ramnas,
    nb201,
    ofa_mbv3,
    ofa_resnet50,
)
from hwnas.space.base import Dimension, SearchSpace, SizedSearchSpace, one_hot


def get_space(name: str) -> SearchSpace:
    """Instantiate a registered search space by name."""
    return SPACES.get(name)()


__all__ = ["SPACES", "Dimension", "SearchSpace", "SizedSearchSpace", "get_space", "one_hot"]
