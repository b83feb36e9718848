"""Model cost without running a timer: FLOPs/MACs, parameters, activation memory, file size.

Definitions (all at the given batch size, PyTorch eager, no autograd):

* **FLOPs** are what ``torch.utils.flop_counter.FlopCounterMode`` counts: matrix
  multiplications, convolutions and attention only, at 2 FLOPs per multiply-accumulate;
  element-wise work (bias, ReLU, batch-norm, pooling, additions) is not counted.
  **MACs** = FLOPs / 2.
* **Peak activation memory** is the largest total size of tensor storage that the forward
  pass has allocated and that is alive at the same time, tracked per aten operation with a
  ``TorchDispatchMode``: storages are counted when an operation first returns them and
  released when the last tensor viewing them is freed. Parameters, buffers and the input
  are not counted; the output is. Scratch memory that kernels use internally (im2col,
  workspaces) is not visible and not counted; runtimes that fuse or reuse buffers (ONNX
  Runtime) need less.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwnas.errors import HwnasError
from hwnas.measure.latency import parse_shape

if TYPE_CHECKING:  # pragma: no cover
    import torch


def _example_input(
    module: torch.nn.Module, input_shape: Sequence[int], batch_size: int
) -> torch.Tensor:
    import torch

    shape = parse_shape(input_shape)
    if shape is None:
        raise HwnasError("the input shape of one sample is needed, e.g. (3, 224, 224)")
    if batch_size < 1:
        raise HwnasError(f"batch size must be >= 1, got {batch_size}")
    p = next(iter(module.parameters()), None)
    device = p.device if p is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    return torch.randn((batch_size, *shape), generator=gen).to(device)


def _forward(module: torch.nn.Module, x: torch.Tensor) -> Any:
    was_training = module.training
    module.eval()
    try:
        return module(x)
    except Exception as e:
        raise HwnasError(
            f"{type(module).__name__} failed on an input of shape {list(x.shape)}: {e}"
        ) from None
    finally:
        module.train(was_training)


def count_flops(
    module: torch.nn.Module, input_shape: Sequence[int], batch_size: int = 1
) -> dict[str, Any]:
    """``{"flops", "macs", "by_op"}`` of one forward pass on ``(batch_size, *input_shape)``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = _example_input(module, input_shape, batch_size)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        _forward(module, x)
    flops = int(counter.get_total_flops())
    by_op = {
        str(op).split(".")[-1] if "." in str(op) else str(op): int(n)
        for op, n in counter.get_flop_counts().get("Global", {}).items()
    }
    return {"flops": flops, "macs": flops // 2, "by_op": by_op}


def count_params(module: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared parameters counted once)."""
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only))


def peak_activation_memory(
    module: torch.nn.Module, input_shape: Sequence[int], batch_size: int = 1
) -> int:
    """Peak bytes of live activations in one eager forward pass (see the module docstring)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    x = _example_input(module, input_shape, batch_size)
    exclude = {x.untyped_storage().data_ptr()}
    for t in (*module.parameters(), *module.buffers()):
        exclude.add(t.untyped_storage().data_ptr())

    class _Tracker(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.groups: dict[int, list[int]] = {}  # data_ptr -> [nbytes, live tensors]
            self.live = 0
            self.peak = 0
            self.finalizers: list[weakref.finalize] = []

        def _release(self, key: int) -> None:
            group = self.groups.get(key)
            if group is None:
                return
            group[1] -= 1
            if group[1] <= 0:
                self.live -= group[0]
                del self.groups[key]

        def _track(self, t: torch.Tensor) -> None:
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key == 0 or key in exclude:
                return
            group = self.groups.get(key)
            if group is None:
                group = self.groups[key] = [int(storage.nbytes()), 0]
                self.live += group[0]
                self.peak = max(self.peak, self.live)
            group[1] += 1
            self.finalizers.append(weakref.finalize(t, self._release, key))

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor) and t.device.type != "meta":
                    self._track(t)
            return out

    tracker = _Tracker()
    try:
        with torch.no_grad(), tracker:
            out = _forward(module, x)
        del out
    finally:
        for f in tracker.finalizers:
            f.detach()
    return int(tracker.peak)


def model_cost(
    module: torch.nn.Module,
    input_shape: Sequence[int],
    batch_size: int = 1,
    onnx_path: str | Path | None = None,
) -> dict[str, Any]:
    """Params, FLOPs, MACs, peak activation bytes, input bytes and (optionally) ONNX size."""
    shape = parse_shape(input_shape)
    if shape is None:
        raise HwnasError("the input shape of one sample is needed, e.g. (3, 224, 224)")
    flops = count_flops(module, shape, batch_size)
    x = _example_input(module, shape, batch_size)
    cost: dict[str, Any] = {
        "batch_size": int(batch_size),
        "input_shape": list(shape),
        "params": count_params(module),
        "flops": flops["flops"],
        "macs": flops["macs"],
        "peak_activation_bytes": peak_activation_memory(module, shape, batch_size),
        "input_bytes": int(x.numel() * x.element_size()),
        "onnx_size_bytes": None,
    }
    if onnx_path is not None:
        try:
            cost["onnx_size_bytes"] = os.path.getsize(onnx_path)
        except OSError as e:
            raise HwnasError(f"cannot read ONNX file {onnx_path}: {e.strerror}") from None
    return cost
