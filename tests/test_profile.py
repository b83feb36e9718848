"""The hardware-aware pipeline: profiling a space (stored, killed, resumed), per-block
latency tables, predictors fitted on measurements, and a search on a saved predictor."""

import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from hwnas.cli import app
from hwnas.errors import HwnasError
from hwnas.measure.latency import MeasureSettings
from hwnas.measure.profile import TMP_NAME
from hwnas.space.mbv3_ramnas import space_for

SPACE = "mbv3-cifar"
# tiny measurement settings: the tests check plumbing, not timing quality
FAST = dict(warmup=1, rounds=3, repeats_per_round=1)
runner = CliRunner()


@pytest.fixture(scope="module")
def space():
    return space_for(SPACE)


def _rows(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute(
            "SELECT e.seq, e.arch_key FROM evaluations e JOIN runs r ON e.run_id = r.run_id "
            "WHERE r.kind = 'profile' ORDER BY e.seq"
        ).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        con.close()


def _cli(*args):
    return [sys.executable, "-m", "hwnas.cli", *args]


# ---- sampling ---------------------------------------------------------------------------
def test_stratified_sample_spans_the_size_range(space):
    from hwnas.measure.profile import stratified_sample

    x = stratified_sample(space, 40, seed=1)
    keys = space.keys(x)
    assert len(set(keys)) == 40
    assert keys[0] == space.keys(space.smallest())[0]
    assert keys[1] == space.keys(space.largest())[0]
    macs = np.array([space.macs(v, num_classes=10) for v in x])
    lo, hi = macs[0], macs[1]
    assert macs.min() == lo and macs.max() == hi
    # every tenth of the MACs range holds some of the sample
    counts, _ = np.histogram(macs, bins=10, range=(lo, hi))
    assert counts.min() >= 2
    assert np.array_equal(stratified_sample(space, 40, seed=1), x)  # deterministic
    with pytest.raises(HwnasError):
        stratified_sample(space, 1)


# ---- profile: SIGKILL, then resume ------------------------------------------------------
def test_profile_killed_then_resumed(tmp_path, space, kill_when):
    from hwnas.measure.profile import load_profile, profile_space

    n = 6
    run_dir = tmp_path / "run"
    db = run_dir / "results.sqlite"
    args = [
        "profile", "--space", SPACE, "--samples", str(n), "--out", str(run_dir),
        "--warmup", "1", "--rounds", "3", "--repeats", "1", "--group-size", "2", "--json",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_cli(*args), env=env, stdout=subprocess.DEVNULL)
    kill_when(proc, lambda: db.exists() and len(_rows(db)) >= 2, "profile")
    before = _rows(db)
    assert 2 <= len(before) < n, "kill landed outside the profile"

    seen = []
    settings = MeasureSettings(**FAST)
    summary = profile_space(
        SPACE, n, run_dir, settings, group_size=2, progress=lambda d, t: seen.append((d, t))
    )
    after = _rows(db)
    assert len(after) == n == summary["stored"] == summary["ok"]
    assert len({k for _, k in after}) == n  # none repeated
    assert after[: len(before)] == before  # none lost, none rewritten
    assert summary["resumed_from"] == len(before)
    assert summary["measured"] == n - len(before)
    assert seen[0] == (len(before), n) and seen[-1] == (n, n)

    data = load_profile(run_dir)
    keys = [r.arch_key for r in data.records]
    assert space.keys(space.smallest())[0] in keys
    assert space.keys(space.largest())[0] in keys
    lat = data.target("latency")
    assert lat.shape == (n,) and np.all(lat > 0)
    for name in ("flops", "params", "peak_activation_bytes", "onnx_size_bytes"):
        assert np.all(data.objectives[name] > 0), name
    flops = data.objectives["flops"]
    assert flops[keys.index(space.keys(space.largest())[0])] == flops.max()
    for rec in data.records:
        stats = rec.extra["stats"]
        assert stats["rounds"] == 3 and stats["n"] == 3
        assert stats["latency_ms"] == rec.objectives["latency_raw_ms"]
        assert rec.extra["settings"]["rounds"] == 3
        assert rec.extra["host"].get("hostname")
        assert rec.extra["runtime"] == "onnxruntime"
    assert (run_dir / "profile.csv").is_file()

    # drift anchor: measured in every group, across the kill; one reference for all
    from hwnas.measure.profile import ANCHOR_KIND
    from hwnas.store.sqlite import ResultsStore

    with ResultsStore(db) as store:
        (anchor_run,) = store.runs(ANCHOR_KIND)
        anchor_recs = store.evaluations(anchor_run["run_id"])
    assert anchor_run["config"]["anchor"] == data.run["config"]["anchor"]
    assert {r.arch_key for r in anchor_recs} == {f"group-{i}" for i in range(len(anchor_recs))}
    assert len(anchor_recs) >= n // 2  # >= one per group of 2 (plus the killed group's)
    reference = anchor_recs[0].objectives["latency_ms"]
    for rec in data.records:
        ratio = rec.extra["anchor"]["ratio"]
        assert ratio > 0
        assert rec.objectives["latency_ms"] == pytest.approx(ratio * reference)

    # nothing left to do; other settings or --no-resume are refused
    again = profile_space(SPACE, n, run_dir, settings, group_size=2)
    assert again["measured"] == 0 and len(_rows(db)) == n
    with pytest.raises(
        HwnasError, match="a profile with other measurement settings: rounds 3 .now 4."
    ):
        profile_space(SPACE, n, run_dir, MeasureSettings(warmup=1, rounds=4, repeats_per_round=1))
    with pytest.raises(HwnasError, match="already holds a profile"):
        profile_space(SPACE, n, run_dir, settings, resume=False)

    # a larger --samples grows the profile: what was measured is kept, none repeated
    grown = profile_space(SPACE, n + 2, run_dir, settings, group_size=2)
    assert grown["stored"] == n + 2 and grown["measured"] == 2
    assert _rows(db)[:n] == after and len({k for _, k in _rows(db)}) == n + 2
    with pytest.raises(HwnasError, match="can grow it, not shrink it"):
        profile_space(SPACE, n, run_dir, settings, group_size=2)
    # a search's folder is not a profile's: its summary.json would be replaced
    with ResultsStore(tmp_path / "search" / "results.sqlite") as store:
        store.create_run({}, 0, kind="search")
    with pytest.raises(HwnasError, match="holds a search run in results.sqlite, not a profile"):
        profile_space(SPACE, n, tmp_path / "search", settings)
    assert not (tmp_path / "search" / "summary.json").exists()


class _StopAt:
    """A measurer that checks where the models are, runs ``stop()`` at its call ``at``
    (a kill between groups) and returns made-up measurements (no timing needed)."""

    def __init__(self, run_dir, at, stop):
        self.tmp, self.at, self.stop, self.calls = run_dir / TMP_NAME, at, stop, 0

    def measure(self, models, settings=None):
        from pathlib import Path

        from hwnas.measure.latency import Measurement, compute_stats

        assert all(Path(m).parent == self.tmp and Path(m).is_file() for m in models)
        self.calls += 1
        if self.calls == self.at:
            self.stop()
        stats = compute_stats([[0.001 * (1 + i / 10)] for i in range(3)])
        made_up = ("onnxruntime", "0", "cpu", {}, {}, {"hostname": "fake"})
        return [Measurement(str(m), stats, MeasureSettings(**FAST), *made_up) for m in models]


@pytest.fixture
def no_export(monkeypatch):
    """Subnets 'exported' as a few bytes (the tests are about groups and files)."""
    from hwnas.measure import profile

    def export(net, space, vector, path, batch_size, input_size=None):
        path.write_bytes(b"onnx")
        cost = dict(flops=2.0, macs=1.0, params=1.0, peak_activation_bytes=1.0)
        return path, {**cost, "onnx_size_bytes": 4}

    monkeypatch.setattr(profile, "export_subnet", export)


def _groups(run_dir):
    from hwnas.measure.profile import ANCHOR_KIND, PROFILE_KIND
    from hwnas.store.sqlite import ResultsStore

    with ResultsStore(run_dir / "results.sqlite") as store:
        (run,) = store.runs(PROFILE_KIND)
        (anchor,) = store.runs(ANCHOR_KIND)
        subnets = [r.extra["group"] for r in store.evaluations(run["run_id"])]
        anchors = [r.extra["group"] for r in store.evaluations(anchor["run_id"])]
        return subnets, anchors, run["status"]


def test_resumed_groups_never_reuse_a_stored_group_number(tmp_path, no_export):
    """Groups of a new session are numbered on from the highest stored one, whatever the
    group size; the temporary ONNX files live in OUT/.tmp, removed at the end."""
    from hwnas.measure.profile import profile_space

    run_dir = tmp_path / "run"

    def interrupt():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        profile_space(SPACE, 5, run_dir, group_size=1, measurer=_StopAt(run_dir, 4, interrupt))
    assert _groups(run_dir) == ([0, 1, 2], [0, 1, 2], "interrupted")
    assert not (run_dir / TMP_NAME).exists()
    (run_dir / TMP_NAME).mkdir()
    (run_dir / TMP_NAME / "subnet0.onnx").write_bytes(b"left by a SIGKILL")
    profile_space(SPACE, 5, run_dir, group_size=4, measurer=_StopAt(run_dir, 0, interrupt))
    assert _groups(run_dir) == ([0, 1, 2, 3, 3], [0, 1, 2, 3], "finished")
    assert not (run_dir / TMP_NAME).exists()


def test_profile_wall_time_adds_up_over_its_calls(tmp_path, no_export):
    """A resumed profile adds its time to the earlier calls' (a pipeline run again, with
    nothing left to measure, used to overwrite it with its own second)."""
    import time

    from hwnas.measure.profile import profile_space

    run_dir = tmp_path / "run"

    def interrupt():
        raise KeyboardInterrupt

    class _Slow(_StopAt):
        def measure(self, models, settings=None):
            time.sleep(0.2)
            return super().measure(models, settings)

    with pytest.raises(KeyboardInterrupt):
        profile_space(SPACE, 4, run_dir, group_size=1, measurer=_Slow(run_dir, 3, interrupt))
    first = json.loads((run_dir / "summary.json").read_text())["wall_time_s"]
    assert first >= 0.4
    done = profile_space(SPACE, 4, run_dir, group_size=1, measurer=_Slow(run_dir, 0, interrupt))
    assert done["wall_time_s"] >= first + 0.4 and done["measured"] == 2
    again = profile_space(SPACE, 4, run_dir, group_size=1, measurer=_Slow(run_dir, 0, interrupt))
    assert again["measured"] == 0
    assert done["wall_time_s"] <= again["wall_time_s"] < done["wall_time_s"] + 5
    assert again["seconds_per_subnet"] == done["seconds_per_subnet"]


class _Limited(_StopAt):
    """Every call with a model whose file name is in ``slow`` (or with any model, when
    ``slow`` is None) runs out of time, as an agent with a too low --timeout-s answers."""

    def __init__(self, run_dir, slow=None):
        super().__init__(run_dir, 0, lambda: None)
        self.slow = slow

    def measure(self, models, settings=None):
        from pathlib import Path

        from hwnas.measure.worker import MeasureTimeoutError

        names = {Path(m).name for m in models}
        if self.slow is None or names & self.slow:
            raise MeasureTimeoutError("measurement took longer than the time-out of 0.05 s")
        return super().measure(models, settings)


def test_a_group_that_all_runs_out_of_time_stops_the_profile(tmp_path, no_export):
    """When every subnet of a group hits the time limit the limit is at fault: nothing is
    stored and the error says what to raise; one slow subnet is stored as its failure."""
    from hwnas.measure.profile import profile_space
    from hwnas.store.sqlite import ResultsStore

    run_dir = tmp_path / "run"
    with pytest.raises(HwnasError, match="every subnet of a group of 3 hit the measurement"):
        profile_space(SPACE, 5, run_dir, group_size=3, measurer=_Limited(run_dir))
    with ResultsStore(run_dir / "results.sqlite") as store:
        (run,) = store.runs("profile")
        assert store.evaluations(run["run_id"]) == []
    summary = profile_space(
        SPACE, 5, run_dir, group_size=3, measurer=_Limited(run_dir, {"subnet1.onnx"})
    )
    assert summary["stored"] == 5 and summary["failed"] == 2  # subnet1 of both groups


def test_sigterm_ends_a_profile_cleanly(tmp_path, no_export):
    """SIGTERM: the run is marked interrupted, OUT/.tmp removed, exit status 143."""
    import signal

    from hwnas.measure.profile import profile_space

    run_dir = tmp_path / "run"

    def terminate():
        # only where the profile handles it (never SIGTERM the test process itself)
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)
        os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(SystemExit) as stopped:
        profile_space(SPACE, 4, run_dir, group_size=1, measurer=_StopAt(run_dir, 2, terminate))
    assert stopped.value.code == 143
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored
    subnets, anchors, status = _groups(run_dir)
    assert subnets == anchors == [0] and status == "interrupted"
    assert not (run_dir / TMP_NAME).exists()


def test_a_second_profile_on_a_locked_out_dir_is_refused(tmp_path, held_elsewhere):
    from hwnas.measure.profile import profile_space

    with held_elsewhere(tmp_path), pytest.raises(HwnasError, match="in use by another"):
        profile_space(SPACE, 3, tmp_path, MeasureSettings(**FAST))
    assert not (tmp_path / "results.sqlite").exists()


def test_extend_plan_fills_the_size_range(space):
    from hwnas.measure.profile import extend_plan, stratified_sample

    plan = space.keys(stratified_sample(space, 2, seed=0))  # smallest, largest
    grown = extend_plan(space, plan, 12, seed=0, num_classes=10)
    assert grown[:2] == plan and len(set(grown)) == 12
    macs = np.sort([space.macs(space.from_key(k), num_classes=10) for k in grown])
    assert np.diff(macs).max() < 0.3 * (macs[-1] - macs[0])  # no big hole left
    assert extend_plan(space, grown, 12, seed=0, num_classes=10) == grown


def test_profile_without_anchor_keeps_raw_latency(tmp_path):
    from hwnas.measure.profile import ANCHOR_KIND, load_profile, profile_space
    from hwnas.store.sqlite import ResultsStore

    run_dir = tmp_path / "raw"
    summary = profile_space(SPACE, 3, run_dir, MeasureSettings(**FAST), anchor=False)
    assert summary["ok"] == 3
    data = load_profile(run_dir)
    assert data.run["config"]["anchor"] is None
    assert np.array_equal(data.objectives["latency_ms"], data.objectives["latency_raw_ms"])
    assert all("anchor" not in r.extra for r in data.records)
    with ResultsStore(run_dir / "results.sqlite") as store:
        assert store.runs(ANCHOR_KIND) == []
    # resuming the same directory with the anchor on would mix two statistics: refused
    with pytest.raises(HwnasError, match="different anchor"):
        profile_space(SPACE, 3, run_dir, MeasureSettings(**FAST))


def test_anchor_correction_cancels_drift():
    """A model always 2x the anchor reads 2x the reference, whatever the per-round drift."""
    from types import SimpleNamespace

    from hwnas.measure.profile import AnchorCorrection

    drift = np.array([1.0, 1.3, 0.9, 1.7, 1.1])
    anchor = SimpleNamespace(stats=SimpleNamespace(round_min_ms=tuple(1.5 * drift)))
    model = SimpleNamespace(stats=SimpleNamespace(round_min_ms=tuple(3.0 * drift)))
    out = AnchorCorrection(reference_ms=1.2, group_ms=1.6).apply(model, anchor)
    assert out["ratio"] == pytest.approx(2.0)
    assert out["latency_ms"] == pytest.approx(2.4)
    assert out["ratio_cv"] == pytest.approx(0.0, abs=1e-12)
    # uncorrected, the same model would read anywhere from 3.0 to 5.1 ms
    jitter = np.array([1.0, 1.1, 0.9, 1.05, 0.95])
    model = SimpleNamespace(stats=SimpleNamespace(round_min_ms=tuple(3.0 * drift * jitter)))
    out = AnchorCorrection(reference_ms=1.2, group_ms=1.6).apply(model, anchor)
    assert out["ratio"] == pytest.approx(2.0) and out["ratio_cv"] > 0


# ---- a synthetic profile run (for the predictor tests: no timing needed) -----------------
@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory, space):
    """A profile store whose latency is a noisy, non-linear function of the subnet."""
    from hwnas.measure.profile import PROFILE_KIND, stratified_sample
    from hwnas.store.sqlite import ResultsStore

    run_dir = tmp_path_factory.mktemp("synthetic")
    x = stratified_sample(space, 80, seed=5)
    rng = np.random.default_rng(0)
    settings = MeasureSettings(**FAST).to_dict()
    with ResultsStore(run_dir / "results.sqlite") as store:
        config = {"space": SPACE, "samples": 80, "seed": 5, "num_classes": 10}
        config.update(settings=settings, device={"measurer": "local"}, plan=space.keys(x))
        run_id = store.create_run(config, 5, kind=PROFILE_KIND)
        for v, key in zip(x, space.keys(x), strict=True):
            macs = space.macs(v, num_classes=10)
            r = space.decode(v)["resolution"]
            lat = 0.3 + macs / 1e7 * (1 + 0.02 * r / 32) * rng.lognormal(0, 0.05)
            objectives = {
                "latency_ms": lat,
                "flops": 2.0 * macs,
                "macs": float(macs),
                "params": 1e5 + macs / 10,
                "peak_activation_bytes": 4.0 * r * r * 100,
                "onnx_size_bytes": 1e6,
            }
            extra = {
                "stats": {"latency_ms": lat, "robust_cv": 0.01, "unstable": False},
                "settings": settings,
                "host": {"hostname": "synthetic-host", "cpu_model": "test"},
                "runtime": "onnxruntime",
                "runtime_version": "0",
                "provider": "CPUExecutionProvider",
                "threads": {"intra_op": 1, "inter_op": 1},
            }
            store.add_evaluation(
                run_id, key, v.tolist(), objectives, arch=space.decode(v), extra=extra
            )
    return run_dir


def test_predictor_fit_save_load(synthetic_run, tmp_path, space, monkeypatch):
    from hwnas.predict.fitted import fit_on_profile, load_fitted, sidecar_path

    fitted = fit_on_profile(synthetic_run, target="latency", model="ridge", seed=0)
    meta = fitted.metadata
    assert fitted.target == "latency_ms" and fitted.space_name == SPACE
    assert meta["n_train"] == 80 and meta["n_test"] == 16 and meta["refit_on_all"]
    assert meta["host"]["hostname"] == "synthetic-host"
    assert meta["settings"]["rounds"] == 3 and meta["runtime"]["runtime"] == "onnxruntime"
    assert {"cv", "test", "flops_baseline"} <= set(meta["scores"])
    assert meta["scores"]["test"]["kendall_tau"] > 0.5
    assert -1 <= meta["scores"]["flops_baseline"]["kendall_tau"] <= 1
    assert "numpy" in meta["versions"]

    x = space.sample(7, 1)
    for name in ("p.joblib", "p.pkl"):
        path = fitted.save(tmp_path / name)
        loaded = load_fitted(path)
        np.testing.assert_allclose(loaded.predict(x), fitted.predict(x))
        assert loaded.metadata == meta
        side = json.loads(sidecar_path(path).read_text())
        assert side["space"] == SPACE and side["n_train"] == 80
    bigger = fitted.predict(np.stack([space.smallest(), space.largest()]))
    assert bigger[0] < bigger[1]
    # a model saved when the space's cost features had another width: one clear error
    wider = type(space).cost_features
    monkeypatch.setattr(
        type(space), "cost_features", lambda self, v: np.pad(wider(self, v), ((0, 0), (0, 4)))
    )
    with pytest.raises(HwnasError, match="refit it on its profile"):
        load_fitted(tmp_path / "p.pkl").predict(x)
    monkeypatch.undo()
    # a profile that cannot be written (a read-only disk): fitted, not recorded, said so
    from hwnas.store.sqlite import ResultsStore

    def read_only(*args, **kwargs):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(ResultsStore, "add_predictor_fit", read_only)
    with pytest.warns(UserWarning, match="not recorded in .* results store \\(attempt to write"):
        again = fit_on_profile(synthetic_run, target="latency", model="ridge", seed=0)
    np.testing.assert_allclose(again.predict(x), fitted.predict(x))
    for folds in (-1, 1):
        with pytest.raises(HwnasError, match=f"CV folds must be 0 \\(none\\) or >= 2, got {folds}"):
            fit_on_profile(synthetic_run, model="ridge", cv_folds=folds, record=False)
    monkeypatch.undo()

    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(HwnasError, match="cannot load"):
        load_fitted(tmp_path / "junk.pkl")
    with pytest.raises(HwnasError, match="unknown target"):
        fit_on_profile(synthetic_run, target="energy", record=False)


def test_predictors_cli_fit_and_evaluate_run(synthetic_run, tmp_path):
    out = tmp_path / "lat.joblib"
    res = runner.invoke(
        app,
        ["predictors", "fit", "--run", str(synthetic_run), "--model", "auto", "--out", str(out),
         "--cv-folds", "0", "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    meta = json.loads(res.stdout)
    assert meta["chosen"] in ("ridge", "svr", "stacked", "gp", "cart")
    assert out.is_file() and (tmp_path / "lat.joblib.json").is_file()

    res = runner.invoke(
        app,
        ["predictors", "evaluate-run", "--run", str(synthetic_run), "--models", "ridge,cart",
         "--sizes", "10,30", "--trials", "2", "--out", str(tmp_path / "curves"), "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert {(r["model"], r["size"]) for r in got["summary"]} == {
        ("ridge", 10), ("ridge", 30), ("cart", 10), ("cart", 30)
    }  # fmt: skip
    assert "flops_kendall_tau" in got["baseline"]
    assert (tmp_path / "curves" / "summary.csv").is_file()
    # a size beyond the rows is skipped with a warning (not replaced by one never asked
    # for); none fitting, or a negative test size, is an error
    from hwnas.predict.fitted import sample_efficiency_on_profile

    with pytest.warns(UserWarning, match="skipping training size 500: only 54 of the"):
        rows, _, _ = sample_efficiency_on_profile(
            synthetic_run, models=["ridge"], sizes=[10, 500], trials=1
        )
    assert {r["size"] for r in rows} == {10}
    with pytest.raises(HwnasError, match="no training size fits: 54 of the profile's 80 rows"):
        sample_efficiency_on_profile(synthetic_run, models=["ridge"], sizes=[500], trials=1)
    with pytest.raises(HwnasError, match="test size must be >= 0"):
        sample_efficiency_on_profile(synthetic_run, models=["ridge"], test_size=-4, trials=1)


def test_predictor_evaluator_drives_a_search(synthetic_run, space):
    from hwnas.predict.fitted import PredictorEvaluator, fit_on_profile
    from hwnas.registry import ALGORITHMS
    from hwnas.search.problem import SearchProblem

    fitted = fit_on_profile(synthetic_run, model="ridge", cv_folds=0, record=False)

    def accuracy(v):  # a toy accuracy that grows with the network
        return np.array([60 + 5 * np.log(space.macs(a, num_classes=10) / 1e6) for a in v])

    ev = PredictorEvaluator(space, {"latency": fitted, "accuracy": accuracy}, flops=True)
    assert [o.name for o in ev.objectives] == ["latency", "accuracy", "flops"]
    assert [o.direction for o in ev.objectives] == ["min", "max", "min"]
    assert ev.evaluate(space.sample(3, 0)).shape == (3, 3)
    problem = SearchProblem(ev, budget=40, exact_front=False)
    ALGORITHMS.get("nsga2")(seed=0).run(problem)
    assert problem.n_evaluated == 40
    _, raw = problem.evaluated_arrays()
    assert raw.shape == (40, 3) and np.all(np.isfinite(raw))
    assert len(problem.front_indices()) >= 2
    with pytest.raises(HwnasError, match="fitted on"):
        PredictorEvaluator("mbv3-ramnas", {"latency": fitted})


# ---- lookup tables ----------------------------------------------------------------------
def test_lut_blocks_match_the_extracted_subnets(space):
    from hwnas.measure.cost import count_params
    from hwnas.measure.lut import all_blocks, arch_blocks, block_module
    from hwnas.supernet.mbv3 import MBv3Supernet

    net = MBv3Supernet(space, num_classes=10).eval()
    cut = MBv3Supernet(space, num_classes=10).eval()
    every = {b.key for b in all_blocks(space)}
    assert len(every) > 100
    for v in [space.smallest(), space.largest(), *space.sample(4, 2)]:
        blocks = arch_blocks(space, v)
        assert blocks[0].kind == "stem" and blocks[-1].kind == "head"
        assert {b.key for b in blocks} <= every
        assert sum(count_params(block_module(cut, b)) for b in blocks) == count_params(
            net.get_subnet(v)
        )


def test_lut_build_predict_and_evaluate(tmp_path, space, synthetic_run):
    from hwnas.measure.lut import LatencyLUT, all_blocks, build_lut, evaluate_lut

    big = space.largest()
    cfg = space.decode(big)
    cfg["stages"][4]["depth"] = 3  # a strict sub-network: same blocks, fewer of them
    cfg["stages"][4]["kernel"] = cfg["stages"][4]["kernel"][:3]
    cfg["stages"][4]["expand"] = cfg["stages"][4]["expand"][:3]
    shallower = space.encode(cfg)
    out = tmp_path / "lut.json"
    lut = build_lut(SPACE, MeasureSettings(**FAST), vectors=big[None, :], out=out, group_size=32)
    assert len(lut) == len({b for b in lut.keys_of(big)[0]})
    assert all(e["latency_ms"] > 0 for e in lut.entries.values())
    pred = lut.predict(np.stack([big, shallower]))
    assert np.all(pred > 0) and pred[1] < pred[0]

    loaded = LatencyLUT.load(out)
    np.testing.assert_allclose(loaded.predict(big[None, :]), pred[:1])
    np.testing.assert_allclose(loaded.predict("max"), pred[:1])  # a name or config too
    np.testing.assert_allclose(loaded.predict(cfg), pred[1:])
    for bad, msg in (([[0] * 5], "must have"), ([[0.7] * space.n_dims], "integers")):
        with pytest.raises(HwnasError, match=msg):  # not an IndexError, nor truncated
            loaded.predict(np.array(bad))
    with pytest.raises(HwnasError, match="lacks block"):
        loaded.predict(space.smallest()[None, :])
    assert np.isnan(loaded.predict(space.smallest()[None, :], strict=False)[0])
    again = build_lut(SPACE, MeasureSettings(**FAST), vectors=big[None, :], out=out)
    assert again.entries == lut.entries  # nothing measured twice

    # evaluation against a profile run: a table that sums block FLOPs-like numbers
    fake = LatencyLUT(SPACE, 10, {}, entries={})
    for b in all_blocks(space):
        fake.entries[b.key] = {"latency_ms": 1e-7 * b.h * b.h * b.cin * b.cout * b.expand}
    res = evaluate_lut(fake, synthetic_run)
    assert res["n"] == 80 and res["n_missing"] == 0
    assert 0 < res["kendall_tau"] <= 1 and "flops_kendall_tau" in res
    # the CLI: a table that covers few of the measured networks says so
    from collections import Counter

    from hwnas.measure.profile import load_profile

    vecs = np.stack([space.from_key(r.arch_key) for r in load_profile(synthetic_run).records])
    per_net = [set(keys) for keys in fake.keys_of(vecs)]
    uses = Counter(k for keys in per_net for k in keys)
    drop: set[str] = set()  # blocks of most networks (not all): fewer than half covered
    for k, n in uses.most_common():
        if n < len(vecs) and sum(bool(keys & drop) for keys in per_net) <= len(vecs) // 2:
            drop.add(k)
    settings = MeasureSettings(**FAST).to_dict()
    half = LatencyLUT(
        SPACE, 10, settings, entries={k: v for k, v in fake.entries.items() if k not in drop}
    )
    half.save(tmp_path / "half.json")
    args = ["lut", "evaluate", "--lut", str(tmp_path / "half.json"), "--run", str(synthetic_run)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0 and "so these scores rest on few of them" in r.stderr, r.output
    # the options to extend it with are spelt out, not alluded to
    flags = "--batch-size 1 --threads 1 --warmup 1 --rounds 3 --repeats 1 --seed 0'"
    assert flags in " ".join(r.stderr.split())
    fake.save(tmp_path / "all.json")  # covers every network: no warning
    r = CliRunner().invoke(app, [*args[:3], str(tmp_path / "all.json"), *args[4:]])
    assert r.exit_code == 0 and "warning" not in r.stderr
    # the sums are said to rank networks, not to be their latency
    assert "note: block sums rank networks (kendall_tau) but are not their latency" in " ".join(
        r.stdout.split()
    )
    # networks whose inputs the blocks do not take, or another head: refused
    from hwnas.measure.lut import check_profile_networks

    check_profile_networks({"in_channels": 3}, "p")
    with pytest.raises(HwnasError, match="p measured networks with in_channels=1, input_size=8"):
        check_profile_networks({"in_channels": 1, "input_size": 8}, "p")
    fake.num_classes = 100
    with pytest.raises(HwnasError, match="build the table with --num-classes 10"):
        evaluate_lut(fake, synthetic_run)


def test_published_tables(data_dir):
    from hwnas.measure.lut import (
        _parse_simple_yaml,
        ofa_note10_arrays,
        ofa_note10_latency,
        proxylessnas_block_key,
        read_proxylessnas_lut,
        table_sum,
    )
    from hwnas.space.ofa_mbv3 import OFAMobileNetV3Space

    table = read_proxylessnas_lut()
    assert len(table) == 72
    assert table == _parse_simple_yaml(
        (data_dir / "ofa" / "proxylessnas_mobile_trim_lut.yaml").read_text()
    )
    key = proxylessnas_block_key(112, 16, 24, 3, 3, 2)
    assert table_sum(table, [key]) == pytest.approx(6.240567073170731)
    fixed, per_slot = ofa_note10_arrays()
    assert fixed.shape[0] == per_slot.shape[0] == 5
    lat = ofa_note10_latency(OFAMobileNetV3Space().sample(4, 0))
    assert lat.shape == (4,) and np.all(lat > 0)


# ---- CLI errors: one line, exit 2 -------------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (["profile", "--samples", "1", "--out", "{tmp}"], "--samples must be >= 2"),
        (["profile", "--space", "nb201", "--out", "{tmp}"], "unknown space 'nb201'"),
        (["profile", "--runtime", "torch", "--out", "{tmp}"], "runtime 'torch'"),
        (["profile", "--agent", "http://x", "--out", "{tmp}"], "--agent needs --token-file"),
        (["profile", "--rounds", "0", "--out", "{tmp}"], "rounds"),
        (["predictors", "fit", "--run", "{tmp}", "--out", "{tmp}/p.txt"], ".joblib or .pkl"),
        (["predictors", "fit", "--run", "{tmp}", "--out", "{tmp}/p.pkl"], "no results store"),
        (["predictors", "evaluate-run", "--run", "{tmp}"], "no results store"),
        (["lut", "evaluate", "--lut", "{tmp}/none.json", "--run", "{tmp}"], "not found"),
        (["lut", "build", "--space", "x", "--out", "{tmp}/l.json"], "unknown space"),
    ],
)
def test_cli_bad_input_one_line_exit_2(args, message, tmp_path):
    res = runner.invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_cli_bad_input_real_process(tmp_path):
    done = subprocess.run(
        _cli("profile", "--samples", "1", "--out", str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: --samples must be >= 2, got 1"]


def test_profile_through_a_live_agent_on_loopback(tmp_path):
    """`hwnas profile --agent URL`: the same profile, measured by a real agent server."""
    from hwnas.measure.agent import AgentClient, create_server
    from hwnas.measure.measurer import RemoteMeasurer
    from hwnas.measure.profile import load_profile, profile_space

    token = "t" * 32
    server = create_server("127.0.0.1", 0, token, timeout_s=120.0)
    server.start_background()
    try:
        settings = MeasureSettings(**FAST)
        measurer = RemoteMeasurer(AgentClient(server.url, token), settings)
        run_dir = tmp_path / "remote"
        summary = profile_space(SPACE, 3, run_dir, settings, measurer=measurer, group_size=3)
    finally:
        server.close()
    assert summary["ok"] == 3 and summary["failed"] == 0
    data = load_profile(run_dir)
    assert data.run["config"]["device"] != "local"
    assert np.all(data.target("latency") > 0)
    for rec in data.records:
        assert rec.extra["measured_by"].startswith("agent http://127.0.0.1:")
        assert rec.extra["anchor"]["ratio"] > 0
