import csv
import sqlite3

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
        with pytest.raises(sqlite3.IntegrityError):  # one row per distinct architecture
            st.add_evaluation(run, "1-2", [1, 2], {"accuracy": 1.0, "latency": 1.0})
        st.add_predictor_fit(run, "accuracy", "svr", 20, iteration=0, scores={"tau": 0.5})
        st.finish_run(run, {"evaluations": 2})
    with ResultsStore(path) as st:  # reopened: everything persisted
        (r,) = st.runs()
        assert r["status"] == "finished" and r["seed"] == 3 and r["config"]["algorithm"] == "random"
        assert "numpy" in r["versions"] and r["summary"] == {"evaluations": 2}
        recs = st.evaluations(run)
        assert [x.arch_key for x in recs] == ["1-2", "2-2"]
        assert recs[0].ok and recs[0].objectives == {"accuracy": 90.0, "latency": 1.5}
        assert not recs[1].ok and recs[1].error == "boom"
        assert st.predictor_fits(run)[0]["scores"] == {"tau": 0.5}
        st.export_csv(run, tmp_path / "e.csv")
    rows = list(csv.DictReader((tmp_path / "e.csv").open()))
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
