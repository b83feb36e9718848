"""The results store: runs, evaluations and predictor fits in one SQLite file.

Every evaluation is committed as it completes (WAL mode), so a killed search loses
nothing and a resumed one repeats nothing.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.errors import HwnasError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    created REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL,
    seed INTEGER,
    config TEXT NOT NULL,
    versions TEXT NOT NULL,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS evaluations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    seq INTEGER NOT NULL,
    arch_key TEXT NOT NULL,
    vector TEXT NOT NULL,
    arch TEXT,
    objectives TEXT,
    status TEXT NOT NULL,
    error TEXT,
    wall_time_s REAL NOT NULL,
    source TEXT NOT NULL,
    extra TEXT,
    created REAL NOT NULL,
    UNIQUE (run_id, arch_key)
);
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    started REAL NOT NULL,
    ended REAL,
    details TEXT
);
CREATE TABLE IF NOT EXISTS predictor_fits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT,
    iteration INTEGER,
    target TEXT NOT NULL,
    model TEXT NOT NULL,
    params TEXT,
    n_train INTEGER NOT NULL,
    scores TEXT,
    fit_time_s REAL,
    created REAL NOT NULL
);
"""


@dataclass
class EvaluationRecord:
    """One stored evaluation of one distinct architecture."""

    seq: int
    arch_key: str
    vector: list[int]
    arch: Any
    objectives: dict[str, float] | None
    status: str
    error: str | None
    wall_time_s: float
    source: str
    extra: dict[str, Any] | None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def versions() -> dict[str, str]:
    """Versions of hwnas and the libraries whose behaviour shapes a run's results."""
    import platform
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ("hwnas", "numpy", "scipy", "scikit-learn", "pymoo", "optuna", "torch"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def json_default(obj: Any) -> Any:
    """numpy scalars and arrays, and paths, as JSON (``json.dumps(...,
    default=json_default)``)."""
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def arch_text(arch: Any) -> str:
    """An architecture as one CSV cell: an arch string as it is (NB201's
    ``|op~0|+...``), anything else (FBNet's op list, MBv3 configs) as JSON."""
    return arch if isinstance(arch, str) else json.dumps(arch, default=json_default)


def _columns(
    vector: Sequence[int],
    arch: Any,
    objectives: dict[str, float] | None,
    status: str,
    error: str | None,
    wall_time_s: float,
    source: str,
    extra: dict[str, Any] | None,
) -> tuple[Any, ...]:
    """An evaluation's stored columns, vector through created, in the table's order."""
    return (
        json.dumps([int(v) for v in vector]),
        json.dumps(arch, default=json_default),
        json.dumps(objectives) if objectives is not None else None,
        status,
        error,
        float(wall_time_s),
        source,
        json.dumps(extra, default=json_default) if extra else None,
        time.time(),
    )


class ResultsStore:
    """SQLite-backed store; one file per run directory (``results.sqlite``)."""

    def __init__(self, path: str | os.PathLike[str], readonly: bool = False) -> None:
        """Open (or create, with its folder) the store at ``path``. ``readonly`` opens an
        existing one for reading only, refusing a missing file instead of creating it: use
        it to read a finished search or profile (also on a read-only disk)."""
        self.path = Path(path)
        if readonly and not self.path.is_file():
            raise HwnasError(f"no results store at '{self.path}'")
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if readonly:
                # a WAL database needs its folder writable even to be read; where it is
                # not, nothing can be writing it either: read it as immutable
                writable = os.access(self.path.parent, os.W_OK)
                mode = "mode=ro" if writable else "mode=ro&immutable=1"
                uri = f"{self.path.resolve().as_uri()}?{mode}"
                self._conn = sqlite3.connect(uri, uri=True, timeout=30.0)
            else:
                self._conn = sqlite3.connect(self.path, timeout=30.0)
            tables = {
                r[0]
                for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            if (tables or readonly) and "runs" not in tables:  # another program's database
                self._conn.close()
                raise HwnasError(
                    f"'{self.path}' is an SQLite database of something else "
                    f"(tables: {', '.join(sorted(tables)[:5]) or 'none'}), not an hwnas "
                    "results store"
                )
            if readonly:
                return
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise HwnasError(f"cannot open results store '{self.path}': {exc}") from None

    def close(self) -> None:
        """Close the connection (a ``with`` block does it on leaving)."""
        self._conn.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._conn:
            yield self._conn

    # ---- runs -------------------------------------------------------------------------
    def create_run(self, config: dict[str, Any], seed: int | None, kind: str = "search") -> str:
        """Store a new run (status 'running', with the package versions) and return its
        id, ``YYYYmmdd-HHMMSS-xxxxxx``; ``kind`` tells searches, profiles and anchors apart."""
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        with self._tx() as c:
            c.execute(
                "INSERT INTO runs (run_id, kind, created, status, seed, config, versions) "
                "VALUES (?, ?, ?, 'running', ?, ?, ?)",
                (
                    run_id,
                    kind,
                    time.time(),
                    seed,
                    json.dumps(config, default=json_default),
                    json.dumps(versions()),
                ),
            )
        return run_id

    def runs(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The runs (of ``kind``, or all), oldest first, each a dict of ``run_id``, ``kind``,
        ``created`` and ``finished`` (epoch seconds; finished None while running),
        ``status`` ('running', 'finished', ...), ``seed``, ``config``, ``versions`` and
        ``summary`` (None until finished)."""
        q = "SELECT run_id, kind, created, finished, status, seed, config, versions, summary "
        q += "FROM runs" + (" WHERE kind = ?" if kind else "") + " ORDER BY created"
        rows = self._conn.execute(q, (kind,) if kind else ()).fetchall()
        keys = ("run_id", "kind", "created", "finished", "status", "seed")
        out = []
        for r in rows:
            d = dict(zip(keys, r[:6], strict=True))
            try:
                d["config"] = json.loads(r[6])
                d["versions"] = json.loads(r[7])
                d["summary"] = json.loads(r[8]) if r[8] else None
            except (TypeError, json.JSONDecodeError) as e:
                raise HwnasError(
                    f"results store '{self.path}': run {d['run_id']} holds a config or "
                    f"summary that is not JSON ({e}); was the file edited by hand?"
                ) from None
            out.append(d)
        return out

    def latest_run(self, kind: str | None = None) -> dict[str, Any]:
        """The newest run (of ``kind``), as :meth:`runs` gives it; an error when none."""
        runs = self.runs(kind)
        if not runs:
            what = f"{kind} run" if kind else "run"
            raise HwnasError(f"no {what} in results store '{self.path}'")
        return runs[-1]

    def finish_run(self, run_id: str, summary: dict[str, Any], status: str = "finished") -> None:
        """Mark a run finished (or another final ``status``) with its summary."""
        with self._tx() as c:
            c.execute(
                "UPDATE runs SET finished = ?, status = ?, summary = ? WHERE run_id = ?",
                (time.time(), status, json.dumps(summary, default=json_default), run_id),
            )

    def mark_resumed(self, run_id: str) -> None:
        """Set a resumed run's status back to 'running' (until :meth:`finish_run`)."""
        with self._tx() as c:
            c.execute("UPDATE runs SET status = 'running' WHERE run_id = ?", (run_id,))

    def update_run_config(self, run_id: str, config: dict[str, Any]) -> None:
        """Replace a run's stored config (a resumed search given a larger budget)."""
        with self._tx() as c:
            c.execute(
                "UPDATE runs SET config = ? WHERE run_id = ?",
                (json.dumps(config, default=json_default), run_id),
            )

    # ---- segments: the processes that worked on a run (a resume starts one) ------------
    def begin_segment(
        self, run_id: str, details: dict[str, Any] | None = None, started: float | None = None
    ) -> int:
        """Note that a process works on ``run_id`` from ``started`` (a ``time.time()``;
        default now), with ``details`` (how it takes the objectives, e.g. the machine that
        measures); returns the segment's id."""
        started = time.time() if started is None else started
        with self._tx() as c:
            cur = c.execute(
                "INSERT INTO segments (run_id, started, details) VALUES (?, ?, ?)",
                (run_id, started, json.dumps(details, default=json_default)),
            )
        return int(cur.lastrowid or 0)

    def segment_details(self, run_id: str) -> list[dict[str, Any]]:
        """The ``details`` of the run's segments, oldest first (those noted with some)."""
        rows = self._conn.execute(
            "SELECT details FROM segments WHERE run_id = ? ORDER BY id", (run_id,)
        ).fetchall()
        return [d for d in (json.loads(r[0]) for r in rows if r[0]) if d]

    def end_segment(self, segment_id: int) -> None:
        """Note that the process of ``segment_id`` stops (finished, or stopped by an
        error or Ctrl-C; one killed outright never says so)."""
        with self._tx() as c:
            c.execute("UPDATE segments SET ended = ? WHERE id = ?", (time.time(), segment_id))

    def drop_segment(self, segment_id: int) -> None:
        """Forget a segment that did no work on its run (a resume with nothing to do)."""
        with self._tx() as c:
            c.execute("DELETE FROM segments WHERE id = ?", (segment_id,))

    def segments_wall_s(self, run_id: str, before: int | None = None) -> tuple[float, int]:
        """Wall time and number of the run's segments (those before segment ``before``):
        each from its start to its end, or, killed without an end, to its last stored
        evaluation (a lower bound: what it did after that is lost)."""
        q = "SELECT id, started, ended FROM segments WHERE run_id = ?"
        q += "" if before is None else " AND id < ?"
        args: tuple[Any, ...] = (run_id,) if before is None else (run_id, before)
        rows = self._conn.execute(q + " ORDER BY id", args).fetchall()
        total = 0.0
        for i, (_, started, ended) in enumerate(rows):
            if ended is None:
                nxt = rows[i + 1][1] if i + 1 < len(rows) else time.time()
                (last,) = self._conn.execute(
                    "SELECT MAX(created) FROM evaluations WHERE run_id = ? AND created >= ? "
                    "AND created < ?",
                    (run_id, started, nxt),
                ).fetchone()
                ended = last if last is not None else started
            total += max(float(ended) - float(started), 0.0)
        return total, len(rows)

    # ---- evaluations ------------------------------------------------------------------
    def add_evaluation(
        self,
        run_id: str,
        arch_key: str,
        vector: Sequence[int],
        objectives: dict[str, float] | None,
        *,
        arch: Any = None,
        status: str = "ok",
        error: str | None = None,
        wall_time_s: float = 0.0,
        source: str = "measured",
        extra: dict[str, Any] | None = None,
        replace: bool = False,
    ) -> int:
        """Store one evaluation, committed at once; returns its sequence number (the
        run's evaluation count before it, taken in the same statement, so two writers to
        one run never share a number). With ``replace``, the architecture's stored row is
        overwritten in place (same sequence number), e.g. a failure measured again."""
        if any(float(v) != int(v) for v in vector):
            raise HwnasError(f"architecture vector must hold integers, got {list(vector)}")
        if objectives is not None:
            objectives = {k: float(v) for k, v in objectives.items()}
        if replace:
            return self._replace_evaluation(
                run_id,
                arch_key,
                vector,
                objectives,
                arch,
                status,
                error,
                wall_time_s,
                source,
                extra,
            )
        try:
            with self._tx() as c:
                cur = c.execute(
                    "INSERT INTO evaluations (run_id, seq, arch_key, vector, arch, objectives, "
                    "status, error, wall_time_s, source, extra, created) VALUES (?, "
                    "(SELECT COUNT(*) FROM evaluations WHERE run_id = ?), "
                    "?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run_id,
                        run_id,
                        arch_key,
                        *_columns(
                            vector, arch, objectives, status, error, wall_time_s, source, extra
                        ),
                    ),
                )
                (seq,) = c.execute(
                    "SELECT seq FROM evaluations WHERE id = ?", (cur.lastrowid,)
                ).fetchone()
        except sqlite3.IntegrityError:
            raise HwnasError(
                f"run {run_id} already holds an evaluation of '{arch_key}' (one per architecture)"
            ) from None
        return int(seq)

    def _replace_evaluation(
        self,
        run_id: str,
        arch_key: str,
        vector: Sequence[int],
        objectives: dict[str, float] | None,
        arch: Any,
        status: str,
        error: str | None,
        wall_time_s: float,
        source: str,
        extra: dict[str, Any] | None,
    ) -> int:
        with self._tx() as c:
            c.execute(
                "UPDATE evaluations SET vector = ?, arch = ?, objectives = ?, status = ?, "
                "error = ?, wall_time_s = ?, source = ?, extra = ?, created = ? "
                "WHERE run_id = ? AND arch_key = ?",
                (
                    *_columns(vector, arch, objectives, status, error, wall_time_s, source, extra),
                    run_id,
                    arch_key,
                ),
            )
            row = c.execute(
                "SELECT seq FROM evaluations WHERE run_id = ? AND arch_key = ?",
                (run_id, arch_key),
            ).fetchone()
        if row is None:
            raise HwnasError(f"run {run_id} holds no evaluation of '{arch_key}' to replace")
        return int(row[0])

    def evaluations(self, run_id: str) -> list[EvaluationRecord]:
        """The run's evaluations in the order they were stored (``seq``), failed ones
        included (``status`` 'failed', ``objectives`` None, ``error`` set)."""
        rows = self._conn.execute(
            "SELECT seq, arch_key, vector, arch, objectives, status, error, wall_time_s, "
            "source, extra FROM evaluations WHERE run_id = ? ORDER BY seq",
            (run_id,),
        ).fetchall()
        return [
            EvaluationRecord(
                seq=r[0],
                arch_key=r[1],
                vector=json.loads(r[2]),
                arch=json.loads(r[3]) if r[3] else None,
                objectives=json.loads(r[4]) if r[4] else None,
                status=r[5],
                error=r[6],
                wall_time_s=r[7],
                source=r[8],
                extra=json.loads(r[9]) if r[9] else None,
            )
            for r in rows
        ]

    # ---- predictor fits -----------------------------------------------------------------
    def add_predictor_fit(
        self,
        run_id: str | None,
        target: str,
        model: str,
        n_train: int,
        *,
        iteration: int | None = None,
        params: dict[str, Any] | None = None,
        scores: dict[str, float] | None = None,
        fit_time_s: float | None = None,
    ) -> None:
        """Store one predictor fit: its ``target``, ``model`` name, training-set size and
        scores (a LINAS iteration's fits carry ``iteration``)."""
        with self._tx() as c:
            c.execute(
                "INSERT INTO predictor_fits (run_id, iteration, target, model, params, "
                "n_train, scores, fit_time_s, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    iteration,
                    target,
                    model,
                    json.dumps(params, default=str) if params else None,
                    n_train,
                    json.dumps(scores) if scores else None,
                    fit_time_s,
                    time.time(),
                ),
            )

    def predictor_fits(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Stored predictor fits (of ``run_id``, or all), each a dict of ``run_id``,
        ``iteration``, ``target``, ``model``, ``n_train``, ``scores`` and ``fit_time_s``."""
        q = "SELECT run_id, iteration, target, model, n_train, scores, fit_time_s "
        q += "FROM predictor_fits"
        rows = self._conn.execute(
            q + (" WHERE run_id = ?" if run_id else ""), (run_id,) if run_id else ()
        ).fetchall()
        keys = ("run_id", "iteration", "target", "model", "n_train", "scores", "fit_time_s")
        out = []
        for r in rows:
            d = dict(zip(keys, r, strict=True))
            d["scores"] = json.loads(d["scores"]) if d["scores"] else None
            out.append(d)
        return out

    # ---- export -------------------------------------------------------------------------
    def export_csv(
        self,
        run_id: str,
        path: str | os.PathLike[str],
        extra: dict[str, dict[str, object]] | None = None,
    ) -> Path:
        """Write one row per evaluation: sequence, key, architecture, objectives, status;
        ``extra`` maps an arch_key to more columns placed after the objectives (a search
        adds the constrained metrics and whether each evaluation is feasible)."""
        records = self.evaluations(run_id)
        extra_names: list[str] = []
        for cols in (extra or {}).values():
            extra_names += [k for k in cols if k not in extra_names]
        names: list[str] = []
        for rec in records:
            for k in rec.objectives or {}:
                if k not in names:
                    names.append(k)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            fixed = ["status", "error", "wall_time_s", "source"]
            w.writerow(["seq", "arch_key", "arch", *names, *extra_names, *fixed])
            for rec in records:
                objs = rec.objectives or {}
                more = (extra or {}).get(rec.arch_key, {})
                w.writerow(
                    [rec.seq, rec.arch_key, arch_text(rec.arch)]
                    + [objs.get(n, "") for n in names]
                    + [more.get(n, "") for n in extra_names]
                    + [rec.status, rec.error or "", f"{rec.wall_time_s:.6g}", rec.source]
                )
        return path
