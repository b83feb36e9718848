"""FBNet search space: 22 searchable layers, each one of 9 blocks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hwnas.errors import HwnasError
from hwnas.registry import SPACES
from hwnas.space.base import Dimension, SearchSpace

FBNET_OPS: tuple[str, ...] = (
    "k3_e1",
    "k3_e1_g2",
    "k3_e3",
    "k3_e6",
    "k5_e1",
    "k5_e1_g2",
    "k5_e3",
    "k5_e6",
    "skip",
)
FBNET_LAYERS = 22


@SPACES.register("fbnet")
class FBNetSpace(SearchSpace):
    """FBNet (Wu et al. 2019): 22 layers x 9 ops (kernel, expansion, group, skip)."""

    name = "fbnet"

    def __init__(self) -> None:
        self._dims = tuple(Dimension(f"layer_{i}", FBNET_OPS) for i in range(FBNET_LAYERS))

    @property
    def dims(self) -> Sequence[Dimension]:
        return self._dims

    def decode(self, vector: Sequence[int] | np.ndarray) -> list[str]:
        return [FBNET_OPS[i] for i in self.validate(vector)]

    def encode(self, config: Sequence[str]) -> np.ndarray:
        ops = list(config)
        if len(ops) != FBNET_LAYERS:
            raise HwnasError(f"fbnet: need {FBNET_LAYERS} layer ops, got {len(ops)}")
        bad = [op for op in ops if op not in FBNET_OPS]
        if bad:
            raise HwnasError(f"fbnet: unknown op '{bad[0]}' (known: {', '.join(FBNET_OPS)})")
        return np.array([FBNET_OPS.index(op) for op in ops], dtype=np.int64)
