"""The search-space protocol: architectures as integer vectors with per-dimension choices."""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwnas.errors import HwnasError


@dataclass(frozen=True)
class Dimension:
    """One searchable decision: a name and the list of values it can take."""

    name: str
    choices: tuple[Any, ...]

    def __post_init__(self) -> None:
        if isinstance(self.choices, str | bytes) or not isinstance(self.choices, Sequence):
            raise HwnasError(f"dimension '{self.name}': choices must be a sequence of values")
        if len(self.choices) < 1:
            raise HwnasError(f"dimension '{self.name}' has no choices")

    @property
    def size(self) -> int:
        return len(self.choices)


class SearchSpace(ABC):
    """A space of architectures; vector entry ``i`` indexes ``dims[i].choices``.

    Subclasses define ``dims``, ``decode``/``encode`` between vectors and the
    human-readable config, and may override ``canonicalize`` when several vectors denote
    the same network (e.g. blocks skipped by a stage depth).
    """

    name: str = "space"

    @property
    @abstractmethod
    def dims(self) -> Sequence[Dimension]: ...

    @abstractmethod
    def decode(self, vector: Sequence[int] | np.ndarray) -> Any:
        """Vector -> config (e.g. an NB201 arch string, or a dict of block settings); the
        results store keeps it as JSON, so a string, numbers, lists or str-keyed dicts."""

    @abstractmethod
    def encode(self, config: Any) -> np.ndarray:
        """Config -> vector; the built-in spaces raise ``HwnasError`` on a malformed
        config."""

    # ---- derived helpers -------------------------------------------------------------
    @property
    def n_dims(self) -> int:
        return len(self.dims)

    @property
    def cardinalities(self) -> np.ndarray:
        return np.array([d.size for d in self.dims], dtype=np.int64)

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Inclusive integer bounds (xl, xu) as pymoo expects them."""
        return np.zeros(self.n_dims, dtype=np.int64), self.cardinalities - 1

    def size(self) -> int:
        """Number of distinct vectors (an upper bound on distinct architectures)."""
        return int(np.prod(self.cardinalities.astype(object)))

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """``n`` uniformly random canonical vectors, shape (n, n_dims)."""
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise HwnasError(f"{self.name}: sample needs a count >= 0, got {n!r}")
        rng = np.random.default_rng(rng)
        x = rng.integers(0, self.cardinalities, size=(n, self.n_dims))
        return self.canonicalize(x)

    def canonicalize(self, vectors: np.ndarray) -> np.ndarray:
        """Map each vector to the canonical representative of its architecture (a new
        array: the caller's is not changed)."""
        return np.array(vectors, dtype=np.int64)

    def keys(self, vectors: np.ndarray) -> list[str]:
        """Stable string keys of the canonical architectures (for dedup and storage)."""
        canon = self.canonicalize(self.check_vectors(vectors))
        return ["-".join(map(str, row)) for row in canon.tolist()]

    def from_key(self, key: str) -> np.ndarray:
        """The vector of a key from :meth:`keys` (``1-1-1-0-1-0``)."""
        try:
            return self.validate([int(t) for t in key.split("-")])
        except ValueError:
            raise HwnasError(
                f"{self.name}: bad architecture key '{key}' (expected integers joined by '-')"
            ) from None

    def validate(self, vector: Sequence[int] | np.ndarray) -> np.ndarray:
        """Check length and ranges; returns the vector as int64 or raises ``HwnasError``."""
        if isinstance(vector, list | tuple) and any(isinstance(e, bool) for e in vector):
            raise HwnasError(f"{self.name}: architecture vector must hold integers, not booleans")
        try:
            v = np.asarray(vector, dtype=np.float64)
        except (TypeError, ValueError):
            raise HwnasError(f"{self.name}: architecture vector must hold integers") from None
        if v.ndim != 1 or v.shape[0] != self.n_dims:
            raise HwnasError(
                f"{self.name}: architecture vector must have {self.n_dims} entries, "
                f"got shape {tuple(v.shape)}"
            )
        if not np.all(np.isfinite(v)) or not np.all(np.equal(np.mod(v, 1), 0)):
            raise HwnasError(f"{self.name}: architecture vector must hold integers")
        v = v.astype(np.int64)
        bad = np.nonzero((v < 0) | (v >= self.cardinalities))[0]
        if bad.size:
            i = int(bad[0])
            raise HwnasError(
                f"{self.name}: entry {i} ({self.dims[i].name}) = {v[i]} is outside "
                f"0..{self.dims[i].size - 1}"
            )
        return v

    def check_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """A batch of vectors as int64 (n, n_dims), checked as :meth:`validate` checks
        one (vectorised, for evaluators): a wrong shape, non-integers or an entry out of
        range raise ``HwnasError`` instead of indexing a table with it."""
        v = np.atleast_2d(np.asarray(vectors))
        if v.dtype == bool or v.dtype.kind not in "iuf":
            raise HwnasError(f"{self.name}: architecture vectors must hold integers")
        if v.ndim != 2 or v.shape[1] != self.n_dims:
            raise HwnasError(
                f"{self.name}: architecture vectors must have {self.n_dims} entries, "
                f"got shape {tuple(v.shape)}"
            )
        if v.dtype.kind == "f" and not (np.isfinite(v).all() and (v == np.round(v)).all()):
            raise HwnasError(f"{self.name}: architecture vectors must hold integers")
        v = v.astype(np.int64)
        bad = np.nonzero(((v < 0) | (v >= self.cardinalities)).any(axis=1))[0]
        if bad.size:
            self.validate(v[bad[0]])  # raises, naming the entry
        return v

    def features(self, vectors: np.ndarray) -> np.ndarray:
        """Predictor features: one-hot per dimension (vectorised), shape (n, sum(card))."""
        x = self.canonicalize(self.check_vectors(vectors))
        return one_hot(x, self.cardinalities)

    def function_features(self, vectors: np.ndarray) -> np.ndarray:
        """Features for objectives that depend only on the function a network computes
        (accuracy): architectures that compute the same function get the same row.
        Default: ``features``; spaces with dead parts (NB201) override it."""
        return self.features(vectors)

    def cost_features(self, vectors: np.ndarray) -> np.ndarray:
        """Features for cost objectives (latency, energy, memory), which add up over the
        layers a network runs. Default: ``features``; spaces whose layers' sizes follow
        from the config (the MBv3 supernets) give their per-stage costs instead."""
        return self.features(vectors)

    def cost_feature_views(self) -> list[np.ndarray | None]:
        """Column subsets of ``cost_features`` a cost predictor may choose among by
        cross-validation, simplest first (``None`` = all columns). Default: all only."""
        return [None]

    def predictor_features(self, vectors: np.ndarray, kind: str) -> np.ndarray:
        """What a predictor of an objective of ``kind`` fits on: what the network computes
        (``function_features``) for quality objectives, what it runs (``cost_features``)
        for costs."""
        if kind == "quality":
            return self.function_features(vectors)
        return self.cost_features(vectors)

    def predictor_views(self, kind: str) -> list[np.ndarray | None] | None:
        """The feature views a predictor of an objective of ``kind`` chooses among by CV:
        ``cost_feature_views`` for costs, ``None`` (all features) for quality."""
        return None if kind == "quality" else self.cost_feature_views()

    def cost_feature_view_names(self) -> list[str]:
        """Names of ``cost_feature_views``, same order: what a report of the CV's choice
        shows a person instead of a view's index."""
        return ["all features"]

    def predictor_view_names(self, kind: str) -> list[str] | None:
        """Names of :meth:`predictor_views` (``None`` where that is ``None``)."""
        return None if kind == "quality" else self.cost_feature_view_names()

    def largest(self) -> np.ndarray:
        """The vector with every dimension at its last (largest) choice."""
        return self.canonicalize(self.cardinalities[None, :] - 1)[0]

    def smallest(self) -> np.ndarray:
        """The vector with every dimension at its first (smallest) choice."""
        return self.canonicalize(np.zeros((1, self.n_dims), dtype=np.int64))[0]

    def mutate(
        self,
        vector: np.ndarray,
        rng: np.random.Generator | int | None = None,
        p: float | None = None,
    ) -> np.ndarray:
        """Resample each dimension with probability ``p`` (default 1/n_dims, at least one).
        A resampled dimension may draw its old choice, and a change to a dimension that
        is inactive (e.g. a block beyond its stage's depth) canonicalises away, so the
        result can equal the input."""
        p = 1.0 / self.n_dims if p is None else p
        rng = np.random.default_rng(rng)
        batch = self.check_vectors(vector)
        if len(batch) != 1:
            raise HwnasError(f"{self.name}: mutate takes one vector, got {len(batch)}")
        v = batch[0]
        mask = rng.random(self.n_dims) < p
        if not mask.any():
            mask[rng.integers(self.n_dims)] = True
        v[mask] = rng.integers(0, self.cardinalities[mask])
        return self.canonicalize(v[None, :])[0]

    def neighbours(self, vectors: np.ndarray) -> np.ndarray:
        """Every distinct canonical vector one choice away from any of ``vectors`` (a
        change to an inactive dimension canonicalises back to a given vector, which is
        not its own neighbour)."""
        x = self.canonicalize(self.check_vectors(vectors))
        out = []
        for i, card in enumerate(self.cardinalities.tolist()):
            for value in range(card):
                y = x[x[:, i] != value].copy()
                y[:, i] = value
                out.append(y)
        if not out:
            return x[:0]
        y = np.unique(self.canonicalize(np.concatenate(out)), axis=0)
        given = {row.tobytes() for row in x}
        return y[[row.tobytes() not in given for row in y]]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dims": self.n_dims,
            "size": self.size(),
            "dimensions": [{"name": d.name, "choices": list(d.choices)} for d in self.dims],
        }


class SizedSearchSpace(SearchSpace):
    """A space whose networks' MFLOPs and parameters follow from the config in closed
    form, for many vectors at once, so FLOPs and memory budgets can be checked against
    the whole space. The input's resolution follows the vectors; ``*shape`` is what else
    sizes the network, each at the space's default when left out: the MBv3 spaces take
    ``(in_channels, num_classes)``, ofa-resnet50 ``(num_classes,)``."""

    @abstractmethod
    def mflops_batch(self, vectors: np.ndarray, *shape: int) -> np.ndarray:
        """MFLOPs (2 x MACs / 1e6) of each vector's network."""

    @abstractmethod
    def params_batch(self, vectors: np.ndarray, *shape: int) -> np.ndarray:
        """Parameters of each vector's network (its model size)."""

    def size_range(self, *shape: int) -> dict[str, tuple[float, float]]:
        """Smallest and largest ``params`` and ``mflops`` over the space: both grow with
        every choice, so the smallest and largest vectors bound them."""
        ends = np.stack([self.smallest(), self.largest()])
        params = self.params_batch(ends, *shape).astype(float)
        mflops = self.mflops_batch(ends, *shape)
        return {
            "params": (float(params[0]), float(params[1])),
            "mflops": (float(mflops[0]), float(mflops[1])),
        }


def one_hot(x: np.ndarray, cardinalities: np.ndarray) -> np.ndarray:
    """One-hot encode integer matrix ``x`` column by column (vectorised)."""
    x = np.asarray(x, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(cardinalities)[:-1]])
    out = np.zeros((x.shape[0], int(cardinalities.sum())), dtype=np.float64)
    rows = np.repeat(np.arange(x.shape[0]), x.shape[1])
    out[rows, (x + offsets[None, :]).ravel()] = 1.0
    return out


def config_values(name: str, config: Any, keys: Sequence[str], lists: dict[str, int]) -> list[Any]:
    """The values of a config object's ``keys``, checked: an object with exactly these
    keys, the ones in ``lists`` lists of that many values (one clear line otherwise)."""
    if not isinstance(config, dict):
        raise HwnasError(
            f"{name}: a config is an object with keys {', '.join(keys)}, got "
            f"{type(config).__name__}"
        )
    missing = [k for k in keys if k not in config]
    extra = sorted(str(k) for k in config if k not in keys)
    if missing or extra:
        what = f"lacks {', '.join(missing)}" if missing else f"has unknown {', '.join(extra)}"
        raise HwnasError(f"{name}: config {what} (keys: {', '.join(keys)})")
    if not all(isinstance(config[k], list | tuple) for k in lists):
        raise HwnasError(f"{name}: {_and([repr(k) for k in lists])} must be lists")
    sizes = [len(config[k]) for k in lists]
    if sizes != list(lists.values()):
        need = _and([f"{n} {k!r}" for k, n in lists.items()])
        raise HwnasError(f"{name}: need {need} values, got {_and([str(n) for n in sizes])}")
    return [config[k] for k in keys]


def _and(words: list[str]) -> str:
    """``a, b and c``."""
    return " and ".join([", ".join(words[:-1]), words[-1]] if len(words) > 1 else words)


def choice_indices(
    name: str, values: Sequence[Any], choices: Sequence[Any], what: str
) -> list[int]:
    """Each value's index among ``choices`` (an equal number: never a bool or a string)."""
    out = []
    for val in values:
        number = isinstance(val, numbers.Real) and not isinstance(val, bool)
        hits = [i for i, c in enumerate(choices) if number and val == c]
        if not hits:
            raise HwnasError(f"{name}: {what}={val!r} not in {tuple(choices)}")
        out.append(hits[0])
    return out
