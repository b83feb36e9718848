"""Host description recorded with every measurement (never imports torch on its own)."""

from __future__ import annotations

import os
import platform
import sys
from functools import lru_cache
from typing import Any


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _cpu_model() -> str:
    """CPU model from /proc/cpuinfo (x86 'model name', ARM 'Hardware'/'Model'), else platform."""
    text = _read("/proc/cpuinfo")
    if text:
        wanted = ("model name", "hardware", "processor", "cpu model", "model")
        found: dict[str, str] = {}
        for line in text.splitlines():
            if ":" not in line:
                continue
            key, _, value = line.partition(":")
            key, value = key.strip().lower(), value.strip()
            if key in wanted and value and key not in found and not value.isdigit():
                found[key] = value
        for key in wanted:
            if key in found:
                return found[key]
    return platform.processor() or platform.machine() or "unknown"


def _board_model() -> str | None:
    """Single-board computers (Jetson, Raspberry Pi) name themselves in the device tree."""
    text = _read("/proc/device-tree/model")
    return text.strip("\x00\n ") if text else None


def _memory_total_mb() -> int | None:
    text = _read("/proc/meminfo")
    if not text:
        return None
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            try:
                return int(line.split()[1]) // 1024
            except (IndexError, ValueError):
                return None
    return None


def _usable_cores() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


@lru_cache(maxsize=1)
def _static_host() -> dict[str, Any]:
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": _usable_cores(),
        "memory_total_mb": _memory_total_mb(),
        "python": platform.python_version(),
    }
    board = _board_model()
    if board:
        info["board"] = board
    return info


def _onnxruntime_info() -> dict[str, Any]:
    try:
        import onnxruntime as ort
    except ImportError:
        return {"onnxruntime_version": None}
    return {
        "onnxruntime_version": ort.__version__,
        "onnxruntime_providers": list(ort.get_available_providers()),
    }


def _torch_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"torch_version": torch.__version__, "gpu": None}
    if torch.cuda.is_available():
        idx = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        info["gpu"] = {
            "name": props.name,
            "count": torch.cuda.device_count(),
            "memory_mb": int(props.total_memory // 2**20),
            "cuda": torch.version.cuda,
        }
    return info


#: what tells one machine from another in a :func:`host_info` (not its software)
HOST_IDENTITY = ("hostname", "machine", "cpu_model", "logical_cores")


def host_identity(info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The :data:`HOST_IDENTITY` fields of ``info`` (default: this machine's)."""
    info = _static_host() if info is None else info
    return {k: info.get(k) for k in HOST_IDENTITY}


def host_info(include_torch: bool | None = None) -> dict[str, Any]:
    """Describe this machine: CPU model, cores, memory, runtimes and GPU.

    ``include_torch``: add torch version and GPU (via ``torch.cuda``). ``None`` (default)
    means "only if torch is already imported", so the light agent install never pulls it in.
    """
    info = dict(_static_host())
    info.update(_onnxruntime_info())
    if include_torch is None:
        include_torch = sys.modules.get("torch") is not None
    if include_torch:
        try:
            info.update(_torch_info())
        except ImportError:
            info["torch_version"] = None
    return info
