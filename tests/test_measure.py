"""Latency measurement, cost counting and export (hwnas.measure), with real small models."""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

import typer  # noqa: E402
from torch import nn  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from hwnas.cli_measure import register  # noqa: E402
from hwnas.errors import HwnasError  # noqa: E402
from hwnas.measure import (  # noqa: E402
    LatencyMeasurer,
    LocalMeasurer,
    Measurement,
    MeasureSettings,
    ModelLoadError,
    compute_stats,
    count_flops,
    count_params,
    export_onnx,
    host_info,
    measure_modules,
    measure_onnx,
    measure_torch,
    model_cost,
    peak_activation_memory,
    run_interleaved,
)

SHAPE = (3, 32, 32)
FAST = MeasureSettings(warmup=3, rounds=8, repeats_per_round=3, batch_size=2)


def tiny_cnn(width: int = 8) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, 10),
    )


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("onnx")
    return [
        export_onnx(tiny_cnn(8), SHAPE, d / "small.onnx"),
        export_onnx(tiny_cnn(16), SHAPE, d / "wide.onnx"),
    ]


def check_stats(m: Measurement, rounds: int, repeats: int) -> None:
    st = m.stats
    values = [st.median_of_round_min_ms, st.p10_ms, st.median_ms, st.p90_ms, st.mean_ms]
    assert all(math.isfinite(v) and v > 0 for v in values)
    assert st.min_ms <= st.median_of_round_min_ms <= st.max_ms
    assert st.min_ms <= st.p10_ms <= st.median_ms <= st.p90_ms <= st.max_ms
    assert st.iqr_ms >= 0 and st.cv >= 0 and st.robust_cv >= 0
    assert st.n == rounds * repeats and st.rounds == rounds and st.repeats_per_round == repeats
    assert len(st.round_min_ms) == rounds
    assert st.latency_ms == m.latency_ms == st.median_of_round_min_ms
    assert st.median_ms < 1000  # a tiny CNN takes well under a second
    assert isinstance(st.unstable, bool)
    assert (st.unstable_reason is not None) == st.unstable


# ---------------------------------------------------------------------------------------
# ONNX Runtime / torch measurement
# ---------------------------------------------------------------------------------------
def test_measure_onnx_paths_and_bytes(onnx_files: list[Path]) -> None:
    small, wide = onnx_files
    found = measure_onnx([small, wide.read_bytes()], FAST)
    assert [m.model for m in found] == ["small.onnx", "model[1]"]
    for m, f in zip(found, onnx_files, strict=True):
        check_stats(m, rounds=8, repeats=3)
        assert m.runtime == "onnxruntime" and m.runtime_version == ort.__version__
        assert m.provider == "CPUExecutionProvider"
        assert m.inputs == {"input": {"shape": [2, 3, 32, 32], "dtype": "float32"}}
        assert m.threads == {"intra_op": 1, "inter_op": 1}
        assert m.settings == FAST and m.measured_by == "local" and m.timestamp
        assert m.model_sha256 == hashlib.sha256(f.read_bytes()).hexdigest()
        assert m.host["cpu_model"] and m.host["logical_cores"] >= 1
        assert m.host["onnxruntime_version"] == ort.__version__
        d = json.loads(json.dumps(m.to_dict()))  # JSON-safe and complete
        assert d["settings"]["batch_size"] == 2 and d["settings"]["warmup"] == 3
        assert d["settings"]["intra_op_threads"] == 1 and d["settings"]["precision"] == "fp32"
        assert d["latency_ms"] == m.latency_ms
        assert Measurement.from_dict(d) == m


def test_measure_torch_eager() -> None:
    a, b = tiny_cnn(8).train(), tiny_cnn(16).eval()
    threads_before = torch.get_num_threads()
    found = measure_torch([a, b], SHAPE, MeasureSettings(warmup=2, rounds=6, repeats_per_round=2))
    assert a.training and not b.training  # training flag restored
    assert torch.get_num_threads() == threads_before
    assert [m.model for m in found] == ["Sequential[0]", "Sequential[1]"]
    for m in found:
        check_stats(m, rounds=6, repeats=2)
        assert m.runtime == "torch" and m.runtime_version == torch.__version__
        assert m.provider == "cpu" and m.settings.runtime == "torch"
        assert m.settings.input_shape == SHAPE and m.settings.resolution == (32, 32)
        assert m.inputs["input"]["shape"] == [1, 3, 32, 32]
        assert m.threads["intra_op"] == 1
        assert "torch_version" in m.host and "gpu" in m.host
    too_many = (os.cpu_count() or 1) + 1  # refused as for ONNX Runtime, not run and recorded
    with pytest.raises(HwnasError, match=f"intra_op_threads {too_many} exceeds the"):
        measure_torch([a], SHAPE, MeasureSettings(intra_op_threads=too_many))


def test_default_threads_are_recorded_as_resolved(onnx_files: list[Path]) -> None:
    """--threads 0 (the runtime's default) records the count the runtime chose, not 0."""
    settings = MeasureSettings(warmup=1, rounds=3, repeats_per_round=1, intra_op_threads=0)
    (m,) = measure_onnx(onnx_files[:1], settings)
    assert m.threads["intra_op_requested"] == 0 and m.settings.intra_op_threads == 0
    if os.path.isdir("/proc/self/task"):  # where the runtime's threads can be counted
        assert 1 <= m.threads["intra_op"] <= 4 * (os.cpu_count() or 1)


def test_run_interleaved_covers_all_models_in_shuffled_rounds() -> None:
    calls: list[int] = []
    runners = [lambda i=i: calls.append(i) for i in range(4)]
    s = MeasureSettings(warmup=2, rounds=12, repeats_per_round=3, seed=1)
    times, orders = run_interleaved(runners, s)
    assert len(times) == 4 and all(len(t) == 12 for t in times)
    assert all(len(r) == 3 and all(x >= 0 for x in r) for t in times for r in t)
    assert calls[:8] == [0, 0, 1, 1, 2, 2, 3, 3]  # warm-up
    timed = calls[8:]
    assert len(timed) == 12 * 4 * 3
    for r, order in enumerate(orders):
        assert sorted(order) == [0, 1, 2, 3]  # every model, once per round
        block = timed[r * 12 : (r + 1) * 12]
        assert block == [i for i in order for _ in range(3)]
    assert len({tuple(o) for o in orders}) > 1  # the order is shuffled between rounds


def test_time_budget_stops_after_three_rounds() -> None:
    s = MeasureSettings(warmup=0, rounds=100, repeats_per_round=1, time_budget_s=0.001)
    times, orders = run_interleaved([lambda: time.sleep(0.002)], s)
    assert len(orders) == 3 and len(times[0]) == 3


def test_compute_stats_by_hand() -> None:
    st = compute_stats([[0.001, 0.002], [0.003, 0.004], [0.005, 0.006]])
    assert st.median_of_round_min_ms == pytest.approx(3.0)
    assert st.round_min_ms == pytest.approx((1.0, 3.0, 5.0))
    assert st.median_ms == pytest.approx(3.5) and st.min_ms == pytest.approx(1.0)
    assert st.n == 6 and st.rounds == 3
    assert st.unstable and "robust CV" in (st.unstable_reason or "")
    steady = compute_stats([[0.010, 0.012]] * 5 + [[0.0101, 0.02]])
    assert not steady.unstable and steady.robust_cv < 0.01
    assert compute_stats([[0.01], [0.01]]).unstable  # too few rounds to judge


def test_settings_validation() -> None:
    for bad in (
        {"runtime": "tvm"},
        {"batch_size": 0},
        {"precision": "int8"},
        {"rounds": 0},
        {"input_shape": "3,a,4"},
        {"intra_op_threads": -1},
    ):
        with pytest.raises(HwnasError):
            MeasureSettings(**bad)
    with pytest.raises(HwnasError, match="unknown measure setting"):
        MeasureSettings.from_dict({"batch": 2})
    s = MeasureSettings.from_dict({"input_shape": "3x64x64", "rounds": "4", "runtime": "ort"})
    assert s.input_shape == (3, 64, 64) and s.rounds == 4 and s.runtime == "onnxruntime"


def test_corrupt_and_mismatched_onnx(tmp_path: Path, onnx_files: list[Path]) -> None:
    with pytest.raises(ModelLoadError, match="cannot load ONNX model model\\[0\\]"):
        measure_onnx([b"this is not an onnx file"], FAST)
    with pytest.raises(HwnasError, match="not found"):
        measure_onnx([tmp_path / "missing.onnx"], FAST)
    with pytest.raises(HwnasError, match="does not match input_shape"):
        measure_onnx(onnx_files[:1], MeasureSettings(input_shape=(3, 64, 64)))
    fixed = export_onnx(tiny_cnn(), SHAPE, tmp_path / "fixed.onnx", dynamic_batch=False)
    with pytest.raises(HwnasError, match="fixed batch dimension of 1"):
        measure_onnx([fixed], MeasureSettings(batch_size=4))


# ---------------------------------------------------------------------------------------
# export and cost
# ---------------------------------------------------------------------------------------
def test_export_matches_torch(tmp_path: Path) -> None:
    model = tiny_cnn().eval()
    path = export_onnx(model, SHAPE, tmp_path / "sub" / "m.onnx", opset=17)
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version >= 17
    x = np.random.default_rng(0).standard_normal((3, *SHAPE)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {"input": x})
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_flops_of_conv_and_linear_by_hand() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1)
    f = count_flops(conv, (3, 32, 32), batch_size=2)
    macs = 2 * 8 * 32 * 32 * 3 * 3 * 3  # batch * Cout * H * W * Cin * k * k
    assert f["macs"] == macs and f["flops"] == 2 * macs
    lin = nn.Linear(20, 10)
    assert count_flops(lin, (20,), batch_size=4) == {
        "flops": 2 * 4 * 20 * 10,
        "macs": 4 * 20 * 10,
        "by_op": {"addmm": 1600},
    }
    dw = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)  # depthwise, 16x16 -> 8x8
    assert count_flops(dw, (8, 16, 16))["macs"] == 8 * 8 * 8 * 3 * 3


def test_count_params() -> None:
    assert count_params(nn.Conv2d(3, 8, 3)) == 8 * 3 * 9 + 8
    assert count_params(nn.Linear(20, 10)) == 210
    shared = nn.Linear(4, 4)
    assert count_params(nn.Sequential(shared, nn.ReLU(), shared)) == 20
    frozen = nn.Linear(4, 4)
    frozen.bias.requires_grad_(False)
    assert count_params(frozen, trainable_only=True) == 16


def test_peak_activation_memory_by_hand() -> None:
    def net(inplace: bool) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=inplace), nn.Conv2d(8, 8, 3, padding=1)
        )

    one = 8 * 32 * 32 * 4  # one fp32 feature map of the net
    # at most two feature maps are alive at once (a layer's input and its output)
    assert peak_activation_memory(net(False), SHAPE) == 2 * one
    assert peak_activation_memory(net(True), SHAPE) == 2 * one
    assert peak_activation_memory(net(False), SHAPE, batch_size=3) == 6 * one
    assert peak_activation_memory(nn.Identity(), SHAPE) == 0


def test_model_cost(onnx_files: list[Path]) -> None:
    model = tiny_cnn(8)
    cost = model_cost(model, SHAPE, batch_size=2, onnx_path=onnx_files[0])
    assert cost["params"] == count_params(model)
    assert cost["flops"] == count_flops(model, SHAPE, 2)["flops"] > 0
    assert cost["macs"] * 2 == cost["flops"]
    assert cost["onnx_size_bytes"] == onnx_files[0].stat().st_size
    assert cost["input_bytes"] == 2 * 3 * 32 * 32 * 4
    assert cost["peak_activation_bytes"] >= 2 * 8 * 32 * 32 * 4
    assert cost["batch_size"] == 2 and cost["input_shape"] == [3, 32, 32]
    assert model_cost(model, SHAPE)["onnx_size_bytes"] is None


# ---------------------------------------------------------------------------------------
# measurer interface
# ---------------------------------------------------------------------------------------
def test_local_measurer_and_measure_modules() -> None:
    measurer = LocalMeasurer(MeasureSettings(warmup=2, rounds=4, repeats_per_round=2))
    assert isinstance(measurer, LatencyMeasurer)
    found = measure_modules(measurer, [tiny_cnn(8), tiny_cnn(4)], SHAPE, labels=["a", "b"])
    assert [m.model for m in found] == ["a", "b"]
    for m in found:
        check_stats(m, rounds=4, repeats=2)
        assert m.settings.input_shape == SHAPE


def test_local_measurer_takes_one_model(onnx_files: list[Path]) -> None:
    """One path (str or Path) or one model's bytes is one model, not a sequence of them."""
    measurer = LocalMeasurer(MeasureSettings(warmup=1, rounds=2, repeats_per_round=1))
    small = onnx_files[0]
    for one in (str(small), small, small.read_bytes()):
        (m,) = measurer.measure(one)
        check_stats(m, rounds=2, repeats=1)
    # more threads than CPUs: refused here as by an agent (every latency inflated)
    cpus = os.cpu_count() or 1
    with pytest.raises(HwnasError, match=f"exceeds the {cpus} CPU"):
        LocalMeasurer(MeasureSettings(intra_op_threads=cpus + 1)).measure(small)


def test_measure_modules_with_a_shape_per_module_makes_one_call() -> None:
    """Modules at their own input sizes (subnets at their resolutions) are measured in one
    interleaved call, each fed the shape it was exported with."""
    calls: list[int] = []

    class Counting(LocalMeasurer):
        def measure(self, models, settings=None):  # type: ignore[no-untyped-def]
            calls.append(len(models))
            return super().measure(models, settings)

    measurer = Counting(MeasureSettings(warmup=1, rounds=2, repeats_per_round=1))
    shapes = [(3, 16, 16), (3, 48, 48), (3, 16, 16)]
    found = measure_modules(measurer, [tiny_cnn(8)] * 3, shapes, labels=["a", "b", "c"])
    assert calls == [3] and [m.model for m in found] == ["a", "b", "c"]
    fed = [next(iter(m.inputs.values()))["shape"] for m in found]
    assert fed == [[1, 3, 16, 16], [1, 3, 48, 48], [1, 3, 16, 16]]
    with pytest.raises(HwnasError, match="one to one"):
        measure_modules(measurer, [tiny_cnn(8)], shapes)


def test_local_isolated_measurer(onnx_files: list[Path]) -> None:
    s = MeasureSettings(warmup=2, rounds=4, repeats_per_round=2)
    measurer = LocalMeasurer(s, isolate=True, timeout_s=120, memory_mb=2048)
    found = measurer.measure([onnx_files[0], onnx_files[1].read_bytes()])
    assert [m.model for m in found] == ["small.onnx", "model[1]"]
    for m in found:
        check_stats(m, rounds=4, repeats=2)
    with pytest.raises(ModelLoadError, match="model\\[0\\]"):
        measurer.measure([b"\x00\x01 not onnx"])


def test_host_info() -> None:
    info = host_info(include_torch=True)
    for key in ("cpu_model", "logical_cores", "system", "machine", "python"):
        assert info[key]
    assert info["torch_version"] == torch.__version__
    assert info["onnxruntime_version"] == ort.__version__


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------
@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    register(app)
    return app


def test_cli_measure_table_and_json(cli: typer.Typer, onnx_files: list[Path]) -> None:
    runner = CliRunner()
    args = ["measure", *map(str, onnx_files), "--rounds", "4", "--repeats", "2", "--warmup", "2"]
    res = runner.invoke(cli, [*args, "--json", "--batch-size", "3"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert [d["model"] for d in data] == ["small.onnx", "wide.onnx"]
    assert all(d["settings"]["batch_size"] == 3 and d["latency_ms"] > 0 for d in data)
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "small.onnx" in res.stdout and "robust" in res.stdout and "batch 1" in res.stdout
    # one file name in two folders: the rows are told apart by their paths
    import shutil

    other = onnx_files[0].parent / "copy" / onnx_files[0].name
    other.parent.mkdir(exist_ok=True)
    shutil.copy(onnx_files[0], other)
    res = runner.invoke(cli, [*args[:1], str(onnx_files[0]), str(other), *args[3:], "--json"])
    assert [d["model"] for d in json.loads(res.stdout)] == [str(onnx_files[0]), str(other)]
    # one file given three times is measured once, and said so
    again = [str(onnx_files[0]), str(onnx_files[0]), str(onnx_files[0].parent / "." / "small.onnx")]
    with pytest.warns(UserWarning, match=r"small.onnx \(3 times\); measured once"):
        res = runner.invoke(cli, [*args[:1], *again, *args[3:], "--json"])
    assert [d["model"] for d in json.loads(res.stdout)] == ["small.onnx"]
    # --threads 0: the table shows the count the runtime chose
    res = runner.invoke(cli, [*args[:1], str(onnx_files[0]), *args[3:], "--threads", "0"])
    assert res.exit_code == 0 and "(the runtime default)" in res.stdout


def test_cli_errors_exit_2(cli: typer.Typer, tmp_path: Path, onnx_files: list[Path]) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["measure", str(tmp_path / "nope.onnx")])
    assert res.exit_code == 2 and "error: ONNX model file not found" in res.stderr
    res = runner.invoke(cli, ["measure", str(tmp_path)])
    assert res.exit_code == 2 and f"error: {tmp_path} is a directory, not an ONNX" in res.stderr
    with pytest.raises(ModelLoadError, match="is a directory, not an ONNX model file"):
        measure_onnx([tmp_path])
    # options that would be ignored are refused: a time-out needs a process to stop
    res = runner.invoke(cli, ["measure", str(onnx_files[0]), "--timeout-s", "1"])
    assert res.exit_code == 2 and "--timeout-s applies with --isolate or --agent" in res.stderr
    res = runner.invoke(cli, ["measure", str(onnx_files[0]), "--isolate", "--agent", "http://x"])
    assert res.exit_code == 2 and "drop --isolate" in res.stderr
    res = runner.invoke(cli, ["measure", str(onnx_files[0]), "--runtime", "torch"])
    assert res.exit_code == 2 and "measure_torch" in res.stderr
    res = runner.invoke(cli, ["measure", str(onnx_files[0]), "--provider", "foo"])
    assert res.exit_code == 2 and "unknown provider 'foo': use auto, cpu, cuda" in res.stderr
    res = runner.invoke(cli, ["measure", str(onnx_files[0]), "--provider", "cuda"])
    assert res.exit_code == 2 and "'cuda' is not available here" in res.stderr
    res = runner.invoke(cli, ["measure", str(onnx_files[0]), "--batch-size", "0"])
    assert res.exit_code == 2 and "batch_size" in res.stderr
    res = runner.invoke(cli, ["measure", str(onnx_files[0]), "--agent", "http://127.0.0.1:1"])
    assert res.exit_code == 2 and "--token-file" in res.stderr
    # an agent that cannot be reached is no bad input: exit 3, as in every command
    from hwnas.measure.agent import write_token_file

    write_token_file(tmp_path / "tok")
    args = ["measure", str(onnx_files[0]), "--agent", "http://127.0.0.1:1", "--token-file"]
    res = runner.invoke(cli, [*args, str(tmp_path / "tok")])
    assert res.exit_code == 3 and "cannot reach the agent" in res.stderr


def test_the_printed_table_names_each_model_s_input(tmp_path: Path) -> None:
    """Models of other input shapes measured together: the footer gives each one's input
    (it gave the first model's for all)."""
    import dataclasses
    import io

    from hwnas.cli_measure import print_measurements

    a = export_onnx(tiny_cnn(8), SHAPE, tmp_path / "a.onnx")
    b = export_onnx(tiny_cnn(8), (3, 16, 16), tmp_path / "b.onnx")
    settings = dataclasses.replace(FAST, rounds=2, warmup=1, input_shape=None)
    found = measure_onnx([a, b], settings)
    out = io.StringIO()
    print_measurements(found, file=out)
    text = " ".join(out.getvalue().split())
    assert "input per model: a.onnx: input [2, 3, 32, 32] float32, b.onnx: input [2, 3, 16" in text
    out = io.StringIO()
    print_measurements(found[:1], file=out)
    assert "per model" not in out.getvalue() and "input [2, 3, 32, 32]" in out.getvalue()


def test_inputs_beyond_the_first_are_fed(tmp_path: Path) -> None:
    """--input-shape fills the dynamic sizes of every input of its rank (a BERT's ids and
    mask alike); a later input with a fixed first dimension (a shape tensor) is no batch;
    an input of unknown rank takes the shape given instead of being fed one number."""
    from onnx import TensorProto, helper

    TINY = {"warmup": 1, "rounds": 2, "repeats_per_round": 1}

    def save(name: str, nodes: list, inputs: list, out_shape: list | None) -> Path:
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)
        graph = helper.make_graph(nodes, name, inputs, [out])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        path = tmp_path / f"{name}.onnx"
        onnx.save(model, str(path))
        return path

    bert = save(
        "bert",
        [
            helper.make_node("Cast", ["ids"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["f", "mask"], ["y"]),
        ],
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", "s"]),
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["b", "s"]),
        ],
        ["b", "s"],
    )
    (m,) = measure_onnx([bert], MeasureSettings(input_shape=(16,), **TINY))
    assert m.inputs == {
        "ids": {"shape": [1, 16], "dtype": "int64"},
        "mask": {"shape": [1, 16], "dtype": "float32"},
    }
    with pytest.raises(HwnasError, match="'ids' has a dynamic dimension.*every input of its rank"):
        measure_onnx([bert], MeasureSettings(**TINY))
    reshape = save(
        "reshape",
        [helper.make_node("Reshape", ["x", "s"], ["y"])],
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6]),
            helper.make_tensor_value_info("s", TensorProto.INT64, [2]),
        ],
        None,
    )
    (m,) = measure_onnx([reshape], MeasureSettings(**TINY))  # zeros in s: copy x's sizes
    assert m.inputs["s"] == {"shape": [2], "dtype": "int64"}
    norank = save(
        "norank",
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        None,
    )
    (m,) = measure_onnx([norank], MeasureSettings(input_shape=(3, 8, 8), **TINY))
    assert m.inputs == {"x": {"shape": [1, 3, 8, 8], "dtype": "float32"}}


def test_onnx_metadata_is_written_once_per_key_and_takes_numpy(tmp_path: Path) -> None:
    """What an exported model is and needs, in its ONNX metadata: a key written again
    replaces the old value; numpy values are stored as JSON numbers and lists."""
    import onnx
    import onnxruntime as ort

    from hwnas.measure.export import write_metadata

    path = export_onnx(tiny_cnn(8), SHAPE, tmp_path / "m.onnx", metadata={"a": "1"})
    write_metadata(path, {"a": {"x": np.int64(3)}, "b": np.arange(2)})
    meta = ort.InferenceSession(str(path)).get_modelmeta().custom_metadata_map
    assert json.loads(meta["hwnas.a"]) == {"x": 3} and json.loads(meta["hwnas.b"]) == [0, 1]
    assert [p.key for p in onnx.load(str(path)).metadata_props] == ["hwnas.a", "hwnas.b"]
