"""OFA ResNet50 benchmark: OFA's published ResNet50 accuracy predictor, and the subnet's
MFLOPs in closed form (DyNAS-T's accuracy-vs-MACs search on this supernet) or its
latency measured on this machine or on a device agent (``hwnas agent serve``; ONNX
Runtime, the subnet built with random weights: weights do not change latency)."""

from __future__ import annotations

import functools
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.bench.base import Evaluator, Objective
from hwnas.bench.measured import MeasuredLatency, check_latency_options
from hwnas.config import data_file
from hwnas.errors import HwnasError
from hwnas.registry import BENCHMARKS
from hwnas.space.ofa_resnet50 import OFAResNet50Space, build_module

ACC_FILE = "ofa/ofa_resnet50_acc_predictor.npz"


@functools.lru_cache(maxsize=2)
def _acc_weights(path: Path) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray, float]:
    """(hidden layers' weights and biases, output weights, base accuracy)."""
    try:
        with np.load(path) as z:
            hidden = [(z[f"layers_{i}_0_weight"], z[f"layers_{i}_0_bias"]) for i in range(3)]
            return hidden, z["layers_3_weight"], float(z["base_acc"][0])
    except (OSError, KeyError, ValueError, IndexError, EOFError, zipfile.BadZipFile) as exc:
        raise HwnasError(f"cannot read OFA ResNet50 accuracy predictor '{path}': {exc}") from None


@BENCHMARKS.register("ofa-resnet50")
class OFAResNet50Benchmark(Evaluator):
    """OFA-ResNet50: ImageNet top-1 (%) from OFA's ResNet50 accuracy predictor and
    MFLOPs (2 x MACs) computed from the subnet's shape."""

    source = "surrogate"
    DATASETS = ("imagenet",)

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        devices: str | list[str] | None = None,
        dataset: str | None = None,
        latency: bool = False,
        threads: int = 1,
        rounds: int = 5,
        agent: str | None = None,
        token_file: str | None = None,
        anchor: bool = True,
        agent_timeout_s: float | None = None,
    ) -> None:
        if devices:
            raise HwnasError(
                "ofa-resnet50: its cost is MFLOPs, or latency measured on this machine "
                "(--bench-option latency=true) or on a device agent (and agent=URL, "
                "token_file=PATH); drop --device"
            )
        check_latency_options(
            "ofa-resnet50",
            latency,
            threads,
            rounds,
            agent,
            token_file,
            "MFLOPs",
            anchor,
            agent_timeout_s,
        )
        if dataset is not None and dataset not in self.DATASETS:
            raise HwnasError(
                f"ofa-resnet50: accuracy is OFA's ImageNet predictor; dataset '{dataset}' "
                "does not apply"
            )
        self.space = OFAResNet50Space()
        self._hidden, self._out, self._base = _acc_weights(data_file(ACC_FILE, data_dir))
        self.objectives = [Objective("accuracy", "max", "%", "quality")]
        # latency=true: measured on this machine or an agent, instead of MFLOPs
        self.measured: MeasuredLatency | None = None
        if latency:
            self.source = "measured"
            self.measured = MeasuredLatency(
                "ofa-resnet50",
                self.space,
                build=build_module,
                largest_params=lambda: self.space.size_range()["params"][1],
                threads=threads,
                rounds=rounds,
                agent=agent,
                token_file=token_file,
                anchor=anchor,
                agent_timeout_s=agent_timeout_s,
            )
            # a few seconds per subnet: measured 8 at a time (interleaved), each 8 stored
            self.max_batch = 8
            self.objectives.append(Objective("latency", "min", "ms", "cost"))
            self.cheap_objectives: tuple[str, ...] = ()
            self.metrics: tuple[str, ...] = ("mflops", "params")
        else:
            self.objectives.append(Objective("mflops", "min", "MFLOPs", "cost"))
            # MFLOPs are a formula: a predictor-guided search takes them exactly
            self.cheap_objectives = ("mflops",)
            self.metrics = ("params",)

    def accuracy(self, vectors: np.ndarray) -> np.ndarray:
        """Predicted ImageNet top-1 in % (OFA's MLP: 3 hidden ReLU layers, plus its base
        accuracy)."""
        h = self.space.features(vectors)
        for w, b in self._hidden:
            h = np.maximum(h @ w.T + b, 0.0)
        # to 1e-6 %: beyond float32 weights' precision, subnets where the MLP saturates
        # differ only by rounding noise, and must tie (not dominate one another)
        return np.round(100.0 * ((h @ self._out.T)[:, 0] + self._base), 6)

    def prepare(self) -> None:
        """Reach where latency is measured (an agent: its limits and host) before any
        work; nothing to do for MFLOPs."""
        if self.measured is not None:
            self.measured.prepare()

    def evaluate_cheap(self, vectors: np.ndarray) -> np.ndarray:
        """MFLOPs of each subnet at its resolution (when they are the cost objective)."""
        x = self.space.check_vectors(vectors)
        return self.space.mflops_batch(x)[:, None]

    def evaluate_metrics(self, vectors: np.ndarray) -> np.ndarray:
        """Parameters of each subnet (its model size, for a memory budget), and MFLOPs
        when latency is the cost objective."""
        x = self.space.check_vectors(vectors)
        values = {"mflops": self.space.mflops_batch, "params": self.space.params_batch}
        return np.stack([values[m](x).astype(np.float64) for m in self.metrics], axis=1)

    def metric_range(self) -> dict[str, tuple[float, float]]:
        """MFLOPs and parameters over the space (MFLOPs also when an objective)."""
        return self.space.size_range()

    def reference_point(self) -> np.ndarray | None:
        """The smallest subnet's accuracy and the largest subnet's MFLOPs, each pushed
        out by 10 % of the span between them (the same for every run). Measured latency
        has no fixed reference (each run's front gives its own)."""
        if self.measured is not None:
            return None
        lo, hi = self.evaluate(np.stack([self.space.smallest(), self.space.largest()]))
        span = np.abs(hi - lo)
        return np.array([lo[0] - 0.1 * span[0], hi[1] + 0.1 * span[1]])

    def evaluate(self, vectors: np.ndarray) -> np.ndarray:
        x = self.space.check_vectors(vectors)
        cost = self.space.mflops_batch(x) if self.measured is None else self.measured(x)
        return np.stack([self.accuracy(x), cost], axis=1)

    def describe(self) -> dict[str, object]:
        d = super().describe()
        if self.measured is not None:
            d["latency"] = self.measured.describe()
        return d

    def restore(self, described: dict[str, Any]) -> None:
        """A resumed search measures on the scale of its start (the anchor's reference)."""
        if self.measured is not None:
            self.measured.restore(described.get("latency"))  # type: ignore[arg-type]
