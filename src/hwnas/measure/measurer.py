"""One interface for local and remote latency measurement, so a search can use either."""

from __future__ import annotations

import numbers
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from hwnas.errors import HwnasError
from hwnas.measure.latency import Measurement, MeasureSettings, measure_onnx

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from hwnas.measure.agent import AgentClient

ModelInput = bytes | str | Path


def _model_list(models: Sequence[ModelInput] | ModelInput) -> list[ModelInput]:
    """One model (a path or bytes) or a sequence of them, as a list (a path is not a
    sequence of one-letter models)."""
    if isinstance(models, bytes | bytearray | str | Path):
        return [models]
    return list(models)


@runtime_checkable
class LatencyMeasurer(Protocol):
    """Measures ONNX models (bytes or file paths), interleaved, with the shared protocol."""

    def measure(
        self, models: Sequence[ModelInput] | ModelInput, settings: MeasureSettings | None = None
    ) -> list[Measurement]: ...


class LocalMeasurer:
    """Measure on this machine with ONNX Runtime.

    ``isolate=True`` runs every call in a child process with ``timeout_s`` and
    ``memory_mb`` limits (like the agent), so a model that hangs or crashes the runtime
    cannot take the caller down; it costs about half a second per call.
    """

    def __init__(
        self,
        settings: MeasureSettings | None = None,
        isolate: bool = False,
        timeout_s: float = 300.0,
        memory_mb: int = 0,
    ) -> None:
        if not timeout_s > 0:
            raise HwnasError(f"the measurement time-out must be positive, got {timeout_s:g} s")
        self.settings = settings or MeasureSettings()
        self.isolate = isolate
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb

    def measure(
        self, models: Sequence[ModelInput] | ModelInput, settings: MeasureSettings | None = None
    ) -> list[Measurement]:
        """Measure one model or several, interleaved (see :func:`measure_onnx`)."""
        from hwnas.measure.worker import check_thread_counts, run_isolated

        settings = settings or self.settings
        models = _model_list(models)
        check_thread_counts(settings)  # oversubscribed, every latency would be inflated
        if not self.isolate:
            return measure_onnx(models, settings)

        with tempfile.TemporaryDirectory(prefix="hwnas-measure-") as tmp:
            paths, labels = [], []
            for i, m in enumerate(models):
                if isinstance(m, bytes | bytearray):
                    p = Path(tmp) / f"model{i}.onnx"
                    p.write_bytes(bytes(m))
                    paths.append(p)
                    labels.append(f"model[{i}]")
                else:
                    p = Path(m)
                    if p.is_dir():
                        raise HwnasError(f"{p} is a directory, not an ONNX model file")
                    if not p.is_file():
                        raise HwnasError(f"ONNX model file not found: {p}")
                    paths.append(p)
                    labels.append(p.name)
            return run_isolated(paths, settings, self.timeout_s, self.memory_mb, labels=labels)


class RemoteMeasurer:
    """Measure on a device agent (``hwnas agent serve``) through an :class:`AgentClient`."""

    def __init__(self, client: AgentClient, settings: MeasureSettings | None = None) -> None:
        self.client = client
        self.settings = settings or MeasureSettings()

    def measure(
        self, models: Sequence[ModelInput] | ModelInput, settings: MeasureSettings | None = None
    ) -> list[Measurement]:
        """Measure one model or several on the agent's device, interleaved."""
        return self.client.measure_many(_model_list(models), settings or self.settings)


def measure_modules(
    measurer: LatencyMeasurer,
    modules: Sequence[torch.nn.Module | bytes],
    input_shape: Sequence[int] | Sequence[Sequence[int]],
    settings: MeasureSettings | None = None,
    labels: Sequence[str] | None = None,
    max_models: int | None = None,
    max_bytes: int | None = None,
) -> list[Measurement]:
    """Export PyTorch modules to ONNX (dynamic batch) and measure them with ``measurer``.

    ``input_shape`` is one sample's shape, without the batch dimension, or one such shape
    per module (e.g. subnets at their own resolutions: still one interleaved call, each
    model fed the shape it was exported with). ``max_models`` and ``max_bytes`` (a device
    agent's limits per request) split the models into calls that fit, in order; each call
    is interleaved on its own. A module given as bytes is an ONNX model already exported
    with its shape.
    """
    shapes = _module_shapes(modules, input_shape)
    calls = _measure_calls(measurer, modules, shapes, settings, labels, max_models, max_bytes)
    return [m for found in calls for m in found]


def measure_beside_anchor(
    measurer: LatencyMeasurer,
    anchor: tuple[torch.nn.Module | bytes, Sequence[int]],
    modules: Sequence[torch.nn.Module],
    input_shape: Sequence[int] | Sequence[Sequence[int]],
    settings: MeasureSettings | None = None,
    labels: Sequence[str] | None = None,
    max_models: int | None = None,
    max_bytes: int | None = None,
) -> list[tuple[Measurement, Measurement]]:
    """:func:`measure_modules` with the ``anchor`` module (and its input shape) first in
    every call, interleaved with the others: each module's measurement and the anchor's
    from the same call, so that drift between calls can be taken out (an agent's limits
    leave room for the anchor in each request). The anchor may be given as its ONNX bytes,
    exported once by the caller, as it is the same in every call."""
    shapes = [tuple(int(d) for d in anchor[1]), *_module_shapes(modules, input_shape)]
    names = None if labels is None else ["anchor", *labels]
    calls = _measure_calls(
        measurer, [anchor[0], *modules], shapes, settings, names, max_models, max_bytes, head=1
    )
    return [(m, found[0]) for found in calls for m in found[1:]]


def _module_shapes(
    modules: Sequence[Any], input_shape: Sequence[int] | Sequence[Sequence[int]]
) -> list[tuple[int, ...]]:
    """One input shape per module: the one given for all, or each its own."""
    per_module = bool(input_shape) and not isinstance(input_shape[0], numbers.Integral)
    shapes = (
        [tuple(int(d) for d in sh) for sh in input_shape]  # type: ignore[union-attr]
        if per_module
        else [tuple(int(d) for d in input_shape)] * len(modules)  # type: ignore[arg-type]
    )
    if len(shapes) != len(modules):
        raise HwnasError("input shapes must match the modules one to one")
    return shapes


def _measure_calls(
    measurer: LatencyMeasurer,
    modules: Sequence[torch.nn.Module | bytes],
    shapes: list[tuple[int, ...]],
    settings: MeasureSettings | None,
    labels: Sequence[str] | None,
    max_models: int | None,
    max_bytes: int | None,
    head: int = 0,
) -> list[list[Measurement]]:
    """Export and measure, in calls within the limits, the first ``head`` modules in
    every call; the measurements of each call, named by ``labels``. A module given as
    bytes is already an exported ONNX model (exported with ``shapes[i]``)."""
    import dataclasses

    from hwnas.measure.export import onnx_bytes

    settings = dataclasses.replace(
        settings or getattr(measurer, "settings", None) or MeasureSettings(),
        # one shape for all, or none: each model's input shape is read from its graph
        input_shape=shapes[0] if len(set(shapes)) == 1 else None,
    )
    names = (
        list(labels)
        if labels is not None
        else [f"{type(m).__name__}[{i}]" for i, m in enumerate(modules)]
    )
    if len(names) != len(modules):
        raise HwnasError("labels must match the modules one to one")
    blobs = [
        m if isinstance(m, bytes) else onnx_bytes(m, shapes[i], settings.batch_size)
        for i, m in enumerate(modules)
    ]
    out = []
    for group in _calls(blobs, names, max_models, max_bytes, head):
        found = measurer.measure([blobs[i] for i in group], settings)
        out.append(
            [dataclasses.replace(m, model=names[i]) for m, i in zip(found, group, strict=True)]
        )
    return out


def _calls(
    blobs: Sequence[bytes],
    names: Sequence[str],
    max_models: int | None,
    max_bytes: int | None,
    head: int = 0,
) -> list[list[int]]:
    """Indices of ``blobs`` in consecutive groups of at most ``max_models`` models and
    ``max_bytes`` bytes, each group led by the first ``head`` blobs (an anchor measured in
    every call); a model that cannot fit even alone (beside the head) is an error."""
    fixed = sum(len(b) for b in blobs[:head])
    if max_models is not None and max_models <= head:
        raise HwnasError(
            f"a request may hold {max_models} model(s): no room beside the anchor "
            "(measure without it: anchor=false)"
        )
    groups: list[list[int]] = [[]]
    size = 0
    for i in range(head, len(blobs)):
        b = blobs[i]
        if max_bytes is not None and fixed + len(b) > max_bytes:
            beside = f" beside the anchor's {fixed / 2**20:.1f} MiB" if head else ""
            raise HwnasError(
                f"{names[i]}: its ONNX model is {len(b) / 2**20:.1f} MiB{beside}, more than "
                f"the {max_bytes / 2**20:.1f} MiB a request may upload (start the agent "
                "with a larger --max-mb)"
            )
        full = max_models is not None and len(groups[-1]) >= max_models - head
        over = max_bytes is not None and fixed + size + len(b) > max_bytes
        if groups[-1] and (full or over):
            groups.append([])
            size = 0
        groups[-1].append(i)
        size += len(b)
    return [list(range(head)) + g for g in groups if g]
