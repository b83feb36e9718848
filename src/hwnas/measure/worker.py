"""Run a measurement in a child process, with a time-out and an address-space limit.

The parent (:func:`run_isolated`) starts ``python -m hwnas.measure._child --memory-mb N``
and writes one JSON request to its stdin::

    {"models": ["/tmp/.../model0.onnx", ...], "settings": {...}}

The child limits its own address space with ``resource.setrlimit(RLIMIT_AS)`` before it
loads ONNX Runtime, measures with :func:`hwnas.measure.latency.measure_onnx`, and writes one
JSON reply to its stdout: ``{"ok": true, "measurements": [...]}`` or
``{"ok": false, "kind": ..., "message": ...}``. Anything else the runtime prints goes to
stderr. The parent kills the child when the time-out expires.

The model paths are always files the parent created itself. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hwnas.errors import HwnasError
from hwnas.measure.latency import (
    Measurement,
    MeasureSettings,
    ModelLoadError,
    ModelRunError,
)

_STDERR_TAIL = 2000


class MeasureTimeoutError(HwnasError):
    """The measurement ran past its time-out and was killed."""


class MeasureOutOfMemoryError(HwnasError):
    """The model needed more memory than the child process was allowed."""


class MeasureCancelledError(HwnasError):
    """The caller stopped waiting (an agent's client left): the child was killed."""


class WorkerCrashedError(HwnasError):
    """The measuring child process died without an answer."""


#: errors that belong to the measured model itself (it cannot be loaded or run, it needs
#: too much memory or time, it crashes the runtime), as opposed to errors of the request,
#: the settings or the connection to an agent
MODEL_ERRORS: tuple[type[HwnasError], ...] = (
    ModelLoadError,
    ModelRunError,
    MeasureOutOfMemoryError,
    MeasureTimeoutError,
    WorkerCrashedError,
)


def check_thread_counts(settings: MeasureSettings, cpus: int | None = None) -> None:
    """Refuse runtime thread counts above this machine's CPU count (``os.cpu_count()``).

    Under an ``RLIMIT_AS`` memory limit ONNX Runtime can hang while it creates a thread
    pool much larger than the machine, so an isolated measurement (and the agent) must
    fail fast instead of running into its time-out.
    """
    cpus = cpus if cpus is not None else os.cpu_count() or 1
    for name in ("intra_op_threads", "inter_op_threads"):
        n = int(getattr(settings, name))
        if n > cpus:
            raise HwnasError(
                f"{name} {n} exceeds the {cpus} CPU(s) of this machine; use at most {cpus} "
                "(0: the runtime's default)"
            )


# ---------------------------------------------------------------------------------------
# child side
# ---------------------------------------------------------------------------------------
def _limit_memory(memory_mb: int) -> None:
    if memory_mb <= 0:
        return
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows: no rlimits
        return
    limit = int(memory_mb) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _looks_like_oom(message: str) -> bool:
    m = message.lower()
    return any(s in m for s in ("bad_alloc", "bad alloc", "failed to allocate", "out of memory"))


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this child when its parent dies (Linux): a killed agent or
    search must not leave a measurement running beside the next one, skewing it."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if parent and os.getppid() != parent:  # it died before the line above
        os._exit(1)


def _child_main(argv: Sequence[str]) -> int:
    args = dict(zip(argv[::2], argv[1::2], strict=False))
    memory_mb = int(args.get("--memory-mb", 0))
    _die_with_parent(int(args.get("--parent", 0)))
    # Keep the reply channel clean: whatever a runtime prints goes to stderr.
    reply = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    try:
        _limit_memory(memory_mb)
        request = json.loads(sys.stdin.read())
        if request.get("probe"):  # can the runtime load under the limit at all?
            import onnxruntime  # noqa: F401

            reply.write(json.dumps({"ok": True}))
            reply.flush()
            return 0
        settings = MeasureSettings.from_dict(request["settings"])
        from hwnas.measure.latency import measure_onnx

        found = measure_onnx(
            [Path(p) for p in request["models"]], settings, labels=request.get("labels")
        )
        out: dict[str, Any] = {"ok": True, "measurements": [m.to_dict() for m in found]}
    except ModelLoadError as e:
        kind = "out_of_memory" if _looks_like_oom(str(e)) else "bad_model"
        out = {"ok": False, "kind": kind, "message": str(e)}
    except ModelRunError as e:
        kind = "out_of_memory" if _looks_like_oom(str(e)) else "model_failed"
        out = {"ok": False, "kind": kind, "message": str(e)}
    except HwnasError as e:
        out = {"ok": False, "kind": "bad_request", "message": str(e)}
    except MemoryError:
        out = {"ok": False, "kind": "out_of_memory", "message": "out of memory"}
    except Exception as e:  # report, don't crash: the parent wants a reason
        kind = "out_of_memory" if _looks_like_oom(str(e)) else "internal"
        out = {"ok": False, "kind": kind, "message": f"{type(e).__name__}: {e}"}
    reply.write(json.dumps(out))
    reply.flush()
    return 0


# ---------------------------------------------------------------------------------------
# parent side
# ---------------------------------------------------------------------------------------
def _child_env() -> dict[str, str]:
    import hwnas

    env = dict(os.environ)
    src_root = str(Path(hwnas.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src_root, env.get("PYTHONPATH")) if p)
    # Keep helper thread pools small (they reserve address space and steal cycles).
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    env.setdefault("MALLOC_ARENA_MAX", "2")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _child_cmd(memory_mb: int) -> list[str]:
    """The measuring child's command line: its memory limit, and this process as the
    parent it dies with."""
    return [
        *(sys.executable, "-m", "hwnas.measure._child"),
        *("--memory-mb", str(int(memory_mb)), "--parent", str(os.getpid())),
    ]


def _run_child(
    cmd: list[str],
    request: bytes,
    timeout_s: float,
    cwd: str | Path | None,
    cancelled: Callable[[], bool] | None,
) -> tuple[bytes, bytes, int]:
    """Run the measuring child to its end: (stdout, stderr, exit code); killed (and
    waited for) on the time-out or when ``cancelled()`` says so."""
    import time

    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_child_env(),
        cwd=str(cwd) if cwd is not None else None,
    )
    deadline = time.monotonic() + timeout_s
    data: bytes | None = request  # sent once: a retried communicate() goes on from there
    with proc:
        try:
            while True:
                left = deadline - time.monotonic()
                try:
                    wait = min(left, 0.5) if cancelled else left
                    out, err = proc.communicate(data, timeout=wait)
                    return out, err, proc.returncode
                except subprocess.TimeoutExpired:
                    data = None
                    if time.monotonic() < deadline and not (cancelled and cancelled()):
                        continue
                    if time.monotonic() >= deadline:
                        raise MeasureTimeoutError(
                            f"measurement took longer than the time-out of {timeout_s:g} s "
                            "and was stopped"
                        ) from None
                    raise MeasureCancelledError("the measurement was cancelled") from None
        except BaseException:
            # whatever ends the wait (the time-out, a cancel, SIGTERM's Terminated, Ctrl-C)
            # ends the child too: it must not measure on beside the next measurement
            proc.kill()
            proc.communicate()
            raise


def probe_runtime(memory_mb: int, timeout_s: float = 120.0) -> None:
    """Start a measuring child under ``memory_mb`` and load ONNX Runtime in it: an agent
    whose limit is too low to load the runtime at all is refused when it starts, not at
    every request."""
    cmd = _child_cmd(memory_mb)
    out, err, code = _run_child(cmd, json.dumps({"probe": True}).encode(), timeout_s, None, None)
    try:
        reply = json.loads(out.decode() or "null")
    except ValueError:
        reply = None
    if not (isinstance(reply, dict) and reply.get("ok")):
        why = (reply or {}).get("message") if isinstance(reply, dict) else None
        why = why or err.decode(errors="replace").strip()[-300:] or f"exit code {code}"
        raise HwnasError(
            f"the measuring process cannot load ONNX Runtime under --memory-mb {memory_mb} "
            f"({why}); raise --memory-mb (0: no limit)"
        )


def run_isolated(
    model_paths: Sequence[str | Path],
    settings: MeasureSettings,
    timeout_s: float = 300.0,
    memory_mb: int = 2048,
    labels: Sequence[str] | None = None,
    cwd: str | Path | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> list[Measurement]:
    """Measure ONNX files (with :func:`measure_onnx`) in a child process.

    ``cancelled`` is asked twice a second while the child runs; when it says so the
    child is killed and :class:`MeasureCancelledError` raised (an agent's client left).

    Raises :class:`ModelLoadError` / :class:`ModelRunError` / ``HwnasError`` as the local
    call would (``HwnasError`` also for thread counts above the CPU count, see
    :func:`check_thread_counts`), :class:`MeasureTimeoutError` after ``timeout_s`` (the
    child is killed; the time includes starting Python and ONNX Runtime, about half a second),
    :class:`MeasureOutOfMemoryError` when the model exceeds ``memory_mb`` of address space
    (0: no limit) and :class:`WorkerCrashedError` when the child dies without an answer.
    """
    if settings.runtime != "onnxruntime":
        raise HwnasError("isolated measurement runs ONNX models with onnxruntime only")
    if not timeout_s > 0:
        raise HwnasError(f"the measurement time-out must be positive, got {timeout_s:g} s")
    check_thread_counts(settings)
    paths = [str(Path(p).resolve()) for p in model_paths]
    if labels is not None and len(labels) != len(paths):
        raise HwnasError("labels must match the models one to one")
    request = json.dumps(
        {
            "models": paths,
            "labels": [str(x) for x in labels] if labels is not None else None,
            "settings": settings.to_dict(),
        }
    )
    cmd = _child_cmd(memory_mb)
    stdout, stderr, returncode = _run_child(cmd, request.encode(), timeout_s, cwd, cancelled)
    stderr_tail = stderr.decode(errors="replace")[-_STDERR_TAIL:].strip()
    try:
        reply = json.loads(stdout.decode() or "null")
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        limit = f" the memory limit of {memory_mb} MB," if memory_mb > 0 else ""
        how = f"killed by signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
        if _looks_like_oom(stderr_tail) or "MemoryError" in stderr_tail:
            raise MeasureOutOfMemoryError(
                f"the measurement ran out of memory ({how}); the model needs more than"
                f"{limit or ' the available memory'}"
            )
        raise WorkerCrashedError(
            f"the measuring process died ({how}); the model may have exceeded{limit or ''} "
            f"or crashed the runtime. stderr: {stderr_tail[-500:] or '(empty)'}"
        )
    if not reply.get("ok"):
        kind = reply.get("kind")
        message = str(reply.get("message", "unknown error")).strip()
        exc = {
            "bad_model": ModelLoadError,
            "model_failed": ModelRunError,
            "out_of_memory": MeasureOutOfMemoryError,
            "bad_request": HwnasError,
        }.get(kind, WorkerCrashedError)
        if kind == "out_of_memory":
            message = f"{message} (memory limit {memory_mb} MB)"
        raise exc(message)
    return [Measurement.from_dict(d) for d in reply["measurements"]]
