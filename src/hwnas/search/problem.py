"""The search problem: budgeted, deduplicated, stored evaluation of architectures.

Algorithms only see ``SearchProblem.evaluate``. It canonicalises vectors, answers
already-evaluated architectures from memory (they do not count again), evaluates new
ones until the budget is spent, commits each to the store as it completes, and keeps the
quality history. A resumed search replays the algorithm with the same seed: an
architecture already in the store is answered from it when the algorithm proposes it
again (not before: an adaptive algorithm such as LINAS then sees what it saw the first
time and makes the same choices), so nothing is lost or repeated and a deterministic
algorithm ends where an uninterrupted run ends.
"""

from __future__ import annotations

import json
import re
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.bench.base import Evaluator, Objective
from hwnas.errors import HwnasError, SetupError
from hwnas.search.pareto import ExactFront, hypervolume, non_dominated_mask
from hwnas.store.sqlite import EvaluationRecord, ResultsStore, json_default

_CONSTRAINT_RE = re.compile(r"^\s*([A-Za-z_][\w:.-]*)\s*(<=|>=)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Constraint:
    """A hard constraint on one objective's raw value, e.g. ``latency <= 5``."""

    objective: str
    op: str
    bound: float

    def __post_init__(self) -> None:
        if not isinstance(self.objective, str) or not self.objective:
            raise HwnasError(f"a constraint needs an objective name, got {self.objective!r}")
        if self.op not in ("<=", ">="):
            raise HwnasError(f"constraint operator must be '<=' or '>=', got {self.op!r}")
        ok = isinstance(self.bound, int | float | np.integer | np.floating) and not isinstance(
            self.bound, bool
        )
        if not ok or not np.isfinite(self.bound):
            raise HwnasError(f"constraint bound must be a finite number, got {self.bound!r}")
        object.__setattr__(self, "bound", float(self.bound))

    @classmethod
    def parse(cls, text: str) -> Constraint:
        m = _CONSTRAINT_RE.match(text)
        if not m:
            raise HwnasError(
                f"bad constraint '{text}' (expected NAME<=BOUND or NAME>=BOUND, e.g. 'latency<=5')"
            )
        try:
            bound = float(m.group(3))
        except ValueError:
            raise HwnasError(f"bad bound in constraint '{text}'") from None
        return cls(m.group(1), m.group(2), bound)

    def satisfiable(self, low: float, high: float) -> bool:
        """Whether some value in ``[low, high]`` (a quantity's range) meets the bound."""
        return bool(self.violation(np.array([low if self.op == "<=" else high]))[0] <= 0)

    def violation(self, values: np.ndarray) -> np.ndarray:
        """Amount by which raw values break the constraint (<= 0 means satisfied)."""
        return values - self.bound if self.op == "<=" else self.bound - values

    def __str__(self) -> str:
        return f"{self.objective}{self.op}{self.bound:g}"


class BudgetExhausted(Exception):
    """Raised inside an algorithm's loop when no evaluation is left."""


def distinct_size(space: Any, limit: int = 2**20) -> int:
    """How many distinct architectures ``space`` holds: its vectors counted after
    ``canonicalize`` where it has one and the space is small enough to list (a budget
    between the two could never be spent), else ``space.size()``."""
    from hwnas.space.base import SearchSpace

    n = int(space.size())
    if n > limit or type(space).canonicalize is SearchSpace.canonicalize:
        return n
    every = np.stack(np.unravel_index(np.arange(n), space.cardinalities), axis=1)
    return len(np.unique(space.canonicalize(every), axis=0))


class EvaluatorError(SetupError):
    """An evaluator broke its contract (an answer of the wrong shape or type): a bug in
    it, so the search stops instead of recording every architecture as failed."""


#: evaluations that all failed, from a search's start, that stop it (EvaluatorError): a
#: broken evaluator, not unlucky architectures
FAILED_START = 10

#: names the store and the CSVs use for their own columns
_RESERVED_NAMES = (
    "seq",
    "arch_key",
    "arch",
    "vector",
    "status",
    "error",
    "wall_time_s",
    "source",
    "feasible",
)


def _check_objective_names(objectives: Sequence[Objective]) -> None:
    """Objectives are stored and written by name: two with one name, or one named like a
    column of the store, would overwrite each other's values."""
    names = [o.name for o in objectives]
    if not names:
        raise HwnasError("the evaluator has no objectives")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise HwnasError(f"two objectives are named {', '.join(twice)}: give each its own name")
    taken = [n for n in names if n in _RESERVED_NAMES]
    if taken:
        raise HwnasError(
            f"objective name {', '.join(taken)} is a column of the results: rename it "
            f"(taken: {', '.join(_RESERVED_NAMES)})"
        )


class SearchProblem:
    """Budgeted evaluation with dedup, storage, constraints and quality tracking."""

    def __init__(
        self,
        evaluator: Evaluator,
        budget: int,
        store: ResultsStore | None = None,
        run_id: str | None = None,
        constraints: Sequence[Constraint | str] | None = None,
        exact_front: bool = True,
        on_evaluation: Callable[[int, int], None] | None = None,
    ) -> None:
        if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 1:
            raise HwnasError(f"the evaluation budget must be an integer >= 1, got {budget!r}")
        budget = int(budget)
        missing = [a for a in ("space", "objectives") if getattr(evaluator, a, None) is None]
        if missing:
            raise HwnasError(
                f"{type(evaluator).__name__} has no {' or '.join(missing)}: an evaluator sets "
                "self.space (a SearchSpace) and self.objectives (Objectives) in __init__"
            )
        if evaluator.space.n_dims < 1:
            raise HwnasError(f"space {evaluator.space.name} has no dimensions to search")
        self.evaluator = evaluator
        self.space = evaluator.space
        self.objectives: list[Objective] = list(evaluator.objectives)
        _check_objective_names(self.objectives)
        self.signs = np.array([o.sign for o in self.objectives])
        self.budget = budget
        self.store = store
        self.run_id = run_id
        if isinstance(constraints, str | Constraint):  # one constraint, not a list of them
            constraints = [constraints]
        self.constraints = [
            c if isinstance(c, Constraint) else Constraint.parse(c) for c in constraints or []
        ]
        names = [o.name for o in self.objectives]
        aliases = {a: o.name for o in self.objectives for a in o.aliases}
        self.constraints = [
            Constraint(aliases[c.objective], c.op, c.bound)
            if c.objective not in names and c.objective in aliases
            else c
            for c in self.constraints
        ]
        metrics = [m for m in getattr(evaluator, "metrics", ()) if m not in names]
        # per constraint: the objective's column, or None for a metric of the evaluator
        self._cidx: list[int | None] = []
        for c in self.constraints:
            if c.objective in names:
                self._cidx.append(names.index(c.objective))
            elif c.objective in metrics:
                self._cidx.append(None)
            else:
                also = f"; also constrainable: {', '.join(metrics)}" if metrics else ""
                if any(o.aliases for o in self.objectives):
                    also += "; a device's latency is also named latency:DEVICE"
                raise HwnasError(
                    f"constraint '{c}' names unknown objective '{c.objective}' "
                    f"(objectives: {', '.join(names)}{also})"
                )
        self._check_metric_bounds()
        for c, i in zip(self.constraints, self._cidx, strict=True):
            # a floor on what is minimised (or a ceiling on what is maximised): a typo?
            if i is not None and (c.op == ">=") == (self.objectives[i].direction == "min"):
                flipped = "<=" if c.op == ">=" else ">="
                warnings.warn(
                    f"constraint '{c}' bounds {c.objective}, which the search "
                    f"{self.objectives[i].direction}imises, from "
                    f"{'below' if c.op == '>=' else 'above'}; did you mean "
                    f"'{c.objective}{flipped}{c.bound:g}'?",
                    stacklevel=2,
                )
        self.on_evaluation = on_evaluation
        # memory of evaluated architectures, in evaluation order
        self.keys: list[str] = []
        self.vectors: list[np.ndarray] = []
        self.raw: list[np.ndarray] = []  # nan row for failed evaluations
        self.ok: list[bool] = []
        self._index: dict[str, int] = {}
        self.eval_time_s = 0.0  # in evaluations made by this process
        self.stored_eval_time_s = 0.0  # in those a resumed run's store answered
        self.n_new = 0  # evaluations made in this process (not replayed)
        self._first_error: str | None = None  # of the first failed evaluation seen
        self.n_retried = 0  # stored failures of a resumed run evaluated again in place
        # distinct architectures answered to the algorithm in this process: a batch
        # that adds none is a stall; one answered from a resumed run's store is progress
        self._seen: set[str] = set()
        # a resumed run's stored evaluations not yet proposed again (key -> record)
        self._pending: dict[str, EvaluationRecord] = {}
        self.exact: ExactFront | None = None
        self.history: list[dict[str, float]] = []
        self._front_idx: list[int] = []
        table = evaluator.table() if exact_front else None
        if table is not None:
            vecs, values = table
            F_all = values * self.signs[None, :]
            feas = self._feasible(values, vecs)
            if not feas.any():
                cols = self._constrained(values, vecs)
                ranges = ", ".join(
                    f"{c.objective} {cols[:, j].min():.4g}..{cols[:, j].max():.4g}"
                    for j, c in enumerate(self.constraints)
                )
                raise HwnasError(
                    f"no architecture in the benchmark's table satisfies "
                    f"{' and '.join(map(str, self.constraints))} (the table has {ranges})"
                )
            self.exact = ExactFront.from_table(self.space.keys(vecs), F_all, feas)
            self._exact_keys = set(self.exact.keys)
            self._exact_dist = np.full(len(self.exact.keys), np.inf)
            self._found: set[str] = set()
        # an evaluation counts once per distinct architecture: a budget beyond the space
        # could never be spent (the search would stall at the end instead)
        n_arch = len(table[0]) if table is not None else distinct_size(self.space)
        if budget > n_arch:
            warnings.warn(
                f"a budget of {budget} evaluations is more than the {n_arch} architectures "
                f"of {self.space.name}; the search stops at {n_arch}",
                stacklevel=2,
            )
            self.budget = n_arch
        if store is not None and run_id is not None:
            self.attach_store(store, run_id)

    @property
    def constrained_metrics(self) -> list[str]:
        """The evaluator's metrics that a constraint bounds (reported beside objectives)."""
        bounded = (
            c.objective for c, i in zip(self.constraints, self._cidx, strict=True) if i is None
        )
        return list(dict.fromkeys(bounded))

    def metric_values(self, vectors: np.ndarray) -> dict[str, np.ndarray]:
        """The constrained metrics of ``vectors``, by name."""
        if not self.constrained_metrics:
            return {}
        values = np.atleast_2d(self.evaluator.evaluate_metrics(np.atleast_2d(vectors)))
        names = list(self.evaluator.metrics)
        return {m: values[:, names.index(m)] for m in self.constrained_metrics}

    @property
    def known_constraints(self) -> list[int]:
        """Indices of the constraints whose value is known before an evaluation: on a
        metric (params, MFLOPs) or on a cheap objective (a predicted latency)."""
        cheap = self.cheap_indices
        return [j for j, i in enumerate(self._cidx) if i is None or i in cheap]

    def known_violation(self, vectors: np.ndarray) -> np.ndarray | None:
        """Summed relative violation (n,) of :attr:`known_constraints`: 0 where
        ``vectors`` meet them all; None when there is none, so a sampler can skip it.
        Nothing is evaluated or counted."""
        known = self.known_constraints
        if not known:
            return None
        vectors = np.atleast_2d(vectors)
        cheap = self.cheap_indices
        raw = np.full((len(vectors), self.n_obj), np.nan)
        if cheap:
            raw[:, cheap] = self.cheap_values(vectors)
        cols = self._constrained(raw, vectors)
        # relative to each bound, so bounds in different units weigh alike
        g = np.stack(
            [
                self.constraints[j].violation(cols[:, j])
                / max(abs(self.constraints[j].bound), 1e-12)
                for j in known
            ],
            axis=1,
        )
        return np.where(np.isfinite(g), np.maximum(g, 0.0), np.inf).sum(axis=1)

    def _check_metric_bounds(self) -> None:
        """A bound on a metric (or on a cheap objective computed by a formula, such as
        MFLOPs) that no architecture of the space can meet is refused now, not after the
        budget is spent (the evaluator knows its range)."""
        if not self.constraints:
            return
        ranges = self.evaluator.metric_range()
        for c in self.constraints:
            if c.objective not in ranges:
                continue
            lo, hi = ranges[c.objective]
            if not c.satisfiable(lo, hi):
                raise HwnasError(
                    f"no architecture of {self.space.name} satisfies {c} (its "
                    f"{c.objective} range from {lo:.6g} to {hi:.6g})"
                )

    def attach_store(self, store: ResultsStore, run_id: str) -> None:
        """Store every evaluation from now on in ``run_id`` of ``store``; what it already
        holds (a resumed run) is answered from it as the algorithm proposes it again, and
        :meth:`finish_replay` takes in the rest. Attaching after construction lets a run
        be created only once the problem has been checked."""
        self.store, self.run_id = store, run_id
        self._pending = {rec.arch_key: rec for rec in store.evaluations(run_id)}

    @property
    def replaying(self) -> bool:
        """Whether a resumed run's stored evaluations are still being proposed again
        (what the algorithm does now, it did before the kill)."""
        return bool(self._pending)

    @property
    def n_stored(self) -> int:
        """Evaluations the store held when the problem was attached to it (resumed)."""
        return self.n_evaluated - self.n_new + len(self._pending)

    def finish_replay(self) -> None:
        """Take in the stored evaluations the algorithm did not propose again (it
        diverged, or stopped first), in their stored order: none is lost."""
        for rec in sorted(self._pending.values(), key=lambda r: r.seq):
            self._take_stored(rec.arch_key)

    def _take_stored(self, key: str) -> None:
        """Answer a resumed run's stored evaluation of ``key`` from the store (it counts
        as evaluated now, and the progress display moves)."""
        rec = self._pending.pop(key)
        self.stored_eval_time_s += rec.wall_time_s
        self._remember(rec)
        if self.on_evaluation is not None:
            self.on_evaluation(self.n_evaluated, self.budget)

    # ---- bookkeeping ----------------------------------------------------------------------
    @property
    def n_obj(self) -> int:
        return len(self.objectives)

    @property
    def n_constr(self) -> int:
        return len(self.constraints)

    @property
    def cheap_indices(self) -> list[int]:
        """Objectives the evaluator computes exactly and cheaply for any architecture
        (``Evaluator.cheap_objectives``: nothing to learn about them)."""
        cheap = getattr(self.evaluator, "cheap_objectives", ())
        return [i for i, o in enumerate(self.objectives) if o.name in cheap]

    def cheap_values(self, vectors: np.ndarray) -> np.ndarray:
        """Raw values of the cheap objectives of ``vectors``, one column per entry of
        :attr:`cheap_indices`; nothing is evaluated or counted."""
        names = list(self.evaluator.cheap_objectives)
        values = np.atleast_2d(np.asarray(self.evaluator.evaluate_cheap(vectors), dtype=float))
        return values[:, [names.index(self.objectives[i].name) for i in self.cheap_indices]]

    @property
    def n_evaluated(self) -> int:
        return len(self.keys)

    @property
    def n_seen(self) -> int:
        """Distinct architectures answered in this process, evaluated now or replayed
        from the store: what an algorithm's stall check counts."""
        return len(self._seen)

    @property
    def remaining(self) -> int:
        return max(self.budget - self.n_evaluated, 0)

    @property
    def exhausted(self) -> bool:
        return self.remaining == 0

    def _feasible(self, raw: np.ndarray, vectors: np.ndarray | None = None) -> np.ndarray:
        raw = np.atleast_2d(raw)
        if not self.constraints:
            return np.all(np.isfinite(raw), axis=1)
        g = self.constraint_values(raw, vectors)
        return np.all(np.isfinite(raw), axis=1) & np.all(g <= 0, axis=1)

    def _constrained(self, raw: np.ndarray, vectors: np.ndarray | None) -> np.ndarray:
        """(n, n_constr) the raw values each constraint bounds: an objective's column,
        or a metric the evaluator computes from ``vectors``."""
        raw = np.atleast_2d(raw)
        if self.constrained_metrics and vectors is None:
            raise ValueError("constraints on metrics need the architectures' vectors")
        metrics = self.metric_values(vectors) if vectors is not None else {}
        cols = [
            raw[:, i] if i is not None else metrics[c.objective]
            for c, i in zip(self.constraints, self._cidx, strict=True)
        ]
        return np.stack(cols, axis=1)

    def constraint_values(self, raw: np.ndarray, vectors: np.ndarray | None = None) -> np.ndarray:
        """Violations (n, n_constr) of raw objective values; ``vectors`` (the rows'
        architectures) are needed when a constraint bounds a metric, not an objective."""
        raw = np.atleast_2d(raw)
        if not self.constraints:
            return np.zeros((raw.shape[0], 0))
        cols = self._constrained(raw, vectors)
        return np.stack([c.violation(cols[:, j]) for j, c in enumerate(self.constraints)], axis=1)

    def _remember(self, rec: EvaluationRecord) -> None:
        vec = np.asarray(rec.vector, dtype=np.int64)
        if rec.ok and rec.objectives is not None:
            raw = np.array([rec.objectives[o.name] for o in self.objectives], dtype=np.float64)
        else:
            raw = np.full(self.n_obj, np.nan)
        self._append(rec.arch_key, vec, raw, rec.ok)

    def _append(self, key: str, vec: np.ndarray, raw: np.ndarray, ok: bool) -> None:
        self._index[key] = len(self.keys)
        self.keys.append(key)
        self.vectors.append(vec)
        self.raw.append(raw)
        self.ok.append(ok)
        self._update_history()

    def _update_history(self) -> None:
        """Quality after the newest evaluation, updated incrementally (O(front) per
        evaluation, so long searches do not slow down quadratically)."""
        i = len(self.keys) - 1
        changed = False
        if self.ok[i] and self._feasible(self.raw[i], self.vectors[i])[0]:
            cand = [*self._front_idx, i]
            F = np.stack([self.raw[j] * self.signs for j in cand])
            self._front_idx = [cand[j] for j in np.nonzero(non_dominated_mask(F))[0]]
            changed = i in self._front_idx
            if self.exact is not None:
                self._exact_dist = np.minimum(
                    self._exact_dist, self.exact.distances(self.raw[i] * self.signs)
                )
                if self.keys[i] in self._exact_keys:
                    self._found.add(self.keys[i])
        entry: dict[str, float] = {"evaluations": float(len(self.keys))}
        if self.exact is not None:
            prev = self.history[-1] if self.history else None
            hv = (
                hypervolume(self.front_F(), self.exact.ref)
                if changed or prev is None
                else prev["hypervolume"]
            )
            entry.update(
                {
                    "hypervolume": hv,
                    "hv_fraction": hv / self.exact.hv if self.exact.hv > 0 else 0.0,
                    "front_recall": len(self._found) / len(self.exact.keys),
                    "igd": float(self._exact_dist.mean()),
                }
            )
        else:
            entry["front_size"] = float(len(self._front_idx))
        self.history.append(entry)

    def front_F(self) -> np.ndarray:
        if not self._front_idx:
            return np.zeros((0, self.n_obj))
        return np.stack([self.raw[j] * self.signs for j in self._front_idx])

    def front_indices(self) -> list[int]:
        return list(self._front_idx)

    def feasible_set(self) -> tuple[list[str], np.ndarray]:
        idx = [
            i
            for i in range(len(self.keys))
            if self.ok[i] and self._feasible(self.raw[i], self.vectors[i])[0]
        ]
        F = np.stack([self.raw[i] * self.signs for i in idx]) if idx else np.zeros((0, self.n_obj))
        return [self.keys[i] for i in idx], F

    def evaluated_arrays(self, only_ok: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, raw values) of everything evaluated so far."""
        idx = [i for i in range(len(self.keys)) if self.ok[i] or not only_ok]
        if not idx:
            return np.zeros((0, self.space.n_dims), dtype=np.int64), np.zeros((0, self.n_obj))
        return np.stack([self.vectors[i] for i in idx]), np.stack([self.raw[i] for i in idx])

    def is_evaluated(self, vectors: np.ndarray) -> np.ndarray:
        return np.array([k in self._index for k in self.space.keys(vectors)], dtype=bool)

    # ---- evaluation -----------------------------------------------------------------------
    def evaluate(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw values (n, m), constraint violations (n, c) and a mask of answered rows.

        Rows past the budget are left unanswered (nan, mask False); failed evaluations
        answer nan with mask True.
        """
        x = self.space.canonicalize(self.space.check_vectors(vectors))
        keys = self.space.keys(x)
        new: list[int] = []
        batch: set[str] = set()
        for i, k in enumerate(keys):
            if k in self._index or k in batch:
                continue
            if k in self._pending:  # stored by the run before the kill: answered from it
                self._take_stored(k)
                continue
            if self._pending:
                # the algorithm left the stored path (a setting that follows the budget,
                # e.g. LINAS's batch size, or changed code): take in the rest at once
                self.finish_replay()
            # new evaluations only once nothing stored is left to replay, so the
            # remaining budget is the room for them
            if len(new) < self.remaining:
                new.append(i)
                batch.add(k)
        if new:
            self._evaluate_new(x[new], [keys[i] for i in new])
        raw = np.full((len(keys), self.n_obj), np.nan)
        answered = np.zeros(len(keys), dtype=bool)
        for i, k in enumerate(keys):
            j = self._index.get(k)
            if j is not None:
                raw[i] = self.raw[j]
                answered[i] = True
                self._seen.add(k)
        return raw, self.constraint_values(raw, x), answered

    def _evaluate_new(self, x: np.ndarray, keys: list[str]) -> None:
        """Evaluate and store new architectures, in chunks of the evaluator's
        ``max_batch``: each chunk is committed as it completes, so a kill loses at most
        the chunk in progress. An architecture that fails is stored as failed; a
        :class:`~hwnas.errors.SetupError` (the setup's fault, e.g. a device agent gone)
        stops the search with nothing of its chunk stored, so a resume evaluates it."""
        step = self.evaluator.max_batch or len(keys)
        for s in range(0, len(keys), step):
            self._evaluate_chunk(x[s : s + step], keys[s : s + step])

    def retry_failed(self) -> int:
        """Evaluate again the resumed run's stored failures (e.g. out of memory on a busy
        device, or an agent error stored by a version before SetupError) and store each
        result in place of its failure (same sequence number); the replay then answers
        from the new rows. Returns how many were retried."""
        assert self.store is not None and self.run_id is not None, "attach a store first"
        failed = [rec for rec in self._pending.values() if not rec.ok]
        if not failed:
            return 0
        x = np.asarray([rec.vector for rec in failed], dtype=np.int64)
        keys = [rec.arch_key for rec in failed]
        step = self.evaluator.max_batch or len(keys)
        for s in range(0, len(keys), step):
            self._evaluate_chunk(x[s : s + step], keys[s : s + step], replace=True)
        self._pending = {rec.arch_key: rec for rec in self.store.evaluations(self.run_id)}
        return len(failed)

    def _evaluate_chunk(self, x: np.ndarray, keys: list[str], replace: bool = False) -> None:
        """Evaluate one chunk and store it (``replace``: over stored failures of a resumed
        run, whose replay then takes them in; else as new evaluations)."""
        x = np.array(x, dtype=np.int64)  # our own copy: an evaluator may write into its input
        archs = [self._arch(vec) for vec in x] if self.store is not None else [None] * len(x)
        t0 = time.perf_counter()
        try:
            values = self._shaped(self.evaluator.evaluate(x.copy()), len(x))
            per = (time.perf_counter() - t0) / len(keys)
            results = [(values[i], None, per) for i in range(len(keys))]
        except SetupError:  # not the architectures' fault: stop, nothing of the chunk stored
            self.eval_time_s += time.perf_counter() - t0
            raise
        except Exception:
            # isolate failures: evaluate one by one, record each failure and go on (each
            # row's time includes its share of the failed attempt at the whole chunk)
            share = (time.perf_counter() - t0) / len(keys)
            results = []
            for i in range(len(keys)):
                t1 = time.perf_counter()
                try:
                    v = self._shaped(self.evaluator.evaluate(x[i : i + 1].copy()), 1)[0]
                    results.append((v, None, share + time.perf_counter() - t1))
                except SetupError:
                    self.eval_time_s += time.perf_counter() - t0
                    raise
                except Exception as exc:  # an evaluation that fails is recorded as failed
                    msg = f"{type(exc).__name__}: {exc}"
                    tb = traceback.format_exc(limit=3)
                    results.append((None, f"{msg}\n{tb}", share + time.perf_counter() - t1))
        # what the store holds of it: a resumed run adds up the same stored times (a retry
        # is counted when the replay takes it in)
        if not replace:
            self.eval_time_s += sum(wall for _, _, wall in results)
        for vec, key, arch, (vals, err, wall) in zip(x, keys, archs, results, strict=True):
            ok = err is None and vals is not None and bool(np.all(np.isfinite(vals)))
            if err is None and not ok:
                err = "non-finite objective value"
            raw = np.asarray(vals, dtype=np.float64) if ok else np.full(self.n_obj, np.nan)
            if self.store is not None and self.run_id is not None:
                self.store.add_evaluation(
                    self.run_id,
                    key,
                    vec.tolist(),
                    {o.name: float(raw[i]) for i, o in enumerate(self.objectives)} if ok else None,
                    arch=arch,
                    status="ok" if ok else "failed",
                    error=err,
                    wall_time_s=wall,
                    source=self.evaluator.source,
                    replace=replace,
                )
            if replace:  # taken in (and its time counted) when the replay reaches it
                self.n_retried += 1
                continue
            self.n_new += 1
            self._append(key, vec, raw, ok)
            if err is not None and self._first_error is None:
                self._first_error = err.splitlines()[0]
            if self.on_evaluation is not None:
                self.on_evaluation(self.n_evaluated, self.budget)
        if not replace and not any(self.ok) and len(self.ok) >= min(FAILED_START, self.budget):
            where = ""
            if self.store is not None:
                run = Path(self.store.path).parent
                where = (
                    " (stored as failed); mend the evaluator, then evaluate them again: "
                    f"hwnas search --resume {run} --retry-failed (resume_search(..., "
                    "retry_failed=True))"
                )
            raise EvaluatorError(
                f"the first {len(self.ok)} evaluations all failed, the first with: "
                f"{self._first_error}{where}"
            )

    def _arch(self, vec: np.ndarray) -> Any:
        """``space.decode(vec)`` as the store keeps it (JSON), checked before anything is
        evaluated: a decode that fails or gives what JSON cannot hold is the space's bug,
        and would otherwise stop the search after its evaluations were spent."""
        where = f"{type(self.space).__name__}.decode"
        key = self.space.keys(vec[None, :])[0]
        try:
            arch = self.space.decode(vec.copy())
            json.dumps(arch, default=json_default)
        except Exception as exc:
            raise EvaluatorError(
                f"{where} failed on {key}: {type(exc).__name__}: {exc} (the "
                "store keeps what decode returns as JSON: a string, number, list or dict "
                "with string keys)"
            ) from None
        return arch

    def _shaped(self, values: Any, n: int) -> np.ndarray:
        """An evaluator's answer as (n, objectives) floats; one of another shape or type
        is the evaluator's bug, not the architectures': the search stops on it
        (:class:`EvaluatorError`) instead of storing wrong rows or failing every one."""
        names = ", ".join(o.name for o in self.objectives)
        where = f"{type(self.evaluator).__name__}.evaluate"
        try:
            if values is None:
                raise TypeError("None")
            a = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise EvaluatorError(
                f"{where} must return numbers, an array of shape ({n}, {self.n_obj}) "
                f"({names}); got {type(values).__name__}: {exc}"
            ) from None
        if a.ndim == 1 and self.n_obj == 1 and len(a) == n:
            a = a[:, None]  # one objective: one value per architecture
        elif a.ndim == 1 and n == 1 and len(a) == self.n_obj:
            a = a[None, :]  # one architecture: its values
        if a.shape != (n, self.n_obj):
            raise EvaluatorError(
                f"{where} returned shape {a.shape} for {n} architecture(s); expected "
                f"({n}, {self.n_obj}): one row per architecture, one column per objective "
                f"({names})"
            )
        return a

    def minimisation(self, raw: np.ndarray, penalty: float = 1e12) -> np.ndarray:
        """Raw values -> minimisation values, failed rows replaced by a large penalty."""
        F = np.asarray(raw, dtype=np.float64) * self.signs[None, :]
        return np.where(np.isfinite(F), F, penalty)
