"""Latency measurement, model cost and the device agent.

* :mod:`hwnas.measure.latency` — the interleaved measurement protocol, ONNX Runtime and
  PyTorch eager (:func:`measure_onnx`, :func:`measure_torch`);
* :mod:`hwnas.measure.cost` — FLOPs/MACs, parameters, peak activation memory;
* :mod:`hwnas.measure.export` — PyTorch -> ONNX;
* :mod:`hwnas.measure.agent` — HTTP agent server and client for remote devices;
* :mod:`hwnas.measure.measurer` — :class:`LatencyMeasurer` with local/remote versions.

Importing this package does not import torch (the agent install has no torch); the
torch-specific functions import it when called.
"""

from hwnas.measure.agent import (
    AgentClient,
    AgentConfig,
    AgentServer,
    create_server,
    make_token,
    read_token_file,
    serve,
    write_token_file,
)
from hwnas.measure.cost import count_flops, count_params, model_cost, peak_activation_memory
from hwnas.measure.export import export_onnx
from hwnas.measure.host import host_info
from hwnas.measure.latency import (
    LatencyStats,
    Measurement,
    MeasureSettings,
    ModelLoadError,
    ModelRunError,
    compute_stats,
    measure_onnx,
    measure_torch,
    run_interleaved,
)
from hwnas.measure.measurer import LatencyMeasurer, LocalMeasurer, RemoteMeasurer, measure_modules
from hwnas.measure.worker import (
    MeasureOutOfMemoryError,
    MeasureTimeoutError,
    WorkerCrashedError,
    run_isolated,
)

__all__ = [
    "AgentClient",
    "AgentConfig",
    "AgentServer",
    "LatencyMeasurer",
    "LatencyStats",
    "LocalMeasurer",
    "MeasureOutOfMemoryError",
    "MeasureSettings",
    "MeasureTimeoutError",
    "Measurement",
    "ModelLoadError",
    "ModelRunError",
    "RemoteMeasurer",
    "WorkerCrashedError",
    "compute_stats",
    "count_flops",
    "count_params",
    "create_server",
    "export_onnx",
    "host_info",
    "make_token",
    "measure_modules",
    "measure_onnx",
    "measure_torch",
    "model_cost",
    "peak_activation_memory",
    "read_token_file",
    "run_interleaved",
    "run_isolated",
    "serve",
    "write_token_file",
]
