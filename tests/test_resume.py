"""A search killed with SIGKILL in the middle resumes without losing or repeating an
evaluation, and ends where an uninterrupted search with the same seed ends."""

import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest

BUDGET = 1200
STORE = "results.sqlite"


def _rows(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute("SELECT seq, arch_key FROM evaluations ORDER BY seq").fetchall()
    except sqlite3.OperationalError:  # table not created yet
        return []
    finally:
        con.close()


def _csv_rows(path):
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _cli(*args):
    return [sys.executable, "-m", "hwnas.cli", *args]


@pytest.mark.parametrize("algorithm", ["nsga2", pytest.param("random", marks=pytest.mark.slow)])
def test_sigkill_then_resume(algorithm, tmp_path, data_dir, kill_when):
    run_dir = tmp_path / "run"
    db = run_dir / "results.sqlite"
    args = ["search", "--algorithm", algorithm, "--evaluations", str(BUDGET), "--seed", "3"]
    proc = subprocess.Popen(_cli(*args, "--out", str(run_dir)), env=os.environ.copy())
    kill_when(proc, lambda: db.exists() and len(_rows(db)) >= 150, "search")
    before = _rows(db)
    assert 150 <= len(before) < BUDGET, "kill landed outside the search"
    assert not (run_dir / "summary.json").exists()

    done = subprocess.run(
        _cli("search", "--resume", str(run_dir), "--json"),
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    after = _rows(db)
    assert len(after) == BUDGET == summary["evaluations"]
    assert len({k for _, k in after}) == BUDGET  # none repeated
    assert after[: len(before)] == before  # none lost, none rewritten
    assert summary["resumed_from"] == len(before)

    # the resumed search ends exactly where an uninterrupted one does
    ref_dir = tmp_path / "ref"
    subprocess.run(_cli(*args, "--out", str(ref_dir)), check=True, capture_output=True, timeout=300)
    assert [k for _, k in _rows(ref_dir / "results.sqlite")] == [k for _, k in after]


def test_resume_errors(tmp_path):
    done = subprocess.run(
        _cli("search", "--resume", str(tmp_path / "nothing")), capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "no results store" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run(
        _cli(
            "search",
            *("--resume", str(tmp_path), "--algorithm", "nsga2", "--seed", "1"),
            *("--bench-option", "latency=true"),
        ),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    expect = "drop --algorithm, --seed, --bench-option (only --evaluations can change it;"
    assert expect in done.stderr


def test_resume_with_a_larger_budget(tmp_path, data_dir):
    """A finished search goes on when resumed with more evaluations: the stored ones are
    kept as they were and reused, none repeated; the stored config takes the new budget."""
    from hwnas.errors import HwnasError
    from hwnas.search.runner import resume_search, run_search

    first = run_search({"algorithm": "nsga2", "evaluations": 40, "seed": 2}, out=tmp_path)
    before = _rows(tmp_path / "results.sqlite")
    assert len(before) == 40
    same = resume_search(tmp_path)  # no budget given: nothing to do
    assert same["evaluations"] == 40 and _rows(tmp_path / "results.sqlite") == before
    # nothing evaluated: the run's times stand, however often it is looked at again
    for key in ("wall_time_s", "evaluation_time_s", "search_overhead_s", "benchmark_details"):
        assert same[key] == first[key]
    assert resume_search(tmp_path)["wall_time_s"] == first["wall_time_s"]
    # nothing failed: a retry finds nothing to do and leaves the rows as they were
    retried = resume_search(tmp_path, retry_failed=True)
    assert retried["evaluations"] == 40 and retried["retried"] == 0
    assert _rows(tmp_path / "results.sqlite") == before
    more = resume_search(tmp_path, evaluations=70)
    # times are the whole run's: the first process's and this one's; the evaluation time
    # is what the store holds of each evaluation
    assert more["wall_time_s"] > first["wall_time_s"]
    assert more["evaluation_time_s"] > first["evaluation_time_s"]
    stored = sum(float(r["wall_time_s"]) for r in _csv_rows(tmp_path / "evaluations.csv"))
    assert more["evaluation_time_s"] == pytest.approx(stored, rel=1e-6, abs=1e-9)
    after = _rows(tmp_path / "results.sqlite")
    assert more["evaluations"] == 70 == len(after) == len({k for _, k in after})
    assert after[:40] == before
    assert more["resumed_from"] == 40 and len(more["hv_fraction_history"]) == 70
    assert more["evaluated_now"] == 30
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["evaluations"] == 70 and summary["budget"] == 70
    looked = resume_search(tmp_path)
    assert looked["evaluations"] == 70 and looked["evaluated_now"] == 0  # budget stored
    # a look at the finished run keeps where the last evaluating run took it up
    assert json.loads((tmp_path / "summary.json").read_text())["resumed_from"] == 40
    with pytest.raises(HwnasError, match="not found in data dir"):  # --data-dir is used
        resume_search(tmp_path, data_dir=str(tmp_path / "nowhere"))
    with pytest.raises(HwnasError, match="already has 70 evaluations"):
        resume_search(tmp_path, evaluations=50)


def test_search_efficiency_study_killed_then_resumed(tmp_path, data_dir, monkeypatch, kill_when):
    """A study killed with SIGKILL keeps its finished runs in records.jsonl; --resume runs
    only the rest and gives what an uninterrupted study gives."""
    from typer.testing import CliRunner

    import hwnas.search.efficiency as eff
    from hwnas.cli import app

    out = tmp_path / "study"
    records = out / eff.RECORDS_NAME
    args = ["bench", "search-efficiency", "--devices", "fpga", "--algorithms", "random"]
    args += ["--evaluations", "20", "--seeds", "8", "--out", str(out), "--json"]
    proc = subprocess.Popen(_cli(*args), env=os.environ.copy(), stdout=subprocess.DEVNULL)
    kill_when(
        proc, lambda: records.exists() and len(records.read_text().splitlines()) >= 2, "study"
    )
    kept = len(eff.finished_runs(records))
    assert 2 <= kept < 8, "kill landed outside the study"
    with records.open("a") as f:
        f.write('{"key": "cut short by a kil')  # as if killed mid-line: ignored, run again

    calls = []
    one = eff._one
    monkeypatch.setattr(eff, "_one", lambda job: calls.append(job["seed"]) or one(job))
    res = CliRunner().invoke(app, [*args, "--resume"])
    assert res.exit_code == 0, res.output
    assert len(calls) == 8 - kept  # only the unfinished runs
    resumed = json.loads((out / "results.json").read_text())
    assert [r["seed"] for r in resumed] == list(range(8))

    # without --resume the records start afresh (and the user is told)
    calls.clear()
    for stale in ("paired.csv", "reach.csv", "hypervolume.png"):  # as another study left
        (out / stale).write_text("old")
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and len(calls) == 8
    assert "afresh" in res.stderr
    assert not any((out / n).exists() for n in ("paired.csv", "reach.csv", "hypervolume.png"))
    assert (out / "hv_fraction.png").is_file()
    (out / "summary.json").write_text("{}")  # a search's: not a study's folder
    res = CliRunner().invoke(app, args)
    assert "not a search-efficiency study" in str(res.exception)  # exit 2 from the CLI
    # the resumed study is the uninterrupted one (here run by two worker processes)
    monkeypatch.undo()
    fresh = eff.search_efficiency("nb201", ["fpga"], ["random"], 20, 8, jobs=2)
    assert [r["hv_fraction"] for r in resumed] == [r["hv_fraction"] for r in fresh]


@pytest.mark.parametrize(
    "algorithm, budget, more", [("random", 3300, 3400), ("nsga2[pop_size=2]", 410, 430)]
)
def test_resume_replays_past_the_stall_limit(algorithm, budget, more, tmp_path, data_dir):
    """Replaying a long stored run answers every batch from the store; those batches are
    progress, not stalls (200 replayed batches once stopped the search, adding nothing)."""
    from hwnas.search.runner import resume_search, run_search

    run_search({"algorithm": algorithm, "evaluations": budget}, out=tmp_path)
    summary = resume_search(tmp_path, evaluations=more)
    assert summary["evaluations"] == more == len({k for _, k in _rows(tmp_path / STORE)})


@pytest.mark.parametrize(
    ("sig", "code", "said"), [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")]
)
def test_ctrl_c_or_sigterm_says_how_to_continue(sig, code, said, tmp_path, data_dir):
    """Ctrl-C or SIGTERM: one line saying how to go on, the conventional exit status, and
    the process's segment of the run closed (its time counted up to now)."""
    import signal

    run_dir = tmp_path / "run"
    db = run_dir / STORE
    args = ["search", "--algorithm", "nsga2", "--evaluations", str(BUDGET), "--out", str(run_dir)]
    proc = subprocess.Popen(_cli(*args), stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    deadline = time.time() + 120
    while not (db.exists() and len(_rows(db)) >= 50) and time.time() < deadline:
        assert proc.poll() is None, f"search ended before {sig}"
        time.sleep(0.02)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code
    assert f"{said}; continue with: hwnas search --resume {run_dir}" in err
    assert "Traceback" not in err
    con = sqlite3.connect(db)
    try:
        assert con.execute("SELECT COUNT(*) FROM segments WHERE ended IS NULL").fetchone() == (0,)
    finally:
        con.close()


def test_linas_resumed_after_a_kill_ends_where_an_uninterrupted_run_ends(
    tmp_path, data_dir, kill_when
):
    """LINAS adapts to what it has seen: the stored evaluations are answered only as it
    proposes them again, so it makes the same choices as the first time."""
    # a fifth of the default inner search: resuming is about LINAS's loop, not its reach
    linas = "linas[inner_pop=100,inner_generations=15]"
    args = ["search", "--algorithm", linas, "--evaluations", "60", "--seed", "2"]
    run_dir, db = tmp_path / "run", tmp_path / "run" / STORE
    proc = subprocess.Popen(_cli(*args, "--out", str(run_dir)), env=os.environ.copy())
    kill_when(proc, lambda: db.exists() and len(_rows(db)) >= 22, "linas")
    before = _rows(db)
    assert 22 <= len(before) < 60
    done = subprocess.run(
        _cli("search", "--resume", str(run_dir), "--json"), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    ref_dir = tmp_path / "ref"
    subprocess.run(_cli(*args, "--out", str(ref_dir)), check=True, capture_output=True)
    assert [k for _, k in _rows(db)] == [k for _, k in _rows(ref_dir / STORE)]
    resumed = json.loads((run_dir / "summary.json").read_text())
    ref = json.loads((ref_dir / "summary.json").read_text())
    assert resumed["hv_history"] == ref["hv_history"]
    assert len(resumed["iterations"]) == len(ref["iterations"])
    assert resumed["resumed_from"] == len(before)


def test_linas_resumed_with_a_larger_budget_takes_the_stored_rest_when_it_diverges(
    tmp_path, data_dir
):
    """With another budget LINAS's batch size differs, so the resumed run leaves the
    stored path: the stored rest is taken in at once (it held back the room for new
    evaluations, and 20 iterations evaluated nothing before the stall limit)."""
    import sqlite3

    from hwnas.search.runner import resume_search, run_search

    linas = "linas[inner_pop=100,inner_generations=15]"  # its loop, not its reach
    run_search({"algorithm": linas, "evaluations": 30, "seed": 1}, out=tmp_path)
    fits = "SELECT COUNT(*) FROM predictor_fits"
    stored_fits = sqlite3.connect(tmp_path / STORE).execute(fits).fetchone()[0]
    summary = resume_search(tmp_path, evaluations=80)
    assert summary["evaluations"] == 80 == len({k for _, k in _rows(tmp_path / STORE)})
    fresh = run_search({"algorithm": linas, "evaluations": 80, "seed": 1})
    assert len(summary["iterations"]) <= len(fresh["iterations"])  # none that add nothing
    assert sqlite3.connect(tmp_path / STORE).execute(fits).fetchone()[0] > stored_fits
