"""The device agent as a real HTTP server on loopback (hwnas.measure.agent)."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from hwnas.errors import DeviceUnavailableError, HwnasError, SetupError  # noqa: E402
from hwnas.measure import (  # noqa: E402
    AgentClient,
    AgentServer,
    LatencyMeasurer,
    LocalMeasurer,
    MeasureOutOfMemoryError,
    MeasureSettings,
    MeasureTimeoutError,
    ModelLoadError,
    RemoteMeasurer,
    create_server,
    make_token,
    read_token_file,
    write_token_file,
)
from hwnas.measure.agent import is_loopback, parse_query_settings, token_matches  # noqa: E402

FAST = MeasureSettings(warmup=2, rounds=5, repeats_per_round=2)
QUERY = "warmup=2&rounds=5&repeats=2"


def _model(graph: Any) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by any recent ONNX Runtime
    onnx.checker.check_model(model)
    return model.SerializeToString()


def tiny_cnn_onnx(width: int = 8) -> bytes:
    """Conv 3x3 -> ReLU -> global average pool -> flatten -> Gemm, input (N, 3, 32, 32)."""
    rng = np.random.default_rng(width)
    w = numpy_helper.from_array(rng.standard_normal((width, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(width, np.float32), "b")
    fc = numpy_helper.from_array(rng.standard_normal((width, 10)).astype(np.float32), "fc")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("GlobalAveragePool", ["r"], ["p"]),
            helper.make_node("Flatten", ["p"], ["f"]),
            helper.make_node("Gemm", ["f", "fc"], ["output"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 10])],
        initializer=[w, b, fc],
    )
    return _model(graph)


def memory_hog_onnx() -> bytes:
    """A valid model that allocates an 8 GB tensor when run."""
    shape = helper.make_tensor("shape", TensorProto.INT64, [1], [2_000_000_000])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["s"], value=shape),
            helper.make_node("ConstantOfShape", ["s"], ["big"], value=one),
            helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
            helper.make_node("Add", ["x", "total"], ["y"]),
        ],
        "hog",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    return _model(graph)


MODEL = tiny_cnn_onnx(8)
WIDE = tiny_cnn_onnx(32)
TOKEN = make_token()


@contextlib.contextmanager
def running_agent(**limits: Any) -> Iterator[AgentServer]:
    limits = {"timeout_s": 120.0, "memory_mb": 2048, **limits}
    server = create_server("127.0.0.1", 0, TOKEN, **limits)
    server.start_background()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def agent() -> Iterator[AgentServer]:
    with running_agent(max_bytes=256 * 1024) as server:
        yield server


def raw(
    server: AgentServer,
    method: str,
    path: str,
    body: bytes | None = None,
    token: str | None = TOKEN,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """One HTTP request with http.client: (status, headers, JSON body)."""
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=120)
    try:
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, dict(resp.getheaders()), json.loads(data)
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------
# the server
# ---------------------------------------------------------------------------------------
def test_correct_token_gets_a_measurement(agent: AgentServer) -> None:
    status, headers, data = raw(agent, "POST", f"/measure?{QUERY}&batch_size=2", MODEL)
    assert status == 200 and headers["Content-Type"] == "application/json"
    (m,) = data["measurements"]
    assert m["model"] == "model[0]" and m["measured_by"] == "agent"
    assert m["latency_ms"] > 0 and m["stats"]["n"] == 10 and m["stats"]["rounds"] == 5
    assert m["settings"]["batch_size"] == 2 and m["inputs"]["input"]["shape"] == [2, 3, 32, 32]
    assert m["runtime"] == "onnxruntime" and m["host"]["cpu_model"]

    client = AgentClient(agent.url, TOKEN)
    a, b = client.measure_many([MODEL, WIDE], FAST, labels=["narrow", "wide"])
    assert (a.model, b.model) == ("narrow", "wide")
    assert a.latency_ms > 0 and b.latency_ms > 0 and a.settings == FAST
    assert a.measured_by == f"agent {agent.url}"
    assert client.info()["limits"]["max_bytes"] == 256 * 1024


def test_wrong_or_missing_token_is_401(agent: AgentServer) -> None:
    for token in ("not-the-token-but-long-enough", None, ""):
        status, headers, data = raw(agent, "POST", "/measure", MODEL, token=token)
        assert status == 401 and data["code"] == "unauthorized"
        assert headers["WWW-Authenticate"].startswith("Bearer")
    status, _, _ = raw(agent, "POST", "/measure", MODEL, None, {"Authorization": TOKEN})
    assert status == 401  # no "Bearer" scheme
    assert raw(agent, "GET", "/info", token="x" * 20)[0] == 401
    with pytest.raises(HwnasError, match="rejected the token"):
        AgentClient(agent.url, "x" * 32).measure(MODEL, FAST)


def test_oversize_body_is_413(agent: AgentServer) -> None:
    big = b"\0" * (300 * 1024)  # limit is 256 KiB
    status, _, data = raw(agent, "POST", "/measure", big)
    assert status == 413 and data["code"] == "too_large" and "262144" in data["error"]
    with pytest.raises(HwnasError, match="too large"):
        AgentClient(agent.url, TOKEN).measure(big, FAST)
    # with "Expect: 100-continue" the refusal comes before any of the body is sent
    host, port = agent.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.putrequest("POST", "/measure")
    conn.putheader("Authorization", f"Bearer {TOKEN}")
    conn.putheader("Content-Length", str(10**9))
    conn.putheader("Expect", "100-continue")
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 413 and json.loads(resp.read())["code"] == "too_large"
    conn.close()
    assert raw(agent, "GET", "/health", token=None)[2]["status"] == "ok"


def test_corrupt_onnx_is_400_with_reason(agent: AgentServer) -> None:
    status, _, data = raw(agent, "POST", f"/measure?{QUERY}", b"definitely not ONNX" * 10)
    assert status == 400 and data["code"] == "bad_model"
    assert "cannot load ONNX model model[0]" in data["error"]
    assert "protobuf" in data["error"].lower()
    assert "/tmp" not in data["error"]  # the server's temp paths do not leak
    with pytest.raises(ModelLoadError, match=r"broken\.onnx"):
        AgentClient(agent.url, TOKEN).measure(b"garbage" * 20, FAST, label="broken.onnx")


def test_bad_requests(agent: AgentServer) -> None:
    assert raw(agent, "GET", "/nope")[0] == 404
    assert raw(agent, "POST", "/nope", MODEL)[0] == 404
    for query in ("batch_size=0", "bogus=1", "runtime=torch", "rounds=1&rounds=2", "sizes=5,5"):
        status, _, data = raw(agent, "POST", f"/measure?{query}", MODEL)
        assert status == 400 and data["error"], query
    assert raw(agent, "POST", "/measure", b"")[0] == 400
    # no Content-Length
    host, port = agent.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.putrequest("POST", "/measure")
    conn.putheader("Authorization", f"Bearer {TOKEN}")
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 411 and json.loads(resp.read())["code"] == "length_required"
    conn.close()


def test_health_needs_no_token_and_shows_no_secrets(agent: AgentServer) -> None:
    status, _, data = raw(agent, "GET", "/health", token=None)
    assert status == 200 and set(data) == {"status", "busy", "queued", "version"}
    assert (data["status"], data["busy"], data["queued"]) == ("ok", False, 0)
    assert TOKEN not in json.dumps(data)
    assert AgentClient(agent.url, TOKEN).health()["status"] == "ok"


def test_two_concurrent_clients_both_get_answers_one_at_a_time(agent: AgentServer) -> None:
    spans: list[tuple[float, float]] = []
    original = agent.measure

    def timed_measure(blobs: list[bytes], settings: MeasureSettings, **kw: Any) -> Any:
        start = time.monotonic()
        try:
            return original(blobs, settings, **kw)
        finally:
            spans.append((start, time.monotonic()))

    agent.measure = timed_measure  # type: ignore[method-assign]
    results: dict[int, Any] = {}

    def work(i: int) -> None:
        try:
            results[i] = AgentClient(agent.url, TOKEN).measure([MODEL, WIDE][i], FAST)
        except Exception as e:  # pragma: no cover - reported below
            results[i] = e

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(r.latency_ms > 0 for r in results.values()), results
    assert len(results) == 2 and len(spans) == 2
    (_, first_end), (second_start, _) = sorted(spans)
    assert first_end <= second_start  # measurements never overlapped
    assert raw(agent, "GET", "/health", token=None)[2]["busy"] is False


def test_busy_agent_answers_503_and_the_client_retries() -> None:
    with running_agent(queue_size=0) as server:
        release = threading.Event()
        original = server.measure

        def held_measure(blobs: list[bytes], settings: MeasureSettings, **kw: Any) -> Any:
            release.wait(timeout=60)
            return original(blobs, settings, **kw)

        server.measure = held_measure  # type: ignore[method-assign]
        results: list[Any] = []

        def work(client: AgentClient) -> None:
            try:
                results.append(client.measure(MODEL, FAST))
            except Exception as e:  # pragma: no cover - reported below
                results.append(e)

        first = threading.Thread(target=work, args=(AgentClient(server.url, TOKEN),))
        first.start()
        deadline = time.monotonic() + 30
        while not raw(server, "GET", "/health", token=None)[2]["busy"]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        status, headers, data = raw(server, "POST", f"/measure?{QUERY}", MODEL)
        assert status == 503 and data["code"] == "busy" and int(headers["Retry-After"]) >= 1
        with pytest.raises(HwnasError, match="busy"):
            AgentClient(server.url, TOKEN, retries=0).measure(MODEL, FAST)
        patient = AgentClient(server.url, TOKEN, retries=50, backoff_s=0.05, max_backoff_s=0.2)
        second = threading.Thread(target=work, args=(patient,))
        second.start()
        time.sleep(0.3)  # let it be refused at least once
        release.set()
        first.join(timeout=120)
        second.join(timeout=120)
        assert len(results) == 2 and all(r.latency_ms > 0 for r in results), results


def test_timeout_is_a_clean_error_and_the_server_stays_healthy() -> None:
    with running_agent(timeout_s=3.0) as server:
        client = AgentClient(server.url, TOKEN)
        endless = MeasureSettings(warmup=0, rounds=100_000, repeats_per_round=1000)
        start = time.monotonic()
        with pytest.raises(MeasureTimeoutError, match="time-out of 3 s"):
            client.measure(MODEL, endless)
        assert time.monotonic() - start < 30
        status, _, data = raw(server, "POST", "/measure?rounds=100000&repeats=1000", MODEL)
        assert status == 504 and data["code"] == "timeout"
        health = raw(server, "GET", "/health", token=None)[2]
        assert (health["status"], health["busy"], health["queued"]) == ("ok", False, 0)
        server.config = dataclasses.replace(server.config, timeout_s=120.0)
        assert client.measure(MODEL, FAST).latency_ms > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is enforced on Linux")
def test_memory_limit_is_a_clean_error() -> None:
    with running_agent(memory_mb=1024) as server:
        status, _, data = raw(server, "POST", "/measure?warmup=0&rounds=1", memory_hog_onnx())
        assert status == 507 and data["code"] == "out_of_memory"
        assert "1024 MB" in data["error"]
        with pytest.raises(MeasureOutOfMemoryError):
            AgentClient(server.url, TOKEN).measure(memory_hog_onnx(), FAST)
        assert AgentClient(server.url, TOKEN).measure(MODEL, FAST).latency_ms > 0


def test_remote_and_local_measurers_share_one_interface(agent: AgentServer) -> None:
    remote = RemoteMeasurer(AgentClient(agent.url, TOKEN), FAST)
    local = LocalMeasurer(FAST)
    for measurer in (remote, local):
        assert isinstance(measurer, LatencyMeasurer)
        found = measurer.measure([MODEL, WIDE])
        assert [m.model for m in found] == ["model[0]", "model[1]"]
        assert all(m.latency_ms > 0 and m.stats.n == 10 for m in found)


def test_unreachable_agent_and_bad_url() -> None:
    with running_agent() as server:
        url = server.url
    # the setup's fault, not a model's: a search stops on it (SetupError)
    with pytest.raises(SetupError, match="cannot reach the agent"):
        AgentClient(url, TOKEN, timeout_s=5).measure(MODEL, FAST)
    with pytest.raises(HwnasError, match="agent URL"):
        AgentClient("ftp://example", TOKEN)


def test_a_hung_agent_is_told_by_info_within_its_short_time_out(monkeypatch) -> None:
    """/info is answered at once by a live agent: one that accepts the connection and
    never replies (stopped with SIGSTOP) is told within INFO_TIMEOUT_S, not the
    measurement's hour."""
    import socket

    import hwnas.measure.agent as agent_mod

    monkeypatch.setattr(agent_mod, "INFO_TIMEOUT_S", 0.5)
    with socket.create_server(("127.0.0.1", 0)) as listener:  # the kernel accepts; no reply
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        t0 = time.perf_counter()
        with pytest.raises(SetupError, match=r"no reply from the agent .* within 0.5 s"):
            AgentClient(url, TOKEN).info()
        assert time.perf_counter() - t0 < 5


def test_query_settings_parsing() -> None:
    s, sizes = parse_query_settings("batch_size=4&threads=2&input_shape=3,64,64&sizes=10,20")
    assert s.batch_size == 4 and s.intra_op_threads == 2 and s.input_shape == (3, 64, 64)
    assert sizes == [10, 20] and s.runtime == "onnxruntime"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20")


# ---------------------------------------------------------------------------------------
# tokens
# ---------------------------------------------------------------------------------------
def test_token_files(tmp_path: Path) -> None:
    path = tmp_path / "token"
    token = write_token_file(path)
    assert read_token_file(path) == token and len(token) >= 32
    assert (path.stat().st_mode & 0o777) == 0o600
    with pytest.raises(HwnasError, match="already exists"):
        write_token_file(path)
    with pytest.raises(HwnasError, match="not found"):
        read_token_file(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    with pytest.raises(HwnasError, match="empty"):
        read_token_file(empty)
    short = tmp_path / "short"
    short.write_text("abc\n")
    short.chmod(0o600)
    with pytest.raises(HwnasError, match="at least 16"):
        read_token_file(short)
    if os.name == "posix":
        loose = tmp_path / "loose"
        loose.write_text(make_token())
        loose.chmod(0o644)
        with pytest.raises(HwnasError, match="chmod 600"):
            read_token_file(loose)
    assert token_matches(token, token) and not token_matches(token + "x", token)
    assert not token_matches(None, token)
    with pytest.raises(HwnasError):
        create_server("127.0.0.1", 0, "")


def test_cli_agent_token_and_serve_errors(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from hwnas.cli_measure import register

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    register(app)
    runner = CliRunner()
    path = tmp_path / "tok"
    res = runner.invoke(app, ["agent", "token", str(path)])
    assert res.exit_code == 0 and len(read_token_file(path)) >= 32
    res = runner.invoke(app, ["agent", "token", str(path)])
    assert res.exit_code == 2 and "already exists" in res.stderr
    res = runner.invoke(app, ["agent", "serve", "--token-file", str(tmp_path / "none")])
    assert res.exit_code == 2 and "not found" in res.stderr
    path.chmod(0o644)
    res = runner.invoke(app, ["agent", "serve", "--token-file", str(path)])
    assert res.exit_code == 2 and "chmod 600" in res.stderr


# ---------------------------------------------------------------------------------------
# processes: the CLI server and the torch-free install
# ---------------------------------------------------------------------------------------
CLI_SCRIPT = """
import typer
from hwnas.cli_measure import register
app = typer.Typer()
@app.callback()
def _root():
    pass
register(app)
app()
"""


def test_cli_agent_serve_and_measure_against_it(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token = write_token_file(token_file)
    model = tmp_path / "tiny.onnx"
    model.write_bytes(MODEL)
    script = tmp_path / "cli.py"
    script.write_text(CLI_SCRIPT)
    cmd = [sys.executable, str(script), "agent", "serve", "--port", "0"]
    proc = subprocess.Popen(
        [*cmd, "--token-file", str(token_file), "--max-mb", "1", "--timeout-s", "120"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = ""
        deadline = time.monotonic() + 60
        while "listening on" not in line:
            assert time.monotonic() < deadline and proc.poll() is None, line
            line = proc.stderr.readline()
        url = line.split("listening on ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        client = AgentClient(url, token)
        assert client.health()["status"] == "ok"
        m = client.measure(model, FAST)
        assert m.model == "tiny.onnx" and m.latency_ms > 0

        res = subprocess.run(
            [
                sys.executable,
                str(script),
                "measure",
                str(model),
                "--agent",
                url,
                "--token-file",
                str(token_file),
                "--rounds",
                "3",
                "--repeats",
                "2",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 0, res.stderr
        (d,) = json.loads(res.stdout)
        assert d["model"] == "tiny.onnx" and d["measured_by"] == f"agent {url}"
    finally:
        # SIGTERM, not SIGINT: a shell starts background jobs with SIGINT ignored, so a
        # test run from one (nohup ... &) would never see Ctrl-C reach the server
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)  # a graceful stop takes ~0.2 s
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == 0


NO_TORCH_SCRIPT = """
import sys
sys.modules["torch"] = None  # any 'import torch' now fails
from hwnas.measure import AgentClient, MeasureSettings, create_server, host_info, measure_onnx
import hwnas.cli_measure
model = open(sys.argv[1], "rb").read()
settings = MeasureSettings(warmup=1, rounds=3, repeats_per_round=1)
assert measure_onnx([model], settings)[0].latency_ms > 0
assert "torch_version" not in host_info()
server = create_server("127.0.0.1", 0, "t" * 32)
server.start_background()
try:
    assert AgentClient(server.url, "t" * 32).measure(model, settings).latency_ms > 0
finally:
    server.close()
print("ok")
"""


def test_agent_and_onnx_measurement_work_without_torch(tmp_path: Path) -> None:
    model = tmp_path / "tiny.onnx"
    model.write_bytes(MODEL)
    res = subprocess.run(
        [sys.executable, "-c", NO_TORCH_SCRIPT, str(model)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_an_agent_that_dies_during_a_request_is_not_blamed_on_the_upload() -> None:
    """The agent closes the connection and is gone: the error says it stopped, not that
    the upload may be too large."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def die() -> None:
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.close()
        listener.close()  # the agent is gone: /info is refused

    t = threading.Thread(target=die, daemon=True)
    t.start()
    client = AgentClient(f"http://127.0.0.1:{port}", TOKEN, timeout_s=30)
    with pytest.raises(HwnasError, match="cannot be reached any more: it stopped or crashed"):
        client.measure(WIDE, FAST)
    t.join(timeout=10)


def test_measure_modules_splits_calls_by_the_agents_limits() -> None:
    from hwnas.measure.measurer import _calls

    blobs, names = [b"x" * 10, b"x" * 30, b"x" * 30, b"x" * 5], ["a", "b", "c", "d"]
    assert _calls(blobs, names, None, None) == [[0, 1, 2, 3]]
    assert _calls(blobs, names, 2, None) == [[0, 1], [2, 3]]
    assert _calls(blobs, names, None, 60) == [[0, 1], [2, 3]]
    assert _calls(blobs, names, 3, 40) == [[0, 1], [2, 3]]
    with pytest.raises(HwnasError, match="b: its ONNX model is .* larger --max-mb"):
        _calls(blobs, names, None, 20)
    # an anchor (the first blob) in every call, its bytes and its place counted in each
    assert _calls(blobs, names, None, None, head=1) == [[0, 1, 2, 3]]
    assert _calls(blobs, names, 2, None, head=1) == [[0, 1], [0, 2], [0, 3]]
    assert _calls(blobs, names, 3, 45, head=1) == [[0, 1], [0, 2, 3]]
    with pytest.raises(HwnasError, match="b: .* beside the anchor's 0.0 MiB, more than"):
        _calls(blobs, names, None, 35, head=1)
    with pytest.raises(HwnasError, match="no room beside the anchor"):
        _calls(blobs, names, 1, None, head=1)


def test_ofa_resnet50_latency_measured_on_an_agent(tmp_path: Path, data_dir: Path) -> None:
    """bench options agent/token_file: the subnets are exported here and measured on the
    agent, in requests within its upload limit; a wrong token fails before any work."""
    from hwnas.bench import get_benchmark
    from hwnas.measure.agent import write_token_file

    token = tmp_path / "agent.token"
    write_token_file(token, TOKEN)
    bad = tmp_path / "other.token"
    write_token_file(bad)
    # an agent taking two models a request: the two subnets go in two requests, each
    # beside the drift anchor (and 260 MiB: the largest subnet's 184 MiB of weights
    # beside the anchor's 25)
    with running_agent(max_models=2, max_bytes=260 * 2**20) as server:
        calls: list[int] = []
        real = server.measure

        def counted(blobs: list[bytes], settings: MeasureSettings, **kw: Any) -> Any:
            calls.append(len(blobs))
            return real(blobs, settings, **kw)

        server.measure = counted  # type: ignore[method-assign]
        opts = {"latency": True, "rounds": 2, "agent": server.url, "token_file": str(token)}
        b = get_benchmark("ofa-resnet50", data_dir=data_dir, **opts)
        assert b.describe()["latency"]["agent"] == {"url": server.url}  # not asked yet
        b.prepare()
        assert b.describe()["latency"]["agent"]["url"] == server.url
        assert b.describe()["latency"]["agent"]["host"]  # what the agent says it runs on
        small = b.space.smallest()
        wider = small.copy()
        wider[-2] = 1  # one step wider: a different, slightly larger network at 128 px
        values = b.evaluate(np.stack([small, wider]))
        assert np.isfinite(values).all() and (values[:, 1] > 0).all()
        assert calls == [1, 2, 2]  # the anchor's reference alone, then beside each
        # a search stores where its latency was measured
        from hwnas.search import run_search

        config = {"benchmark": "ofa-resnet50", "benchmark_options": opts, "algorithm": "random"}
        summary = run_search({**config, "evaluations": 2, "seed": 0}, out=tmp_path / "s")
        assert summary["evaluations"] == 2 and len(calls) == 6
        assert summary["benchmark_details"]["latency"]["agent"]["url"] == server.url
        with pytest.raises(HwnasError, match="401|token"):
            wrong = {**opts, "token_file": str(bad)}
            get_benchmark("ofa-resnet50", data_dir=data_dir, **wrong).prepare()
    # the agent gone: a finished search resumes from its store without it; a raised budget
    # fails at once and is not stored (the next plain resume does no extra work)
    from hwnas.search import resume_search

    done = resume_search(tmp_path / "s")
    assert done["evaluations"] == 2  # and where it measured, though the agent was not asked
    assert done["benchmark_details"] == summary["benchmark_details"]
    with pytest.raises(HwnasError, match="cannot reach the agent"):
        resume_search(tmp_path / "s", evaluations=3)
    again = resume_search(tmp_path / "s")
    assert again["evaluations"] == again["budget"] == 2
    with running_agent() as server:  # 64 MiB, the agent's default: refused before any work
        opts = {"latency": True, "rounds": 2, "agent": server.url, "token_file": str(token)}
        too_small = "about 188 MiB beside the drift anchor's 26 MiB, more than the 64 MiB"
        with pytest.raises(HwnasError, match=f"{too_small} .* --max-mb 215"):
            get_benchmark("ofa-resnet50", data_dir=data_dir, **opts).prepare()
        with pytest.raises(HwnasError, match="about 188 MiB, more than .* --max-mb 189"):
            get_benchmark("ofa-resnet50", data_dir=data_dir, **opts, anchor=False).prepare()
    with running_agent(max_models=1, max_bytes=260 * 2**20) as server:
        opts = {"latency": True, "rounds": 2, "agent": server.url, "token_file": str(token)}
        with pytest.raises(HwnasError, match="one model a request: no room .* anchor=false"):
            get_benchmark("ofa-resnet50", data_dir=data_dir, **opts).prepare()
    for bad_opts, message in (
        ({"agent": "http://127.0.0.1:1", "token_file": str(token)}, "need latency=true"),
        ({"latency": True, "agent": "http://127.0.0.1:1"}, "both agent=URL and token_file"),
    ):
        with pytest.raises(HwnasError, match=message):
            get_benchmark("ofa-resnet50", data_dir=data_dir, **bad_opts)


def test_an_agent_lost_mid_search_stops_it_and_a_resume_goes_on(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent that goes away during a measured search is no subnet's fault: the search
    stops with the error (SetupError), keeps what was measured, stores no failure, and
    goes on from there once an agent answers at the URL again; the CLI says how."""
    from typer.testing import CliRunner

    from hwnas.bench.ofa_mbv3 import OFAMobileNetV3Benchmark
    from hwnas.cli import app
    from hwnas.measure.agent import write_token_file
    from hwnas.search import resume_search, run_search
    from hwnas.store.sqlite import ResultsStore

    prepare = OFAMobileNetV3Benchmark.prepare

    def in_pairs(self: OFAMobileNetV3Benchmark) -> None:  # chunks of 2: 3 subnets, 2 calls
        prepare(self)
        self.max_batch = 2

    monkeypatch.setattr(OFAMobileNetV3Benchmark, "prepare", in_pairs)
    token = tmp_path / "agent.token"
    write_token_file(token, TOKEN)
    out = tmp_path / "s"
    server = create_server("127.0.0.1", 0, TOKEN, timeout_s=120.0)
    server.start_background()
    port = server.server_address[1]
    opts = {"latency": True, "rounds": 1, "agent": server.url, "token_file": str(token)}
    config = {"benchmark": "ofa-mbv3", "benchmark_options": opts, "algorithm": "random"}

    def lose_agent(done: int, budget: int) -> None:
        if done == 2:  # the first chunk is stored: the agent stops
            server.close()

    try:
        with pytest.raises(SetupError, match="cannot reach the agent"):
            run_search({**config, "evaluations": 3, "seed": 0}, out=out, progress=lose_agent)
    finally:
        server.close()
    with ResultsStore(out / "results.sqlite") as store:
        recs = store.evaluations(store.latest_run("search")["run_id"])
    assert len(recs) == 2 and all(r.ok for r in recs)
    # the CLI: the error and how to go on, as a device unavailable (main(): one line,
    # exit 3, not bad input's 2)
    res = CliRunner().invoke(app, ["search", "--resume", str(out)])
    assert type(res.exception) is DeviceUnavailableError
    assert re.fullmatch(
        r"cannot reach the agent at .*; the search stopped there: continue with: "
        rf"hwnas search --resume {re.escape(str(out))}",
        str(res.exception),
    )
    # an agent at the same address again: the search goes on from where it stopped
    again = create_server("127.0.0.1", port, TOKEN, timeout_s=120.0)
    again.start_background()
    try:
        summary = resume_search(out)
    finally:
        again.close()
    assert summary["evaluations"] == 3 and summary["failed"] == 0
    # the drift anchor's reference of the run's start was kept, not measured anew
    with ResultsStore(out / "results.sqlite") as store:
        began = store.segment_details(store.latest_run("search")["run_id"])[0]
    ref = began["latency"]["anchor"]["reference_ms"]
    assert ref > 0 and summary["benchmark_details"]["latency"]["anchor"]["reference_ms"] == ref


def test_agent_timeout_bench_option_bounds_the_wait_on_a_silent_agent(
    tmp_path: Path, data_dir: Path
) -> None:
    """An agent that takes connections but never answers fails the benchmark within
    agent_timeout_s (by default what the agent's /info says a request may take: its queue
    and measurement time-outs; an hour before), which needs an agent to apply."""
    import socket
    import time

    from hwnas.bench import get_benchmark
    from hwnas.measure.agent import write_token_file

    token = tmp_path / "agent.token"
    write_token_file(token, TOKEN)
    with socket.socket() as silent:  # listens (the kernel accepts), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        opts = {"latency": True, "agent": url, "token_file": str(token), "agent_timeout_s": 1.5}
        b = get_benchmark("ofa-mbv3", data_dir=data_dir, **opts)
        t0 = time.monotonic()
        with pytest.raises(HwnasError):
            b.prepare()
        assert time.monotonic() - t0 < 10
    from hwnas.measure.agent import agent_request_time_s

    with running_agent(timeout_s=50.0) as server:  # the default follows the agent's limits
        opts = {"latency": True, "agent": server.url, "token_file": str(token)}
        b = get_benchmark("ofa-mbv3", data_dir=data_dir, **opts)
        b.prepare()
        assert b.measured._measurer.client.timeout_s == 900.0 + 50.0 + 60.0
        assert agent_request_time_s({}) == 900.0 + 300.0 + 60.0
    for bad, match in (
        ({"latency": True, "agent_timeout_s": 5}, "it needs agent=URL"),
        ({**opts, "agent_timeout_s": 0}, "must be positive seconds"),
    ):
        with pytest.raises(HwnasError, match=match):
            get_benchmark("ofa-mbv3", data_dir=data_dir, **bad)


def test_a_client_that_leaves_stops_its_measurement() -> None:
    """A client that stops waiting (its time-out, Ctrl-C) closes the connection: the
    agent kills the measurement at once instead of holding every other client for it."""
    import time

    long = MeasureSettings(warmup=2, rounds=100_000, repeats_per_round=10)
    with running_agent() as server:
        t0 = time.monotonic()
        with pytest.raises(HwnasError):
            AgentClient(server.url, TOKEN, timeout_s=3.0).measure(WIDE, long)
        while raw(server, "GET", "/health", token=None)[2]["busy"]:
            assert time.monotonic() - t0 < 20, "the agent kept measuring for a client gone"
            time.sleep(0.2)
        assert AgentClient(server.url, TOKEN).measure(MODEL, FAST).latency_ms > 0


def test_the_measuring_child_dies_with_its_parent(tmp_path: Path) -> None:
    """A killed agent (or search) takes its measurement with it: the child would run on
    beside the next measurements and skew them."""
    import signal
    import subprocess
    import sys
    import time

    model = tmp_path / "m.onnx"
    model.write_bytes(WIDE)
    script = (
        "from hwnas.measure.latency import MeasureSettings\n"
        "from hwnas.measure.worker import run_isolated\n"
        f"run_isolated([{str(model)!r}], MeasureSettings(rounds=100000, repeats_per_round=10),"
        " timeout_s=300)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])

    def children() -> list[int]:
        found = []
        for d in Path("/proc").iterdir():
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"hwnas.measure._child" in cmd and str(parent.pid).encode() in cmd:
                found.append(int(d.name))
        return found

    deadline = time.monotonic() + 60
    while not children():
        assert time.monotonic() < deadline and parent.poll() is None, "no child started"
        time.sleep(0.1)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while children():
        assert time.monotonic() < deadline, "the child outlived its parent"
        time.sleep(0.1)


def test_a_new_agent_removes_the_uploads_of_killed_ones(tmp_path: Path, monkeypatch) -> None:
    """A killed agent's upload folder (its PID gone) is removed when an agent starts; a
    live agent's is kept."""
    import os
    import subprocess
    import sys
    import tempfile

    from hwnas.measure.agent import UPLOAD_PREFIX

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    dead = tmp_path / f"{UPLOAD_PREFIX}{gone}-abc"
    live = tmp_path / f"{UPLOAD_PREFIX}{os.getpid()}-def"
    for d in (dead, live):
        d.mkdir()
        (d / "model0.onnx").write_bytes(MODEL)
    with running_agent():
        pass
    assert not dead.exists() and live.is_dir()


def test_the_agent_sheds_slow_and_surplus_connections_with_json(caplog) -> None:
    """Over its connection limit the agent answers a JSON 503 (the client retries; it
    said 'crashed' on a silent close); a connection whose headers trickle in is closed
    after header_timeout_s; every method and path gets JSON; failures are logged."""
    import socket
    import time

    caplog.set_level("INFO", logger="hwnas.agent")
    with running_agent(max_connections=1, header_timeout_s=1.0) as server:
        host, port = server.server_address[:2]
        slow = socket.create_connection((host, port))
        slow.sendall(b"GET /health HTTP/1.1\r\n")  # and no more
        time.sleep(0.3)
        status, headers, body = raw(server, "GET", "/health", token=None)
        assert status == 503 and body["code"] == "busy" and headers["Retry-After"] == "1"
        t0 = time.monotonic()
        slow.settimeout(10)
        assert slow.recv(1024) == b""  # closed by the agent
        assert time.monotonic() - t0 < 5
        slow.close()
    with running_agent() as server:  # (one connection: the last one's may not be free yet)
        for method, path in (("GET", "/measure"), ("PUT", "/measure"), ("DELETE", "/info")):
            status, headers, body = raw(server, method, path)
            assert status == 405 and body["code"] == "method_not_allowed", (method, path)
        assert raw(server, "GET", "/info", token="x" * 43)[0] == 401
    logged = caplog.text
    assert "too many connections" in logged and "sent no whole request" in logged
    assert "401 unauthorized" in logged and "405 method_not_allowed" in logged


def test_serve_refuses_a_memory_limit_too_low_for_the_runtime() -> None:
    """A limit under which ONNX Runtime cannot even load fails at start, not at every
    request."""
    from hwnas.measure.agent import serve

    with pytest.raises(HwnasError, match="cannot load ONNX Runtime under --memory-mb 60"):
        serve("127.0.0.1", 0, TOKEN, memory_mb=60)


def test_profile_asks_the_agent_before_any_work(tmp_path: Path) -> None:
    """A wrong token (or URL) fails 'hwnas profile --agent' before a subnet is exported
    or its folder made, as search does, instead of after, with advice to rerun."""
    from typer.testing import CliRunner

    from hwnas.cli import app
    from hwnas.measure.agent import write_token_file

    bad = tmp_path / "other.token"
    write_token_file(bad)
    out = tmp_path / "prof"
    with running_agent() as server:
        res = CliRunner().invoke(app, ["profile", "--space", "mbv3-cifar", "--samples", "4",
                                       "--out", str(out), "--agent", server.url,
                                       "--token-file", str(bad)])  # fmt: skip
    assert res.exit_code == 2 and "rejected the token (401)" in res.stderr
    assert "run the same command again" not in res.stderr and not out.exists()


def test_whatever_ends_the_wait_ends_the_measuring_child(tmp_path: Path) -> None:
    """An exception in the caller while the child measures (SIGTERM's Terminated, Ctrl-C,
    a failing cancel check) kills the child at once: it neither measures on in the
    background nor holds the caller until it is done."""
    import os
    import time

    from hwnas.measure.worker import run_isolated

    model = tmp_path / "m.onnx"
    model.write_bytes(WIDE)
    t0 = time.monotonic()

    def stop() -> bool:
        if time.monotonic() - t0 > 1.5:
            raise KeyboardInterrupt
        return False

    long = MeasureSettings(warmup=2, rounds=100_000, repeats_per_round=10)
    with pytest.raises(KeyboardInterrupt):
        run_isolated([model], long, timeout_s=300, cancelled=stop)
    assert time.monotonic() - t0 < 10
    mine = str(os.getpid()).encode()
    for d in Path("/proc").iterdir():
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        assert not (b"hwnas.measure._child" in cmd and mine in cmd), "the child lives on"


def test_an_upload_refused_over_the_connection_limit_is_retried() -> None:
    """Refused for want of a connection, an upload still reads the 503 (the refused
    socket is drained, not reset under it) and retries until a connection is free."""
    import socket

    with running_agent(max_connections=1, header_timeout_s=2.0) as server:
        host, port = server.server_address[:2]
        slow = socket.create_connection((host, port))
        slow.sendall(b"GET /health HTTP/1.1\r\n")  # holds the one connection for 2 s
        try:
            m = AgentClient(server.url, TOKEN).measure(WIDE, FAST)
        finally:
            slow.close()
        assert m.latency_ms > 0


def test_many_models_are_measured_in_requests_within_the_agents_limits(tmp_path: Path) -> None:
    """`hwnas measure` of more models than one upload may hold splits them into requests
    (said in a warning); the client alone names the combined upload it was refused."""
    import typer
    from typer.testing import CliRunner

    from hwnas.cli_measure import register

    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    token_file = tmp_path / "token"
    write_token_file(token_file, TOKEN)
    files = []
    for i in range(5):
        files.append(tmp_path / f"m{i}.onnx")
        files[-1].write_bytes(MODEL)
    with running_agent(max_bytes=2 * len(MODEL) + 10) as server:
        client = AgentClient(server.url, TOKEN)
        with pytest.raises(
            HwnasError,
            match=r"models too large .*: the combined upload of 3 models \(\d+ bytes\) exceeds",
        ):
            client.measure_many(files[:3], FAST)
        args = ["measure", *map(str, files), "--agent", server.url, "--token-file"]
        args += [str(token_file), "--rounds", "3", "--repeats", "1", "--warmup", "1", "--json"]
        with pytest.warns(UserWarning, match="the 5 models are measured in 3 requests"):
            res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    found = json.loads(res.stdout)
    assert [d["model"] for d in found] == [f.name for f in files]
    assert all(d["latency_ms"] > 0 and d["measured_by"] == f"agent {server.url}" for d in found)
