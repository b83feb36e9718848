"""Optuna-backed algorithms: MOTPE and Optuna's NSGA-II, driven by ask/tell."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from hwnas.registry import ALGORITHMS
from hwnas.search.algorithms import MAX_STALLED_BATCHES, SearchAlgorithm, _unevaluated
from hwnas.search.problem import SearchProblem


class OptunaAlgorithm(SearchAlgorithm):
    def sampler(self, problem: SearchProblem) -> Any:
        raise NotImplementedError

    def run(self, problem: SearchProblem) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study = optuna.create_study(
                directions=["minimize"] * problem.n_obj, sampler=self.sampler(problem)
            )
            cards = problem.space.cardinalities
            for v in [] if self.initial is None else self.initial:  # a warm start first
                study.enqueue_trial({f"x{i}": int(x) for i, x in enumerate(v)})
            stalled = 0
            rng = np.random.default_rng(self.seed)
            while not problem.exhausted and stalled < MAX_STALLED_BATCHES * 10:
                trial = study.ask()
                x = np.array(
                    [trial.suggest_int(f"x{i}", 0, int(c) - 1) for i, c in enumerate(cards)]
                )
                before = problem.n_seen
                raw, G, answered = problem.evaluate(x[None, :])
                if not answered[0]:
                    break
                stalled = stalled + 1 if problem.n_seen == before else 0
                if stalled >= 3:  # near the end of a small space the sampler keeps
                    # proposing evaluated ones (each told trial slows it): ask one left next
                    for v in _unevaluated(problem, 1, rng)[:1]:
                        study.enqueue_trial({f"x{i}": int(x) for i, x in enumerate(v)})
                if problem.n_constr:  # feasible when every value is <= 0
                    for j, g in enumerate(np.where(np.isfinite(G[0]), G[0], 1e12)):
                        trial.set_constraint(f"c{j}", float(g))
                study.tell(trial, problem.minimisation(raw)[0].tolist())


@ALGORITHMS.register("motpe")
class MOTPESearch(OptunaAlgorithm):
    """MOTPE (Optuna's multi-objective tree-structured Parzen estimator)."""

    name = "motpe"

    def sampler(self, problem: SearchProblem) -> Any:
        import optuna

        return optuna.samplers.TPESampler(
            seed=self.seed,
            n_startup_trials=self.pop(problem),
            multivariate=True,
        )


@ALGORITHMS.register("nsga2-optuna")
class OptunaNSGA2Search(OptunaAlgorithm):
    """NSGA-II as implemented by Optuna's NSGAIISampler."""

    name = "nsga2-optuna"
    max_objectives = 3

    def sampler(self, problem: SearchProblem) -> Any:
        import optuna

        return optuna.samplers.NSGAIISampler(
            population_size=self.pop(problem),
            seed=self.seed,
        )
