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
#: searchable layers per stage of FBNet's macro-architecture (Wu et al. 2019, Table 1:
#: output channels 16, 24, 32, 64, 112, 184, 352); layers of one stage share channels
#: and resolution, so an op costs about the same in each of them
FBNET_STAGES: tuple[int, ...] = (1, 4, 4, 4, 4, 4, 1)


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

    def cost_features(self, vectors: np.ndarray) -> np.ndarray:
        """The one-hot ops (198), how many layers of each stage run each op (7 x 9) and
        how many layers in all run each op (9): latency adds up over the layers, and the
        layers of a stage cost about the same, so the counts need far fewer samples."""
        x = np.atleast_2d(self.check_vectors(np.asarray(vectors, dtype=np.int64)))
        onehot = self.features(x)
        stage = np.repeat(np.arange(len(FBNET_STAGES)), FBNET_STAGES)
        per_stage = np.zeros((len(x), len(FBNET_STAGES), len(FBNET_OPS)))
        for layer, st in enumerate(stage):
            per_stage[np.arange(len(x)), st, x[:, layer]] += 1.0
        counts = per_stage.sum(axis=1)
        return np.concatenate([onehot, per_stage.reshape(len(x), -1), counts], axis=1)

    def cost_feature_views(self) -> list[np.ndarray | None]:
        """Simplest first: op counts (one price per op, 9 columns), op counts per stage
        (a price per op and stage, 63), the one-hot ops (a price per op and layer, 198)."""
        n_hot = FBNET_LAYERS * len(FBNET_OPS)
        n_stage = len(FBNET_STAGES) * len(FBNET_OPS)
        return [
            np.arange(n_hot + n_stage, n_hot + n_stage + len(FBNET_OPS)),
            np.arange(n_hot, n_hot + n_stage),
            np.arange(n_hot),
        ]

    def cost_feature_view_names(self) -> list[str]:
        return ["op counts", "op counts per stage", "one-hot ops"]
