"""Shared fixtures. Tests read real data from $HWNAS_DATA_DIR (``.ci/run`` sets it to
../shared/data); a test that needs a missing file fails with the data-dir error."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hwnas.config import ENV_DATA_DIR

_DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    # Developers who run plain `pytest` beside ../shared get the same data as CI.
    if not os.environ.get(ENV_DATA_DIR) and _DEFAULT.is_dir():
        os.environ[ENV_DATA_DIR] = str(_DEFAULT)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # pytest-xdist gives its workers COLUMNS=80, which would fix the CLI console's
        # width at import; tests that set COLUMNS for a wide table need it unset, as in
        # a plain run
        os.environ.pop("COLUMNS", None)
        os.environ.pop("LINES", None)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    value = os.environ.get(ENV_DATA_DIR)
    if not value or not Path(value).is_dir():
        pytest.fail(f"{ENV_DATA_DIR} is not set to an existing data directory", pytrace=False)
    return Path(value)


@pytest.fixture(scope="session")
def nb201_pixel3():
    from hwnas.bench import get_benchmark

    return get_benchmark("nb201", dataset="cifar10", devices="pixel3")


@pytest.fixture
def kill_when() -> Callable[..., None]:
    """``kill_when(proc, ready, what, sig=SIGKILL)``: send ``sig`` to ``proc`` as soon as
    ``ready()`` holds (polled every 20 ms, for up to 120 s) and wait for it to end; the
    test fails if ``what`` ends first. (Its stderr, when piped, is read afterwards with
    ``proc.communicate()``.)"""

    def kill(
        proc: subprocess.Popen,
        ready: Callable[[], bool],
        what: str,
        sig: signal.Signals = signal.SIGKILL,
    ) -> None:
        deadline = time.time() + 120
        while time.time() < deadline:
            if ready():
                break
            if proc.poll() is not None:
                pytest.fail(f"{what} ended before it could be killed (rc {proc.returncode})")
            time.sleep(0.02)
        proc.send_signal(sig)
        proc.wait(timeout=60)

    return kill


@pytest.fixture
def unreachable_url() -> str:
    """``http://127.0.0.1:PORT`` of a port nothing listens on (connection refused)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def held_elsewhere() -> Callable[..., contextlib.AbstractContextManager[Path]]:
    """``with held_elsewhere(out, what):`` another process holds ``out``'s run lock (the
    lock is reentrant within one process, so a test cannot hold it itself)."""
    import sys

    @contextlib.contextmanager
    def hold(out: Path, what: str = "test") -> Iterator[Path]:
        code = (
            "import sys\nfrom hwnas.process import out_dir_lock\n"
            f"with out_dir_lock({str(out)!r}, {what!r}):\n"
            "    print('locked', flush=True)\n    sys.stdin.read()\n"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
            yield out
        finally:
            proc.kill()
            proc.wait(10)

    return hold
