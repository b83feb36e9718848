"""Once-for-all MobileNetV3 space: 20 block slots x kernel x expand, 5 stage depths,
input resolution."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hwnas.errors import HwnasError
from hwnas.registry import SPACES
from hwnas.space.base import Dimension, SearchSpace

OFA_KS = (3, 5, 7)
OFA_E = (3, 4, 6)
OFA_D = (2, 3, 4)
OFA_R = (160, 176, 192, 208, 224)
N_BLOCKS = 20
N_STAGES = 5
MAX_DEPTH = 4


@SPACES.register("ofa-mbv3")
class OFAMobileNetV3Space(SearchSpace):
    """OFA MobileNetV3: per block kernel {3,5,7} and expand {3,4,6}; per stage depth
    {2,3,4} (blocks beyond it are skipped); resolution 160..224 step 16."""

    name = "ofa-mbv3"

    def __init__(self) -> None:
        self._dims = (
            tuple(Dimension(f"ks_{i}", OFA_KS) for i in range(N_BLOCKS))
            + tuple(Dimension(f"e_{i}", OFA_E) for i in range(N_BLOCKS))
            + tuple(Dimension(f"d_{s}", OFA_D) for s in range(N_STAGES))
            + (Dimension("r", OFA_R),)
        )

    @property
    def dims(self) -> Sequence[Dimension]:
        return self._dims

    @staticmethod
    def active_mask(vectors: np.ndarray) -> np.ndarray:
        """(n, 20) boolean: which block slots are used under each vector's stage depths."""
        x = np.atleast_2d(vectors)
        depth = np.asarray(OFA_D)[x[:, 2 * N_BLOCKS : 2 * N_BLOCKS + N_STAGES]]  # (n, 5)
        pos = np.tile(np.arange(MAX_DEPTH), N_STAGES)[None, :]  # (1, 20)
        return pos < np.repeat(depth, MAX_DEPTH, axis=1)

    def canonicalize(self, vectors: np.ndarray) -> np.ndarray:
        x = np.array(np.atleast_2d(vectors), dtype=np.int64)
        inactive = ~self.active_mask(x)
        x[:, :N_BLOCKS][inactive] = 0
        x[:, N_BLOCKS : 2 * N_BLOCKS][inactive] = 0
        return x

    def decode(self, vector: Sequence[int] | np.ndarray) -> dict[str, Any]:
        v = self.canonicalize(self.validate(vector)[None, :])[0]
        return {
            "ks": [OFA_KS[i] for i in v[:N_BLOCKS]],
            "e": [OFA_E[i] for i in v[N_BLOCKS : 2 * N_BLOCKS]],
            "d": [OFA_D[i] for i in v[2 * N_BLOCKS : 2 * N_BLOCKS + N_STAGES]],
            "r": OFA_R[v[-1]],
        }

    def encode(self, config: dict[str, Any]) -> np.ndarray:
        try:
            ks, e, d, r = config["ks"], config["e"], config["d"], config["r"]
        except (KeyError, TypeError):
            raise HwnasError("ofa-mbv3: config needs keys 'ks', 'e', 'd', 'r'") from None
        if len(ks) != N_BLOCKS or len(e) != N_BLOCKS or len(d) != N_STAGES:
            raise HwnasError("ofa-mbv3: need 20 'ks', 20 'e' and 5 'd' values")

        def idx(values: Sequence[Any], choices: tuple[int, ...], what: str) -> list[int]:
            out = []
            for val in values:
                if val not in choices:
                    raise HwnasError(f"ofa-mbv3: {what}={val} not in {choices}")
                out.append(choices.index(val))
            return out

        vec = idx(ks, OFA_KS, "ks") + idx(e, OFA_E, "e") + idx(d, OFA_D, "d") + idx([r], OFA_R, "r")
        return self.canonicalize(np.array(vec, dtype=np.int64)[None, :])[0]

    def features(self, vectors: np.ndarray) -> np.ndarray:
        """OFA's 128-d encoding: kernel and expand one-hots of active blocks, resolution."""
        x = self.canonicalize(vectors)
        n = x.shape[0]
        active = self.active_mask(x).astype(np.float64)
        out = np.zeros((n, 128))
        rows = np.arange(n)[:, None]
        blocks = np.arange(N_BLOCKS)[None, :]
        out[rows, 3 * blocks + x[:, :N_BLOCKS]] = active
        out[rows, 60 + 3 * blocks + x[:, N_BLOCKS : 2 * N_BLOCKS]] = active
        res = np.asarray(OFA_R)[x[:, -1]]
        out[np.arange(n), 120 + (res - 112) // 16] = 1.0
        return out
