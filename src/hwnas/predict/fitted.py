"""Predictors fitted on measured data, saved with their provenance, and used in a search.

* :func:`fit_on_profile` fits a predictor (features: ``space.cost_features(vectors)``) on the
  measurements of a profile run (:func:`hwnas.measure.profile.profile_space`) and scores
  it: K-fold cross-validation and a held-out test split (MAPE, Kendall tau, Spearman rho),
  with the FLOPs-only ranking on the same test rows as a baseline.
* :class:`FittedPredictor` is the fitted model plus its metadata (space, target, device
  and host, runtime, measurement settings, versions, training size, scores);
  ``save(path)`` writes a pickle (``.pkl``) or joblib (``.joblib``) file plus a JSON
  sidecar ``path + ".json"`` with the metadata; :func:`load_fitted` reads it back.
  Loading a pickle runs code from the file: load only files you trust.
* :class:`PredictorEvaluator` turns saved predictors (and plain functions, and FLOPs)
  into an :class:`~hwnas.bench.base.Evaluator`, so a
  :class:`~hwnas.search.problem.SearchProblem` can search with a predicted latency.
* :func:`sample_efficiency_on_profile` is the learning-curve evaluation of
  :func:`hwnas.predict.evaluate.sample_efficiency` on measured data, plus the FLOPs
  baseline on the same test set.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import sqlite3
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.bench.base import Evaluator, Objective
from hwnas.errors import HwnasError, check_not_under_file
from hwnas.space.base import SearchSpace

FITTED_FORMAT = "hwnas-fitted-predictor/1"
MIN_SAMPLES = 5


def _space(name_or_space: str | SearchSpace) -> SearchSpace:
    if isinstance(name_or_space, SearchSpace):
        return name_or_space
    from hwnas.space import get_space

    return get_space(str(name_or_space))


@dataclass
class FittedPredictor:
    """A fitted regression model over one space's architecture vectors."""

    model: Any
    space_name: str
    target: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._space_obj: SearchSpace | None = None

    @property
    def space(self) -> SearchSpace:
        if getattr(self, "_space_obj", None) is None:
            from hwnas.space import SPACES

            if self.space_name not in SPACES.names():  # a space of one's own, unbound
                raise HwnasError(
                    f"this predictor's space '{self.space_name}' is not registered: bind "
                    "it with predictor.bind(MySpace()) (or load_fitted(path, space=...)), "
                    "or register it (hwnas.space.SPACES.register)"
                )
            self._space_obj = _space(self.space_name)
        return self._space_obj  # type: ignore[return-value]

    def bind(self, space: SearchSpace) -> FittedPredictor:
        """Predict over ``space`` (an instance of the space it was fitted on, e.g. one of
        your own that is not registered by name); returns the predictor."""
        if not isinstance(space, SearchSpace) or space.name != self.space_name:
            got = space.name if isinstance(space, SearchSpace) else type(space).__name__
            raise HwnasError(f"this predictor was fitted on space '{self.space_name}', not {got}")
        self._space_obj = space
        return self

    def predict(self, vectors: np.ndarray) -> np.ndarray:
        """Predicted target values, shape (n,); a vector outside the space is refused."""
        x = self.space.check_vectors(vectors)
        features = self.metadata.get("features", "")
        if features.startswith("space.features"):
            X = self.space.features(x)  # saved before cost features existed
        elif features == "space.function_features":
            X = self.space.function_features(x)
        else:
            X = self.space.cost_features(x)
        expected = getattr(self.model, "n_features_in_", X.shape[1])
        if expected != X.shape[1]:
            raise HwnasError(
                f"this predictor was fitted on {expected} features, but space "
                f"'{self.space_name}' now gives {X.shape[1]}: refit it on its profile"
            )
        return np.asarray(self.model.predict(X), dtype=np.float64).ravel()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_space_obj", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._space_obj = None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the predictor (``.joblib``: joblib, anything else: pickle) and the JSON
        sidecar ``<path>.json``; returns the path. Each is written to a temporary file of
        its own first and renamed (two fits saving at once each leave a whole file; the
        temporary file never stays behind)."""
        import uuid

        path = Path(path)
        check_writable_file(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        unique = f"{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"  # the umask's permissions
        tmp = path.with_name(f".{path.name}.{unique}")
        try:
            if path.suffix == ".joblib":
                import joblib

                joblib.dump(self, tmp)
            else:
                with tmp.open("wb") as f:
                    pickle.dump(self, f, protocol=pickle.HIGHEST_PROTOCOL)
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        sidecar = sidecar_path(path)
        meta = {"format": FITTED_FORMAT, "space": self.space_name, "target": self.target}
        meta.update(self.metadata)
        tmp = sidecar.with_name(f".{sidecar.name}.{unique}")
        try:
            tmp.write_text(json.dumps(meta, indent=2, default=_json_default) + "\n")
            tmp.replace(sidecar)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path


def check_writable_file(path: str | os.PathLike[str]) -> Path:
    """Refuse an output path that is a directory (itself or its JSON sidecar) or lies
    under a file, before any work is done."""
    path = Path(path)
    for p in (path, sidecar_path(path)):
        if p.is_dir():
            raise HwnasError(f"'{p}' is a directory; give a file path for the predictor")
    return check_not_under_file(path)


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p.with_name(p.name + ".json")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def load_fitted(path: str | os.PathLike[str], space: SearchSpace | None = None) -> FittedPredictor:
    """Read a predictor written by :meth:`FittedPredictor.save` (a trusted file only:
    unpickling runs code); ``space`` binds it to that space object (needed for a space
    of one's own that is not registered by name)."""
    path = Path(path)
    if not path.is_file():
        raise HwnasError(f"predictor file not found: {path}")
    try:
        if path.suffix == ".joblib":
            import joblib

            obj = joblib.load(path)
        else:
            with path.open("rb") as f:
                obj = pickle.load(f)
    except Exception as exc:
        raise HwnasError(f"cannot load predictor {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, FittedPredictor):
        raise HwnasError(f"{path} does not hold an hwnas fitted predictor")
    return obj.bind(space) if space is not None else obj


def fit_predictor(
    space: str | SearchSpace,
    vectors: np.ndarray,
    values: np.ndarray,
    target: str,
    model: str = "auto",
    kind: str = "cost",
    seed: int = 0,
) -> FittedPredictor:
    """Fit predictor ``model`` (``hwnas predictors list``) on architectures and their
    measured ``target`` values (e.g. a search's evaluations), on the space's cost features
    for ``kind="cost"`` and its function features for ``"quality"``; save it with
    ``.save(path)`` and use it in a :class:`PredictorEvaluator`."""
    from hwnas.predict.models import make_predictor

    if kind not in ("cost", "quality"):
        raise HwnasError(f"kind is 'cost' or 'quality', not {kind!r}")
    sp = _space(space)
    x = sp.check_vectors(vectors)
    y = np.asarray(values, dtype=np.float64).ravel()
    if len(y) != len(x):
        raise HwnasError(f"{len(x)} architectures but {len(y)} values")
    if len(y) < MIN_SAMPLES or not np.isfinite(y).all():
        raise HwnasError(f"need at least {MIN_SAMPLES} finite values to fit, got {len(y)}")
    X = sp.function_features(x) if kind == "quality" else sp.cost_features(x)
    est = make_predictor(model, seed=seed).fit(X, y)
    metadata = {
        "model": model,
        "chosen": getattr(est, "chosen_", model),
        "features": "space.function_features" if kind == "quality" else "space.cost_features",
        "target_key": target,
        "n_train": len(y),
        "seed": seed,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return FittedPredictor(est, sp.name, target, metadata).bind(sp)


# ---------------------------------------------------------------------------------------
# fitting on a profile run
# ---------------------------------------------------------------------------------------
def _cv_scores(
    name: str, X: np.ndarray, y: np.ndarray, folds: int, seed: int
) -> dict[str, float] | None:
    from sklearn.model_selection import KFold

    from hwnas.predict.evaluate import rank_metrics
    from hwnas.predict.models import make_predictor

    n = len(y)
    k = min(folds, n // 2)
    if k < 2:
        return None
    oof = np.empty(n)
    for train, test in KFold(k, shuffle=True, random_state=seed).split(X):
        model = make_predictor(name, seed=seed).fit(X[train], y[train])
        oof[test] = np.asarray(model.predict(X[test]), dtype=np.float64).ravel()
    scores = rank_metrics(y, oof)
    scores["folds"] = k
    return scores


def _check_rows(data: Any, run_dir: str | os.PathLike[str]) -> int:
    """The number of successful rows of a profile; an error below :data:`MIN_SAMPLES`."""
    n = len(data)
    if n == 0:
        failed = (data.run.get("summary") or {}).get("failed")
        why = f" (all {failed} failed)" if failed else ""
        raise HwnasError(
            f"{run_dir} holds no successful measurement{why}; nothing to fit a predictor on"
        )
    if n < MIN_SAMPLES:
        raise HwnasError(f"{run_dir} holds {n} successful measurements; need >= {MIN_SAMPLES}")
    return n


def fit_on_profile(
    run_dir: str | os.PathLike[str],
    target: str = "latency",
    model: str = "auto",
    seed: int = 0,
    test_fraction: float = 0.2,
    cv_folds: int = 5,
    refit: bool = True,
    record: bool = True,
    flops_baseline: bool = True,
) -> FittedPredictor:
    """Fit predictor ``model`` on the measured ``target`` of the profile run in ``run_dir``.

    A seeded ``test_fraction`` of the rows is held out for the test scores (also those of
    the FLOPs-only baseline); ``cv_folds``-fold CV on the other rows gives the CV scores.
    With ``refit`` (default) the saved model is then refitted on all rows
    (``metadata["n_train"]`` says how many). With ``record`` the fit and its scores are
    also stored in the run's results store (``predictor_fits``). ``flops_baseline`` adds
    the Kendall tau / Spearman rho of ranking by FLOPs alone (test rows, and all rows).
    """
    from hwnas.measure.profile import find_store, load_profile, resolve_target
    from hwnas.predict.evaluate import kendall_tau, rank_metrics, spearman_rho
    from hwnas.predict.models import make_predictor
    from hwnas.store.sqlite import ResultsStore, versions

    make_predictor(model)  # unknown names fail before any work
    if cv_folds < 0 or cv_folds == 1:
        raise HwnasError(f"CV folds must be 0 (none) or >= 2, got {cv_folds}")
    if not 0 <= test_fraction < 1:
        raise HwnasError(f"test fraction must be in [0, 1), got {test_fraction}")
    data = load_profile(run_dir)
    n = _check_rows(data, run_dir)
    key = resolve_target(target, data.objectives)
    space = _space(data.space_name)
    X = space.cost_features(data.vectors)
    y = data.objectives[key]
    flops = data.objectives.get("flops") if flops_baseline else None
    rng = np.random.default_rng(seed)
    n_test = round(n * test_fraction) if n >= 10 else 0
    perm = rng.permutation(n)
    test, train = perm[:n_test], perm[n_test:]

    t0 = time.perf_counter()
    scores: dict[str, Any] = {}
    if cv_folds >= 2:
        cv = _cv_scores(model, X[train], y[train], cv_folds, seed)
        if cv is not None:
            scores["cv"] = cv
    est = make_predictor(model, seed=seed).fit(X[train], y[train])
    if n_test >= 2:
        scores["test"] = rank_metrics(y[test], est.predict(X[test]))
        scores["test"]["n"] = int(n_test)
        if flops is not None:
            scores["flops_baseline"] = {
                "kendall_tau": kendall_tau(y[test], flops[test]),
                "spearman_rho": spearman_rho(y[test], flops[test]),
                "n": int(n_test),
            }
    if flops is not None:
        scores.setdefault("flops_baseline_all", {})["kendall_tau"] = kendall_tau(y, flops)
    if refit and n_test:
        est = make_predictor(model, seed=seed).fit(X, y)
        n_train = n
    else:
        n_train = len(train)
    fit_time = time.perf_counter() - t0

    first = data.records[0].extra or {}
    metadata: dict[str, Any] = {
        "model": model,
        "chosen": getattr(est, "chosen_", model),
        "auto_cv_kendall_tau": getattr(est, "cv_scores_", None),
        "features": "space.cost_features",
        "target_key": key,
        "target_unit": "ms" if key.endswith("_ms") else "",
        "n_train": int(n_train),
        "n_measured": int(n),
        "n_test": int(n_test),
        "test_fraction": test_fraction,
        "refit_on_all": bool(refit and n_test),
        "seed": seed,
        "scores": scores,
        "fit_time_s": fit_time,
        "run_dir": str(Path(run_dir).resolve()),
        "run_id": data.run["run_id"],
        "device": data.run["config"].get("device"),
        # the measured networks' input and head: a supernet searched with this predictor
        # should deploy the same (SupernetBenchmark warns otherwise)
        "networks": {
            "in_channels": data.run["config"].get("in_channels") or 3,  # stored unless 3
            "input_size": data.run["config"].get("input_size"),
            "num_classes": data.run["config"].get("num_classes"),
        },
        "host": first.get("host"),
        "runtime": {k: first.get(k) for k in ("runtime", "runtime_version", "provider", "threads")},
        "settings": data.settings,
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    fitted = FittedPredictor(est, data.space_name, key, metadata)
    if record:
        flat = {
            f"{part}_{m}": float(v)
            for part, d in scores.items()
            for m, v in d.items()
            if isinstance(v, int | float)
        }
        try:
            with ResultsStore(find_store(run_dir)) as store:
                store.add_predictor_fit(
                    data.run["run_id"], key, model, int(n_train), scores=flat, fit_time_s=fit_time
                )
        except (HwnasError, sqlite3.Error) as exc:  # e.g. a profile on a read-only disk
            warnings.warn(
                f"the fit is not recorded in {run_dir}'s results store ({exc}); the saved "
                "predictor's metadata holds all of it",
                stacklevel=2,
            )
    return fitted


def sample_efficiency_on_profile(
    run_dir: str | os.PathLike[str],
    target: str = "latency",
    models: Sequence[str] = ("ridge", "svr", "gp", "cart"),
    sizes: Sequence[int] = (10, 25, 50, 100),
    trials: int = 5,
    test_size: int | None = None,
    seed: int = 0,
    progress: Callable[..., None] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Learning curves of ``models`` on a profile run: ``(rows, summary, baseline)``.

    ``test_size`` defaults to a third of the rows (at least 2). ``baseline`` holds the
    Kendall tau / Spearman rho of ranking the same test rows by FLOPs alone (the test set
    is drawn exactly as :func:`hwnas.predict.evaluate.sample_efficiency` draws it).
    """
    import warnings

    from hwnas.measure.profile import load_profile, resolve_target
    from hwnas.predict.evaluate import kendall_tau, sample_efficiency, spearman_rho, summarize

    data = load_profile(run_dir)
    n = _check_rows(data, run_dir)
    key = resolve_target(target, data.objectives)
    if test_size is not None and test_size < 0:
        raise HwnasError(f"test size must be >= 0 (0: a third of the rows), got {test_size}")
    if not test_size:
        test_size = max(2, n // 3)
    if test_size >= n - 1:
        raise HwnasError(f"test size {test_size} leaves too few of {n} rows to train on")
    pool = n - test_size
    fits = [int(s) for s in sizes if int(s) <= pool]
    if not fits:
        raise HwnasError(
            f"no training size fits: {pool} of the profile's {n} rows are left after the "
            f"{test_size}-row test set (give --sizes up to {pool}, or profile more subnets)"
        )
    for size in sorted({int(s) for s in sizes} - set(fits)):
        warnings.warn(
            f"skipping training size {size}: only {pool} of the profile's {n} rows are left "
            f"after the {test_size}-row test set",
            stacklevel=2,
        )
    sizes = fits
    space = _space(data.space_name)
    X = space.cost_features(data.vectors)
    y = data.objectives[key]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        rows = sample_efficiency(X, y, models, sizes, test_size, trials, seed, progress=progress)
    baseline: dict[str, Any] = {"target": key, "n": n, "test_size": test_size, "sizes": sizes}
    if "flops" in data.objectives:
        test_idx = np.random.default_rng(seed).permutation(n)[:test_size]
        f = data.objectives["flops"][test_idx]
        baseline["flops_kendall_tau"] = kendall_tau(y[test_idx], f)
        baseline["flops_spearman_rho"] = spearman_rho(y[test_idx], f)
    return rows, summarize(rows), baseline


# ---------------------------------------------------------------------------------------
# a search objective from predictors
# ---------------------------------------------------------------------------------------
def _target_unit(target: str) -> str:
    """The unit of a stored profile objective (the values a fitted predictor returns)."""
    if target.endswith("_ms"):
        return "ms"
    if target.endswith("_bytes"):
        return "bytes"
    return {"flops": "FLOPs", "macs": "MACs"}.get(target, "")


#: name parts read as a cost to minimise when no Objective is given (latency_ms, params_m,
#: energy_mj, top1_error, val_loss, ...)
_COST_WORDS = (
    *("latency", "flops", "macs", "params", "energy", "memory", "size"),
    *("err", "loss", "drop", "degrad"),
)


def _default_objective(name: str, source: Any = None) -> Objective:
    """Direction and unit of an objective: quality for ``acc*``/``top1*`` names (not
    ``top1_error``), cost for a fitted predictor and for names with a cost word
    (latency, flops, params, energy, memory, size, error, loss, drop); any other name is
    refused, as guessing would search the wrong way (``f1`` minimised). A
    :class:`FittedPredictor` gives its own target's unit (raw FLOPs for a ``flops``
    profile target); otherwise ``latency*`` is ms and ``flops``/``mflops`` MFLOPs (the
    unit of ``PredictorEvaluator(flops=True)``)."""
    low = name.lower()
    costly = any(w in low for w in _COST_WORDS)
    if (low.startswith("acc") or re.match(r"top-?\d", low)) and not costly:
        return Objective(name, "max", "%", "quality")
    if isinstance(source, FittedPredictor):
        return Objective(name, "min", _target_unit(source.target), "cost")
    if not costly:
        raise HwnasError(
            f"objective '{name}': cannot tell whether to minimise or maximise it from its "
            f"name; pass objectives={{'{name}': Objective('{name}', 'max')}} (or 'min')"
        )
    unit = "ms" if "latency" in low else "MFLOPs" if low in ("flops", "mflops") else ""
    return Objective(name, "min", unit, "cost")


class PredictorEvaluator(Evaluator):
    """Objectives from fitted predictors and/or functions of architecture vectors.

    ``objectives_from`` maps an objective name to a :class:`FittedPredictor` (or anything
    with ``.predict(vectors)``) or to a function ``vectors -> values``. Names starting
    with ``acc``/``top1`` are maximised (quality), names of costs (latency, flops, params,
    energy, memory, size, error, loss, drop) minimised; pass ``objectives`` (Objective
    instances by name, e.g. ``{"f1": Objective("f1", "max", kind="quality")}``) for any
    other name or to override. A fitted predictor's
    objective has the unit of its target (``FLOPs`` for a predictor fitted on the
    profile's ``flops``, which are raw FLOPs; ``ms`` for latency). ``flops=True`` appends
    a ``flops`` objective (MFLOPs = 2 x the space's MACs, MBv3 spaces only).
    """

    source = "predicted"

    def __init__(
        self,
        space: str | SearchSpace,
        objectives_from: Mapping[str, Any],
        flops: bool = False,
        num_classes: int | None = None,
        objectives: Mapping[str, Objective] | None = None,
    ) -> None:
        self.space = _space(space)
        if not objectives_from and not flops:
            raise HwnasError("PredictorEvaluator needs at least one objective")
        self._fns: list[Callable[[np.ndarray], Any]] = []
        self.objectives = []
        self.predictors: dict[str, dict[str, Any]] = {}
        overrides = dict(objectives or {})
        named = [*objectives_from, *(["flops"] if flops else [])]
        for key, obj in overrides.items():
            if key not in named:
                raise HwnasError(
                    f"objectives names '{key}', which is not an objective here ({', '.join(named)})"
                )
            if not isinstance(obj, Objective) or obj.name != key:
                raise HwnasError(
                    f"objectives['{key}'] must be Objective('{key}', ...), not {obj!r}"
                )
        for name, src in objectives_from.items():
            if isinstance(src, FittedPredictor):
                if src.space_name != self.space.name:
                    raise HwnasError(
                        f"predictor for '{name}' was fitted on {src.space_name}, "
                        f"not {self.space.name}"
                    )
                if getattr(src, "_space_obj", None) is None:  # e.g. one's own, by name only
                    src.bind(self.space)
                self.predictors[name] = {
                    "target": src.target,
                    "model": src.metadata.get("chosen", src.metadata.get("model")),
                    "n_train": src.metadata.get("n_train"),
                    "host": (src.metadata.get("host") or {}).get("hostname"),
                }
            if hasattr(src, "predict"):
                self._fns.append(src.predict)
            elif callable(src):
                self._fns.append(src)
            else:
                raise HwnasError(f"objective '{name}': expected a predictor or a function")
            self.objectives.append(overrides.get(name) or _default_objective(name, src))
        if flops:
            if not hasattr(self.space, "macs"):
                raise HwnasError(f"space {self.space.name} has no MACs model for 'flops'")
            from hwnas.measure.profile import num_classes_for

            nc = num_classes if num_classes is not None else num_classes_for(self.space.name)
            macs = self.space.macs  # type: ignore[attr-defined]
            self._fns.append(
                lambda V: np.array([2e-6 * macs(v, num_classes=nc) for v in V], dtype=np.float64)
            )
            self.objectives.append(overrides.get("flops") or _default_objective("flops"))

    def evaluate(self, vectors: np.ndarray) -> np.ndarray:
        x = self.space.canonicalize(np.atleast_2d(np.asarray(vectors, dtype=np.int64)))
        cols = [np.asarray(fn(x), dtype=np.float64).reshape(len(x)) for fn in self._fns]
        return np.stack(cols, axis=1)

    def describe(self) -> dict[str, object]:
        d = super().describe()
        d["predictors"] = self.predictors
        return d
