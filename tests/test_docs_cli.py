"""What the README and the CLI's help say agrees with what the CLI does (cheap paths only:
errors raised before any training, fetches from an unreachable loopback mirror)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hwnas.cli import app, main
from hwnas.errors import EXIT_DEVICE, DeviceUnavailableError, HwnasError

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
#: the tiny pipeline of tests/test_pipeline.py
TINY = {
    "train": {"epochs": 1, "steps_per_epoch": 2, "limit": 300},
    "profile_samples": 5,
    "evaluations": 6,
    "threads": 2,
}


def _exit_code(argv: list[str]) -> int:
    """``hwnas ARGV`` in this process, as the console script runs it; its exit status."""
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture(autouse=True)
def _no_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in [k for k in os.environ if k.startswith("HWNAS_DATA_MIRROR")]:
        monkeypatch.delenv(key)


# ---- 1: an unknown pipeline config key names the known ones -----------------------------
def test_unknown_pipeline_key_lists_the_known_keys(tmp_path: Path, capsys) -> None:
    from hwnas.pipeline import PipelineConfig

    cfg = tmp_path / "k.json"
    cfg.write_text(json.dumps({"samples": 5}))
    code = _exit_code(["pipeline", "--config", str(cfg), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert "bad pipeline config: samples" in err
    assert "did you mean 'profile_samples'?" in err
    for key in PipelineConfig.model_fields:
        assert key in err
    assert "pipeline.json" in err
    assert not (tmp_path / "run").exists()


def test_validate_model_lists_the_fields_of_the_nested_model() -> None:
    from pydantic import BaseModel, ConfigDict

    from hwnas.config import validate_model

    class Inner(BaseModel):
        model_config = ConfigDict(extra="forbid")
        depth: int = 1

    class Outer(BaseModel):
        model_config = ConfigDict(extra="forbid")
        name: str = "x"
        inner: Inner = Inner()

    with pytest.raises(HwnasError, match=r"unknown test setting 'nme' \(did you mean 'name'"):
        validate_model(Outer, {"nme": "y"}, "test")
    with pytest.raises(HwnasError, match=r"'inner.deep' \(did you mean 'depth'\? known: depth\)"):
        validate_model(Outer, {"inner": {"deep": 2}}, "test")


# ---- 2: a run directory with another config suggests its own pipeline.json --------------
def test_other_config_error_suggests_the_runs_own_config(tmp_path: Path, capsys) -> None:
    from hwnas.pipeline import CONFIG_NAME, _check_same_config, load_config

    out = tmp_path / "run"
    out.mkdir()
    stored = load_config(TINY).model_dump()
    (out / CONFIG_NAME).write_text(json.dumps(stored))
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    argv = ["pipeline", "--config", str(cfg), "--out", str(out), "--seed", "1"]
    assert _exit_code(argv) == 2  # refused before anything is trained
    err = " ".join(capsys.readouterr().err.split())
    assert "holds a pipeline run with another config: seed 0 (now 1)" in err
    assert f"--config {out / CONFIG_NAME} --out {out}" in err
    assert "--evaluations" in err
    assert not (out / "supernet").exists()
    # and what it suggests is accepted: the stored config, with a larger budget
    again = json.loads((out / CONFIG_NAME).read_text()) | {"evaluations": 50}
    _check_same_config(out, load_config(again))


# ---- 3: an offline fetch exits 3, a checksum mismatch 2 ------------------------------------
def test_fetch_from_an_unreachable_mirror_exits_3(
    tmp_path: Path, monkeypatch, capsys, unreachable_url
) -> None:
    from hwnas import fetch as F

    monkeypatch.setenv(F.ENV_MIRROR, unreachable_url)
    with pytest.raises(F.NetworkUnavailableError, match=r"are you offline\?"):
        F.fetch("hat", tmp_path / "lib", log=lambda m: None, timeout=5)
    assert issubclass(F.NetworkUnavailableError, DeviceUnavailableError)
    code = _exit_code(["data", "fetch", "hat", "--data-dir", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert code == EXIT_DEVICE == 3
    assert "cannot download" in err and "are you offline?" in err


def test_fetch_offline_with_manual_files_still_exits_3(tmp_path: Path, monkeypatch) -> None:
    """Upstream sources unreachable (the manual steps are added to the message): still the
    network's kind of error."""
    from hwnas import fetch as F

    def offline(url: str, *args: object, **kwargs: object) -> None:
        raise F.NetworkUnavailableError(f"cannot download {url}: timed out; are you offline?")

    monkeypatch.setattr(F, "download", offline)
    with pytest.raises(F.NetworkUnavailableError, match="manual steps"):
        F.fetch("nb201", tmp_path, log=lambda m: None)


def test_network_failures_are_told_from_bad_input() -> None:
    import http.client
    import urllib.error

    from hwnas.fetch import _network_failure

    def http_error(code: int) -> urllib.error.HTTPError:
        return urllib.error.HTTPError("http://x", code, "x", None, None)  # type: ignore[arg-type]

    offline = [
        urllib.error.URLError(socket.gaierror(-2, "Name or service not known")),
        urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")),
        urllib.error.URLError(TimeoutError("timed out")),
        TimeoutError("timed out"),
        ConnectionResetError(104, "reset"),
        http.client.IncompleteRead(b""),
        http_error(503),
        http_error(429),
    ]
    not_offline = [
        http_error(404),
        http_error(403),
        urllib.error.URLError("unknown url type: ftpx"),
        urllib.error.URLError(FileNotFoundError(2, "No such file")),
        PermissionError(13, "Permission denied"),
        ValueError("unknown url type"),
        http.client.InvalidURL("nonnumeric port: 'abc'"),  # a typo in a mirror's URL
    ]
    assert all(_network_failure(e) for e in offline)
    assert not any(_network_failure(e) for e in not_offline)


def test_fetch_checksum_mismatch_exits_2(tmp_path: Path, monkeypatch, capsys) -> None:
    from hwnas import fetch as F

    def wrong_bytes(url: str, dest: Path, **kwargs: object) -> Path:
        dest.write_bytes(b"not the file")
        return dest

    monkeypatch.setattr(F, "download", wrong_bytes)
    monkeypatch.setenv(F.ENV_MIRROR, "http://127.0.0.1:1")
    code = _exit_code(["data", "fetch", "hat", "--data-dir", str(tmp_path / "data")])
    assert code == 2
    assert "checksum mismatch" in capsys.readouterr().err


# ---- 4: --export help names what it accepts ------------------------------------------------
@pytest.mark.parametrize("command", ["run", "pipeline"])
def test_pipeline_help_export_and_time(command: str) -> None:
    res = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert res.exit_code == 0
    text = " ".join(res.output.replace("│", " ").split())
    assert "onnx (the default), torch or onnx,torch" in text
    assert "about 7-11 minutes on 2 cores" in text
    assert "PipelineConfig's fields" in text and "pipeline.json" in text


def test_export_values_the_help_names_are_accepted(tmp_path: Path, capsys) -> None:
    """Each value the help names passes the flag's own check (the run then stops at a
    config error, before any work); anything else is refused by the flag."""
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"evaluations": 1}))
    for value in ("onnx", "torch", "onnx,torch"):
        argv = ["pipeline", "--config", str(cfg), "--export", value, "--out", str(tmp_path)]
        assert _exit_code(argv) == 2
        err = capsys.readouterr().err
        assert "--export takes" not in err and "bad pipeline config: evaluations" in err
    argv = ["pipeline", "--export", "tflite", "--out", str(tmp_path / "x")]
    assert _exit_code(argv) == 2
    assert "--export takes onnx, torch or onnx,torch" in capsys.readouterr().err


# ---- 5-9: the docs -------------------------------------------------------------------------
def test_benchmarks_doc_makes_runs_before_writing_into_it() -> None:
    text = (ROOT / "docs" / "BENCHMARKS.md").read_text()
    for line in text.splitlines():
        if "> runs/" in line:
            assert "mkdir -p runs" in line, line


def test_readme_pipeline_stages_match_what_the_cli_prints() -> None:
    import re

    readme = (ROOT / "README.md").read_text()
    section = readme.split("### The whole pipeline", 1)[1].split("Constraints (", 1)[0]
    steps = re.findall(r"^(\d+)\. ", section, flags=re.M)
    assert steps == ["1", "2", "3", "4", "5"]
    src = (ROOT / "src" / "hwnas" / "pipeline.py").read_text()
    assert sorted(set(re.findall(r'say\(f"(\d)/5 ', src))) == ["1", "2", "3", "4", "5"]
    assert "`1/5 supernet` ... `5/5 front`" in section
    assert "Then it writes `report.md`" in section


def test_default_run_time_is_said_the_same_everywhere() -> None:
    from hwnas.pipeline import PipelineConfig

    readme = " ".join((ROOT / "README.md").read_text().replace("#", " ").split())
    assert "about 7-11 minutes on 2 cores" in readme
    assert "~7 min" not in readme
    doc = " ".join((PipelineConfig.__doc__ or "").split())
    assert "about 7-11 minutes on 2 CPU cores" in doc


def test_data_doc_names_verify_and_the_exit_codes() -> None:
    doc = " ".join((ROOT / "docs" / "DATA.md").read_text().split())
    assert "hwnas data list --verify" in doc and "exits 1 if one fails" in doc
    assert "exit code 3" in doc and "checksum mismatch exits 2" in doc
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "`hwnas data fetch` when the network is unavailable" in readme


def test_readme_lists_every_measured_latency_set() -> None:
    from hwnas.predict.latency_sets import LATENCY_SETS

    readme = (ROOT / "README.md").read_text()
    line = next(x for x in readme.splitlines() if "measured sets:" in x)
    listed = {s.strip() for s in line.split("measured sets:", 1)[1].split(",")}
    assert listed == set(LATENCY_SETS.names())


def test_readme_config_keys_are_pipeline_config_fields() -> None:
    from hwnas.pipeline import PipelineConfig

    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "fields of `hwnas.pipeline.PipelineConfig`" in readme
    assert "`RUN/pipeline.json`" in readme
    for key in ("profile_samples", "constraints", "export_formats", "measure_threads"):
        assert f"`{key}`" in readme and key in PipelineConfig.model_fields


# ---- 10: agent token names the flag only ---------------------------------------------------
def test_agent_token_on_an_existing_file_says_force_only(tmp_path: Path, capsys) -> None:
    token = tmp_path / "agent.token"
    assert _exit_code(["agent", "token", str(token)]) == 0
    before = token.read_text()
    capsys.readouterr()
    assert _exit_code(["agent", "token", str(token)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--force" in err
    assert "overwrite=True" not in err
    assert token.read_text() == before
    assert _exit_code(["agent", "token", str(token), "--force"]) == 0
    assert token.read_text() != before


# ---- 11: predictors evaluate --out says where its results are ------------------------------
PRED_ARGS = [
    "predictors",
    "evaluate",
    "--benchmark",
    "nb201",
    "--models",
    "ridge",
    "--sizes",
    "25",
    "--trials",
    "1",
    "--test-size",
    "50",
]


def test_predictors_evaluate_out_prints_where_the_results_are(tmp_path: Path, capsys) -> None:
    out = tmp_path / "pred"
    assert _exit_code([*PRED_ARGS, "--out", str(out)]) == 0
    stdout = " ".join(capsys.readouterr().out.split())
    assert f"results in {out}/ (summary.csv, trials.csv, kendall_tau.png, mape.png)" in stdout
    for name in ("summary.csv", "trials.csv", "kendall_tau.png", "mape.png"):
        assert (out / name).is_file()

    out2 = tmp_path / "pred-json"
    assert _exit_code([*PRED_ARGS, "--out", str(out2), "--json"]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)  # stdout stays one JSON document
    assert f"results in {out2}/" in " ".join(captured.err.split())
