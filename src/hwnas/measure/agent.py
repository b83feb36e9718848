"""Device agent: measure ONNX models on a remote device (Jetson, Raspberry Pi) over HTTP.

Needs only the light install (``pip install hwnas[agent]``: ONNX Runtime and NumPy); this
module never imports torch. Standard library HTTP server, no extra dependencies.

Protocol (all replies are JSON):

``GET /health``
    No authentication, no secrets: ``{"status": "ok", "busy": bool, "queued": int,
    "version": ...}``.
``GET /info``
    Authenticated: host description, runtime versions and the server's limits.
``POST /measure?batch_size=1&intra_op_threads=1&...``
    Authenticated. The body is the raw ONNX file (``Content-Type:
    application/octet-stream``, ``Content-Length`` required). Several models may be sent
    in one request to be interleaved in rounds: concatenate the files and give their sizes
    as ``sizes=123,456``. Query parameters are :class:`MeasureSettings` fields
    (``input_shape=3,224,224``; ``threads`` and ``repeats`` are short for
    ``intra_op_threads`` and ``repeats_per_round``); the runtime is always onnxruntime.
    Reply: ``{"measurements": [Measurement.to_dict(), ...]}``. With
    ``Expect: 100-continue`` (curl sends it for large files) a bad token or an oversize
    upload is refused before the body is sent. Example::

        curl -H "Authorization: Bearer $(cat token)" --data-binary @model.onnx \
            "http://127.0.0.1:8765/measure?batch_size=1&threads=1"

Authentication: ``Authorization: Bearer <token>``, compared in constant time.
Errors: ``{"error": message, "code": code, "status": status}`` with status 400 (bad
request or a model that cannot be loaded or run; the reason is in ``error``), 401 (missing
or wrong token), 404, 411 (no Content-Length), 413 (upload too large), 503 (busy: the
queue is full; ``Retry-After`` says when to try again), 504 (measurement time-out), 507
(memory limit exceeded) or 500.

Safety: binds to loopback by default; models run in a child process with a time-out and an
``RLIMIT_AS`` memory limit (:mod:`hwnas.measure.worker`); uploads are written to a private
temporary directory the server creates and removes (no file path is ever taken from a
request); one measurement runs at a time, later requests wait in a bounded queue so that
concurrent clients do not disturb each other's timings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import math
import os
import random
import secrets
import shutil
import socket
import stat
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from hwnas.errors import DeviceUnavailableError, HwnasError, SetupError
from hwnas.measure.host import host_info
from hwnas.measure.latency import (
    Measurement,
    MeasureSettings,
    ModelLoadError,
    ModelRunError,
)
from hwnas.measure.worker import (
    MeasureCancelledError,
    MeasureOutOfMemoryError,
    MeasureTimeoutError,
    WorkerCrashedError,
    check_thread_counts,
    probe_runtime,
    run_isolated,
)
from hwnas.process import keyboard_interrupt_handled

log = logging.getLogger("hwnas.agent")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MIN_TOKEN_LENGTH = 16
_SHORT_NAMES = {"threads": "intra_op_threads", "repeats": "repeats_per_round"}


class AgentUploadTooLargeError(HwnasError):
    """The agent refused an upload over its size limit (413)."""


class AgentBusyError(DeviceUnavailableError):
    """The agent stayed busy (503: its queue or its connections full) through the retries."""


def check_port(port: int) -> int:
    """A TCP port number 0..65535 (0: any free port)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise HwnasError(f"port must be 0..65535 (0: any free port), got {port!r}")
    return port


# ---------------------------------------------------------------------------------------
# tokens
# ---------------------------------------------------------------------------------------
def make_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def _check_token(token: str, where: str) -> str:
    token = token.strip()
    if not token:
        raise HwnasError(f"{where} is empty; put a token in it (hwnas agent token FILE)")
    if len(token) < MIN_TOKEN_LENGTH:
        raise HwnasError(f"{where} holds a token of {len(token)} characters; use at least 16")
    if not (token.isascii() and token.isprintable()) or any(c.isspace() for c in token):
        raise HwnasError(f"{where} must hold one token of printable ASCII without spaces")
    return token


def read_token_file(path: str | Path) -> str:
    """Read a token file; refuse missing, empty or group/world-accessible files."""
    path = Path(path).expanduser()
    try:
        st = path.stat()
    except FileNotFoundError:
        raise HwnasError(
            f"token file {path} not found; create one with: hwnas agent token {path}"
        ) from None
    except OSError as e:
        raise HwnasError(f"cannot read token file {path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise HwnasError(f"token file {path} is not a regular file")
    if os.name == "posix" and st.st_mode & 0o077:
        raise HwnasError(
            f"token file {path} is accessible by other users (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {path}"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise HwnasError(f"cannot read token file {path}: {e}") from None
    return _check_token(text, f"token file {path}")


def write_token_file(path: str | Path, token: str | None = None, overwrite: bool = False) -> str:
    """Write ``token`` (a new one by default) to ``path`` with mode 0600; return it."""
    path = Path(path).expanduser()
    token = _check_token(token if token is not None else make_token(), "the token")
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise HwnasError(
            f"token file {path} already exists (keep it, or replace it: --force, overwrite=True)"
        ) from None
    except OSError as e:
        raise HwnasError(f"cannot write token file {path}: {e.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)
    return token


def _digest(s: str) -> bytes:
    return hashlib.sha256(s.encode("utf-8", "surrogatepass")).digest()


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison (hashing first also hides the token's length)."""
    if given is None:
        return False
    return hmac.compare_digest(_digest(given), _digest(expected))


# ---------------------------------------------------------------------------------------
# server
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AgentConfig:
    """Limits of an agent server."""

    token: str
    max_bytes: int = 64 * 2**20
    timeout_s: float = 300.0
    memory_mb: int = 2048
    queue_size: int = 4
    queue_timeout_s: float = 900.0
    max_models: int = 16
    max_connections: int = 32
    socket_timeout_s: float = 30.0
    # a request's line and headers must arrive within this: one trickled a line at a
    # time would hold a connection for ever (and 32 of them every client out)
    header_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        _check_token(self.token, "the agent token")
        if self.max_bytes < 1:
            raise HwnasError("max upload size must be positive")
        if self.timeout_s <= 0:
            raise HwnasError("the measurement time-out must be positive")
        if self.memory_mb < 0:
            raise HwnasError("the memory limit must be >= 0 MB (0: no limit)")
        if self.queue_size < 0:
            raise HwnasError("the queue size must be >= 0")


class _HttpError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def parse_query_settings(query: str) -> tuple[MeasureSettings, list[int] | None]:
    """``MeasureSettings`` and the optional ``sizes`` list from a /measure query string."""
    try:
        pairs = urllib.parse.parse_qs(query, keep_blank_values=True, strict_parsing=False)
    except ValueError as e:
        raise HwnasError(f"malformed query string: {e}") from None
    values: dict[str, Any] = {}
    sizes = None
    for key, vals in pairs.items():
        if len(vals) != 1:
            raise HwnasError(f"query parameter {key!r} given more than once")
        value = vals[0]
        if key == "sizes":
            try:
                sizes = [int(v) for v in value.split(",") if v.strip()]
            except ValueError:
                raise HwnasError("sizes must be comma-separated byte counts") from None
            continue
        name = _SHORT_NAMES.get(key, key)
        if name in ("time_budget_s",) and value in ("", "none", "null"):
            value = None
        values[name] = value
    if values.get("runtime", "onnxruntime") not in ("onnxruntime", "ort", "onnx"):
        raise HwnasError("this agent measures with onnxruntime only (no PyTorch on the device)")
    values["runtime"] = "onnxruntime"
    return MeasureSettings.from_dict(values), sizes


#: the uploads of a measurement are kept in TMPDIR/hwnas-agent-PID-xxxx while it runs
UPLOAD_PREFIX = "hwnas-agent-"


def _remove_orphaned_uploads() -> None:
    """Remove the upload folders of agents that were killed (their PID is gone): a
    SIGKILL leaves a measurement's models on disk, up to the upload limit each."""
    for d in Path(tempfile.gettempdir()).glob(f"{UPLOAD_PREFIX}*-*"):
        pid = d.name.removeprefix(UPLOAD_PREFIX).split("-", 1)[0]
        if not pid.isdigit() or not d.is_dir():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass  # alive, another user's


class AgentServer(ThreadingHTTPServer):
    """The agent's HTTP server; ``serve_forever()`` or :meth:`start_background`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], config: AgentConfig) -> None:
        self.config = config
        self._measure_lock = threading.Lock()
        self._state = threading.Lock()
        self.waiting = 0
        self.running = False
        self.last_duration_s = 1.0
        self._connections = threading.BoundedSemaphore(config.max_connections)
        self._shedding = threading.BoundedSemaphore(8)  # refused connections being drained
        self._thread: threading.Thread | None = None
        self._host = host_info(include_torch=False)
        super().__init__(address, _Handler)
        _remove_orphaned_uploads()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if ":" in str(host):
            host = f"[{host}]"
        return f"http://{host}:{port}"

    # bounded number of connection threads
    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._connections.acquire(blocking=False):
            log.warning("too many connections; refusing one from %s (503)", client_address[0])
            body = json.dumps(
                {"error": "too many connections; retry later", "code": "busy", "status": 503}
            ).encode()
            head = (
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
            )
            if self._shedding.acquire(blocking=False):
                # answered and drained aside: closed with an upload unread, the socket
                # would reset and the client see a broken pipe, not the 503
                threading.Thread(
                    target=self._shed, args=(request, head.encode() + body), daemon=True
                ).start()
            else:
                self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._connections.release()
            raise

    def _shed(self, request: Any, reply: bytes) -> None:
        """Send a refused connection its 503, read what it sends (bounded: 5 s, the upload
        limit) so that it reads the reply, then close it."""
        try:
            with contextlib.suppress(OSError):
                request.settimeout(1.0)
                request.sendall(reply)
                end, left = time.monotonic() + 5.0, self.config.max_bytes + 2**20
                while left > 0 and time.monotonic() < end:
                    chunk = request.recv(1 << 16)
                    if not chunk:
                        break
                    left -= len(chunk)
            self.shutdown_request(request)
        finally:
            self._shedding.release()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()

    def start_background(self) -> threading.Thread:
        """Serve in a daemon thread (for tests and embedding); stop with :meth:`close`."""
        t = threading.Thread(target=self.serve_forever, name="hwnas-agent", daemon=True)
        t.start()
        self._thread = t
        return t

    def close(self) -> None:
        """Stop serving (if started with :meth:`start_background`) and close the socket."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self.server_close()

    def __enter__(self) -> AgentServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the measurement queue -----------------------------------------------------------
    def retry_after(self) -> int:
        return int(min(60, max(1, math.ceil(self.last_duration_s))))

    @contextlib.contextmanager
    def admitted(self) -> Iterator[None]:
        """Reserve a place (running or queued); 503 when the queue is full."""
        with self._state:
            in_line = self.waiting + (1 if self.running else 0)
            if in_line >= 1 + self.config.queue_size:
                raise _HttpError(
                    503,
                    "busy",
                    f"the agent is busy ({in_line} measurement(s) running or queued); "
                    "try again later",
                    {"Retry-After": str(self.retry_after())},
                )
            self.waiting += 1
        try:
            yield
        finally:
            with self._state:
                self.waiting -= 1

    @contextlib.contextmanager
    def measuring(self) -> Iterator[None]:
        """Hold the one measurement slot (waiting at most ``queue_timeout_s``)."""
        if not self._measure_lock.acquire(timeout=self.config.queue_timeout_s):
            raise _HttpError(
                503,
                "busy",
                "the agent stayed busy for the whole queue time-out; try again later",
                {"Retry-After": str(self.retry_after())},
            )
        with self._state:
            self.waiting -= 1
            self.running = True
        start = time.monotonic()
        try:
            yield
        finally:
            with self._state:
                self.running = False
                self.waiting += 1  # balanced by admitted()'s finally
                self.last_duration_s = time.monotonic() - start
            self._measure_lock.release()

    def measure(
        self,
        blobs: list[bytes],
        settings: MeasureSettings,
        cancelled: Callable[[], bool] | None = None,
    ) -> list[Measurement]:
        """Measure uploaded models in a child process; ``cancelled()`` (the client left)
        stops it, so an abandoned request does not hold the agent."""
        cfg = self.config
        tmp = tempfile.mkdtemp(prefix=f"{UPLOAD_PREFIX}{os.getpid()}-")
        try:
            paths = []
            for i, blob in enumerate(blobs):
                p = Path(tmp) / f"model{i}.onnx"
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(blob)
                paths.append(p)
            labels = [f"model[{i}]" for i in range(len(blobs))]
            found = run_isolated(
                paths,
                settings,
                cfg.timeout_s,
                cfg.memory_mb,
                labels=labels,
                cwd=tmp,
                cancelled=cancelled,
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return [dataclasses.replace(m, measured_by="agent") for m in found]


class _Handler(BaseHTTPRequestHandler):
    server: AgentServer
    server_version = "hwnas-agent"
    sys_version = ""
    protocol_version = "HTTP/1.1"  # for "Expect: 100-continue"; every reply closes

    def setup(self) -> None:
        self.timeout = self.server.config.socket_timeout_s
        self._body_read = False
        super().setup()
        self._headers_in = threading.Event()
        self._deadline = threading.Timer(self.server.config.header_timeout_s, self._too_slow)
        self._deadline.daemon = True
        self._deadline.start()

    def _too_slow(self) -> None:
        """Close a connection whose request line and headers are still incomplete."""
        if not self._headers_in.is_set():
            wait = self.server.config.header_timeout_s
            log.warning(
                "%s sent no whole request in %g s; closing it", self.client_address[0], wait
            )
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def parse_request(self) -> bool:
        ok = super().parse_request()  # the request line and headers are read now
        self._headers_in.set()
        return ok

    def finish(self) -> None:
        self._deadline.cancel()
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.client_address[0], format % args)

    # ---- helpers ---------------------------------------------------------------------
    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            log.info("client %s went away before the reply", self.client_address[0])
        self.close_connection = True

    def _send_error(self, err: _HttpError) -> None:
        log.warning(
            "%s %s %s -> %d %s: %s",
            self.client_address[0],
            self.command,
            urllib.parse.urlsplit(self.path).path,
            err.status,
            err.code,
            err.message,
        )
        self._send_json(
            err.status,
            {"error": err.message, "code": err.code, "status": err.status},
            err.headers,
        )

    def _content_length(self) -> int | None:
        raw = self.headers.get("Content-Length")
        if raw is None:
            return None
        try:
            n = int(raw)
        except ValueError:
            return -1
        return n

    def _drain(self) -> None:
        """Read (and drop) an unread body, bounded, so the client sees our reply."""
        n = self._content_length()
        if self._body_read or not n or n < 0:
            return
        self._body_read = True
        cap = min(n, 2 * self.server.config.max_bytes + 2**20)
        with contextlib.suppress(OSError):
            self.connection.settimeout(2.0)
            while cap > 0:
                chunk = self.rfile.read(min(cap, 1 << 16))
                if not chunk:
                    break
                cap -= len(chunk)

    def _authorize(self) -> None:
        header = self.headers.get("Authorization")
        given = None
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() == "bearer":
                given = value.strip()
        if not token_matches(given, self.server.config.token):
            raise _HttpError(
                401,
                "unauthorized",
                "missing or wrong token (send 'Authorization: Bearer <token>')",
                {"WWW-Authenticate": 'Bearer realm="hwnas-agent"'},
            )

    def _read_body(self, n: int) -> bytes:
        self._body_read = True
        parts, left = [], n
        try:
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    break
                parts.append(chunk)
                left -= len(chunk)
        except OSError:
            raise _HttpError(400, "bad_request", "timed out reading the request body") from None
        if left:
            raise _HttpError(
                400, "bad_request", f"body ended after {n - left} of {n} bytes (Content-Length)"
            )
        return b"".join(parts)

    # ---- routes ----------------------------------------------------------------------
    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        try:
            if path == "/health":
                srv = self.server
                with srv._state:
                    busy, queued = srv.running, srv.waiting
                from hwnas import __version__

                self._send_json(
                    200, {"status": "ok", "busy": busy, "queued": queued, "version": __version__}
                )
            elif path == "/info":
                self._authorize()
                cfg = self.server.config
                self._send_json(
                    200,
                    {
                        "host": self.server._host,
                        "runtime": "onnxruntime",
                        "limits": {
                            "max_bytes": cfg.max_bytes,
                            "timeout_s": cfg.timeout_s,
                            "memory_mb": cfg.memory_mb,
                            "queue_size": cfg.queue_size,
                            "queue_timeout_s": cfg.queue_timeout_s,
                            "max_models": cfg.max_models,
                            "max_threads": os.cpu_count() or 1,
                        },
                    },
                )
            elif path == "/measure":
                allow = {"Allow": "POST"}
                raise _HttpError(405, "method_not_allowed", "POST /measure (an ONNX body)", allow)
            else:
                raise _HttpError(404, "not_found", f"no such endpoint: {path}")
        except _HttpError as e:
            self._send_error(e)

    def _not_allowed(self) -> None:
        """Every reply is JSON: a method the agent has no use for too."""
        self._drain()
        served = "(GET /health, GET /info, POST /measure)"
        message = f"{self.command} is not served {served}"
        self._send_error(_HttpError(405, "method_not_allowed", message, {"Allow": "GET, POST"}))

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def do_HEAD(self) -> None:
        """405 as for other methods, without a body (a reply to HEAD has none)."""
        log.warning("%s HEAD %s -> 405", self.client_address[0], self.path)
        self.send_response(405)
        self.send_header("Allow", "GET, POST")
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def do_POST(self) -> None:
        split = urllib.parse.urlsplit(self.path)
        try:
            if split.path != "/measure":
                raise _HttpError(404, "not_found", f"no such endpoint: {split.path}")
            self._authorize()
            self._measure(split.query)
        except _HttpError as e:
            self._drain()
            self._send_error(e)
        except Exception:  # never let a handler thread die silently
            log.exception("internal error")
            self._drain()
            self._send_error(_HttpError(500, "internal", "internal error in the agent"))

    def handle_expect_100(self) -> bool:
        """Refuse a bad upload before the client sends the body (curl asks for this)."""
        split = urllib.parse.urlsplit(self.path)
        try:
            if self.command != "POST" or split.path != "/measure":
                raise _HttpError(404, "not_found", f"no such endpoint: {split.path}")
            self._authorize()
            self._check_upload(split.query)
        except _HttpError as e:
            self._body_read = True  # nothing was sent: nothing to drain
            self._send_error(e)
            return False
        return super().handle_expect_100()

    def _check_upload(self, query: str) -> tuple[int, MeasureSettings, list[int]]:
        cfg = self.server.config
        if self.headers.get("Transfer-Encoding"):
            raise _HttpError(411, "length_required", "send the model with a Content-Length")
        n = self._content_length()
        if n is None:
            raise _HttpError(411, "length_required", "send the model with a Content-Length")
        if n < 0:
            raise _HttpError(400, "bad_request", "malformed Content-Length")
        if n > cfg.max_bytes:
            raise _HttpError(
                413,
                "too_large",
                f"upload of {n} bytes exceeds the agent's limit of {cfg.max_bytes} bytes",
            )
        if n == 0:
            raise _HttpError(400, "bad_request", "empty body: send the ONNX model as the body")
        try:
            settings, sizes = parse_query_settings(query)
        except HwnasError as e:
            raise _HttpError(400, "bad_request", str(e)) from None
        if sizes is None:
            sizes = [n]
        if not sizes or any(s <= 0 for s in sizes) or sum(sizes) != n:
            raise _HttpError(400, "bad_request", f"sizes {sizes} do not add up to the {n} bytes")
        if len(sizes) > cfg.max_models:
            raise _HttpError(400, "bad_request", f"at most {cfg.max_models} models per request")
        try:
            check_thread_counts(settings)
        except HwnasError as e:
            raise _HttpError(400, "bad_request", str(e)) from None
        return n, settings, sizes

    def _client_gone(self) -> bool:
        """Whether the client closed its connection (it stopped waiting): its request
        has been read whole, so a readable socket here means end of stream."""
        import select

        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _measure(self, query: str) -> None:
        n, settings, sizes = self._check_upload(query)

        with self.server.admitted():
            body = self._read_body(n)
            blobs, offset = [], 0
            for s in sizes:
                blobs.append(body[offset : offset + s])
                offset += s
            del body
            with self.server.measuring():
                try:
                    found = self.server.measure(blobs, settings, cancelled=self._client_gone)
                except MeasureCancelledError:
                    log.info("client %s left: its measurement was stopped", self.client_address[0])
                    self.close_connection = True
                    return
                except ModelLoadError as e:
                    raise _HttpError(400, "bad_model", str(e)) from None
                except ModelRunError as e:
                    raise _HttpError(400, "model_failed", str(e)) from None
                except MeasureTimeoutError as e:
                    raise _HttpError(504, "timeout", f"{e} (the agent's --timeout-s)") from None
                except MeasureOutOfMemoryError as e:
                    raise _HttpError(507, "out_of_memory", str(e)) from None
                except WorkerCrashedError as e:
                    raise _HttpError(500, "worker_crashed", str(e)) from None
                except HwnasError as e:
                    raise _HttpError(400, "bad_request", str(e)) from None
        log.info(
            "%s measured %d model(s), %d bytes, in %.1f s",
            self.client_address[0],
            len(found),
            sum(sizes),
            self.server.last_duration_s,
        )
        self._send_json(200, {"measurements": [m.to_dict() for m in found]})


def create_server(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str = "",
    max_bytes: int = 64 * 2**20,
    timeout_s: float = 300.0,
    memory_mb: int = 2048,
    queue_size: int = 4,
    **limits: Any,
) -> AgentServer:
    """Bind an :class:`AgentServer` (port 0: any free port; see ``server.url``)."""
    check_port(port)
    config = AgentConfig(
        token=token,
        max_bytes=max_bytes,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        queue_size=queue_size,
        **limits,
    )
    try:
        return AgentServer((host, port), config)
    except OSError as e:
        raise HwnasError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str = "",
    max_bytes: int = 64 * 2**20,
    timeout_s: float = 300.0,
    memory_mb: int = 2048,
    queue_size: int = 4,
    on_ready: Callable[[AgentServer], None] | None = None,
    **limits: Any,
) -> None:
    """Run the agent until interrupted (Ctrl-C or SIGTERM, e.g. ``systemctl stop`` or
    ``docker stop``: both stop it gracefully); ``on_ready(server)`` once it listens."""
    import signal
    import threading

    server = create_server(host, port, token, max_bytes, timeout_s, memory_mb, queue_size, **limits)
    if memory_mb > 0:
        try:
            probe_runtime(memory_mb)
        except HwnasError:
            server.server_close()
            raise
    if not is_loopback(host):
        log.warning(
            "listening on %s, not loopback: the token travels unencrypted over HTTP; "
            "use a trusted network or an SSH tunnel",
            host,
        )
    if on_ready is not None:
        on_ready(server)
    else:
        log.info("hwnas agent listening on %s", server.url)

    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        keyboard_interrupt_handled()
    finally:
        server.server_close()
        log.info("hwnas agent on %s stopped", server.url)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------------------------
# client
# ---------------------------------------------------------------------------------------
_CLIENT_ERRORS = {
    "bad_model": ModelLoadError,
    "model_failed": ModelRunError,
    "timeout": MeasureTimeoutError,
    "out_of_memory": MeasureOutOfMemoryError,
    "worker_crashed": WorkerCrashedError,
}


#: time-out of the requests an agent answers at once (``/info``, ``/health``), seconds
INFO_TIMEOUT_S = 30.0


def agent_request_time_s(limits: dict[str, Any]) -> float:
    """The longest a healthy agent with these ``/info`` limits takes to answer a measuring
    request: its queue wait and its measurement time-out, and a minute for the transfer
    (an agent that does not answer by then is stuck)."""
    queue = float(limits.get("queue_timeout_s") or 900.0)
    measure = float(limits.get("timeout_s") or 300.0)
    return queue + measure + 60.0


class AgentClient:
    """Talk to an agent: ``AgentClient("http://127.0.0.1:8765", token).measure(model)``.

    Retries on 503 (busy) with exponential back-off and jitter, honouring Retry-After.
    Raises ``HwnasError`` (or the same subclasses as local measurement) with a clear
    message on 401, 400, 413, time-outs and connection problems. Proxies from the
    environment are ignored so the token goes straight to the agent.
    """

    def __init__(
        self,
        url: str,
        token: str,
        timeout_s: float = 3600.0,
        retries: int = 8,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise HwnasError(f"agent URL must look like http://HOST:PORT, got {url!r}")
        self.url = url.rstrip("/")
        self.token = _check_token(token, "the agent token")
        if not timeout_s > 0:
            raise HwnasError(f"the agent request time-out must be positive, got {timeout_s:g} s")
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __repr__(self) -> str:  # never show the token
        return f"AgentClient({self.url!r})"

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        query: dict[str, str] | None = None,
        auth: bool = True,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        url = self.url + path
        timeout_s = self.timeout_s if timeout_s is None else min(timeout_s, self.timeout_s)
        if query:
            url += "?" + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            headers["Content-Type"] = "application/octet-stream"
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(url, data=body, headers=headers, method=method)
            try:
                with self._opener.open(req, timeout=timeout_s) as resp:
                    raw = resp.read()
                try:
                    return json.loads(raw)
                except ValueError:
                    raise SetupError(f"agent at {self.url} sent a reply that is not JSON") from None
            except urllib.error.HTTPError as e:
                try:
                    payload = json.loads(e.read() or b"{}")
                except ValueError:
                    payload = {}
                message = payload.get("error") or e.reason
                code = payload.get("code")
                if e.code == 503 and attempt < self.retries:
                    delay = min(self.max_backoff_s, self.backoff_s * 2**attempt)
                    with contextlib.suppress(TypeError, ValueError):
                        delay = max(delay, min(self.max_backoff_s, float(e.headers["Retry-After"])))
                    time.sleep(delay * random.uniform(0.8, 1.2))
                    continue
                raise self._error(e.code, code, str(message)) from None
            except (ConnectionResetError, BrokenPipeError) as e:
                raise self._dropped(e, body) from None
            except urllib.error.URLError as e:
                reason = e.reason
                if isinstance(reason, ConnectionResetError | BrokenPipeError):
                    raise self._dropped(reason, body) from None
                raise DeviceUnavailableError(
                    f"cannot reach the agent at {self.url}: {reason}"
                ) from None
            except TimeoutError:
                raise DeviceUnavailableError(
                    f"no reply from the agent at {self.url} within {timeout_s:g} s"
                ) from None
            except OSError as e:
                raise DeviceUnavailableError(
                    f"cannot talk to the agent at {self.url}: {e}"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _dropped(self, reason: BaseException, body: bytes | None) -> HwnasError:
        """The agent closed the connection during a request: an upload over its size
        limit (it stops reading) when ``/info`` says so, else a connection error."""
        limit = None
        reachable = True
        if body:
            try:
                limit = int(self.info()["limits"]["max_bytes"])
            except AgentBusyError as e:  # alive, with every connection taken
                return e
            except HwnasError:  # gone: it stopped or crashed during the request
                reachable = False
            except (AttributeError, KeyError, TypeError, ValueError):
                pass
        if limit is not None and len(body or b"") > limit:
            return AgentUploadTooLargeError(
                f"model too large for the agent at {self.url}: upload of {len(body or b'')} "
                f"bytes exceeds the agent's limit of {limit} bytes (its --max-mb sets the limit)"
            )
        if not reachable:
            return DeviceUnavailableError(
                f"the agent at {self.url} dropped the connection ({reason}) and cannot be "
                "reached any more: it stopped or crashed; start it again"
            )
        if limit is not None:  # within the limit: not the size
            return DeviceUnavailableError(
                f"the agent at {self.url} dropped the connection ({reason})"
            )
        return DeviceUnavailableError(
            f"the agent at {self.url} dropped the connection ({reason}); "
            "the upload may exceed its size limit"
        )

    def _error(self, status: int, code: str | None, message: str) -> HwnasError:
        if status == 401:
            return SetupError(
                f"the agent at {self.url} rejected the token (401); check the token file"
            )
        if status == 413:
            return AgentUploadTooLargeError(
                f"model too large for the agent at {self.url}: {message} "
                "(its --max-mb sets the limit)"
            )
        if status == 503:
            return AgentBusyError(
                f"the agent at {self.url} stayed busy after {self.retries} retries: {message}"
            )
        cls = _CLIENT_ERRORS.get(code or "", SetupError)
        return cls(f"agent at {self.url}: {message}" if cls is SetupError else message)

    def health(self) -> dict[str, Any]:
        """``GET /health`` (no token needed)."""
        return self._request("GET", "/health", auth=False, timeout_s=INFO_TIMEOUT_S)

    def info(self) -> dict[str, Any]:
        """``GET /info``: the agent's host description and limits (answered at once,
        even while it measures: a hung agent is told within ``INFO_TIMEOUT_S``)."""
        return self._request("GET", "/info", timeout_s=INFO_TIMEOUT_S)

    def measure(
        self,
        model: bytes | str | Path,
        settings: MeasureSettings | None = None,
        label: str | None = None,
    ) -> Measurement:
        """Measure one ONNX model (bytes or a local file) on the agent."""
        labels = [label] if label is not None else None
        return self.measure_many([model], settings, labels)[0]

    def measure_many(
        self,
        models: Sequence[bytes | str | Path],
        settings: MeasureSettings | None = None,
        labels: Sequence[str] | None = None,
    ) -> list[Measurement]:
        """Measure several ONNX models on the agent, interleaved in rounds."""
        settings = settings or MeasureSettings()
        if settings.runtime != "onnxruntime":
            raise HwnasError("the agent measures ONNX models with onnxruntime only")
        if not models:
            raise HwnasError("nothing to measure: no models given")
        if labels is not None and len(labels) != len(models):
            raise HwnasError("labels must match the models one to one")
        blobs, names = [], []
        for i, m in enumerate(models):
            if isinstance(m, bytes | bytearray):
                blobs.append(bytes(m))
                names.append(f"model[{i}]")
            else:
                path = Path(m)
                if path.is_dir():
                    raise HwnasError(f"{path} is a directory, not an ONNX model file")
                try:
                    blobs.append(path.read_bytes())
                except OSError as e:
                    raise HwnasError(f"cannot read ONNX model {path}: {e.strerror}") from None
                names.append(path.name)
            if not blobs[-1]:
                raise HwnasError(f"ONNX model {names[-1]} is empty")
        if labels is not None:
            names = [str(x) for x in labels]
        query = {
            k: (",".join(map(str, v)) if isinstance(v, list) else str(v))
            for k, v in settings.to_dict().items()
            if v is not None
        }
        query["sizes"] = ",".join(str(len(b)) for b in blobs)
        try:
            reply = self._request("POST", "/measure", body=b"".join(blobs), query=query)
        except HwnasError as e:  # name the models as the caller knows them
            message = str(e)
            for i, name in enumerate(names):
                message = message.replace(f"model[{i}]", name)
            if isinstance(e, AgentUploadTooLargeError) and len(blobs) > 1:
                # the limit is per request: say the size is of all the models together
                message = (
                    message.replace("model too large", "models too large", 1)
                    .replace("upload of ", f"the combined upload of {len(blobs)} models (", 1)
                    .replace(" bytes exceeds", " bytes) exceeds", 1)
                )
            raise type(e)(message) from None
        try:
            found = [Measurement.from_dict(d) for d in reply["measurements"]]
        except (KeyError, TypeError) as e:
            raise HwnasError(f"agent at {self.url} sent a malformed reply: {e}") from None
        if len(found) != len(blobs):
            raise HwnasError(
                f"agent at {self.url} answered for {len(found)} of {len(blobs)} models"
            )
        return [
            dataclasses.replace(m, model=name, measured_by=f"agent {self.url}")
            for m, name in zip(found, names, strict=True)
        ]
