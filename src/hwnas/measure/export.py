"""Export a PyTorch module to ONNX (verified with ``onnx.checker``)."""

from __future__ import annotations

import importlib.util
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwnas.errors import HwnasError
from hwnas.measure.latency import parse_shape

if TYPE_CHECKING:  # pragma: no cover
    import torch

DEFAULT_OPSET = 17

# Messages of the deprecation warnings the TorchScript-based exporter emits on every call.
_NOISY = (
    r".*legacy TorchScript-based ONNX export.*",
    r".*The feature will be removed.*",
)


def _module_device(module: torch.nn.Module) -> torch.device:
    import torch

    p = next(iter(module.parameters()), None)
    if p is None:
        p = next(iter(module.buffers()), None)
    return p.device if p is not None else torch.device("cpu")


def write_metadata(path: str | Path, metadata: dict[str, Any]) -> Path:
    """Store ``metadata`` in an ONNX file's ``metadata_props`` (``hwnas.KEY``: the value,
    JSON unless a string), where a deployment reads it back with
    ``onnxruntime.InferenceSession(path).get_modelmeta().custom_metadata_map``: what the
    network is and what its input needs."""
    import onnx

    path = Path(path)
    model = onnx.load(str(path))
    new = {
        f"hwnas.{k}": v if isinstance(v, str) else json.dumps(v, default=json_plain)
        for k, v in metadata.items()
    }
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in new]
    del model.metadata_props[:]  # a key written again replaces the old value
    for key, value in [*kept, *new.items()]:
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(path))
    return path


def json_plain(value: Any) -> Any:
    """numpy scalars and arrays (and anything else) as JSON can take them."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def export_onnx(
    module: torch.nn.Module,
    input_shape: Sequence[int],
    path: str | Path,
    batch_size: int = 1,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    check: bool = True,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Export ``module`` (in eval mode) to ``path`` and return the path.

    ``input_shape`` is ONE sample's shape without the batch dimension; the example input
    is ``(batch_size, *input_shape)``. With ``dynamic_batch`` the batch dimension of the
    input ``"input"`` and the output ``"output"`` is symbolic, so the file can be measured
    at any batch size. The TorchScript-based exporter (``dynamo=False``) is used: it needs
    no ``onnxscript`` and is quick; the torch.export-based one is tried only if it fails
    and ``onnxscript`` is installed. ``metadata`` goes into the file
    (:func:`write_metadata`).
    """
    import torch

    shape = parse_shape(input_shape)
    if shape is None:
        raise HwnasError("export_onnx needs the input shape of one sample, e.g. (3, 224, 224)")
    if opset < 13:
        raise HwnasError(f"opset must be >= 13, got {opset}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.randn((int(batch_size), *shape), device=_module_device(module))
    axes = {"input": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None
    common = dict(
        input_names=["input"],
        output_names=["output"],
        opset_version=opset,
        dynamic_axes=axes,
    )
    was_training = module.training
    module.eval()
    try:
        try:
            with warnings.catch_warnings():
                for msg in _NOISY:
                    warnings.filterwarnings("ignore", message=msg)
                torch.onnx.export(
                    module, (x,), str(path), dynamo=False, do_constant_folding=True, **common
                )
        except Exception as legacy_error:
            if importlib.util.find_spec("onnxscript") is None:
                raise HwnasError(
                    f"ONNX export of {type(module).__name__} failed: {legacy_error}"
                ) from legacy_error
            try:
                torch.onnx.export(module, (x,), str(path), dynamo=True, **common)
            except Exception as e:
                raise HwnasError(
                    f"ONNX export of {type(module).__name__} failed with both exporters: "
                    f"{legacy_error} / {e}"
                ) from e
    finally:
        module.train(was_training)
    if metadata:
        write_metadata(path, metadata)
    if check:
        import onnx

        try:
            onnx.checker.check_model(str(path))
        except Exception as e:  # onnx.checker.ValidationError and friends
            raise HwnasError(f"exported ONNX model {path} failed onnx.checker: {e}") from e
    return path


def onnx_bytes(module: torch.nn.Module, input_shape: Sequence[int], batch_size: int = 1) -> bytes:
    """``module`` exported as by :func:`export_onnx` (dynamic batch), as the file's bytes:
    what a measurer takes, with no file left behind."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hwnas-export-") as tmp:
        return export_onnx(module, input_shape, Path(tmp) / "model.onnx", batch_size).read_bytes()
