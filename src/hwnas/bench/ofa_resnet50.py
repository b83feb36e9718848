"""OFA ResNet50 benchmark: OFA's published ResNet50 accuracy predictor, and the subnet's
MFLOPs in closed form (DyNAS-T's accuracy-vs-MACs search on this supernet) or its
latency measured on this machine or on a device agent (``hwnas agent serve``; ONNX
Runtime, the subnet built with random weights: weights do not change latency)."""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hwnas.bench.base import Evaluator, Objective
from hwnas.config import data_file
from hwnas.errors import HwnasError
from hwnas.registry import BENCHMARKS
from hwnas.space.ofa_resnet50 import OFAResNet50Space

if TYPE_CHECKING:  # pragma: no cover
    from hwnas.measure.measurer import LocalMeasurer, RemoteMeasurer

ACC_FILE = "ofa/ofa_resnet50_acc_predictor.npz"


@functools.lru_cache(maxsize=2)
def _acc_weights(path: Path) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray, float]:
    """(hidden layers' weights and biases, output weights, base accuracy)."""
    try:
        with np.load(path) as z:
            hidden = [(z[f"layers_{i}_0_weight"], z[f"layers_{i}_0_bias"]) for i in range(3)]
            return hidden, z["layers_3_weight"], float(z["base_acc"][0])
    except (OSError, KeyError, ValueError, IndexError) as exc:
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
        **_: object,
    ) -> None:
        if devices:
            raise HwnasError(
                "ofa-resnet50: its cost is MFLOPs, or latency measured on this machine "
                "(--bench-option latency=true) or on a device agent (and agent=URL, "
                "token_file=PATH); drop --device"
            )
        if (agent is not None or token_file is not None) and latency is not True:
            raise HwnasError(
                "ofa-resnet50: agent and token_file say where latency is measured; they "
                "need latency=true"
            )
        if (agent is None) != (token_file is None):
            raise HwnasError(
                "ofa-resnet50: a device agent needs both agent=URL and token_file=PATH "
                "(the file 'hwnas agent token' wrote)"
            )
        if not isinstance(latency, bool):
            raise HwnasError(f"ofa-resnet50: latency must be true or false, got {latency!r}")
        for name, value in (("threads", threads), ("rounds", rounds)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise HwnasError(f"ofa-resnet50: {name} must be an integer >= 1, got {value!r}")
        if not latency and (threads, rounds) != (1, 5):
            raise HwnasError(
                "ofa-resnet50: threads and rounds set how latency is measured; they need "
                "latency=true"
            )
        if dataset is not None and dataset not in self.DATASETS:
            raise HwnasError(
                f"ofa-resnet50: accuracy is OFA's ImageNet predictor; dataset '{dataset}' "
                "does not apply"
            )
        self.space = OFAResNet50Space()
        self._hidden, self._out, self._base = _acc_weights(data_file(ACC_FILE, data_dir))
        self.measure = latency
        self.objectives = [Objective("accuracy", "max", "%", "quality")]
        if latency:
            from hwnas.measure.latency import MeasureSettings

            # a short protocol (a ResNet50 takes 15-300 ms a run on one core): the batch's
            # subnets interleaved round by round, so drift hits them alike
            self.settings = MeasureSettings(
                warmup=2,
                rounds=rounds,
                repeats_per_round=2,
                intra_op_threads=threads,
                provider="cpu",
            )
            self.source = "measured"
            # a few seconds per subnet: measured 8 at a time (interleaved), each 8 stored
            self.max_batch = 8
            self.agent: dict[str, object] | None = None
            self._agent_at = (agent, token_file, threads)
            self._measurer: LocalMeasurer | RemoteMeasurer | None = None
            self._limits: dict[str, int | None] = {"max_models": None, "max_bytes": None}
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
        """The measurer, once: this machine, or the agent, asked for its limits and host
        (a wrong URL or token, more threads than it has cores, or an upload limit below
        the largest subnet fails here, before a search does any work)."""
        from hwnas.measure.measurer import LocalMeasurer, RemoteMeasurer

        if not self.measure or self._measurer is not None:
            return
        agent, token_file, threads = self._agent_at
        if agent is None or token_file is None:
            self._measurer = LocalMeasurer(self.settings)
            return
        from hwnas.measure.agent import AgentClient, read_token_file

        client = AgentClient(str(agent), read_token_file(token_file))
        info = client.info()
        limits = info.get("limits") or {}
        cores = limits.get("max_threads")
        if cores and threads > int(cores):
            raise HwnasError(
                f"ofa-resnet50: threads {threads}: the agent at {client.url} has {cores} core(s)"
            )
        self._limits = {
            k: int(limits[k]) if limits.get(k) else None for k in ("max_models", "max_bytes")
        }
        # an ONNX file is its float32 weights and a little more: refuse an agent that
        # cannot take the largest subnet before a search spends evaluations on failures
        need = 4.0 * self.space.size_range()["params"][1] * 1.02 + 2**20
        limit = self._limits["max_bytes"]
        if limit is not None and need > limit:
            raise HwnasError(
                f"ofa-resnet50: the largest subnet's ONNX model is about {need / 2**20:.0f} "
                f"MiB, more than the {limit / 2**20:.0f} MiB a request to the agent at "
                f"{client.url} may upload: start it with --max-mb {math.ceil(need / 2**20)}"
            )
        self._measurer = RemoteMeasurer(client, self.settings)
        self.agent = {"url": client.url, "host": info.get("host") or {}}

    def latency(self, vectors: np.ndarray) -> np.ndarray:
        """Median latency (ms, batch 1) of each subnet on this machine or the agent: built
        in PyTorch, exported to ONNX and measured with ONNX Runtime, one interleaved
        measurement per input resolution in the batch (split into requests the agent
        takes)."""
        from hwnas.measure.measurer import measure_modules
        from hwnas.space.ofa_resnet50 import build_module

        self.prepare()
        assert self._measurer is not None
        x = np.atleast_2d(vectors)
        res = np.asarray([self.space.decode(v)["r"] for v in x])
        out = np.zeros(len(x))
        for r in np.unique(res):
            rows = np.nonzero(res == r)[0]
            modules = [build_module(x[i]).eval() for i in rows]
            labels = [f"subnet {k}" for k in self.space.keys(x[rows])]
            found = measure_modules(
                self._measurer, modules, (3, int(r), int(r)), labels=labels, **self._limits
            )
            out[rows] = [m.stats.median_ms for m in found]
        return out

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
        if self.measure:
            return None
        lo, hi = self.evaluate(np.stack([self.space.smallest(), self.space.largest()]))
        span = np.abs(hi - lo)
        return np.array([lo[0] - 0.1 * span[0], hi[1] + 0.1 * span[1]])

    def evaluate(self, vectors: np.ndarray) -> np.ndarray:
        x = self.space.check_vectors(vectors)
        cost = self.latency(x) if self.measure else self.space.mflops_batch(x)
        return np.stack([self.accuracy(x), cost], axis=1)

    def describe(self) -> dict[str, object]:
        d = super().describe()
        if self.measure:
            agent = self._agent_at[0]
            where = {"agent": self.agent or {"url": agent}} if agent else {"on": "this machine"}
            d["latency"] = {"runtime": "onnxruntime", **where, **self.settings.to_dict()}
        return d
