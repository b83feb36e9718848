"""Which subnets a sandwich step trains: uniform over the space, complexity-aware
(ElasticViT, paper 002), or by progressive shrinking (OFA, paper 002; at the end).

Uniform sampling over the architecture vector concentrates subnets' FLOPs in the
middle of the range (each of dozens of choices averages out), so the small and large
ends of the space, where the networks users ship live, are trained rarely, and
subnets of very different size sampled back to back pull the shared weights in
conflicting directions. ElasticViT's complexity-aware sampling splits the FLOPs range
into bins, samples each step's subnets within one bin, and moves to a neighbouring bin
(or stays) from one step to the next: adjacent steps train subnets of similar size,
while over training every size is covered alike (a lazy random walk on the bins, whose
stationary distribution is uniform).

A bin far from the middle is almost never hit by uniform draws, so candidates are drawn
with every choice tilted towards its smaller or larger options by a random strength
(choices of these spaces are ordered by size), their MFLOPs computed in closed form
for all at once, and the step's subnets picked among the candidates inside the bin.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hwnas.errors import HwnasError
from hwnas.space.base import SearchSpace, SizedSearchSpace

#: candidates drawn per step to find subnets in the step's bin
CANDIDATES = 512
#: largest tilt towards small or large choices (log-odds across a dimension's range)
MAX_TILT = 10.0


def tilted_sample(
    space: SizedSearchSpace, tilts: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """One vector per tilt: choice ``i`` of a dimension with ``k`` options is drawn with
    probability proportional to ``exp(tilt * i / (k - 1))`` (0: uniform; large
    positive: the largest options; large negative: the smallest)."""
    tilts = np.asarray(tilts, dtype=np.float64)
    cards = space.cardinalities
    out = np.zeros((len(tilts), len(cards)), dtype=np.int64)
    u = rng.random((len(tilts), len(cards)))
    for k in np.unique(cards):
        cols = np.nonzero(cards == k)[0]
        if k == 1:
            continue
        logits = tilts[:, None] * (np.arange(k) / (k - 1))[None, :]
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        cdf = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
        # index = how many cumulative probabilities the uniform draw exceeds
        out[:, cols] = (u[:, cols, None] > cdf[:, None, :-1]).sum(axis=2)
    return out


class ComplexityAwareSampler:
    """Random subnets of one MFLOPs bin per step; the bin moves by at most one per step.

    ``shape``: the arguments of the space's ``mflops_batch`` besides the vectors (the
    supernet's input channels and classes). ``state``/``load_state`` hold the current
    bin for checkpoints (the draws come from the caller's generator).
    """

    def __init__(self, space: SizedSearchSpace, bins: int = 8, shape: tuple[int, ...] = ()) -> None:
        if not isinstance(space, SizedSearchSpace):
            raise HwnasError(
                f"complexity-aware sampling needs a space with closed-form MFLOPs; "
                f"{space.name} has none"
            )
        if bins < 1:
            raise HwnasError(f"complexity-aware sampling needs >= 1 bin, got {bins}")
        self.space = space
        self.shape = shape
        lo, hi = space.size_range(*shape)["mflops"]
        self.edges = np.linspace(lo, hi, bins + 1)
        self.bins = bins
        self.bin: int | None = None  # drawn at the first step

    def next_bin(self, rng: np.random.Generator) -> int:
        """The step's bin: a uniform one at the first step, then the previous one moved
        by -1, 0 or +1; a step off either end stays where it is, so every bin, the
        smallest and the largest networks' included, is visited alike in the long run
        (reflecting it instead visited the two end bins half as often)."""
        if self.bin is None:
            self.bin = int(rng.integers(self.bins))
        else:
            nxt = self.bin + int(rng.integers(-1, 2))
            if 0 <= nxt < self.bins:
                self.bin = nxt
        return self.bin

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` vectors in the next bin (see :meth:`sample_in`)."""
        return self.sample_in(self.next_bin(rng), n, rng)

    def sample_in(self, b: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` vectors whose MFLOPs lie in bin ``b`` (the candidates nearest its centre
        if too few fall inside: a bin the space barely reaches)."""
        lo, hi = self.edges[b], self.edges[b + 1]
        tilts = rng.uniform(-MAX_TILT, MAX_TILT, size=CANDIDATES)
        cand = tilted_sample(self.space, tilts, rng)
        mf = self.space.mflops_batch(cand, *self.shape)
        inside = np.nonzero((mf >= lo) & (mf <= hi))[0]
        if len(inside) >= n:
            pick = rng.choice(inside, size=n, replace=False)
        else:
            near = np.argsort(np.abs(mf - (lo + hi) / 2), kind="stable")
            pick = np.concatenate([inside, near[~np.isin(near, inside)][: n - len(inside)]])
        return self.space.canonicalize(cand[pick])

    def state(self) -> dict[str, Any]:
        return {"bin": self.bin}

    def load_state(self, state: dict[str, Any] | None) -> None:
        self.bin = None if not state else state.get("bin")

    def sandwich(self, num_random: int, rng: np.random.Generator) -> np.ndarray:
        """[largest, ``num_random`` from the next bin, smallest] (BigNAS order)."""
        middle = self.sample(num_random, rng) if num_random else self.space.sample(0, rng)
        return np.concatenate([self.space.largest()[None], middle, self.space.smallest()[None]])


#: what each phase of progressive shrinking makes elastic (OFA, paper 002): the full
#: network at elastic resolution, then + kernel sizes, + depths, + expand ratios and
#: widths (everything)
PHASES: tuple[tuple[str, ...], ...] = (
    ("resolution",),
    ("resolution", "kernel"),
    ("resolution", "kernel", "depth"),
    ("resolution", "kernel", "depth", "width"),
)
_KINDS = {"r": "resolution", "k": "kernel", "d": "depth", "e": "width", "w": "width"}


def dimension_kind(name: str) -> str:
    """What an MBv3 dimension sets: resolution, kernel, depth or width (stage widths,
    expand ratios, stem and last layer: how wide the network is)."""
    return _KINDS.get(name.split("_")[0], "width")


class ProgressiveShrinking:
    """OFA's progressive shrinking inside the sandwich rule: training is split into
    ``len(PHASES)`` equal parts by step; in each, only the phase's kinds of dimension
    vary (the others stay at their largest choice), so the smaller subnets are
    shrunk from the trained full network one kind of dimension at a time. Every step
    trains the largest subnet, ``num_random`` random ones and the phase's smallest.
    ``state``/``load_state`` hold the step count for checkpoints."""

    def __init__(self, space: SearchSpace, total_steps: int) -> None:
        kinds = [dimension_kind(d.name) for d in space.dims]
        self.space = space
        self.total_steps = max(int(total_steps), 1)
        self.step = 0
        self.reached = 0  # the phase a resumed run had reached
        # per phase: the dimensions that vary
        self.elastic = [np.array([k in phase for k in kinds]) for phase in PHASES]

    def phase_of(self, step: int) -> int:
        """The phase of a step (0-based): equal parts of the steps, the last step always
        in the last phase (with fewer steps than phases the first ones are skipped), and
        never an earlier phase than a resumed run had reached (a run resumed with more
        epochs goes on in its phase instead of stepping back)."""
        n = len(PHASES)
        part = -(-n * (max(step, 0) + 1) // self.total_steps) - 1  # ceil(n (s+1) / T) - 1
        return max(min(max(part, 0), n - 1), self.reached)

    def phases_between(self, first: int, last: int) -> list[int]:
        """The distinct phases of steps ``first..last`` (an epoch's), in order."""
        return sorted({self.phase_of(s) for s in range(first, last + 1)})

    @property
    def phase(self) -> int:
        """The phase of the next step."""
        return self.phase_of(self.step)

    def sandwich(self, num_random: int, rng: np.random.Generator) -> np.ndarray:
        """The next step's [largest, ``num_random`` random, smallest] vectors of its phase."""
        free = self.elastic[self.phase]
        top = self.space.largest()
        rand = self.space.sample(num_random, rng)
        rand[:, ~free] = top[~free]
        low = np.where(free, self.space.smallest(), top)
        self.step += 1
        return self.space.canonicalize(np.concatenate([top[None], rand, low[None]]))

    def state(self) -> dict[str, Any]:
        return {"step": self.step, "phase": self.phase_of(self.step - 1) if self.step else 0}

    def load_state(self, state: dict[str, Any] | None) -> None:
        self.step = int(state.get("step", 0)) if state else 0
        self.reached = int(state.get("phase", 0)) if state else 0


def make_sampler(
    sampling: str,
    space: SearchSpace,
    bins: int,
    shape: tuple[int, ...],
    total_steps: int,
) -> ComplexityAwareSampler | ProgressiveShrinking | None:
    """The sampler of a training run's ``sampling`` setting (None: uniform)."""
    if sampling == "complexity":
        return ComplexityAwareSampler(space, bins, shape)  # type: ignore[arg-type]
    if sampling == "progressive":
        return ProgressiveShrinking(space, total_steps)
    return None
