"""Objectives and evaluators: what a search asks of an architecture."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from hwnas.errors import HwnasError
from hwnas.space.base import SearchSpace


@dataclass(frozen=True)
class Objective:
    """One objective: its name, whether to minimise or maximise it, and its unit."""

    name: str
    direction: Literal["min", "max"] = "min"
    unit: str = ""
    # "quality" objectives (accuracy) depend on the function a network computes; "cost"
    # objectives (latency, FLOPs, size) on the graph that is executed, dead parts included.
    kind: Literal["quality", "cost"] = "cost"
    # other names a constraint may give it: a device's latency is ``latency`` when it is
    # the only device and ``latency_<dev>`` beside others; ``latency:<dev>`` and
    # ``latency_<dev>`` name it either way (a constraint survives adding a device)
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """A misspelt direction would flip the search ("minimize" read as maximise)."""
        if self.direction not in ("min", "max"):
            raise HwnasError(
                f"objective '{self.name}': direction is 'min' or 'max', not {self.direction!r}"
            )
        if self.kind not in ("quality", "cost"):
            raise HwnasError(
                f"objective '{self.name}': kind is 'quality' or 'cost', not {self.kind!r}"
            )
        if not isinstance(self.name, str) or not self.name:
            raise HwnasError(f"an objective needs a name (a non-empty string), not {self.name!r}")

    @property
    def sign(self) -> float:
        """Multiply raw values by this to get a quantity to minimise."""
        return 1.0 if self.direction == "min" else -1.0


def to_minimisation(values: np.ndarray, objectives: list[Objective]) -> np.ndarray:
    """Raw objective values (n, m) -> all-minimised values."""
    signs = np.array([o.sign for o in objectives])
    return np.asarray(values, dtype=np.float64) * signs[None, :]


class Evaluator(ABC):
    """Gives raw objective values for architecture vectors of one space.

    ``evaluate`` is vectorised; a cheap tabular benchmark answers a whole batch at once,
    a measuring evaluator may take seconds per architecture. ``table`` returns every
    architecture of the space with its values when the evaluator knows them all, which
    makes the exact Pareto front computable.
    """

    space: SearchSpace
    objectives: list[Objective]
    source: str = "measured"
    #: constructor options a run records when the user gives none (e.g. NB201's dataset
    #: and device), so a stored config and a plot title say what was searched
    DEFAULT_OPTIONS: ClassVar[dict[str, object]] = {}
    #: the devices a search-efficiency study covers when none are given; empty: the
    #: benchmark's one device, or none
    STUDY_DEVICES: ClassVar[tuple[str, ...]] = ()
    #: objectives whose exact values are cheap for many architectures at once (a formula
    #: or an already fitted model: no training, no measurement), the cheap side of
    #: Archai's cheap/expensive split: a predictor-guided search takes them from
    #: :meth:`evaluate_cheap` instead of learning them from its few evaluations
    cheap_objectives: tuple[str, ...] = ()
    #: exact, cheap values of an architecture that are not objectives but may be
    #: constrained (a supernet's MFLOPs and parameters: FLOPs and memory budgets)
    metrics: tuple[str, ...] = ()
    #: at most this many architectures per :meth:`evaluate` call in a search (None: a
    #: whole batch): an evaluator that takes seconds per architecture sets it, so each
    #: call's results are stored before the next starts and a kill loses little
    max_batch: int | None = None

    @classmethod
    def available_devices(cls, data_dir: str | None = None) -> list[str] | None:
        """The devices this benchmark has latency for; None when it takes no device."""
        return None

    def prepare(self) -> None:
        """Get ready to evaluate (e.g. reach a device agent), so that a search fails before
        any work rather than at its first evaluation; called only when there is something
        to evaluate (a finished search resumed needs no agent). A no-op by default."""
        return None

    def restore(self, described: dict[str, Any]) -> None:
        """Take up what an earlier :meth:`describe` of a resumed search recorded (e.g. a
        measurement's reference), before :meth:`prepare`. A no-op by default."""
        return None

    @abstractmethod
    def evaluate(self, vectors: np.ndarray) -> np.ndarray:
        """Raw objective values, shape (n, len(objectives))."""

    def evaluate_cheap(self, vectors: np.ndarray) -> np.ndarray:
        """Raw values of :attr:`cheap_objectives`, shape (n, len(cheap_objectives)),
        exactly as :meth:`evaluate` gives them, for any number of vectors at once."""
        raise NotImplementedError(f"{type(self).__name__} has no cheap objectives")

    def evaluate_metrics(self, vectors: np.ndarray) -> np.ndarray:
        """Values of :attr:`metrics`, shape (n, len(metrics)), for any number of vectors
        at once (nothing is trained or measured)."""
        raise NotImplementedError(f"{type(self).__name__} has no metrics")

    def metric_range(self) -> dict[str, tuple[float, float]]:
        """The smallest and largest value of each metric, and of each cheap objective
        that is a formula (MFLOPs), over the whole space, where known: a bound outside it
        is refused before any evaluation."""
        return {}

    def table(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(all vectors, all raw values) when the whole space is known, else None."""
        return None

    def reference_point(self) -> np.ndarray | None:
        """A fixed hypervolume reference (raw units) for evaluators without a full table,
        so that hypervolumes of different runs compare; None: derive from the run."""
        return None

    def describe(self) -> dict[str, object]:
        return {
            "space": self.space.name,
            "objectives": [o.__dict__ for o in self.objectives],
            "source": self.source,
        }
