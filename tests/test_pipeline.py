"""The whole pipeline at tiny scale (real training steps, real ONNX export, real latency
measurement), its resume, and the supernet benchmark it searches on."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hwnas.errors import HwnasError

TINY = {
    "train": {"epochs": 1, "steps_per_epoch": 2, "limit": 300},
    "profile_samples": 5,
    "evaluations": 6,
    "threads": 2,
}


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One tiny pipeline through the CLI, shared by the tests that only read it."""
    from hwnas.cli import main

    root = tmp_path_factory.mktemp("pipeline")
    cfg = root / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    out = root / "run"
    main(["pipeline", "--config", str(cfg), "--out", str(out), "--export", "onnx,torch"])
    return out, json.loads((out / "summary.json").read_text())


def test_pipeline_writes_every_stage_and_the_report(pipeline_run: tuple[Path, dict]) -> None:
    out, summary = pipeline_run
    for rel in (
        "supernet/checkpoint.pt",
        "profile/results.sqlite",
        "predictor/latency.joblib",
        "search/summary.json",
        "search/pareto.png",
        "front/front.csv",
        "front.png",
        "report.md",
        "timings.json",
    ):
        assert (out / rel).is_file(), rel
    assert summary["profile"]["stored"] == 5
    assert summary["search"]["evaluations"] == 6
    assert summary["predictor"]["n_train"] == 5
    assert set(summary["timings_s"]) >= {"train", "profile", "predictor", "search", "front"}
    assert summary["front"], "the search's front is tested, exported and measured"
    report = (out / "report.md").read_text()
    for row in summary["shipped"]:
        assert row["onnx"] in report
        assert (out / "front" / row["onnx"]).is_file()
        assert (out / "front" / row["torch"]).is_file()  # --export onnx,torch


def test_front_is_measured_and_the_shipped_set_is_non_dominated_on_measured_latency(
    pipeline_run: tuple[Path, dict],
) -> None:
    from hwnas.search.pareto import non_dominated_mask

    _, summary = pipeline_run
    front = summary["front"]
    assert all(r["measured_latency_ms"] > 0 for r in front)
    search_front = json.loads((pipeline_run[0] / "search" / "summary.json").read_text())
    assert {r["arch_key"] for r in front} == {p["arch_key"] for p in search_front["pareto"]}
    assert summary["shipped"] == [r for r in front if r["on_front"]]
    drift = summary["front_latency_agreement"]["drift"]
    assert drift is not None and drift > 0  # the profile's anchor measured again
    for r in front:  # constraints and the shipped set: / drift only where it is > 1
        assert r["latency_at_profile_ms"] == pytest.approx(r["measured_latency_ms"] / r["drift"])
        assert r["latency_ms"] == pytest.approx(r["measured_latency_ms"] / max(r["drift"], 1))
    F = np.array([[-r["val_top1"], r["latency_ms"]] for r in front])
    assert [r["on_front"] for r in front] == list(non_dominated_mask(F))


def test_exported_onnx_models_are_the_networks_that_were_tested(
    pipeline_run: tuple[Path, dict],
) -> None:
    """Each ONNX file, run by ONNX Runtime on the test split, scores the test accuracy the
    report gives: BN recalibration and the input resize are inside the exported model."""
    import onnxruntime as ort
    import torch

    from hwnas.train.evaluate import checkpoint_data
    from hwnas.train.supernet import load_checkpoint, model_from_checkpoint

    out, summary = pipeline_run
    ckpt = load_checkpoint(out / "supernet" / "checkpoint.pt")
    data = checkpoint_data(ckpt, model_from_checkpoint(ckpt))
    x, y = data.split("test")
    x = x.to(memory_format=torch.contiguous_format).numpy()
    for row in summary["front"]:
        sess = ort.InferenceSession(str(out / "front" / row["onnx"]))
        meta = sess.get_modelmeta().custom_metadata_map  # what a deployment needs to know
        assert json.loads(meta["hwnas.preprocess"])["mean"] == list(data.mean)
        sub = json.loads(meta["hwnas.subnet"])
        assert row["resolution"] == sub["resolution"] and meta["hwnas.space"] == "mbv3-cifar"
        name = sess.get_inputs()[0].name
        logits = sess.run(None, {name: x})[0]
        top1 = 100.0 * float(np.mean(logits.argmax(1) == y.numpy()))
        assert abs(top1 - row["test_top1"]) <= 100.0 / len(y) + 1e-9, row["onnx"]


def test_pipeline_run_again_resumes_and_a_larger_budget_searches_on(
    pipeline_run: tuple[Path, dict], tmp_path: Path
) -> None:
    from hwnas.pipeline import run_pipeline

    out = tmp_path / "run"
    shutil.copytree(pipeline_run[0], out)
    # a copy: the search stored the original directory's checkpoint and predictor paths
    onnx = sorted((out / "front").glob("*.onnx"))
    stamps = {p: p.stat().st_mtime_ns for p in onnx}
    from hwnas.store.sqlite import ResultsStore

    def fits() -> int:
        with ResultsStore(out / "profile" / "results.sqlite") as store:
            return len(store.predictor_fits())

    timings, n_fits = json.loads((out / "timings.json").read_text()), fits()
    predictor = (out / "predictor" / "latency.joblib").stat().st_mtime_ns
    # where the data is may change (digits needs none; a moved data dir must not block)
    again = run_pipeline(TINY | {"export_formats": ["onnx", "torch"], "data_dir": "/x"}, out)
    assert again["search"]["evaluations"] == 6
    assert again["profile"]["stored"] == 5
    assert {p: p.stat().st_mtime_ns for p in onnx} == stamps  # nothing exported again
    # nothing done again: no refit, no time added, the profile's own time kept
    assert fits() == n_fits
    assert (out / "predictor" / "latency.joblib").stat().st_mtime_ns == predictor
    assert json.loads((out / "timings.json").read_text()) == timings
    assert {k: again["timings_s"][k] for k in timings} == timings
    more = run_pipeline(TINY | {"evaluations": 9, "export_formats": ["onnx", "torch"]}, out)
    assert more["search"]["evaluations"] == 9
    # a fixed reference point: a longer search never has a smaller hypervolume
    assert more["search"]["reference_point"] == again["search"]["reference_point"]
    assert more["search"]["hypervolume"] >= again["search"]["hypervolume"] > 0
    files = {p.name for p in (out / "front").iterdir() if p.suffix in (".onnx", ".pt2")}
    assert files == {r[k] for r in more["front"] for k in ("onnx", "torch")}  # no stale ones
    # those of networks no longer on the front (perhaps shipped already) are moved aside
    dropped = {p.name for p in onnx} - files
    assert dropped == {p.name for p in (out / "front" / "superseded").glob("*.onnx")}
    stored = json.loads((out / "search" / "summary.json").read_text())["benchmark_options"]
    assert stored["checkpoint"] == str((out / "supernet" / "checkpoint.pt").resolve())
    with open(out / "search" / "evaluations.csv") as f:
        keys = [r["arch_key"] for r in csv.DictReader(f)]
    assert len(keys) == len(set(keys)) == 9


def test_pipeline_reuses_a_trained_supernet(
    pipeline_run: tuple[Path, dict], tmp_path: Path
) -> None:
    """Train once, then profile and search for another device: --supernet takes a
    finished training (a pipeline run here) instead of training, with its settings."""
    import torch

    from hwnas.pipeline import run_pipeline

    src, first = pipeline_run
    cfg = {k: v for k, v in TINY.items() if k != "train"} | {"supernet": str(src), "seed": 1}
    out = tmp_path / "b"
    s = run_pipeline(cfg, out)
    src_ckpt = src / "supernet" / "checkpoint.pt"
    assert (out / "supernet" / "checkpoint.pt").read_bytes() == src_ckpt.read_bytes()
    assert s["supernet"]["reused_from"] == str(src)
    assert s["supernet"]["final_epoch"] == first["supernet"]["final_epoch"]  # not trained
    assert s["supernet"]["dataset"] == "digits" and s["search"]["evaluations"] == 6
    assert (out / "supernet" / "training.png").is_file()
    assert f"Reused from `{src}`" in (out / "report.md").read_text()
    assert run_pipeline(cfg, out)["search"]["evaluations"] == 6  # run again: resumes
    # that the run goes on from its own copy once the source is gone: the warm-start test

    with pytest.raises(HwnasError, match="training settings come with the reused supernet"):
        run_pipeline(cfg | {"train": {"epochs": 3}}, tmp_path / "c")
    with pytest.raises(HwnasError, match="no supernet checkpoint at"):
        run_pipeline(cfg | {"supernet": str(tmp_path / "nothing")}, tmp_path / "c")
    ckpt = torch.load(src_ckpt, weights_only=False)
    ckpt["train_config"]["epochs"] = 4  # as if killed after its first epoch
    (tmp_path / "half").mkdir()
    torch.save(ckpt, tmp_path / "half" / "checkpoint.pt")
    with pytest.raises(HwnasError, match="trained for 1 of 4 epochs: finish it first"):
        run_pipeline(cfg | {"supernet": str(tmp_path / "half")}, tmp_path / "c")
    assert not (tmp_path / "c").exists()  # refused before anything is written


def test_pipeline_warm_starts_from_another_runs_front(
    pipeline_run: tuple[Path, dict], tmp_path: Path
) -> None:
    """--warm-start: another pipeline run's front (its search's pareto.csv) is evaluated
    first and counted in the budget; checked before any work; a resumed run replays it."""
    import csv

    from hwnas.pipeline import run_pipeline

    src, _ = pipeline_run
    with (src / "search" / "pareto.csv").open() as f:
        keys = list(dict.fromkeys(r["arch_key"] for r in csv.DictReader(f)))
    moved = shutil.copytree(src, tmp_path / "src")
    cfg = {k: v for k, v in TINY.items() if k != "train"}
    cfg |= {"supernet": str(moved), "warm_start": str(moved), "seed": 2}
    cfg["evaluations"] = len(keys) + 2
    s = run_pipeline(cfg, tmp_path / "w")
    assert s["search"]["warm_start"] == len(keys) and s["search"]["evaluations"] == len(keys) + 2
    with (tmp_path / "w" / "search" / "evaluations.csv").open() as f:
        first = [r["arch_key"] for r in csv.DictReader(f)][: len(keys)]
    assert sorted(first) == sorted(keys)
    assert f"from `{moved}` (warm start)" in (tmp_path / "w" / "report.md").read_text()
    assert s["supernet"]["reused_from"] == str(moved)
    # resumed with more evaluations once the source is gone: the store replays the warm
    # start, and the run's own copy of the supernet is what counts
    shutil.rmtree(moved)
    more = run_pipeline(cfg | {"evaluations": len(keys) + 3}, tmp_path / "w")
    assert more["search"]["evaluations"] == len(keys) + 3

    base = {k: v for k, v in TINY.items() if k != "train"} | {"supernet": str(src)}
    (tmp_path / "other.csv").write_text("arch_key\n0-1-2-3-4-0\n")
    with pytest.raises(HwnasError, match="'0-1-2-3-4-0' is no architecture of mbv3-cifar"):
        run_pipeline(base | {"warm_start": str(tmp_path / "other.csv")}, tmp_path / "x")
    every = str(src / "search" / "evaluations.csv")  # the 6 subnets that search evaluated
    with pytest.raises(HwnasError, match="holds 6 distinct .* budget of 2 evaluations"):
        run_pipeline(base | {"warm_start": every, "evaluations": 2}, tmp_path / "x")
    with pytest.raises(HwnasError, match="neither a search directory nor a CSV"):
        run_pipeline(base | {"warm_start": str(tmp_path / "none")}, tmp_path / "x")
    assert not (tmp_path / "x").exists()  # refused before anything is written


def test_pipeline_paths_compare_as_absolute(tmp_path: Path, monkeypatch) -> None:
    """--supernet and --warm-start name files: 'a' from one directory and its absolute
    path are the same run; a config stored before paths were made absolute still matches."""
    from hwnas.pipeline import CONFIG_NAME, PipelineConfig, _check_same_config

    monkeypatch.chdir(tmp_path)
    cfg = PipelineConfig(supernet="a", warm_start="~/b")
    assert cfg.supernet == str(tmp_path / "a")
    assert cfg.warm_start == os.path.join(os.path.expanduser("~"), "b")
    out = tmp_path / "run"
    out.mkdir()
    (out / CONFIG_NAME).write_text(json.dumps({**cfg.model_dump(), "supernet": "a"}))
    _check_same_config(out, PipelineConfig(supernet=str(tmp_path / "a"), warm_start="~/b"))
    with pytest.raises(HwnasError, match="warm_start"):
        _check_same_config(out, PipelineConfig(supernet="a", warm_start="c"))
    # stored absolute, so the report's command repeats the run from anywhere
    cfg = PipelineConfig(agent="http://h:1", token_file="tok", data_dir="data")
    assert (cfg.token_file, cfg.data_dir) == (str(tmp_path / "tok"), str(tmp_path / "data"))


def test_pipeline_training_settings_at_their_default_are_the_same_run(tmp_path: Path) -> None:
    """A --config that spells out a default training setting (dataset digits) continues
    the run made without it; another value is another run."""
    from hwnas.pipeline import CONFIG_NAME, PipelineConfig, _check_same_config

    out = tmp_path / "run"
    out.mkdir()
    (out / CONFIG_NAME).write_text(json.dumps(PipelineConfig(train={"epochs": 1}).model_dump()))
    _check_same_config(out, PipelineConfig(train={"dataset": "digits", "epochs": 1}))
    _check_same_config(out, PipelineConfig(train={"epochs": 1, "lr": 0.1}))  # TrainConfig's
    with pytest.raises(HwnasError, match='train {"epochs": 1} .now {"epochs": 2}'):
        _check_same_config(out, PipelineConfig(train={"dataset": "digits", "epochs": 2}))


def test_pipeline_refuses_another_config_in_the_same_directory(
    pipeline_run: tuple[Path, dict], tmp_path: Path
) -> None:
    from hwnas.pipeline import run_pipeline

    out = tmp_path / "run"
    shutil.copytree(pipeline_run[0], out)
    with pytest.raises(HwnasError, match="profile_samples 5 \\(now 6\\)") as err:
        run_pipeline(TINY | {"profile_samples": 6, "export_formats": ["onnx", "torch"]}, out)
    assert f"with --supernet {out} a new --out starts from its trained supernet" in str(err.value)
    with pytest.raises(HwnasError, match="epochs") as err:  # another training: no reuse
        run_pipeline(TINY | {"train": {"epochs": 2}}, out)
    assert "--supernet" not in str(err.value)
    with pytest.raises(HwnasError, match="can raise it, not lower it"):
        run_pipeline(TINY | {"evaluations": 5, "export_formats": ["onnx", "torch"]}, out)


def test_pipeline_config_errors_are_one_line(tmp_path: Path) -> None:
    from hwnas.pipeline import run_pipeline

    with pytest.raises(HwnasError, match="train.seed is set by the pipeline"):
        run_pipeline({"train": {"seed": 3}}, tmp_path / "a")
    with pytest.raises(HwnasError, match="bad pipeline config: evaluations"):
        run_pipeline({"evaluations": 0}, tmp_path / "b")
    with pytest.raises(HwnasError, match="bad pipeline config: nope"):
        run_pipeline({"nope": 1}, tmp_path / "c")
    with pytest.raises(HwnasError, match="bad training config"):
        run_pipeline({"train": {"epochs": 0}}, tmp_path / "d")
    with pytest.raises(HwnasError, match="unknown dataset 'cifar11'"):
        run_pipeline({"train": {"dataset": "cifar11"}}, tmp_path / "e")
    with pytest.raises(HwnasError, match="unknown algorithm"):
        run_pipeline({"algorithm": "nsga9"}, tmp_path / "f")
    with pytest.raises(HwnasError, match="unknown predictor"):
        run_pipeline({"predictor": "xgb"}, tmp_path / "g")
    with pytest.raises(HwnasError, match="constrains accuracy .*, mflops .*, params"):
        run_pipeline({"constraints": ["energy<=3"]}, tmp_path / "h")
    with pytest.raises(HwnasError, match="no subnet of mbv3-cifar meets it on this data"):
        run_pipeline({"constraints": ["params<=1000"]}, tmp_path / "h")
    with pytest.raises(HwnasError, match=r"mflops from [\d.]+ to [\d.]+"):
        run_pipeline({"constraints": ["mflops>=1e9"]}, tmp_path / "h")
    with pytest.raises(HwnasError, match="no subnet meets it .latency is a positive time"):
        run_pipeline({"constraints": ["latency<=0"]}, tmp_path / "h")
    with pytest.raises(HwnasError, match=r"accuracy is 0..100 %"):
        run_pipeline({"constraints": ["accuracy>=101"]}, tmp_path / "h")
    with pytest.raises(HwnasError, match="not found in data dir"):
        run_pipeline(
            {"train": {"dataset": "mnist"}, "data_dir": str(tmp_path / "no")}, tmp_path / "i"
        )
    with pytest.raises(HwnasError, match="does not exist"):
        run_pipeline({"train": {"dataset": f"folder:{tmp_path / 'no'}"}}, tmp_path / "j")
    # more measuring threads than CPUs: refused before training, not after it (the run
    # folder would keep the setting)
    with pytest.raises(HwnasError, match=r"measure_threads 999 exceeds the \d+ CPU"):
        run_pipeline({"measure_threads": 999}, tmp_path / "k")
    assert not any(tmp_path.iterdir())  # checked before anything is written
    from typer.testing import CliRunner

    from hwnas.cli import app

    for train in ("5", '"x"'):
        (tmp_path / "c.json").write_text(f'{{"train": {train}}}')
        r = CliRunner().invoke(app, ["run", "--config", str(tmp_path / "c.json")])
        assert r.exit_code == 2 and "train must be an object of training settings" in r.stderr
    (tmp_path / "c.json").write_text("[1]")
    r = CliRunner().invoke(app, ["run", "--config", str(tmp_path / "c.json")])
    assert "must hold a JSON object of pipeline settings" in r.stderr


def test_run_is_the_pipeline(tmp_path: Path) -> None:
    """The main job (README quick start) is the pipeline, with its own default --out."""
    from typer.testing import CliRunner

    from hwnas.cli import app

    res = CliRunner().invoke(app, ["run", "--help"], terminal_width=200)
    assert res.exit_code == 0
    assert "The main job: supernet, device profile, latency predictor, search" in res.output
    assert "runs/default" in res.output


def test_cli_pipeline_bad_flags_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hwnas.cli", "pipeline", "--out", str(tmp_path / "x"),
         "--export", "tflite"],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --export takes onnx, torch or onnx,torch; got 'tflite'"
    ]


# ---- the supernet benchmark ------------------------------------------------------------
def test_supernet_benchmark_measures_accuracy_and_predicts_latency(
    pipeline_run: tuple[Path, dict],
) -> None:
    from hwnas.bench import get_benchmark
    from hwnas.train.evaluate import checkpoint_data
    from hwnas.train.supernet import evaluate_config, load_checkpoint, model_from_checkpoint

    out, _ = pipeline_run
    ckpt_path = out / "supernet" / "checkpoint.pt"
    bench = get_benchmark(
        "supernet", checkpoint=str(ckpt_path), latency=str(out / "predictor" / "latency.joblib")
    )
    assert [o.name for o in bench.objectives] == ["accuracy", "latency"]
    largest = bench.space.largest()[None, :]
    expected = 1.1 * bench.latency_predictor.predict(largest)[0]
    assert bench.reference_point() == pytest.approx([0.0, expected])
    v = bench.space.sample(2, np.random.default_rng(1))
    F = bench.evaluate(v)
    ckpt = load_checkpoint(ckpt_path)
    model = model_from_checkpoint(ckpt)
    data = checkpoint_data(ckpt, model)
    for row, vec in zip(F, v, strict=True):
        acc = evaluate_config(model, bench.space.decode(vec), data, "val", 4, 256)
        assert row[0] == pytest.approx(100 * acc)
    assert np.all(F[:, 1] > 0)
    flops = get_benchmark("supernet", checkpoint=str(ckpt_path))
    assert [o.name for o in flops.objectives] == ["accuracy", "mflops"]
    assert flops.evaluate(v)[:, 1] == pytest.approx(flops.mflops(v))


def test_supernet_benchmark_errors(pipeline_run: tuple[Path, dict], tmp_path: Path) -> None:
    from hwnas.bench import get_benchmark

    out, _ = pipeline_run
    ckpt = str(out / "supernet" / "checkpoint.pt")
    with pytest.raises(HwnasError, match="needs the option checkpoint=PATH"):
        get_benchmark("supernet")
    with pytest.raises(HwnasError, match="checkpoint not found"):
        get_benchmark("supernet", checkpoint=str(tmp_path / "none.pt"))
    with pytest.raises(HwnasError, match="split must be one of"):
        get_benchmark("supernet", checkpoint=ckpt, split="dev")
    with pytest.raises(HwnasError, match="needs a latency predictor or flops=true"):
        get_benchmark("supernet", checkpoint=ckpt, flops=False)
    bench = get_benchmark("supernet", checkpoint=ckpt)
    with pytest.raises(HwnasError):
        bench.evaluate(np.full((1, bench.space.n_dims), 99))
    # a predictor fitted on networks of another input than the supernet's is warned of
    import warnings

    from hwnas.predict.fitted import load_fitted

    lat = out / "predictor" / "latency.joblib"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the pipeline's own predictor: its networks
        get_benchmark("supernet", checkpoint=str(out / "supernet"), latency=str(lat))  # a run dir
    pred = load_fitted(lat)
    assert pred.metadata["networks"] == {"in_channels": 1, "input_size": 8, "num_classes": 10}
    pred.metadata["networks"] = {**pred.metadata["networks"], "in_channels": 3}
    other = pred.save(tmp_path / "other.joblib")
    with pytest.warns(UserWarning, match="in_channels 3, the supernet deploys in_channels 1"):
        get_benchmark("supernet", checkpoint=ckpt, latency=str(other))


def test_cli_search_on_a_supernet_with_bench_options(
    pipeline_run: tuple[Path, dict], tmp_path: Path
) -> None:
    out, _ = pipeline_run
    run = tmp_path / "s"
    proc = subprocess.run(
        [sys.executable, "-m", "hwnas.cli", "search", "--benchmark", "supernet",
         "--bench-option", f"checkpoint={out / 'supernet' / 'checkpoint.pt'}",
         "--bench-option", f"latency={out / 'predictor' / 'latency.joblib'}",
         "--algorithm", "random", "--evaluations", "3", "--out", str(run), "--json"],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["evaluations"] == 3
    assert [o["name"] for o in summary["objectives"]] == ["accuracy", "latency"]
    proc = subprocess.run(
        [sys.executable, "-m", "hwnas.cli", "search", "--benchmark", "supernet",
         "--bench-option", "devices=x", "--out", str(tmp_path / "t")],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "give devices by --device, not --bench-option" in proc.stderr


def test_profile_shapes_subnets_with_the_supernets_input_channels(tmp_path: Path) -> None:
    import onnx

    from hwnas.measure.latency import MeasureSettings
    from hwnas.measure.profile import export_subnet, profile_space
    from hwnas.space.mbv3_ramnas import space_for
    from hwnas.supernet.mbv3 import MBv3Supernet

    space = space_for("mbv3-cifar")
    net = MBv3Supernet(space, 10, in_channels=1).eval()
    path, _ = export_subnet(net, space, space.smallest(), tmp_path / "s.onnx", 1)
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert dims[1].dim_value == 1
    # the deployed network of 8x8 images resizes them inside: measured that way
    path, _ = export_subnet(net, space, space.smallest(), tmp_path / "r.onnx", 1, input_size=8)
    graph = onnx.load(str(path)).graph
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim[1:]] == [1, 8, 8]
    assert "Resize" in {n.op_type for n in graph.node}
    fast = MeasureSettings(warmup=1, rounds=3, repeats_per_round=1)
    summary = profile_space("mbv3-cifar", 2, tmp_path / "p", fast, in_channels=1, anchor=False)
    assert summary["stored"] == 2
    with pytest.raises(HwnasError, match="different in_channels"):
        profile_space("mbv3-cifar", 2, tmp_path / "p", fast, in_channels=3, anchor=False)
    with pytest.raises(HwnasError, match="in_channels must be an integer"):
        profile_space("mbv3-cifar", 2, tmp_path / "q", fast, in_channels=0)


def test_cli_profile_takes_the_deployed_networks_classes_and_channels(tmp_path: Path) -> None:
    from hwnas.store.sqlite import ResultsStore

    out = tmp_path / "p"
    proc = subprocess.run(
        [sys.executable, "-m", "hwnas.cli", "profile", "--samples", "2", "--in-channels", "1",
         "--num-classes", "17", "--input-size", "8", "--warmup", "1", "--rounds", "3",
         "--repeats", "1",
         "--no-anchor", "--out", str(out), "--json"],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with ResultsStore(out / "results.sqlite") as store:
        config = store.runs("profile")[-1]["config"]
    assert (config["in_channels"], config["num_classes"], config["input_size"]) == (1, 17, 8)


def test_pipeline_killed_in_its_search_continues_without_losing_or_repeating(
    pipeline_run: tuple[Path, dict], tmp_path: Path, kill_when
) -> None:
    """SIGKILL in the middle of the search stage; the same command again finishes the
    budget with every stored evaluation kept and none repeated."""
    import sqlite3

    from hwnas.pipeline import run_pipeline

    out = tmp_path / "run"
    shutil.copytree(pipeline_run[0], out)
    shutil.rmtree(out / "search")  # trained and profiled; the search starts afresh
    shutil.rmtree(out / "front")
    config = TINY | {"evaluations": 12, "export_formats": ["onnx", "torch"]}  # the budget alone
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(config))
    proc = subprocess.Popen(
        [sys.executable, "-m", "hwnas.cli", "pipeline", "--config", str(cfg), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def stored() -> int:
        db = out / "search" / "results.sqlite"
        if not db.is_file():
            return 0
        try:
            with sqlite3.connect(db) as con:
                return con.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
        except sqlite3.Error:
            return 0

    kill_when(proc, lambda: stored() >= 3, "the pipeline")
    killed_at = stored()
    assert 3 <= killed_at < 12
    summary = run_pipeline(config, out)
    assert summary["search"]["evaluations"] == 12
    with open(out / "search" / "evaluations.csv") as f:
        keys = [r["arch_key"] for r in csv.DictReader(f)]
    assert len(keys) == len(set(keys)) == 12
    assert (out / "report.md").is_file()


def test_report_of_a_front_that_nothing_satisfies_says_so(
    pipeline_run: tuple[Path, dict], tmp_path: Path
) -> None:
    from hwnas.pipeline import plot_front, write_report

    _, summary = pipeline_run
    empty = summary | {"front": [], "shipped": []}
    empty["config"] = summary["config"] | {"constraints": ["latency<=0.001"]}
    empty["front_latency_agreement"] = {"n": 0, "drift": None}
    text = write_report(empty, tmp_path / "r.md").read_text()
    assert "No searched subnet satisfies latency<=0.001 by the search's values" in text
    assert "| ship |" not in text
    assert plot_front([], summary["search"], tmp_path / "f.png").stat().st_size > 0
    over = dict(summary["front"][0], feasible=False, on_front=False)
    text = write_report(summary | {"front": [over]}, tmp_path / "o.md").read_text()
    assert "| over budget |" in text
    plot = plot_front([over], summary["search"], tmp_path / "o.png", ["latency<=0.5"])
    assert plot.stat().st_size > 0


def test_front_latency_judged_on_the_quieter_of_profile_and_now(
    pipeline_run: tuple[Path, dict], tmp_path: Path
) -> None:
    """A profile measured under load (anchor drift < 1 at the front) must not push a
    network measured under budget over it; a device busier now (drift > 1) is corrected.
    The report says which, shows each row's noise and the profile's instability, and
    names shipped networks whose latencies lie within the noise of each other."""
    from hwnas.pipeline import _set_latencies, _ties, drift_warning, write_report

    row = {"measured_latency_ms": 0.402, "drift": 0.64}
    _set_latencies(row)
    assert row["latency_ms"] == 0.402  # as measured: under a 0.6 ms budget
    assert row["latency_at_profile_ms"] == pytest.approx(0.402 / 0.64)  # the predictor learnt
    row = {"measured_latency_ms": 0.64, "drift": 1.28}
    _set_latencies(row)
    assert row["latency_ms"] == row["latency_at_profile_ms"] == pytest.approx(0.5)
    row = {"measured_latency_ms": 0.5, "drift": None}
    _set_latencies(row)
    assert row["latency_ms"] == row["latency_at_profile_ms"] == 0.5
    assert drift_warning(1.0) == drift_warning(None) == drift_warning(0.0) == ""
    assert drift_warning(float("nan")) == ""
    assert "under load" in drift_warning(0.64) and "1.56x as fast" in drift_warning(0.64)
    assert "1.40x as slow" in drift_warning(1.4) and "hwnas measure" in drift_warning(1.4)

    a = {"latency_ms": 0.400, "latency_cv": 0.05}
    b = {"latency_ms": 0.410, "latency_cv": 0.02}  # 2.5 % apart, 5 % noise: a tie
    c = {"latency_ms": 0.600, "latency_cv": 0.02}
    assert _ties([c, a, b]).startswith(
        "Within the measurement noise of each other: 0.400 and 0.410 ms."
    )
    assert _ties([a, c]) == "" and _ties([dict(a, latency_cv=None), b]) == ""

    _, summary = pipeline_run
    noisy = summary | {
        "profile": summary["profile"] | {"unstable": 4, "stored": 5, "robust_cv_median": 0.14},
        "front_latency_agreement": summary["front_latency_agreement"] | {"drift": 0.6},
    }
    text = write_report(noisy, tmp_path / "r.md").read_text()
    assert "4 of 5 flagged unstable (median robust CV 14.0 %)" in text
    assert "A noisy device" in text and "under load" in text
    assert "| noise | judged ms | at profile load ms |" in text
    quiet = summary | {"profile": summary["profile"] | {"unstable": 0}}
    quiet["front_latency_agreement"] = summary["front_latency_agreement"] | {"drift": 1.0}
    text = write_report(quiet, tmp_path / "q.md").read_text()
    assert "0 of 5 flagged unstable" in text and "A noisy device" not in text
    assert "under load" not in text and "as slow as" not in text


def test_pipeline_on_a_device_agent_measures_profile_and_front_there(tmp_path: Path) -> None:
    """`hwnas run --agent URL --token-file F`: a real agent on loopback measures the
    profile and the front, in requests no larger than its model limit; a memory budget
    (`--constraint params<=N`) holds on everything shipped."""
    from hwnas.cli import main
    from hwnas.measure.agent import create_server, write_token_file
    from hwnas.measure.profile import load_profile
    from hwnas.space import get_space
    from hwnas.store.sqlite import ResultsStore

    token_file = tmp_path / "token"
    token = write_token_file(token_file)
    server = create_server("127.0.0.1", 0, token, timeout_s=120.0, max_models=3)
    calls: list[int] = []
    original = server.measure

    def counted(blobs: list[bytes], settings: Any, **kw: Any) -> Any:
        calls.append(len(blobs))
        return original(blobs, settings, **kw)

    server.measure = counted  # type: ignore[method-assign]
    server.start_background()
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    out = tmp_path / "run"
    # a memory budget on the way: half the subnets of the digits supernet are larger
    sp = get_space("mbv3-cifar")
    budget = int(np.median(sp.params_batch(sp.sample(400, np.random.default_rng(0)), 1, 10)))
    args = ["run", "--config", str(cfg), "--out", str(out), "--agent", server.url,
            "--constraint", f"params<={budget}"]  # fmt: skip
    try:
        main([*args, "--token-file", str(token_file)])
        first_run = len(calls)
        # resumed with another token file path and time-out, the URL spelt with a slash:
        # the same run, nothing measured again
        shutil.copy(token_file, tmp_path / "token2")
        (tmp_path / "token2").chmod(0o600)
        args2 = [a + "/" if a == server.url else a for a in args]
        main([*args2, "--token-file", str(tmp_path / "token2"), "--agent-timeout-s", "60"])
    finally:
        server.close()
    host = json.loads((out / "summary.json").read_text())["device"]["host"]
    main([*args, "--token-file", str(token_file)])  # finished: needs no agent to run again
    summary = json.loads((out / "summary.json").read_text())
    assert summary["device"]["host"] == host and host["hostname"]
    assert summary["device"]["kind"] == "agent" and summary["device"]["url"] == server.url
    assert server.url in summary["device"]["label"]
    assert server.url in (out / "report.md").read_text()
    records = load_profile(out / "profile").records
    assert len(records) == 5
    assert all(r.extra["measured_by"] == f"agent {server.url}" for r in records)
    front = summary["front"]
    assert front and all(r["measured_latency_ms"] > 0 and r["drift"] > 0 for r in front)
    assert max(calls) <= 3  # the agent's limit, the anchor included
    # the front went to the agent too: its subnets, each group with the anchor
    groups = -(-len(front) // 2)
    assert sum(calls[first_run - groups : first_run]) == len(front) + groups
    assert len(calls) == first_run  # the resumed run measured nothing
    # the budget held in the search and on the front, and it did bind
    assert all(r["params"] <= budget and r["feasible"] for r in front)
    with ResultsStore(out / "search" / "results.sqlite") as store:
        searched = [r.vector for r in store.evaluations(store.runs("search")[-1]["run_id"])]
    # half the space is over it, yet no evaluation was spent there: the search's random
    # start draws only subnets within a budget known before evaluation
    assert max(sp.params_batch(np.array(searched), 1, 10)) <= budget
    search = json.loads((out / "search" / "summary.json").read_text())
    assert search["pareto"] and all(p["params"] <= budget for p in search["pareto"])
    assert summary["search"]["feasible"] == search["feasible"] >= len(search["pareto"])
    assert (
        (out / "search" / "pareto.csv")
        .read_text()
        .startswith("arch_key,arch,accuracy,latency,params\n")
    )
    assert f"`params<={budget}`" in (out / "report.md").read_text()


def test_pipeline_agent_errors_come_before_any_work(tmp_path: Path) -> None:
    from hwnas.measure.agent import create_server, write_token_file
    from hwnas.pipeline import run_pipeline

    token_file = tmp_path / "tok" / "token"
    token_file.parent.mkdir()
    write_token_file(token_file)
    runs = tmp_path / "runs"
    with pytest.raises(HwnasError, match="agent needs token_file"):
        run_pipeline({"agent": "http://127.0.0.1:9"}, runs / "a")
    with pytest.raises(HwnasError, match="agent: the agent URL is empty"):
        run_pipeline({"agent": " ", "token_file": str(token_file)}, runs / "a")
    with pytest.raises(HwnasError, match="token_file is only used with agent"):
        run_pipeline({"token_file": str(token_file)}, runs / "b")
    with pytest.raises(HwnasError, match="agent URL must look like"):
        run_pipeline({"agent": "127.0.0.1:9", "token_file": str(token_file)}, runs / "c")
    with pytest.raises(HwnasError, match="not found"):
        run_pipeline({"agent": "http://127.0.0.1:9", "token_file": "nope"}, runs / "d")
    with pytest.raises(HwnasError, match="127.0.0.1:9"):  # nothing listens there
        run_pipeline({"agent": "http://127.0.0.1:9", "token_file": str(token_file)}, runs / "e")
    server = create_server("127.0.0.1", 0, "w" * 32, max_models=1)
    server.start_background()
    try:
        agent = {"agent": server.url, "token_file": str(token_file)}
        with pytest.raises(HwnasError, match="rejected the token"):
            run_pipeline(agent, runs / "f")
        token_file.write_text("w" * 32)
        with pytest.raises(HwnasError, match="takes 1 model per request"):
            run_pipeline(agent, runs / "g")
        with pytest.raises(HwnasError, match="measure_threads 999: the agent at"):
            run_pipeline(agent | {"measure_threads": 999}, runs / "h")
    finally:
        server.close()
    # an upload limit the largest subnet and the anchor cannot fit in: before training
    small = create_server("127.0.0.1", 0, "w" * 32, max_bytes=200_000)
    small.start_background()
    try:
        with pytest.raises(HwnasError, match=r"uploads up to 0.2 MB.*--max-mb \d+ or more"):
            run_pipeline({"agent": small.url, "token_file": str(token_file)}, runs / "i")
    finally:
        small.close()
    assert not runs.exists()  # checked before anything is written


def test_pipeline_exit_status_tells_a_lost_device_and_nothing_shipped(
    tmp_path: Path, monkeypatch
) -> None:
    """Scripts can tell the outcomes apart: bad input 2, a device that cannot be reached
    3 (the same command again goes on), nothing meeting the constraints 4."""
    import hwnas.pipeline
    from hwnas.measure.agent import write_token_file

    token = tmp_path / "token"
    write_token_file(token)
    base = [sys.executable, "-m", "hwnas.cli", "run", "--out", str(tmp_path / "r")]
    gone = subprocess.run(
        [*base, "--agent", "http://127.0.0.1:9", "--token-file", str(token)],
        capture_output=True,
        text=True,
    )
    assert gone.returncode == 3, gone.stderr
    assert "cannot reach the agent at http://127.0.0.1:9" in gone.stderr
    bad = subprocess.run([*base, "--seed", "-1"], capture_output=True, text=True)
    assert bad.returncode == 2

    from typer.testing import CliRunner

    from hwnas.cli import app

    summary = {"shipped": [], "front": [], "config": {"constraints": ["latency<=0.01"]}}
    summary["front_latency_agreement"] = {"n": 0, "drift": None}
    monkeypatch.setattr(hwnas.pipeline, "run_pipeline", lambda *a, **k: summary)
    for extra in ([], ["--json"]):
        res = CliRunner().invoke(app, ["run", "--out", str(tmp_path / "n"), *extra])
        assert res.exit_code == 4, res.output
    res = CliRunner().invoke(app, ["run", "--out", str(tmp_path / "n")])
    assert "no searched subnet satisfies latency<=0.01" in res.output


def test_pipeline_sigterm_says_how_to_continue(tmp_path: Path, kill_when) -> None:
    """SIGTERM (a scheduler, ``kill``) in the middle of the run: the Ctrl-C line with
    'terminated', exit status 143, and the same command goes on."""
    import signal

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(TINY | {"train": {"epochs": 3, "steps_per_epoch": 40, "limit": 300}}))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "hwnas.cli", "run", "--config", str(cfg), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def started() -> bool:
        return (out / "timings.json").exists() or (out / "supernet").is_dir()

    kill_when(proc, started, "the run", signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert f"terminated; run the same command again to continue ({out})" in err
    assert "Traceback" not in err


class _Flaky:
    """A measurer with made-up latencies that fails at call ``fail_at`` (an agent gone
    in the middle of the front); counts the models it measured."""

    def __init__(self, fail_at: int | None) -> None:
        self.fail_at, self.calls, self.models = fail_at, 0, 0
        self.sizes: list[list[int]] = []  # bytes of each call's files, the anchor first
        self.settings: Any = None  # set by the test: the pipeline's measure settings

    def measure(self, models: list[Any], settings: Any = None) -> list[Any]:
        from hwnas.measure.latency import Measurement, MeasureSettings, compute_stats

        self.calls += 1
        if self.calls == self.fail_at:
            raise HwnasError("the agent is gone")
        self.models += len(models)
        self.sizes.append([Path(m).stat().st_size for m in models])
        stats = compute_stats([[0.001 * (1 + i / 10)] for i in range(3)])
        made_up = ("onnxruntime", "0", "cpu", {}, {}, {"hostname": "fake"})
        return [Measurement(str(m), stats, MeasureSettings(), *made_up) for m in models]


def test_front_keeps_each_measured_group_and_respects_the_upload_limit(
    pipeline_run: tuple[Path, dict], tmp_path: Path
) -> None:
    """A failure in the middle of the front loses nothing measured before it (front.csv
    is written after each call); calls stay within the agent's model and byte limits."""
    from hwnas.measure.agent import AgentUploadTooLargeError
    from hwnas.pipeline import FRONT_CSV, PipelineConfig, Target, _read_front, verify_front
    from hwnas.store.sqlite import ResultsStore
    from hwnas.train.evaluate import checkpoint_data
    from hwnas.train.supernet import load_checkpoint, model_from_checkpoint

    out, _ = pipeline_run
    ckpt = load_checkpoint(out / "supernet" / "checkpoint.pt")
    model = model_from_checkpoint(ckpt)
    data = checkpoint_data(ckpt, model)
    with ResultsStore(out / "search" / "results.sqlite") as store:
        recs = store.evaluations(store.runs("search")[-1]["run_id"])[:3]
    pareto = [{"arch_key": r.arch_key, **r.objectives} for r in recs]
    cfg = PipelineConfig(**TINY)
    front = tmp_path / "front"

    def verify(measurer: _Flaky, **limits: Any) -> list[dict[str, Any]]:
        measurer.settings = cfg.measure_settings()
        target = Target(measurer, {"kind": "agent", "url": "x"}, **limits)
        return verify_front(ckpt, model, data, pareto, front, cfg, target, out / "profile")

    with pytest.raises(HwnasError, match="the agent is gone"):
        verify(_Flaky(fail_at=2), max_models=2)  # the anchor and one subnet a call
    assert len(_read_front(front / FRONT_CSV)) == 1  # the first call's subnet is kept
    again = _Flaky(fail_at=None)
    rows = verify(again, max_models=2)
    assert again.calls == 2 and again.models == 4  # the other two, each with the anchor
    assert {r["arch_key"] for r in rows} == {p["arch_key"] for p in pareto}
    # byte limit: with room for the anchor and the largest subnet, one subnet a call (no
    # two of these 10-18 MB networks fit where the largest alone does)
    anchor = again.sizes[0][0]
    biggest = max(p.stat().st_size for p in front.glob("*.onnx"))
    (front / FRONT_CSV).unlink()
    by_bytes = _Flaky(None)
    verify(by_bytes, max_models=16, max_bytes=anchor + biggest)
    assert by_bytes.calls == 3 and all(sum(c) <= anchor + biggest for c in by_bytes.sizes)
    (front / FRONT_CSV).unlink()
    with pytest.raises(AgentUploadTooLargeError, match="more than the agent's upload limit"):
        verify(_Flaky(None), max_models=16, max_bytes=anchor + biggest - 1)


def test_profile_groups_fit_the_agents_limits() -> None:
    """A profile group and its anchor fit in one upload to the agent: the largest subnet's
    float32 weights bound how many go together (a refused upload costs a device link)."""
    from hwnas.pipeline import Target, profile_group_size
    from hwnas.supernet.mbv3 import MBv3Supernet

    model = MBv3Supernet("mbv3-cifar", 10, 1)
    sp = model.space
    largest = 4 * int(sp.params_batch(sp.largest()[None, :], 1, 10)[0])

    def size(**limits: Any) -> int:
        return profile_group_size(Target(None, {"kind": "agent", "url": "x"}, **limits), model)

    assert size() == 8  # this machine: the profile's own default
    assert size(max_models=3) == 2
    assert size(max_bytes=100 * largest) == 8
    assert size(max_bytes=4 * largest) == 2  # 3 x 1.05 x largest fit with the anchor
    assert size(max_bytes=largest) == 1  # the smallest group: refused by size if too large
