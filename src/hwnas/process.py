"""Process hygiene for long runs: one writer per output directory, and worker processes
that do not outlive the run that started them."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hwnas.errors import HwnasError, check_not_under_file

LOCK_NAME = ".hwnas.lock"
_HELD: dict[Path, int] = {}  # directories this process holds (a nested lock is taken)


@contextlib.contextmanager
def out_dir_lock(out: str | os.PathLike[str], what: str = "run") -> Iterator[Path]:
    """Hold an exclusive lock on the output directory ``out`` while a run writes there.

    A second run on the same directory (another terminal, a script started twice) fails
    at once with one clear error instead of mixing its outputs with the first's. The
    lock is ``flock`` on ``OUT/.hwnas.lock``: the system drops it when the holder exits,
    killed or not, so a stale lock never blocks a resume. A directory this process
    already holds is taken again at once (a command that locks before calling the
    library, which locks too). Where ``fcntl`` is missing (Windows) nothing is locked.
    A directory made here that holds nothing but the lock at the end (a run refused by
    its checks) is removed again."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise HwnasError(f"output path {out} exists and is not a directory")
    check_not_under_file(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    key = out.resolve()
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield out
        return
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield out
        finally:
            _HELD[key] -= 1
        return
    f = _take_lock(out, fcntl)
    try:
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()} {what}\n")
        f.flush()
        _HELD[key] = 1
        try:
            yield out
        finally:
            del _HELD[key]
            if created:  # removed while still locked: no other run can be in it
                _remove_if_only_lock(out)
    finally:
        f.close()  # closing releases the lock


def _take_lock(out: Path, fcntl: Any) -> Any:
    """Open and ``flock`` ``OUT/.hwnas.lock`` (refused at once when another run holds
    it). A lock file removed or replaced between the open and the lock (a refused run's
    folder cleaned up by its creator) is opened again, so two runs never hold locks on
    different files of one folder."""
    for _ in range(10):
        out.mkdir(parents=True, exist_ok=True)
        f = (out / LOCK_NAME).open("a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid, _, kind = f.read().strip().partition(" ")
            f.close()
            raise HwnasError(
                f"'{out}' is in use by another hwnas run ({kind or 'run'}, process "
                f"{pid or '?'}); a second one would mix their outputs: wait for it to end, "
                "or choose another --out"
            ) from None
        try:
            same = os.stat(out / LOCK_NAME).st_ino == os.fstat(f.fileno()).st_ino
        except OSError:  # removed meanwhile
            same = False
        if same:
            return f
        f.close()
    raise HwnasError(f"cannot lock '{out}': its lock file keeps being replaced")


def _remove_if_only_lock(out: Path) -> None:
    """Remove ``out`` when it holds nothing but its lock file (a run that stopped before
    writing anything leaves no empty folder behind)."""
    with contextlib.suppress(OSError):
        if [p.name for p in out.iterdir()] == [LOCK_NAME]:
            (out / LOCK_NAME).unlink()
            out.rmdir()


def die_with_parent(parent_pid: int | None = None) -> None:
    """In a worker process (a pool's ``initializer``, ``initargs=(os.getpid(),)``): end
    when the parent dies, so a killed study leaves no orphans that keep writing into its
    output directory (Linux; elsewhere a no-op)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:  # pragma: no cover - not glibc Linux
        return
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    if parent_pid is not None and os.getppid() != parent_pid:  # it died before the call
        os._exit(1)


def keyboard_interrupt_handled() -> None:
    """Tell CPython that a KeyboardInterrupt was handled here. One that escaped an
    ``exec`` of a string on its way (a dataclass or namedtuple being built, as a lazy
    import does) sets a flag that makes ``python -m`` die of SIGINT at exit whatever the
    exit status asked for (143 for SIGTERM read as -2). Every exec of a string clears
    that flag before it runs, so an empty one does (CPython 3.10 to 3.13 alike)."""
    exec("pass", {})  # a constant: only its side effect on the flag counts


class Terminated(SystemExit):
    """SIGTERM while a resumable run works (:func:`sigterm_ends`): the run ends as on
    Ctrl-C, its clean-up done, and the process exits with status 143."""


@contextlib.contextmanager
def sigterm_ends(exc: type[Terminated] = Terminated) -> Iterator[None]:
    """Turn SIGTERM into ``exc`` while a run works, so that its clean-up runs (a store
    noting where it stopped, temporary files removed); main thread only, and only where
    SIGTERM has its default action (an embedding program's handler is left alone)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the clean-up finish
        raise exc(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def stop_pool(pool: Any) -> None:
    """End a ``ProcessPoolExecutor`` at once (Ctrl-C or SIGTERM in its parent): queued
    jobs cancelled, running workers terminated, instead of waiting for every job."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            proc.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
