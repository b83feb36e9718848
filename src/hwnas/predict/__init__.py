"""Predictors: cheap surrogate models for NAS objectives, and their evaluation.

Importing this package is cheap: it registers the built-in predictors in
:data:`hwnas.registry.PREDICTORS` as small factories that import scikit-learn only when
a model is built, and loads the rest of the API (:mod:`hwnas.predict.models`,
:mod:`hwnas.predict.evaluate`) on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hwnas.registry import PREDICTORS

if TYPE_CHECKING:
    from hwnas.predict.evaluate import (
        kendall_tau,
        plot_sample_efficiency,
        rank_metrics,
        sample_efficiency,
        spearman_rho,
        summarize,
        write_csv,
    )
    from hwnas.predict.models import (
        AutoPredictor,
        EnsemblePredictor,
        GPPredictor,
        RBFPredictor,
        ViewSelectPredictor,
        make_predictor,
        make_view_predictor,
        predict_with_std,
    )

# name -> one-line description (what `hwnas predictors list` shows); the factories
# themselves live in hwnas.predict.models.FACTORIES.
BUILTIN_PREDICTORS: dict[str, str] = {
    "ridge": "Standardised features + ridge regression (penalty by efficient LOO); fast.",
    "svr": "RBF support-vector regression on standardised features and targets.",
    "stacked": "Stacking of ridge and svr under a ridge final estimator (5-fold).",
    "gp": "Gaussian process (constant x Matern-5/2 + white noise) with a predictive std.",
    "rbf": "Smoothed thin-plate-spline RBF interpolation on standardised features.",
    "mlp": "Small multi-layer perceptron (L-BFGS) on standardised features and targets.",
    "cart": "A regression tree (CART) with small leaves.",
    "auto": "Picks ridge/svr/stacked/gp/cart by cross-validated Kendall tau, refits the best.",
}


def _register(name: str, doc: str) -> None:
    def factory(seed: int = 0) -> Any:
        from hwnas.predict.models import FACTORIES

        return FACTORIES[name](seed=seed)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = doc
    PREDICTORS.register(name, doc)(factory)


for _name, _doc in BUILTIN_PREDICTORS.items():
    _register(_name, _doc)

_LAZY: dict[str, str] = {
    "AutoPredictor": "hwnas.predict.models",
    "EnsemblePredictor": "hwnas.predict.models",
    "GPPredictor": "hwnas.predict.models",
    "RBFPredictor": "hwnas.predict.models",
    "ViewSelectPredictor": "hwnas.predict.models",
    "fit_weighted": "hwnas.predict.models",
    "make_predictor": "hwnas.predict.models",
    "make_view_predictor": "hwnas.predict.models",
    "predict_with_std": "hwnas.predict.models",
    "kendall_tau": "hwnas.predict.evaluate",
    "plot_sample_efficiency": "hwnas.predict.evaluate",
    "rank_metrics": "hwnas.predict.evaluate",
    "sample_efficiency": "hwnas.predict.evaluate",
    "spearman_rho": "hwnas.predict.evaluate",
    "summarize": "hwnas.predict.evaluate",
    "write_csv": "hwnas.predict.evaluate",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hwnas.predict' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BUILTIN_PREDICTORS",
    "PREDICTORS",
    "AutoPredictor",
    "EnsemblePredictor",
    "GPPredictor",
    "RBFPredictor",
    "ViewSelectPredictor",
    "fit_weighted",
    "kendall_tau",
    "make_predictor",
    "make_view_predictor",
    "plot_sample_efficiency",
    "predict_with_std",
    "rank_metrics",
    "sample_efficiency",
    "spearman_rho",
    "summarize",
    "write_csv",
]
