"""NAS-Bench-201 cell space: 6 edges x 5 operations (15,625 cells)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

import numpy as np

from hwnas.errors import HwnasError
from hwnas.registry import SPACES
from hwnas.space.base import Dimension, SearchSpace, one_hot

NB201_OPS: tuple[str, ...] = (
    "none",
    "skip_connect",
    "nor_conv_1x1",
    "nor_conv_3x3",
    "avg_pool_3x3",
)
# Edge order of the vector: (to, from) as in the arch string |op~0|+|op~0|op~1|+|op~0|op~1|op~2|
NB201_EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
# Input-to-output paths of the cell, as tuples of edge indices.
NB201_PATHS: tuple[tuple[int, ...], ...] = ((3,), (0, 4), (1, 5), (0, 2, 5))

_ARCH_RE = re.compile(r"^\|(.+)\|$")


@SPACES.register("nb201")
class NB201Space(SearchSpace):
    """NAS-Bench-201 cell: each of 6 edges takes one of 5 ops."""

    name = "nb201"

    def __init__(self) -> None:
        self._dims = tuple(Dimension(f"edge_{to}<-{frm}", NB201_OPS) for to, frm in NB201_EDGES)

    @property
    def dims(self) -> Sequence[Dimension]:
        return self._dims

    def decode(self, vector: Sequence[int] | np.ndarray) -> str:
        v = self.validate(vector)
        ops = [NB201_OPS[i] for i in v]
        return f"|{ops[0]}~0|+|{ops[1]}~0|{ops[2]}~1|+|{ops[3]}~0|{ops[4]}~1|{ops[5]}~2|"

    def encode(self, config: str) -> np.ndarray:
        if not isinstance(config, str):
            raise HwnasError(f"nb201: expected an arch string, got {type(config).__name__}")
        nodes = config.strip().split("+")
        if len(nodes) != 3:
            raise HwnasError(f"nb201: malformed arch string '{config}' (need 3 nodes)")
        vec: list[int] = []
        for to, node in enumerate(nodes, start=1):
            m = _ARCH_RE.match(node)
            if not m:
                raise HwnasError(f"nb201: malformed node '{node}' in '{config}'")
            edges = m.group(1).split("|")
            if len(edges) != to:
                raise HwnasError(f"nb201: node {to} needs {to} inputs in '{config}'")
            for frm, edge in enumerate(edges):
                op, _, src = edge.partition("~")
                if op not in NB201_OPS or src != str(frm):
                    raise HwnasError(f"nb201: bad edge '{edge}' in '{config}'")
                vec.append(NB201_OPS.index(op))
        return np.array(vec, dtype=np.int64)

    def index_of(self, vectors: np.ndarray) -> np.ndarray:
        """Base-5 integer code of each vector (a dense 0..15624 key, not the NB201 index)."""
        x = np.atleast_2d(np.asarray(vectors, dtype=np.int64))
        return x @ (5 ** np.arange(5, -1, -1))

    def all_vectors(self) -> np.ndarray:
        return np.array(list(itertools.product(range(5), repeat=6)), dtype=np.int64)

    def features(self, vectors: np.ndarray) -> np.ndarray:
        """One-hot ops (30) plus path features: for each input-output path, whether it
        is open (no 'none') and how many of each op it carries (4 paths x 5)."""
        x = np.atleast_2d(np.asarray(vectors, dtype=np.int64))
        oh = one_hot(x, self.cardinalities)
        feats = [oh]
        for path in NB201_PATHS:
            ops = x[:, list(path)]
            open_ = np.all(ops != 0, axis=1, keepdims=True).astype(np.float64)
            counts = np.stack([(ops == k).sum(axis=1) for k in range(1, 5)], axis=1)
            feats.append(open_)
            feats.append(open_ * counts)
        return np.concatenate(feats, axis=1)
