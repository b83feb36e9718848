"""Latency measurement with ONNX Runtime or PyTorch eager, robust to a noisy, shared host.

Protocol (the same for both runtimes, and for the device agent):

1. every model is loaded, given its input, run once to check it works, then run ``warmup``
   times;
2. ``rounds`` rounds follow; in each round every model runs ``repeats_per_round`` times in
   a row, and the order of the models is shuffled afresh each round (seeded), so that drift
   in the machine's speed (other jobs, frequency scaling, thermal) hits all models alike;
3. each run is timed on its own with ``time.perf_counter_ns`` (GPU work synchronised), and
   the garbage collector is paused while timing;
4. the headline statistic is the **median over rounds of the per-round minimum**: the
   minimum within a round removes one-off interruptions, the median across rounds removes
   rounds where the whole machine was slow. Spread is reported as IQR and CV over all runs
   and as a robust CV (IQR / 1.349 / median) over the per-round minima; a measurement is
   flagged ``unstable`` when that robust CV exceeds ``max_robust_cv`` or there are fewer
   than three rounds.

This module never imports torch at import time; only :func:`measure_torch` does (the agent
install has ONNX Runtime and NumPy only).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hwnas.errors import HwnasError
from hwnas.measure.host import host_info

if TYPE_CHECKING:  # pragma: no cover
    import torch

RUNTIMES = ("onnxruntime", "torch")
PRECISIONS = ("fp32",)

ModelSource = bytes | bytearray | str | Path


class ModelLoadError(HwnasError):
    """The model file could not be loaded (corrupt, not ONNX, unsupported operator...)."""


class ModelRunError(HwnasError):
    """The model loaded but failed to run with the given input."""


# ---------------------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------------------
def _as_int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        raise HwnasError(f"measure setting {name} must be an integer, got {value!r}")
    try:
        ivalue = int(value)
    except (TypeError, ValueError):
        raise HwnasError(f"measure setting {name} must be an integer, got {value!r}") from None
    if isinstance(value, float) and value != ivalue:
        raise HwnasError(f"measure setting {name} must be an integer, got {value!r}")
    if not lo <= ivalue <= hi:
        raise HwnasError(f"measure setting {name} must be in [{lo}, {hi}], got {ivalue}")
    return ivalue


def parse_shape(value: Any) -> tuple[int, ...] | None:
    """``"3,224,224"``, ``"3x224x224"``, ``[3, 224, 224]`` or ``None`` -> tuple of ints."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value.replace(" ", "").strip(",").replace("x", ",")
        parts = text.split(",")  # an empty part ('3,,224', '3,x') is an error, not skipped
    elif isinstance(value, Sequence):
        parts = list(value)
    else:
        raise HwnasError(f"input shape must be like 3,224,224, got {value!r}")
    try:
        shape = tuple(_as_int("input_shape", p, 1, 1 << 20) for p in parts)
    except HwnasError:
        raise HwnasError(
            f"input shape must be positive integers like 3,224,224, got {value!r}"
        ) from None
    if not shape or len(shape) > 8:
        raise HwnasError(f"input shape must have 1 to 8 dimensions, got {value!r}")
    return shape


@dataclass(frozen=True)
class MeasureSettings:
    """How to measure; recorded with every :class:`Measurement`.

    ``input_shape`` is the shape of ONE sample, without the batch dimension (e.g.
    ``(3, 224, 224)``); the batch dimension is ``batch_size``. For ONNX models it may be
    left ``None`` when the model's input has fixed non-batch dimensions.
    Thread counts of 0 mean "the runtime's default".
    ``provider``: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``tensorrt``
    or a full ONNX Runtime provider name; for torch ``auto``, ``cpu``, ``cuda[:N]``.
    ``time_budget_s``: stop adding rounds once this much time has been spent on them
    (at least three rounds are always run).
    """

    runtime: str = "onnxruntime"
    batch_size: int = 1
    input_shape: tuple[int, ...] | None = None
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    precision: str = "fp32"
    warmup: int = 10
    rounds: int = 20
    repeats_per_round: int = 5
    provider: str = "auto"
    seed: int = 0
    max_robust_cv: float = 0.10
    time_budget_s: float | None = None

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__
        runtime = str(self.runtime).lower()
        if runtime in ("ort", "onnx"):
            runtime = "onnxruntime"
        if runtime not in RUNTIMES:
            raise HwnasError(f"unknown runtime {self.runtime!r}; choose one of {RUNTIMES}")
        setattr_(self, "runtime", runtime)
        precision = str(self.precision).lower()
        if precision not in PRECISIONS:
            raise HwnasError(
                f"precision {self.precision!r} is not supported (supported: {PRECISIONS})"
            )
        setattr_(self, "precision", precision)
        setattr_(self, "batch_size", _as_int("batch_size", self.batch_size, 1, 1 << 16))
        setattr_(self, "input_shape", parse_shape(self.input_shape))
        for name, lo, hi in (
            ("intra_op_threads", 0, 1024),
            ("inter_op_threads", 0, 1024),
            ("warmup", 0, 100_000),
            ("rounds", 1, 100_000),
            ("repeats_per_round", 1, 100_000),
            ("seed", 0, 2**32 - 1),
        ):
            setattr_(self, name, _as_int(name, getattr(self, name), lo, hi))
        if not isinstance(self.provider, str) or not self.provider.strip():
            raise HwnasError(f"provider must be a non-empty string, got {self.provider!r}")
        setattr_(self, "provider", self.provider.strip())
        try:
            cv = float(self.max_robust_cv)
        except (TypeError, ValueError):
            raise HwnasError(
                f"max_robust_cv must be a number, got {self.max_robust_cv!r}"
            ) from None
        if not 0 < cv < 10:
            raise HwnasError(f"max_robust_cv must be in (0, 10), got {cv}")
        setattr_(self, "max_robust_cv", cv)
        if self.time_budget_s is not None:
            try:
                budget = float(self.time_budget_s)
            except (TypeError, ValueError):
                raise HwnasError(
                    f"time_budget_s must be a number, got {self.time_budget_s!r}"
                ) from None
            if not budget > 0:
                raise HwnasError(f"time_budget_s must be positive, got {budget}")
            setattr_(self, "time_budget_s", budget)

    @property
    def resolution(self) -> tuple[int, int] | None:
        """(height, width) for image-like inputs (``input_shape`` of rank >= 2)."""
        if self.input_shape is None or len(self.input_shape) < 2:
            return None
        return (self.input_shape[-2], self.input_shape[-1])

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape) if self.input_shape is not None else None
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MeasureSettings:
        if not isinstance(data, dict):
            raise HwnasError("measure settings must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise HwnasError(f"unknown measure setting(s): {', '.join(unknown)}")
        return cls(**data)


# ---------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LatencyStats:
    """Latency statistics of one model, all in milliseconds.

    ``median_of_round_min_ms`` is the headline number (also :attr:`latency_ms`).
    ``p10/median/p90/mean/min/max/iqr_ms`` and ``cv`` (std/mean) are over all ``n`` timed
    runs; ``robust_cv`` is IQR/1.349/median over the per-round minima (``round_min_ms``),
    i.e. how much the headline number moves between rounds.
    """

    median_of_round_min_ms: float
    p10_ms: float
    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    iqr_ms: float
    cv: float
    robust_cv: float
    n: int
    rounds: int
    repeats_per_round: int
    unstable: bool
    unstable_reason: str | None = None
    round_min_ms: tuple[float, ...] = field(default_factory=tuple)

    @property
    def latency_ms(self) -> float:
        return self.median_of_round_min_ms

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["round_min_ms"] = list(self.round_min_ms)
        d["latency_ms"] = self.latency_ms
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyStats:
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["round_min_ms"] = tuple(kwargs.get("round_min_ms") or ())
        return cls(**kwargs)


def compute_stats(
    per_round_s: Sequence[Sequence[float]], max_robust_cv: float = 0.10
) -> LatencyStats:
    """Statistics from run times in **seconds**, grouped by round (``[round][repeat]``)."""
    rounds = [list(r) for r in per_round_s if len(r)]
    if not rounds:
        raise HwnasError("no timed runs to compute latency statistics from")
    all_ms = np.asarray([t for r in rounds for t in r], dtype=np.float64) * 1e3
    round_min = np.asarray([min(r) for r in rounds], dtype=np.float64) * 1e3
    p10, q1, med, q3, p90 = np.percentile(all_ms, [10, 25, 50, 75, 90])
    mean = float(all_ms.mean())
    cv = float(all_ms.std(ddof=1) / mean) if len(all_ms) > 1 and mean > 0 else 0.0
    rm_med = float(np.median(round_min))
    rq1, rq3 = np.percentile(round_min, [25, 75])
    robust_cv = float((rq3 - rq1) / 1.349 / rm_med) if rm_med > 0 else 0.0
    reason = None
    if len(rounds) < 3:
        reason = f"only {len(rounds)} round(s); at least 3 are needed to judge the spread"
    elif robust_cv > max_robust_cv:
        reason = (
            f"per-round minima vary too much (robust CV {robust_cv:.3f} > {max_robust_cv:.3f});"
            " the machine is probably busy"
        )
    return LatencyStats(
        median_of_round_min_ms=rm_med,
        p10_ms=float(p10),
        median_ms=float(med),
        p90_ms=float(p90),
        mean_ms=mean,
        min_ms=float(all_ms.min()),
        max_ms=float(all_ms.max()),
        iqr_ms=float(q3 - q1),
        cv=cv,
        robust_cv=robust_cv,
        n=len(all_ms),
        rounds=len(rounds),
        repeats_per_round=max(len(r) for r in rounds),
        unstable=reason is not None,
        unstable_reason=reason,
        round_min_ms=tuple(float(x) for x in round_min),
    )


# ---------------------------------------------------------------------------------------
# the interleaved protocol
# ---------------------------------------------------------------------------------------
def run_interleaved(
    runners: Sequence[Callable[[], Any]],
    settings: MeasureSettings,
) -> tuple[list[list[list[float]]], list[list[int]]]:
    """Time ``runners`` with the interleaved protocol.

    Returns ``(times, orders)``: ``times[model][round]`` is the list of run times in
    seconds, ``orders[round]`` the order in which models ran in that round.
    """
    if not runners:
        raise HwnasError("nothing to measure: no models given")
    rng = np.random.default_rng(settings.seed)
    for run in runners:
        for _ in range(settings.warmup):
            run()
    times: list[list[list[float]]] = [[] for _ in runners]
    orders: list[list[int]] = []
    repeats = settings.repeats_per_round
    clock = time.perf_counter_ns
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    start = time.perf_counter()
    try:
        for r in range(settings.rounds):
            order = [int(i) for i in rng.permutation(len(runners))]
            orders.append(order)
            for i in order:
                run = runners[i]
                samples = []
                for _ in range(repeats):
                    t0 = clock()
                    run()
                    samples.append((clock() - t0) * 1e-9)
                times[i].append(samples)
            budget = settings.time_budget_s
            if budget is not None and r + 1 >= 3 and time.perf_counter() - start > budget:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return times, orders


# ---------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Measurement:
    """One model's latency plus everything needed to reproduce or compare it."""

    model: str
    stats: LatencyStats
    settings: MeasureSettings
    runtime: str
    runtime_version: str
    provider: str
    inputs: dict[str, dict[str, Any]]
    threads: dict[str, int]
    host: dict[str, Any]
    model_sha256: str | None = None
    measured_by: str = "local"
    timestamp: str = ""

    @property
    def latency_ms(self) -> float:
        return self.stats.latency_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "model_sha256": self.model_sha256,
            "latency_ms": self.latency_ms,
            "stats": self.stats.to_dict(),
            "settings": self.settings.to_dict(),
            "runtime": self.runtime,
            "runtime_version": self.runtime_version,
            "provider": self.provider,
            "inputs": self.inputs,
            "threads": self.threads,
            "host": self.host,
            "measured_by": self.measured_by,
            "timestamp": self.timestamp,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        try:
            return cls(
                model=str(data["model"]),
                stats=LatencyStats.from_dict(data["stats"]),
                settings=MeasureSettings.from_dict(data["settings"]),
                runtime=str(data["runtime"]),
                runtime_version=str(data["runtime_version"]),
                provider=str(data["provider"]),
                inputs=dict(data.get("inputs") or {}),
                threads=dict(data.get("threads") or {}),
                host=dict(data.get("host") or {}),
                model_sha256=data.get("model_sha256"),
                measured_by=str(data.get("measured_by", "local")),
                timestamp=str(data.get("timestamp", "")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise HwnasError(f"malformed measurement record: {e}") from None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------
# ONNX Runtime
# ---------------------------------------------------------------------------------------
_ORT_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "gpu": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def ort_providers(provider: str, available: Sequence[str]) -> list[str]:
    """The ONNX Runtime provider list for a ``provider`` setting (CPU as the fallback)."""
    cpu = "CPUExecutionProvider"
    if provider.lower() == "auto":
        chosen = "CUDAExecutionProvider" if "CUDAExecutionProvider" in available else cpu
    else:
        chosen = _ORT_ALIASES.get(provider.lower(), provider)
        if chosen not in available and not chosen.endswith("ExecutionProvider"):
            raise HwnasError(
                f"unknown provider {provider!r}: use auto, cpu, cuda, tensorrt or an ONNX "
                f"Runtime provider name (available here: {', '.join(available)})"
            )
        if chosen not in available:
            raise HwnasError(
                f"ONNX Runtime provider {provider!r} is not available here "
                f"(available: {', '.join(available)})"
            )
    chain = [chosen]
    if chosen == "TensorrtExecutionProvider" and "CUDAExecutionProvider" in available:
        chain.append("CUDAExecutionProvider")
    if chosen != cpu:
        chain.append(cpu)
    return chain


def _load_source(source: ModelSource, index: int) -> tuple[str, bytes | str, str]:
    """(label, what to give ORT, sha256) for a path or bytes."""
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
        return f"model[{index}]", data, hashlib.sha256(data).hexdigest()
    if isinstance(source, str | Path):
        path = Path(source)
        if path.is_dir():
            raise ModelLoadError(f"{path} is a directory, not an ONNX model file")
        if not path.is_file():
            raise ModelLoadError(f"ONNX model file not found: {path}")
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return path.name, str(path), digest.hexdigest()
    raise HwnasError(
        f"an ONNX model must be given as bytes or a file path, got {type(source).__name__}"
    )


def _ort_feed(
    sess: Any, label: str, settings: MeasureSettings, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    feed: dict[str, np.ndarray] = {}
    described: dict[str, dict[str, Any]] = {}
    wanted = settings.input_shape
    for k, inp in enumerate(sess.get_inputs()):
        dims = list(inp.shape)
        if not dims and k == 0 and wanted is not None:
            dims = ["batch", *(None for _ in wanted)]  # rank unknown to the runtime
        shape: list[int] = []
        if dims:
            d0 = dims[0]
            fixed0 = isinstance(d0, int) and d0 > 0
            if k == 0 and fixed0 and d0 != settings.batch_size:
                raise HwnasError(
                    f"{label}: input {inp.name!r} has a fixed batch dimension of {d0}, but "
                    f"batch size {settings.batch_size} was asked; export the model with a "
                    f"dynamic batch dimension or measure at batch size {d0}"
                )
            # a later input with a fixed first dimension is no batch (a shape tensor)
            shape.append(d0 if k > 0 and fixed0 else settings.batch_size)
            rest = dims[1:]
            dynamic = [j for j, d in enumerate(rest) if not (isinstance(d, int) and d > 0)]
            if k > 0 and not dynamic:
                shape += rest
            elif wanted is None or len(wanted) != len(rest):
                if wanted is not None and k == 0:
                    raise HwnasError(
                        f"{label}: input {inp.name!r} has shape {dims} (rank {len(dims)}), "
                        f"but input_shape {list(wanted)} (+ batch) has rank {len(wanted) + 1}"
                    )
                if dynamic:
                    fits = (
                        f"; --input-shape {','.join(map(str, wanted))} fits inputs of rank "
                        f"{len(wanted) + 1} only"
                        if wanted is not None
                        else " (e.g. --input-shape 3,224,224; it sets every input of its rank)"
                    )
                    raise HwnasError(
                        f"{label}: input {inp.name!r} has a dynamic dimension ({dims}); "
                        f"give the input shape{fits}"
                    )
                shape += rest
            else:
                for j, d in enumerate(rest):
                    if j in dynamic:
                        shape.append(wanted[j])
                    elif d != wanted[j] and k == 0:
                        raise HwnasError(
                            f"{label}: input {inp.name!r} has fixed shape {dims}, which does "
                            f"not match input_shape {list(wanted)}"
                        )
                    else:
                        shape.append(d)
        dtype = _ORT_DTYPES.get(inp.type)
        if dtype is None:
            raise HwnasError(f"{label}: input {inp.name!r} has unsupported type {inp.type}")
        if np.issubdtype(dtype, np.floating):
            arr = rng.standard_normal(shape).astype(dtype)
        else:
            arr = np.zeros(shape, dtype=dtype)
        feed[inp.name] = arr
        described[inp.name] = {"shape": shape, "dtype": np.dtype(dtype).name}
    return feed, described


def _thread_count() -> int | None:
    """This process's threads now (Linux: ``/proc/self/task``), else None."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def _started_pool_size(before: int, settings: MeasureSettings) -> int | None:
    """The intra-op threads of a session that started ``now - before`` threads: its pool
    is the calling thread and the started ones. None when that cannot be told (an
    inter-op pool started too, or a count that makes no sense)."""
    after = _thread_count()
    if after is None or settings.inter_op_threads > 1:
        return None
    n = after - before + 1
    return n if 1 <= n <= 4 * (os.cpu_count() or 1) else None


def measure_onnx(
    models: Sequence[ModelSource] | ModelSource,
    settings: MeasureSettings | None = None,
    labels: Sequence[str] | None = None,
) -> list[Measurement]:
    """Measure ONNX models (paths or bytes) with ONNX Runtime, interleaved in rounds.

    Raises :class:`ModelLoadError` for a model ONNX Runtime cannot load,
    :class:`ModelRunError` for one that fails to run, ``HwnasError`` for bad settings.
    """
    settings = settings or MeasureSettings()
    if settings.runtime != "onnxruntime":
        raise HwnasError(
            f"measure_onnx needs runtime 'onnxruntime', got {settings.runtime!r} "
            "(use measure_torch for PyTorch eager)"
        )
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - ort is a dependency of both extras
        import importlib.util

        if importlib.util.find_spec("onnxruntime") is not None:
            # installed, but its native library did not load: under a memory limit (an
            # isolated measurement, an agent's --memory-mb) the limit is too low for it
            raise HwnasError(
                f"onnxruntime is installed but failed to load ({exc}); under a memory "
                "limit (an agent's --memory-mb) the limit is too low to load the runtime"
            ) from None
        raise HwnasError(
            "onnxruntime is not installed; pip install 'hwnas[agent]' or 'hwnas[torch]'"
        ) from None
    if isinstance(models, bytes | bytearray | str | Path):
        models = [models]
    models = list(models)
    if not models:
        raise HwnasError("nothing to measure: no models given")
    if labels is not None and len(labels) != len(models):
        raise HwnasError("labels must match the models one to one")
    providers = ort_providers(settings.provider, ort.get_available_providers())
    rng = np.random.default_rng(settings.seed)

    sessions, runners, entries = [], [], []
    # 0 intra-op threads: the runtime picks; the threads its first session starts say how
    # many (recorded, not the request), where the process's threads can be counted
    intra: int | None = settings.intra_op_threads or None
    for i, source in enumerate(models):
        label, what, sha = _load_source(source, i)
        if labels is not None:
            label = str(labels[i])
        so = ort.SessionOptions()
        so.intra_op_num_threads = settings.intra_op_threads
        so.inter_op_num_threads = settings.inter_op_threads
        so.execution_mode = (
            ort.ExecutionMode.ORT_PARALLEL
            if settings.inter_op_threads > 1
            else ort.ExecutionMode.ORT_SEQUENTIAL
        )
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        before = _thread_count() if intra is None else None
        try:
            sess = ort.InferenceSession(what, sess_options=so, providers=providers)
            if before is not None:
                intra = _started_pool_size(before, settings)
        except Exception as e:  # ORT raises its own exception types
            msg = str(e)
            if isinstance(what, str):
                msg = msg.replace(what, label)
            raise ModelLoadError(f"cannot load ONNX model {label}: {msg}") from None
        feed, described = _ort_feed(sess, label, settings, rng)
        try:
            sess.run(None, feed)
        except Exception as e:
            raise ModelRunError(f"ONNX model {label} failed to run: {e}") from None
        sessions.append(sess)
        runners.append(lambda s=sess, f=feed: s.run(None, f))
        entries.append((label, sha, described, sess.get_providers()[0]))

    times, _ = run_interleaved(runners, settings)
    host = host_info()
    stamp = _now()
    threads = {"intra_op": intra or 0, "inter_op": settings.inter_op_threads}
    if settings.intra_op_threads == 0:
        threads["intra_op_requested"] = 0  # the runtime's default, resolved above
    out = []
    for (label, sha, described, provider), per_round in zip(entries, times, strict=True):
        out.append(
            Measurement(
                model=label,
                stats=compute_stats(per_round, settings.max_robust_cv),
                settings=settings,
                runtime="onnxruntime",
                runtime_version=ort.__version__,
                provider=provider,
                inputs=described,
                threads=threads,
                host=host,
                model_sha256=sha,
                timestamp=stamp,
            )
        )
    del sessions
    return out


# ---------------------------------------------------------------------------------------
# PyTorch eager
# ---------------------------------------------------------------------------------------
def _torch_device(provider: str) -> torch.device:
    import torch

    p = provider.lower()
    if p == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if p.startswith(("cuda", "gpu")):
        if not torch.cuda.is_available():
            raise HwnasError(f"provider {provider!r} asked but CUDA is not available here")
        return torch.device(p.replace("gpu", "cuda"))
    if p in ("cpu", "cpuexecutionprovider"):
        return torch.device("cpu")
    raise HwnasError(f"torch provider must be auto, cpu or cuda[:N], got {provider!r}")


def measure_torch(
    modules: Sequence[torch.nn.Module] | torch.nn.Module,
    input_shape: Sequence[int] | None = None,
    settings: MeasureSettings | None = None,
    labels: Sequence[str] | None = None,
) -> list[Measurement]:
    """Measure ``nn.Module``\\ s in PyTorch eager (inference mode), interleaved in rounds.

    ``input_shape`` is ONE sample's shape (no batch dimension); it defaults to
    ``settings.input_shape``. Modules are put in eval mode on the chosen device for the
    measurement; their training flag, device and torch's thread count are restored after.
    On CUDA every run is synchronised before the clock stops.
    """
    import torch

    settings = settings or MeasureSettings(runtime="torch")
    shape = parse_shape(input_shape) if input_shape is not None else settings.input_shape
    if shape is None:
        raise HwnasError("measure_torch needs the input shape of one sample, e.g. (3, 224, 224)")
    settings = dataclasses.replace(settings, runtime="torch", input_shape=shape)
    from hwnas.measure.worker import check_thread_counts

    check_thread_counts(settings)  # as for ONNX Runtime: oversubscribed, times are inflated
    if isinstance(modules, torch.nn.Module):
        modules = [modules]
    modules = list(modules)
    if not modules:
        raise HwnasError("nothing to measure: no modules given")
    if labels is not None and len(labels) != len(modules):
        raise HwnasError("labels must match the modules one to one")
    device = _torch_device(settings.provider)
    cuda = device.type == "cuda"

    prev_threads = torch.get_num_threads()
    if settings.intra_op_threads > 0:
        torch.set_num_threads(settings.intra_op_threads)
    if settings.inter_op_threads > 0 and torch.get_num_interop_threads() != (
        settings.inter_op_threads
    ):
        # only allowed before any inter-op parallel work in this process
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(settings.inter_op_threads)
    threads = {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}
    if settings.intra_op_threads == 0:
        threads["intra_op_requested"] = 0  # torch's default, resolved above

    restore = []
    for m in modules:
        p = next(iter(m.parameters()), None)
        restore.append((m, m.training, p.device if p is not None else None))
    try:
        gen = torch.Generator().manual_seed(settings.seed)
        x = torch.randn((settings.batch_size, *shape), generator=gen).to(device)
        runners = []
        for i, m in enumerate(modules):
            m.eval().to(device)
            label = labels[i] if labels is not None else f"{type(m).__name__}[{i}]"

            def run(m: torch.nn.Module = m) -> None:
                with torch.inference_mode():
                    m(x)
                if cuda:
                    torch.cuda.synchronize(device)

            try:
                run()
            except Exception as e:
                raise ModelRunError(
                    f"module {label} failed on input {[settings.batch_size, *shape]}: {e}"
                ) from None
            runners.append(run)
        times, _ = run_interleaved(runners, settings)
    finally:
        for m, training, dev in restore:
            m.train(training)
            if dev is not None:
                m.to(dev)
        torch.set_num_threads(prev_threads)

    host = host_info(include_torch=True)
    stamp = _now()
    if cuda and device.index is None:
        provider = f"cuda:{torch.cuda.current_device()}"
    else:
        provider = str(device)
    described = {"input": {"shape": [settings.batch_size, *shape], "dtype": "float32"}}
    return [
        Measurement(
            model=labels[i] if labels is not None else f"{type(m).__name__}[{i}]",
            stats=compute_stats(per_round, settings.max_robust_cv),
            settings=settings,
            runtime="torch",
            runtime_version=torch.__version__,
            provider=provider,
            inputs=described,
            threads=threads,
            host=host,
            timestamp=stamp,
        )
        for i, (m, per_round) in enumerate(zip(modules, times, strict=True))
    ]
