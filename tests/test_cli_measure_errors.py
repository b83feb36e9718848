"""Bad input and broken infrastructure in the measurement, profile, LUT, predictor and
supernet commands: one clear error line (exit 2), never a stored failure that is not the
model's, a traceback or a leftover file."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from hwnas.errors import HwnasError
from hwnas.measure.latency import MeasureSettings

SPACE = "mbv3-cifar"
FAST = MeasureSettings(warmup=1, rounds=3, repeats_per_round=1)
FAST_FLAGS = ["--warmup", "1", "--rounds", "3", "--repeats", "1", "--threads", "1"]
TOKEN = "t" * 32
runner = CliRunner()


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    """The commands of this area on their own app (independent of hwnas.cli)."""
    from hwnas import cli_measure, cli_profile, cli_train

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    cli_measure.register(app)
    cli_profile.register(app)
    cli_train.register(app)
    return app


def _one_error(res: Any, message: str) -> str:
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert message in lines[0], lines[0]
    return lines[0]


def _token_file(path: Path, token: str) -> Path:
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


def _runs(db: Path) -> list[tuple[str, str]]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT kind, status FROM runs ORDER BY created").fetchall()
    finally:
        con.close()


def _stored(run_dir: Path) -> int:
    """Evaluations (successful or failed) stored in a run directory's profile runs."""
    con = sqlite3.connect(run_dir / "results.sqlite")
    try:
        q = "SELECT COUNT(*) FROM evaluations e JOIN runs r USING (run_id) WHERE r.kind = 'profile'"
        return con.execute(q).fetchone()[0]
    finally:
        con.close()


def _profile_store(
    tmp: Path, ok: int = 0, failed: int = 1, num_classes: int = 10, **more: Any
) -> Path:
    """A profile run with ``ok`` successful and ``failed`` failed rows, written directly
    (``more``: more keys of the run's config, e.g. its device and settings)."""
    from hwnas.measure.profile import PROFILE_KIND, STORE_NAME
    from hwnas.space.mbv3_ramnas import space_for
    from hwnas.store.sqlite import ResultsStore

    space = space_for(SPACE)
    vecs = space.sample(ok + failed, np.random.default_rng(0))
    config = {"space": SPACE, "samples": ok + failed, "num_classes": num_classes, "plan": []}
    config.update(more)
    with ResultsStore(tmp / STORE_NAME) as store:
        run = store.create_run(config, 0, kind=PROFILE_KIND)
        for i, v in enumerate(vecs):
            key = space.keys(v[None])[0]
            if i < ok:
                store.add_evaluation(run, key, v.tolist(), {"latency_ms": 1.0 + i})
            else:
                store.add_evaluation(
                    run, key, v.tolist(), None, status="failed", error="ModelRunError: x"
                )
        store.finish_run(run, {"failed": failed}, status="finished")
    return tmp


# ---- 1. agent errors stop the profile; they are never a subnet's failure ------------------
def test_profile_wrong_token_dead_agent_and_oversize_store_nothing(tmp_path, cli) -> None:
    from hwnas.measure.agent import AgentClient, create_server
    from hwnas.measure.measurer import RemoteMeasurer
    from hwnas.measure.profile import profile_space

    run_dir = tmp_path / "prof"
    db = run_dir / "results.sqlite"
    with create_server("127.0.0.1", 0, TOKEN, timeout_s=120.0) as good:
        good.start_background()
        wrong = _token_file(tmp_path / "wrong.token", "w" * 32)
        args = ["profile", "--samples", "2", "--out", str(run_dir), "--group-size", "2"]
        res = runner.invoke(cli, [*args, *FAST_FLAGS, "--agent", good.url, "--token-file", str(wrong)])  # fmt: skip
        line = _one_error(res, "rejected the token (401)")
        assert "run the same command again" not in line and not run_dir.exists()  # asked first
        # the library, given a measurer, finds out at the first group: nothing is stored
        # as failed, and the advice is to fix it first
        wrong_agent = RemoteMeasurer(AgentClient(good.url, "w" * 32), FAST)
        with pytest.raises(HwnasError, match="401.*fix that, then run the same command"):
            profile_space(SPACE, 2, run_dir, FAST, measurer=wrong_agent, group_size=2)
        assert _stored(run_dir) == 0
        assert ("profile", "incomplete") in _runs(db)

        # an upload over the agent's limit (4 KiB here) stops it too; then a dead agent
        other = tmp_path / "other"
        with create_server("127.0.0.1", 0, TOKEN, max_bytes=4096) as small:
            small.start_background()
            measurer = RemoteMeasurer(AgentClient(small.url, TOKEN), FAST)
            with pytest.raises(HwnasError, match="too large for the agent"):
                profile_space(SPACE, 2, other, FAST, measurer=measurer, group_size=2)
            url = small.url
        assert _stored(other) == 0
        dead = RemoteMeasurer(AgentClient(url, TOKEN, timeout_s=5), FAST)
        with pytest.raises(HwnasError, match="cannot reach the agent"):
            profile_space(SPACE, 2, other, FAST, measurer=dead, group_size=2)
        assert _stored(other) == 0

        # the right agent afterwards measures every subnet; the runs end 'finished'
        measurer = RemoteMeasurer(AgentClient(good.url, TOKEN), FAST)
        summary = profile_space(SPACE, 2, run_dir, FAST, measurer=measurer, group_size=2)
    assert summary["measured"] == 2 and summary["ok"] == 2 and summary["failed"] == 0
    assert _runs(db) == [("profile", "finished"), ("profile-anchor", "finished")]


def test_resume_retries_failures_stored_for_agent_errors(tmp_path) -> None:
    """Older versions stored agent errors as failures (plain HwnasError): a resume measures
    those again, in place; a model's own failure stays."""
    from hwnas.measure.profile import load_profile, profile_space

    run_dir = tmp_path / "prof"
    profile_space(SPACE, 3, run_dir, FAST, group_size=3, anchor=False)
    con = sqlite3.connect(run_dir / "results.sqlite")
    with con:
        keys = [k for (k,) in con.execute("SELECT arch_key FROM evaluations ORDER BY seq")]
        errors = ["HwnasError: the agent at http://x rejected the token", "ModelRunError: y"]
        for key, err in zip(keys[:2], errors, strict=True):
            con.execute(
                "UPDATE evaluations SET status = 'failed', objectives = NULL, error = ? "
                "WHERE arch_key = ?",
                (err, key),
            )
    con.close()
    summary = profile_space(SPACE, 3, run_dir, FAST, group_size=3, anchor=False)
    assert summary["measured"] == 1 and summary["ok"] == 2 and summary["failed"] == 1
    recs = load_profile(run_dir).records
    assert [r.arch_key for r in recs] == [keys[0], keys[2]]
    assert recs[0].seq == 0  # replaced in place


# ---- 9. Ctrl-C: a clear hint, and no run left 'running' ---------------------------------
def test_profile_interrupted_marks_runs_and_the_cli_says_how_to_continue(
    tmp_path, cli, monkeypatch
) -> None:
    from hwnas.measure import profile as profile_mod

    run_dir = tmp_path / "prof"
    calls = []

    def stop(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 2:  # after the first group
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        profile_mod.profile_space(SPACE, 3, run_dir, FAST, group_size=2, progress=stop)
    assert _runs(run_dir / "results.sqlite") == [
        ("profile", "interrupted"),
        ("profile-anchor", "interrupted"),
    ]

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(profile_mod, "profile_space", interrupted)
    res = runner.invoke(cli, ["profile", "--samples", "3", "--out", str(run_dir), "--json"])
    assert res.exit_code == 130
    assert "interrupted; run the same command again to continue" in res.stderr

    def terminated(*args: Any, **kwargs: Any) -> None:
        raise profile_mod.ProfileTerminated(143)

    monkeypatch.setattr(profile_mod, "profile_space", terminated)
    res = runner.invoke(cli, ["profile", "--samples", "3", "--out", str(run_dir), "--json"])
    assert res.exit_code == 143
    assert "terminated; run the same command again to continue" in res.stderr


# ---- 2. a table is never extended with another device's measurements ---------------------
def test_lut_build_refuses_a_table_of_another_device(tmp_path) -> None:
    from hwnas.measure.agent import AgentClient
    from hwnas.measure.lut import LatencyLUT, build_lut
    from hwnas.measure.measurer import RemoteMeasurer

    out = tmp_path / "lut.json"
    LatencyLUT(SPACE, 10, FAST.to_dict(), device={"measurer": "local"}).save(out)
    remote = RemoteMeasurer(AgentClient("http://127.0.0.1:9", TOKEN), FAST)
    with pytest.raises(HwnasError, match="measured on a different device.*local.*agent"):
        build_lut(SPACE, FAST, measurer=remote, out=out)
    # other settings: the refusal names each, as a profile's does
    slower = MeasureSettings(warmup=1, rounds=5, repeats_per_round=1, intra_op_threads=2)
    with pytest.raises(HwnasError, match=r"intra_op_threads 1 \(now 2\), rounds 3 \(now 5\)"):
        build_lut(SPACE, slower, out=out)


def test_a_table_and_a_run_of_other_setups_are_told_apart(tmp_path, cli) -> None:
    """evaluate warns when the table's device or threads are not the run's; build
    --from-run warns when it measures the blocks elsewhere than the run was measured."""
    from hwnas.measure.lut import LatencyLUT, evaluate_lut

    agent = {"measurer": "remote", "agent": "http://robot:8765"}
    run_settings = MeasureSettings(warmup=1, rounds=3, repeats_per_round=1, intra_op_threads=2)
    run = _profile_store(
        tmp_path / "run", ok=2, failed=0, device=agent, settings=run_settings.to_dict()
    )
    lut = LatencyLUT(SPACE, 10, FAST.to_dict(), device={"measurer": "local"})
    with (
        pytest.warns(
            UserWarning,
            match=r"device local \(run: agent http://robot:8765\), "
            r"intra_op_threads 1 \(run: 2\)",
        ),
        pytest.raises(HwnasError, match="covers none"),
    ):
        evaluate_lut(lut, run)
    out = tmp_path / "lut.json"
    LatencyLUT(SPACE, 10, {**FAST.to_dict(), "rounds": 20}, device={"measurer": "local"}).save(out)
    args = ["lut", "build", "--from-run", str(run), "--out", str(out), *FAST_FLAGS]
    told = r"device local \(run: agent http://robot:8765\).*--agent http://robot:8765 --token"
    with pytest.warns(UserWarning, match=told):
        res = runner.invoke(cli, args)
    _one_error(res, "holds a table with other settings: rounds 20 (now 3); use the same")


# ---- 3. train: the config's resume/progress, and a finished run ---------------------------
def test_train_keeps_config_resume_and_progress_unless_flags_given(tmp_path, cli, monkeypatch):
    from hwnas.train import supernet as sn

    seen: list[Any] = []

    def fake(cfg: Any) -> Any:
        seen.append(cfg)
        return sn.TrainResult(Path(cfg.out_dir), Path("c.pt"), Path("m.jsonl"), epochs_trained=1)

    monkeypatch.setattr(sn, "train_supernet", fake)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"dataset": "digits", "resume": False, "progress": False}))
    out = str(tmp_path / "run")
    assert runner.invoke(cli, ["train", "--config", str(cfg), "--out", out]).exit_code == 0
    assert seen[-1].resume is False and seen[-1].progress is False
    res = runner.invoke(cli, ["train", "--config", str(cfg), "--out", out, "--resume", "--progress"])  # fmt: skip
    assert res.exit_code == 0 and seen[-1].resume is True and seen[-1].progress is True
    assert runner.invoke(cli, ["train", "--out", out]).exit_code == 0  # no config: defaults
    assert seen[-1].resume is True and seen[-1].progress is True


def test_train_resuming_a_finished_run_says_there_is_nothing_to_train(tmp_path, cli) -> None:
    cfg = tmp_path / "cfg.json"
    cfg.write_text(
        json.dumps(
            {
                "dataset": "digits", "epochs": 1, "batch_size": 16, "steps_per_epoch": 1,
                "limit": 64, "num_random": 0, "bn_calib_batches": 1, "eval_batch_size": 64,
                "num_threads": 1, "progress": False, "eval_every": 0,
            }
        )
    )  # fmt: skip
    args = ["train", "--config", str(cfg), "--out", str(tmp_path / "run")]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    again = runner.invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert "nothing to train" in again.stderr and "nan" not in again.output
    assert json.loads(again.stdout)["loss"] == json.loads(first.stdout)["loss"]


# ---- 4. one error line instead of a traceback ----------------------------------------------
EXPORT = ["export", "--checkpoint", "{tmp}/c.pt", "--subnet", "max", "--out", "{tmp}/m.onnx"]


@pytest.mark.parametrize(
    "args, message",
    [
        (
            [*EXPORT, "--threads", "0"],
            "--threads must be an integer >= 1",
        ),
        (
            [*EXPORT, "--threads", "-1"],
            "--threads must be",
        ),
        (["eval", "--checkpoint", "{tmp}/c.pt", "--threads", "-2"], "--threads must be"),
        (
            ["export", "--checkpoint", "{tmp}/c.pt", "--subnet", "max", "--out", "{tmp}"],
            "is a directory",
        ),
        (
            [
                "export",
                "--checkpoint",
                "{tmp}/c.pt",
                "--subnet",
                "max",
                "--format",
                "torch",
                "--out",
                "{tmp}",
            ],
            "is a directory",
        ),
        (
            ["export", "--checkpoint", "{tmp}/c.pt", "--format", "torch", "--out", "{tmp}/m.onnx"],
            "--format torch writes a torch.export program, not a .onnx file; name it",
        ),
        (
            ["export", "--checkpoint", "{tmp}/c.pt", "--out", "{tmp}/m.pt2"],
            "--format onnx writes an ONNX model, not a .pt2 file",
        ),
        (["train", "--config", "{tmp}/cfg.json", "--out", "{tmp}/cfg.json"], "is an existing file"),
        (["train", "--config", "{tmp}/list.json"], "must hold a JSON object"),
        (["train", "--config", "{tmp}/str.json"], "must hold a JSON object"),
        (["train", "--config", "{tmp}/binary.bin"], "not a UTF-8 JSON file"),
        (
            ["lut", "evaluate", "--lut", "{tmp}/binary.bin", "--run", "{tmp}"],
            "not an hwnas latency table",
        ),
        (
            ["lut", "build", "--out", "{tmp}/binary.bin", "--threads", "1"],
            "not an hwnas latency table",
        ),
        (
            ["lut", "evaluate", "--lut", "{tmp}/strlut.json", "--run", "{tmp}"],
            "entry 'k' needs a latency_ms",
        ),
        (
            ["agent", "serve", "--token-file", "{tmp}/none", "--port", "99999"],
            "--port must be 0..65535",
        ),
        (
            ["agent", "serve", "--token-file", "{tmp}/none", "--port", "-1"],
            "--port must be 0..65535",
        ),
        (
            ["measure", "{tmp}/m.onnx", "--isolate", "--timeout-s", "0"],
            "--timeout-s must be positive",
        ),
        (
            ["measure", "{tmp}/m.onnx", "--agent", "http://127.0.0.1:9", "--timeout-s", "-1"],
            "--timeout-s must be positive",
        ),
        (["profile", "--out", "{tmp}/p", "--timeout-s", "0"], "--timeout-s must be positive"),
    ],
)
def test_bad_input_is_one_error_line(args, message, tmp_path, cli) -> None:
    from hwnas.measure.lut import LUT_FORMAT

    (tmp_path / "cfg.json").write_text('{"dataset": "digits", "epochs": 1}')
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "str.json").write_text('"x"')
    (tmp_path / "binary.bin").write_bytes(b"\x08\x07\x12\x0bpytorch\xff\xfe\x00")
    lut = {"format": LUT_FORMAT, "space": SPACE, "num_classes": 10, "settings": {}}
    lut["entries"] = {"k": {"latency_ms": "1.5"}}
    (tmp_path / "strlut.json").write_text(json.dumps(lut))
    res = runner.invoke(cli, [a.replace("{tmp}", str(tmp_path)) for a in args])
    _one_error(res, message)
    assert not (tmp_path / "cfg.json").is_dir() and not list(tmp_path.glob("*.tmp"))


def test_lut_build_and_predictors_on_a_profile_without_successes(tmp_path, cli) -> None:
    run = _profile_store(tmp_path / "run", ok=0, failed=2)
    res = runner.invoke(cli, ["lut", "build", "--from-run", str(run), "--out", str(tmp_path / "l.json")])  # fmt: skip
    _one_error(res, "holds no successful measurement")
    res = runner.invoke(cli, ["predictors", "fit", "--run", str(run), "--out", str(tmp_path / "p.pkl")])  # fmt: skip
    line = _one_error(res, "holds no successful measurement (all 2 failed)")
    assert "unknown target" not in line


def test_lut_evaluate_names_a_num_classes_mismatch(tmp_path) -> None:
    from hwnas.measure.lut import LatencyLUT, evaluate_lut

    run = _profile_store(tmp_path / "run", ok=2, failed=0, num_classes=10)
    lut = LatencyLUT(SPACE, 100, {}, entries={})
    with pytest.raises(HwnasError, match="built for 100 classes.*with 10 classes"):
        evaluate_lut(lut, run)


def test_bad_checkpoints_are_not_supernet_checkpoints(tmp_path) -> None:
    import torch

    from hwnas.supernet.mbv3 import MBv3Supernet
    from hwnas.train.supernet import load_checkpoint, model_from_checkpoint

    net = MBv3Supernet(SPACE, num_classes=10, in_channels=1)
    state = net.state_dict()
    state.pop(next(iter(state)))
    with pytest.raises(HwnasError, match="weights do not fit"):
        model_from_checkpoint({"model": state, "hparams": net.hparams()})
    with pytest.raises(HwnasError, match="unknown hparams colour"):
        model_from_checkpoint({"model": {}, "hparams": {**net.hparams(), "colour": 1}})
    with pytest.raises(HwnasError, match="not a supernet checkpoint"):
        model_from_checkpoint(torch.zeros(3))  # type: ignore[arg-type]
    torch.save(torch.zeros(3), tmp_path / "t.pt")
    with pytest.raises(HwnasError, match="not a supernet checkpoint.*Tensor"):
        load_checkpoint(tmp_path / "t.pt")


def test_predictor_out_directory_refused_before_fitting_and_no_tmp_left(tmp_path, cli) -> None:
    from hwnas.predict.fitted import FittedPredictor

    (tmp_path / "x.pkl").mkdir()
    res = runner.invoke(cli, ["predictors", "fit", "--run", str(tmp_path / "none"), "--out", str(tmp_path / "x.pkl")])  # fmt: skip
    _one_error(res, "is a directory")  # not 'no results store': refused before any work
    fp = FittedPredictor(model=lambda x: x, space_name=SPACE, target="latency_ms")
    with pytest.raises(Exception, match="pickle|lambda"):  # the model cannot be pickled
        fp.save(tmp_path / "p.pkl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pkl"]


# ---- 5./6. threads above the CPU count fail fast; time-outs must be positive ---------------
def test_thread_counts_above_the_cpus_are_refused_fast(tmp_path) -> None:
    import time

    from hwnas.measure.agent import AgentClient, create_server
    from hwnas.measure.measurer import LocalMeasurer
    from hwnas.measure.worker import check_thread_counts

    too_many = MeasureSettings(intra_op_threads=(os.cpu_count() or 1) + 1, **_fast())
    with pytest.raises(HwnasError, match="exceeds the"):
        check_thread_counts(too_many)
    check_thread_counts(MeasureSettings(intra_op_threads=0))  # 0: the runtime's default
    with pytest.raises(HwnasError, match="intra_op_threads .* exceeds"):
        LocalMeasurer(too_many, isolate=True, timeout_s=60).measure([b"not onnx"])
    with create_server("127.0.0.1", 0, TOKEN, timeout_s=300.0, memory_mb=512) as server:
        server.start_background()
        t0 = time.perf_counter()
        with pytest.raises(HwnasError, match="exceeds the .* CPU"):
            AgentClient(server.url, TOKEN).measure(b"not onnx", too_many)
        assert time.perf_counter() - t0 < 30
    with pytest.raises(HwnasError, match="time-out must be positive"):
        LocalMeasurer(FAST, isolate=True, timeout_s=0)
    with pytest.raises(HwnasError, match="time-out must be positive"):
        AgentClient("http://127.0.0.1:9", TOKEN, timeout_s=-1)
    with pytest.raises(HwnasError, match="port must be 0..65535"):
        create_server("127.0.0.1", 70000, TOKEN)


def _fast() -> dict[str, int]:
    return {"warmup": 1, "rounds": 3, "repeats_per_round": 1}


# ---- 8. a fitted predictor's objective has the unit of its values -------------------------
def test_fitted_flops_predictor_objective_unit_is_flops() -> None:
    from hwnas.predict.fitted import FittedPredictor, PredictorEvaluator

    class Raw:
        def predict(self, X: np.ndarray) -> np.ndarray:
            return np.full(len(X), 3.0e8)

    fp = FittedPredictor(Raw(), SPACE, "flops", {"features": "space.cost_features"})
    ev = PredictorEvaluator(SPACE, {"flops": fp, "latency": lambda v: np.ones(len(v))})
    assert [o.unit for o in ev.objectives] == ["FLOPs", "ms"]
    assert (
        ev.evaluate(fp.space.sample(2, np.random.default_rng(0)))[0, 0] == 3.0e8
    )  # raw FLOPs, as labelled
    assert PredictorEvaluator(SPACE, {}, flops=True).objectives[0].unit == "MFLOPs"


# ---- 10. torch export: any batch size ------------------------------------------------------
def test_torch_export_has_a_dynamic_batch(tmp_path) -> None:
    import torch

    from hwnas.supernet.mbv3 import MBv3Supernet
    from hwnas.train.evaluate import export_subnet

    torch.set_num_threads(1)
    net = MBv3Supernet(SPACE, num_classes=10, in_channels=1).eval()
    ckpt = {"model": net.state_dict(), "hparams": net.hparams()}
    path = export_subnet(ckpt, "min", "torch", tmp_path / "m.pt2")
    prog = torch.export.load(str(path)).module()
    sub = net.get_subnet(net.canonical("min")).eval()
    r = net.canonical("min")["resolution"]
    with torch.no_grad():
        for n in (1, 3):
            x = torch.randn(n, 1, r, r)
            torch.testing.assert_close(prog(x), sub(x), rtol=1e-4, atol=1e-5)
