"""LINAS: lightweight iterative neural architecture search (DyNAS-T paper, section 3.5).

An initial random population is evaluated. Then each iteration fits one predictor per
objective on everything evaluated so far, runs an inner multi-objective search on the
predictors only (NSGA-II, thousands of candidates, one vectorised predictor call per
generation), and sends the most promising distinct not-yet-evaluated candidates to real
evaluation, until the budget is spent.

What we add to the paper's loop:
- candidates are the inner search's whole archive plus the one-choice neighbours of the
  measured front (Pareto-optimal architectures are mostly one or two choices apart);
- quality objectives (accuracy) are predicted from *function* features, on which cells
  that compute the same function coincide; cost objectives (latency) from the space's
  cost features (NB201: graph one-hot; MBv3 supernets: per-stage costs);
- where the space offers simpler views of its cost features
  (``SearchSpace.cost_feature_views``; NB201: op counts, i.e. one price per op, the
  counts of the ops that are computed, one-hot ops, graph features), each fit keeps the
  view that cross-validates best (``ViewSelectPredictor``). On NB201, 200 evaluations,
  median of 10 seeds, front recall 0.128 / 0.128 / 0.188 / 0.338 -> 0.116 / 0.093 /
  0.344 / 0.559 (pixel3 / raspi4 / fpga / 2080ti_1; op counts, one-hot, graph views),
  hv_fraction up on all four. The computed-op counts (session 5) rank pixel3 / raspi4
  latency better (Kendall tau 0.81 -> 0.87 at 100 samples); in LINAS with ``class_mean``
  (20 seeds) they move recall 0.163 -> 0.186 / 0.116 -> 0.128 and hv_fraction by
  -0.0001 / -0.0005;
- a candidate that computes the same function as measured architectures (equal function
  features: NB201 cells that differ only in dead edges) is predicted to have their mean
  measured quality, not the model's guess (``class_mean``, default since session 5; no
  effect on spaces without such equivalences). On NB201 with the computed-op view,
  200 evaluations, median of 20 seeds, hv_fraction / front recall without -> with:
  pixel3 0.9961 / 0.163 -> 0.9965 / 0.186, raspi4 0.9956 / 0.070 -> 0.9971 / 0.128,
  fpga 0.9846 / 0.375 -> 0.9826 / 0.375, 2080ti_1 0.9975 / 0.544 -> 0.9974 / 0.544;
- quality predictors are fitted with sample weights rising linearly with the measured
  rank, 0.5 for the worst to 2.5 for the best (``quality_weights="rank"``, default since
  session 6; ``rank_weights``), so the fit spends its capacity where the front is
  decided. NB201 accuracy MLP, Kendall tau among cells above 92.5 %: 0.379 -> 0.403 at
  200 random cells. In LINAS, median of 20 seeds, recall at 100 evaluations 0.047 /
  0.047 / 0.125 / 0.294 -> 0.070 / 0.058 / 0.125 / 0.324 (pixel3 / raspi4 / fpga /
  2080ti_1), at 200 0.186 / 0.128 / 0.375 / 0.544 -> 0.186 / 0.116 / 0.406 / 0.529,
  hv_fraction up by 0.0005-0.0044 at 100 evaluations on all four, within 0.001 at 200:
  small, but the per-seed mean recall difference is positive at most checkpoints and
  devices;
- candidates are ranked together with the *measured* front, so one predicted to be
  dominated by something already measured is not sent; within the last rank that fits,
  the batch is spread along the front, not clustered at one end;
- where evaluations failed (an out-of-memory region, an op a device cannot run), a
  classifier of failure (logistic regression on the space's features, fitted on every
  evaluation, failed or not) keeps candidates it expects to fail out of the inner search
  and the batch (``avoid_failures``, default on; no effect where nothing failed). A probe
  whose evaluator failed on half of a custom space spent 53 of 60 evaluations on
  failures without it, as the predictors learn only from successes;
- objectives the evaluator computes exactly and cheaply (``Evaluator.cheap_objectives``:
  the ``supernet`` benchmark's predicted latency and MFLOPs) are taken from it for every
  candidate instead of being learnt again from the evaluations (``cheap``, default on;
  no effect on the tabular benchmarks, whose latency stands for a measurement);
- optional: an optimistic estimate (mean minus ``kappa`` x the spread of a bagged
  ensemble), and greedy hypervolume-improvement selection (``selection="hvi"``). Both
  measured worse on NB201 than the default, so both are off by default.
- the default quality predictor is an MLP (was an SVR): on NB201 CIFAR-10, 200
  evaluations, median of 10 seeds, it lifted front recall from 0.081 / 0.035 / 0.094 /
  0.279 to 0.128 / 0.128 / 0.188 / 0.338 (pixel3 / raspi4 / fpga / 2080ti_1) and
  hv_fraction on every device too; it costs about 0.4 s more fit per iteration.
- tried in session 7 and not kept: the mean of 3 rank-weighted MLPs (offline top-region
  tau 0.403 -> 0.415 at 200 cells; in LINAS, 20 seeds, recall 0.163 / 0.128 / 0.375 /
  0.559 against 0.186 / 0.116 / 0.406 / 0.529, hv_fraction within 0.0003: seed noise);
  on fpga, batches of 5 or 20, 10 initial cells, 100 inner generations, no local
  candidates or ``selection="hvi"``: hv_fraction 0.9804-0.9840 against 0.9835.
- tried in session 5 and not kept (NB201, 10-20 seeds): function features of a canonical
  form of the cell (skip = identity, sums unordered: 4,930 functions instead of 9,445):
  pixel3 / raspi4 recall up (0.163-0.198 / 0.128-0.163) but fpga hv_fraction down
  0.984 -> 0.974-0.980 and 2080ti_1 recall 0.54 -> 0.44-0.53; skip-elided path-encoding
  features added to the function features (MLP accuracy tau +0.01-0.02 at 100-200
  samples; recall mixed: pixel3 0.116, raspi4 0.140, fpga 0.375, hv_fraction 0.979 on
  fpga); the graph features plus computed-op counts as one view (no better than apart);
  the accuracy MLP fitted on log error, -log(100.5 - acc) (tau 0.770 -> 0.794 at 200
  samples; LINAS recall, 20 seeds, fpga 0.375 -> 0.41, raspi4 0.128 -> 0.140, 2080ti_1
  0.544 -> 0.57, but pixel3 0.186 -> 0.14).
- tried in session 6 and not kept: zero-cost proxies (NASWOT, synflow, snip, grad_norm,
  jacob_cov on the untrained network) as extra accuracy features: MLP tau +0.01-0.02
  at 100-200 samples, 0.8 s of CPU per cell (``benchmarks/zero_cost_proxies.py``);
  quality weights by non-dominated layer instead of accuracy rank, and steeper rank
  weights (0.2 + 3 r^2: better offline top-region tau, 0.429 vs 0.403, but lower fpga
  recall at every checkpoint).
- tried in session 3 and not kept (no better on NB201, 5 seeds, 2-3 devices): choosing
  the batch by the Monte-Carlo probability of each candidate being non-dominated under
  the observed prediction error (sum = expected front members found; it chased cheap,
  badly predicted cells), by how far a candidate's prediction falls behind the measured
  front in error units, or by plain non-dominated layers of the predictions; spreading
  the model's residuals at measured cells to nearby candidates (kernel on function
  features); candidates only from the 1-2-choice neighbourhood of the measured front.
- tried in session 2 and not kept (no better on NB201, 5 seeds, pixel3 and fpga):
  ranking candidates against the predictions of everything measured, or only among
  themselves, instead of against the measured front; spending part of each batch on
  unevaluated "twins" of measured front cells (same function features, other dead
  edges, predicted cheaper); rank-target transforms for the accuracy predictor (higher
  Kendall tau, no more front found); smaller initial populations (10) and batches (5).
"""

from __future__ import annotations

import time
import warnings
from typing import Any, ClassVar

import numpy as np
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting
from scipy.stats import rankdata
from threadpoolctl import threadpool_limits

from hwnas.errors import HwnasError
from hwnas.registry import ALGORITHMS, PREDICTORS
from hwnas.search.algorithms import SearchAlgorithm, sample_feasible
from hwnas.search.inner import vectorized_nsga2
from hwnas.search.pareto import reference_point
from hwnas.search.problem import SearchProblem


def hvi_2d(front: np.ndarray, ref: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Hypervolume each candidate would add to a 2-objective front (all minimised),
    for all candidates at once: the staircase of the front is cut into intervals along
    the first objective, and a candidate adds the area between it and the staircase."""
    front = front[np.all(front < ref[None, :], axis=1)]
    front = front[np.argsort(front[:, 0], kind="stable")]
    edges = np.concatenate([[-np.inf], front[:, 0], [ref[0]]])
    heights = np.concatenate([[ref[1]], np.minimum.accumulate(front[:, 1])])
    x, y = cand[:, :1], cand[:, 1:2]
    width = np.clip(np.minimum(edges[None, 1:], ref[0]) - np.maximum(edges[None, :-1], x), 0, None)
    height = np.clip(heights[None, :] - y, 0, None)
    return (width * height).sum(axis=1)


def rank_weights(F: np.ndarray) -> np.ndarray:
    """Sample weights rising linearly with rank, 0.5 for the worst to 2.5 for the best of
    minimisation values ``F`` (ties share a weight): a quality predictor fitted with them
    spends its capacity on the accurate region, where the front is decided."""
    F = np.asarray(F, dtype=np.float64)
    if len(F) < 2:
        return np.ones(len(F))
    ranks = rankdata(-F, method="average") - 1  # 0 = worst
    return 0.5 + 2.0 * ranks / (len(F) - 1)


#: successful evaluations LINAS needs before it fits predictors (fewer: random ones)
MIN_FIT = 5


@ALGORITHMS.register("linas")
class LINAS(SearchAlgorithm):
    """LINAS: predictor-guided iterative search (random start, then predictor-driven
    batches chosen by an inner NSGA-II over the predictors)."""

    name = "linas"
    option_help: ClassVar[dict[str, str]] = {
        "n_init": "random architectures evaluated first (default: budget / 10, within 10..50)",
        "batch_size": "architectures evaluated per iteration (default: budget / 20, 1..20)",
        "predictors": "predictor name, or one per objective (default: MLP for quality, "
        "ridge on cost features for costs; 'hwnas predictors list')",
        "ensemble": "bagged models per predictor when kappa > 0",
        "kappa": "optimism: predicted mean minus kappa x the ensemble's spread (0: off)",
        "inner_pop": "population of the inner NSGA-II on the predictors",
        "inner_generations": "generations of the inner NSGA-II",
        "local": "also rank the measured front's one-choice neighbours",
        "selection": "'rank' (non-dominated rank, spread along the front) or 'hvi' "
        "(greedy hypervolume improvement)",
        "class_mean": "cells computing the same function get their measured mean quality",
        "quality_weights": "'rank' (fit weights rising with measured rank) or 'none'",
        "cheap": "take cheap exact objectives (e.g. MFLOPs) from the evaluator, not a fit",
        "avoid_failures": "keep candidates a classifier of the failed evaluations expects "
        "to fail out of the batch",
    }

    def __init__(
        self,
        seed: int = 0,
        n_init: int | None = None,
        batch_size: int | None = None,
        predictors: str | list[str] | None = None,
        ensemble: int = 5,
        kappa: float = 0.0,
        inner_pop: int = 400,
        inner_generations: int = 50,
        local: bool = True,
        selection: str = "rank",
        class_mean: bool = True,
        quality_weights: str = "rank",
        cheap: bool = True,
        avoid_failures: bool = True,
    ) -> None:
        super().__init__(seed=seed)  # its population is n_init, then batch_size a step
        for key, value, low in (
            ("n_init", n_init, 1),
            ("batch_size", batch_size, 1),
            ("ensemble", ensemble, 1),
            ("inner_pop", inner_pop, 2),
            ("inner_generations", inner_generations, 0),
        ):
            if value is not None and value < low:
                raise HwnasError(f"linas: {key} must be >= {low}, got {value}")
        if not np.isfinite(kappa):
            raise HwnasError(f"linas: kappa must be a finite number, got {kappa}")
        for name in [predictors] if isinstance(predictors, str) else predictors or []:
            PREDICTORS.get(name)  # an unknown model fails now, not after the first batch
        self.n_init = n_init
        self.batch_size = batch_size
        self.predictors = predictors
        self.ensemble = ensemble
        self.kappa = kappa
        self.inner_pop = inner_pop
        self.inner_generations = inner_generations
        self.local = local
        if selection not in ("rank", "hvi"):
            raise HwnasError(f"linas: selection must be 'rank' or 'hvi', got '{selection}'")
        self.selection = selection
        self.class_mean = class_mean
        if quality_weights not in ("rank", "none"):
            raise HwnasError(
                f"linas: quality_weights must be 'rank' or 'none', got '{quality_weights}'"
            )
        self.quality_weights = quality_weights
        self.cheap = bool(cheap)
        self.avoid_failures = bool(avoid_failures)
        self._fail_model: Any = None  # P(failure | features), fitted where some failed
        # per quality objective i: function-feature row -> mean measured value of the
        # cells with that row (filled by ``_fit`` when ``class_mean``)
        self._known: dict[int, dict[bytes, float]] = {}
        self.iterations: list[dict[str, float]] = []

    def check(self, problem: SearchProblem) -> None:
        super().check(problem)
        self._predictor_names(problem)  # a list of the wrong length fails before a run

    # ---- predictors ---------------------------------------------------------------------
    def _predictor_names(self, problem: SearchProblem) -> list[str]:
        """One predictor name per objective: given (one for all, or a list), else the
        default for each objective's kind."""
        if self.predictors is None:
            return [self._default_predictor(problem, i) for i in range(problem.n_obj)]
        if isinstance(self.predictors, str):
            return [self.predictors] * problem.n_obj
        names = list(self.predictors)
        if len(names) != problem.n_obj:
            raise HwnasError(f"linas: need one predictor per objective ({problem.n_obj})")
        return names

    @staticmethod
    def _default_predictor(problem: SearchProblem, i: int) -> str:
        # latency, FLOPs and size add up over layers: a linear model on one-hot ops is
        # near exact; accuracy needs a non-linear model. An MLP ranks NB201 accuracy
        # better than an SVR (Kendall tau 0.75 vs 0.71 at 150 samples) and finds 1.2-3.7x
        # more of the exact front in LINAS (search-efficiency study, 200 evaluations).
        return "mlp" if problem.objectives[i].kind == "quality" else "ridge"

    def _fit(self, problem: SearchProblem, iteration: int) -> list[tuple[Any, Any]]:
        """Per objective: a predictor fitted on everything measured, and (for non-linear
        predictors) a bagged ensemble whose spread is the uncertainty used in selection."""
        from hwnas.predict import EnsemblePredictor, fit_weighted, make_view_predictor

        X, raw = problem.evaluated_arrays()
        cheap = self._cheap(problem)
        feats = self._features(problem, X, cheap)
        models: list[tuple[Any, Any]] = []
        for i, name in enumerate(self._predictor_names(problem)):
            if i in cheap:  # exact for every candidate: nothing to learn
                models.append((None, None))
                continue
            t0 = time.perf_counter()
            # cost objectives: a simpler view of the features may fit better (CV decides)
            kind = problem.objectives[i].kind
            model = make_view_predictor(name, problem.space.predictor_views(kind), seed=self.seed)
            if kind == "quality" and self.quality_weights == "rank":
                fit_weighted(model, feats[i], raw[:, i], rank_weights(raw[:, i] * problem.signs[i]))
            else:
                model.fit(feats[i], raw[:, i])
            ens = None
            if self.ensemble > 1 and self.kappa and name != "ridge":
                ens = EnsemblePredictor(name, n_members=self.ensemble, seed=self.seed + iteration)
                ens.fit(feats[i], raw[:, i])
            models.append((model, ens))
            if problem.store is not None and problem.run_id is not None and not problem.replaying:
                problem.store.add_predictor_fit(
                    problem.run_id,
                    problem.objectives[i].name,
                    name,
                    len(X),
                    iteration=iteration,
                    fit_time_s=time.perf_counter() - t0,
                )
        self._known = {}
        if self.class_mean:
            for i, o in enumerate(problem.objectives):
                if o.kind == "quality":
                    groups: dict[bytes, list[float]] = {}
                    for row, v in zip(feats[i], raw[:, i], strict=True):
                        groups.setdefault(np.ascontiguousarray(row).tobytes(), []).append(v)
                    self._known[i] = {key: float(np.mean(v)) for key, v in groups.items()}
        self._fail_model = self._fit_failures(problem)
        return models

    def _fit_failures(self, problem: SearchProblem) -> Any:
        """A classifier of which architectures fail, on every evaluation so far; None
        where none failed (the usual case: nothing changes then) or where off."""
        ok = np.asarray(problem.ok, dtype=bool)
        if not self.avoid_failures or ok.all() or not ok.any():
            return None
        from sklearn.linear_model import LogisticRegression

        # linear on the features: a matrix product per call, as the inner search calls
        # it every generation (a random forest there took 1-2 s an iteration)
        X = problem.space.features(np.stack(problem.vectors))
        return LogisticRegression(C=1.0, max_iter=1000).fit(X, ~ok)

    def _failure_g(self, problem: SearchProblem, X: np.ndarray) -> np.ndarray | None:
        """(n, 1) constraint values, P(failure) - 0.5 (<= 0: expected to succeed), or
        None without a failure model."""
        if self._fail_model is None:
            return None
        p = self._fail_model.predict_proba(problem.space.features(X))
        col = list(self._fail_model.classes_).index(True)
        return (p[:, col] - 0.5)[:, None]

    def _cheap(self, problem: SearchProblem) -> list[int]:
        """The objectives taken exactly from the evaluator (``cheap``), not predicted."""
        return problem.cheap_indices if self.cheap else []

    @staticmethod
    def _features(
        problem: SearchProblem, X: np.ndarray, skip: list[int] | None = None
    ) -> list[np.ndarray]:
        """Per objective: ``space.predictor_features`` for its kind (function features for
        quality, cost features for costs; each kind computed once); empty for ``skip``."""
        cache: dict[bool, np.ndarray] = {}
        out = []
        for i, o in enumerate(problem.objectives):
            quality = o.kind == "quality"
            if skip and i in skip:
                out.append(np.zeros((len(X), 0)))
                continue
            if quality not in cache:
                cache[quality] = problem.space.predictor_features(X, o.kind)
            out.append(cache[quality])
        return out

    def _predict(
        self,
        problem: SearchProblem,
        models: list[tuple[Any, Any]],
        X: np.ndarray,
        optimistic: bool,
    ) -> np.ndarray:
        """Raw predicted objectives (cheap ones exact); ``optimistic`` shifts each
        predicted one by ``kappa`` times the ensemble spread in its better direction."""
        cheap = self._cheap(problem)
        feats = self._features(problem, X, cheap)
        exact = problem.cheap_values(X) if cheap else None
        cols = []
        for i, (model, ens) in enumerate(models):
            if model is None:
                assert exact is not None
                cols.append(exact[:, cheap.index(i)])
                continue
            mean = np.asarray(model.predict(feats[i]), dtype=np.float64).ravel()
            if optimistic and ens is not None:
                _, std = ens.predict(feats[i], return_std=True)
                mean = mean - problem.signs[i] * self.kappa * std
            cols.append(self._corrected(i, feats[i], mean))
        return np.stack(cols, axis=1)

    def _corrected(self, i: int, feats: np.ndarray, mean: np.ndarray) -> np.ndarray:
        """Objective ``i``'s model predictions ``mean``, where a candidate's function
        features equal those of measured architectures (it computes the same function,
        e.g. NB201 cells that differ only in dead edges), replaced by their mean measured
        value: for it the measurements are a better estimate than any model. Spaces
        without such equivalences are unaffected (equal features there mean the same,
        already measured, architecture)."""
        known = self._known.get(i)
        if known:
            hit = [known.get(np.ascontiguousarray(row).tobytes()) for row in feats]
            mask = np.array([h is not None for h in hit], dtype=bool)
            if mask.any():
                mean = np.array(mean, dtype=np.float64)
                mean[mask] = [h for h in hit if h is not None]
        return mean

    # ---- inner search -------------------------------------------------------------------
    def _inner_search(
        self, problem: SearchProblem, models: list[Any], rng: np.random.Generator
    ) -> np.ndarray:
        """Vectorised NSGA-II on the predicted objectives, seeded with the measured front;
        returns every distinct not-yet-evaluated candidate it generated."""

        def objective(X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
            raw = self._predict(problem, models, X, optimistic=False)
            G = problem.constraint_values(raw, X) if problem.n_constr else None
            fail = self._failure_g(problem, X)
            if fail is not None:
                G = fail if G is None else np.concatenate([G, fail], axis=1)
            return raw * problem.signs[None, :], G

        front = [problem.vectors[i] for i in problem.front_indices()]
        initial = np.stack(front) if front else None
        cand, _ = vectorized_nsga2(
            problem.space,
            objective,
            self.inner_pop,
            self.inner_generations,
            rng,
            initial=initial,
        )
        if self.local and initial is not None:
            # the measured front's one-choice neighbours: Pareto-optimal architectures
            # are mostly one or two choices apart from another one (NB201: all of them)
            cand = np.unique(np.concatenate([cand, problem.space.neighbours(initial)]), axis=0)
        return cand[~problem.is_evaluated(cand)]

    def _select(
        self, problem: SearchProblem, models: list[Any], cand: np.ndarray, k: int
    ) -> np.ndarray:
        """Pick ``k`` candidates: the best non-dominated ranks of the candidates' optimistic
        predictions ranked together with the measured front; within the last rank that
        fits only partly, greedily the candidate farthest from everything already chosen
        or measured (normalised objective space), so the batch spreads along the front."""
        if len(cand) <= k:
            return cand
        P = self._predict(problem, models, cand, True) * problem.signs[None, :]
        if problem.n_constr:
            g = problem.constraint_values(P * problem.signs[None, :], cand)
            P = np.where((g > 0).any(axis=1, keepdims=True), P + 1e9, P)
        fail = self._failure_g(problem, cand)
        if fail is not None:  # expected to fail: only where nothing else is left
            P = np.where(fail > 0, P + 1e9, P)
        measured = problem.front_F()
        if self.selection == "hvi" and problem.n_obj == 2 and len(measured):
            return cand[self._select_hvi(problem, P, measured, k)]
        allF = np.concatenate([P, measured]) if len(measured) else P
        fronts = NonDominatedSorting().do(allF, n_stop_if_ranked=len(measured) + k)
        lo, hi = allF.min(axis=0), allF.max(axis=0)
        scale = np.where(hi > lo, hi - lo, 1.0)
        chosen: list[int] = []
        for front in fronts:
            idx = [i for i in front if i < len(cand)]
            if len(chosen) + len(idx) <= k:
                chosen.extend(idx)
                continue
            anchors = np.concatenate([measured, allF[chosen]]) if chosen else measured
            Z = allF[idx] / scale
            if len(anchors):
                dist = np.sqrt(((Z[:, None, :] - (anchors / scale)[None]) ** 2).sum(2)).min(1)
            else:
                dist = np.full(len(idx), np.inf)
                dist[int(np.argmin(Z[:, 0]))] = np.finfo(float).max
            while len(chosen) < k:
                j = int(np.argmax(dist))
                chosen.append(idx[j])
                dist = np.minimum(dist, np.sqrt(((Z - Z[j]) ** 2).sum(1)))
                dist[j] = -np.inf
            break
        return cand[chosen[:k]]

    @staticmethod
    def _select_hvi(
        problem: SearchProblem, P: np.ndarray, measured: np.ndarray, k: int
    ) -> list[int]:
        """Greedy batch by hypervolume improvement of the optimistic predictions: each
        pick joins the front before the next is scored, so picks spread along it. When
        no candidate improves the front any more, the rest come from the best ranks."""
        _, F_all = problem.feasible_set()
        ref = reference_point(F_all)
        front = measured.copy()
        chosen: list[int] = []
        available = np.ones(len(P), dtype=bool)
        while len(chosen) < k:
            gain = np.where(available, hvi_2d(front, ref, P), -1.0)
            j = int(np.argmax(gain))
            if gain[j] <= 0:
                break
            chosen.append(j)
            available[j] = False
            front = np.concatenate([front, P[j : j + 1]])
        if len(chosen) < k:
            rest = np.nonzero(available)[0]
            rank = NonDominatedSorting().do(np.concatenate([P[rest], front]), return_rank=True)[1]
            order = np.lexsort((P[rest, 0], rank[: len(rest)]))
            chosen.extend(rest[order[: k - len(chosen)]].tolist())
        return chosen

    # ---- loop ---------------------------------------------------------------------------
    def run(self, problem: SearchProblem) -> None:
        rng = np.random.default_rng(self.seed)
        n_init = self.n_init or max(10, min(problem.budget // 10, 50))
        if self.n_init and self.n_init >= problem.budget:
            warnings.warn(
                f"linas: n_init {self.n_init} >= the budget of {problem.budget} evaluations: "
                "every evaluation is the random initial population (a random search)",
                stacklevel=2,
            )
        batch = self.batch_size or max(1, min(problem.budget // 20, 20))
        problem.evaluate(self.initial_population(problem, n_init, rng))
        iteration = 0
        stalled = 0
        while not problem.exhausted and stalled < 20:
            t0 = time.perf_counter()
            # small matrices: threaded BLAS only adds contention (measured 10-30x slower
            # predictions on this busy 2-core machine), so the iteration runs on one thread
            k = min(batch, problem.remaining)
            if sum(problem.ok) < MIN_FIT:  # failures left too few to fit on: random ones
                t_fit, cand = 0.0, np.zeros((0, problem.space.n_dims), dtype=np.int64)
                picks = cand
            else:
                with threadpool_limits(limits=1):
                    models = self._fit(problem, iteration)
                    t_fit = time.perf_counter() - t0
                    cand = self._inner_search(problem, models, rng)
                    picks = self._select(problem, models, cand, k)
            if len(picks) < k:  # inner search found too few new candidates: add random ones
                extra = sample_feasible(problem, 4 * k, rng)
                extra = extra[~problem.is_evaluated(extra)]
                picks = np.concatenate([picks, extra])[:k] if len(picks) else extra[:k]
            t_search = time.perf_counter() - t0
            before = problem.n_seen
            problem.evaluate(picks)
            stalled = stalled + 1 if problem.n_seen == before else 0
            self.iterations.append(
                {
                    "iteration": iteration,
                    "fit_s": t_fit,
                    "overhead_s": t_search,
                    "candidates": float(len(cand)),
                }
            )
            iteration += 1
