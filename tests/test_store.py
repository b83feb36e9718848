import csv
import sqlite3

import numpy as np
import pytest

from hwnas.errors import HwnasError
from hwnas.store import ResultsStore


def test_runs_evaluations_fits_and_csv(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultsStore(path) as st:
        run = st.create_run({"algorithm": "random"}, seed=3)
        assert st.add_evaluation(run, "1-2", [1, 2], {"accuracy": 90.0, "latency": 1.5}) == 0
        assert (
            st.add_evaluation(
                run, "2-2", [2, 2], None, status="failed", error="boom", wall_time_s=0.1
            )
            == 1
        )
        with pytest.raises(HwnasError, match="already holds an evaluation of '1-2'"):
            st.add_evaluation(run, "1-2", [1, 2], {"accuracy": 1.0, "latency": 1.0})
        with pytest.raises(HwnasError, match="must hold integers"):
            st.add_evaluation(run, "1-7", [1.7, 2], None)
        # numpy values (float32 objectives, an array as the architecture) are stored
        st.add_evaluation(run, "3-3", [3, 3], {"accuracy": np.float32(2.5)}, arch=np.arange(2))
        st.add_predictor_fit(run, "accuracy", "svr", 20, iteration=0, scores={"tau": 0.5})
        st.finish_run(run, {"evaluations": 2})
    with ResultsStore(path) as st:  # reopened: everything persisted
        (r,) = st.runs()
        assert r["status"] == "finished" and r["seed"] == 3 and r["config"]["algorithm"] == "random"
        assert "numpy" in r["versions"] and r["summary"] == {"evaluations": 2}
        recs = st.evaluations(run)
        assert [x.arch_key for x in recs] == ["1-2", "2-2", "3-3"]
        assert recs[2].objectives == {"accuracy": 2.5} and recs[2].arch == [0, 1]
        assert recs[0].ok and recs[0].objectives == {"accuracy": 90.0, "latency": 1.5}
        assert not recs[1].ok and recs[1].error == "boom"
        assert st.predictor_fits(run)[0]["scores"] == {"tau": 0.5}
        st.export_csv(run, tmp_path / "new" / "e.csv")  # its directory is made
    rows = list(csv.DictReader((tmp_path / "new" / "e.csv").open()))
    assert rows[0]["accuracy"] == "90.0" and rows[1]["status"] == "failed"
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_corrupt_store(tmp_path):
    p = tmp_path / "bad.sqlite"
    p.write_bytes(b"this is not a database" * 100)
    with pytest.raises(HwnasError, match="cannot open results store"):
        ResultsStore(p)


def test_latest_run_missing(tmp_path):
    with (
        ResultsStore(tmp_path / "x.sqlite") as st,
        pytest.raises(HwnasError, match="no search run"),
    ):
        st.latest_run("search")


def _add_many(path, run, start):
    with ResultsStore(path) as st:
        for i in range(start, start + 60):
            st.add_evaluation(run, f"{i}-0", [i, 0], {"accuracy": float(i)})


def test_two_writers_to_one_run_never_share_a_sequence_number(tmp_path):
    import multiprocessing as mp

    path = tmp_path / "r.sqlite"
    with ResultsStore(path) as st:
        run = st.create_run({}, seed=0)
    procs = [mp.Process(target=_add_many, args=(path, run, k * 1000)) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    with ResultsStore(path) as st:
        assert sorted(r.seq for r in st.evaluations(run)) == list(range(120))


def test_another_programs_database_is_left_alone(tmp_path):
    p = tmp_path / "other.sqlite"
    con = sqlite3.connect(p)
    con.execute("CREATE TABLE notes (text TEXT)")
    con.commit()
    con.close()
    with pytest.raises(HwnasError, match="database of something else"):
        ResultsStore(p)
    tables = sqlite3.connect(p).execute("SELECT name FROM sqlite_master").fetchall()
    assert tables == [("notes",)]  # no hwnas tables added to it


def test_a_run_with_a_broken_config_is_one_clear_error(tmp_path):
    p = tmp_path / "r.sqlite"
    with ResultsStore(p) as st:
        run = st.create_run({"algorithm": "random"}, seed=0)
    con = sqlite3.connect(p)
    con.execute("UPDATE runs SET config = '{broken' WHERE run_id = ?", (run,))
    con.commit()
    con.close()
    with ResultsStore(p) as st, pytest.raises(HwnasError, match="not JSON"):
        st.latest_run("search")


def test_segments_add_up_a_runs_wall_time_killed_ones_to_their_last_evaluation(
    tmp_path, monkeypatch
):
    """A run worked on by three processes: one ended (10 s), one killed 4 s after its
    start whose last evaluation came 3 s in (counted to it: 3 s), and the current one."""
    import hwnas.store.sqlite as sq

    clock = [1000.0]
    monkeypatch.setattr(sq.time, "time", lambda: clock[0])
    with ResultsStore(tmp_path / "r.sqlite") as store:
        run = store.create_run({}, 0)
        first = store.begin_segment(run, {"latency": {"on": "this machine"}})
        clock[0] += 10
        store.end_segment(first)
        clock[0] += 100  # idle between the processes: not counted
        store.begin_segment(run)
        clock[0] += 3
        store.add_evaluation(run, "a", [0], {"x": 1.0})
        clock[0] += 1  # killed here, without an end
        clock[0] += 50
        third = store.begin_segment(run, {"latency": {"on": "elsewhere"}})
        assert store.segments_wall_s(run, before=third) == (pytest.approx(13.0), 2)
        assert store.segments_wall_s(run) == (pytest.approx(13.0), 3)  # the third: 0 s yet
        clock[0] += 5
        store.end_segment(third)
        assert store.segments_wall_s(run)[0] == pytest.approx(18.0)
        assert store.segment_details(run) == [
            {"latency": {"on": "this machine"}},
            {"latency": {"on": "elsewhere"}},
        ]


def test_a_store_opens_read_only(tmp_path, monkeypatch):
    """A profile or search on a read-only disk can still be read: ``readonly`` opens it
    without the WAL and schema set-up that write (as immutable where its folder cannot
    be written), and nothing can be written through it."""
    import os

    path = tmp_path / "results.sqlite"
    with ResultsStore(path) as store:
        run = store.create_run({"a": 1}, 0, kind="profile")
        store.add_evaluation(run, "k", [1], {"latency_ms": 2.0})
    with ResultsStore(path, readonly=True) as store:
        assert [r.objectives for r in store.evaluations(run)] == [{"latency_ms": 2.0}]
        assert store.latest_run()["run_id"] == run
        with pytest.raises(HwnasError, match="^no search run in results store"):
            store.latest_run("search")
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.create_run({"a": 2}, 1)
    monkeypatch.setattr(os, "access", lambda *a, **k: False)  # as a read-only folder
    with ResultsStore(path, readonly=True) as store:
        assert [r["run_id"] for r in store.runs("profile")] == [run]
    monkeypatch.undo()
    with pytest.raises(HwnasError, match="no results store at"):
        ResultsStore(tmp_path / "none.sqlite", readonly=True)
    assert not (tmp_path / "none.sqlite").exists()
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).close()  # an empty database is not a store either
    with pytest.raises(HwnasError, match="not an hwnas results store"):
        ResultsStore(other, readonly=True)
