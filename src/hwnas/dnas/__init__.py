"""Differentiable, constraint-aware architecture search (DCA-NAS, paper 001).

Cell search spaces with mixed operations (DARTS, NAS-Bench-201), the search with a
trainable Lagrange multiplier on a resource budget, derivation of the discrete genotype
and training of the derived network from scratch.
"""

from __future__ import annotations

from typing import Any

# Public API, imported lazily so that ``import hwnas.dnas.ops`` stays light.
_LAZY = {
    "SearchNetwork": "hwnas.dnas.search_model",
    "derive": "hwnas.dnas.derivation",
    "derive_darts": "hwnas.dnas.derivation",
    "derive_nb201": "hwnas.dnas.derivation",
    "nb201_record": "hwnas.dnas.derivation",
    "Constraint": "hwnas.dnas.resources",
    "EvalNetConfig": "hwnas.dnas.resources",
    "ResourceModel": "hwnas.dnas.resources",
    "parse_constraint": "hwnas.dnas.resources",
    "resource_model": "hwnas.dnas.resources",
    "DSearchConfig": "hwnas.dnas.search",
    "DSearchResult": "hwnas.dnas.search",
    "dsearch": "hwnas.dnas.search",
    "LookupGraph": "hwnas.dnas.lookup",
    "build_lookup_graph": "hwnas.dnas.lookup",
    "NB201Network": "hwnas.dnas.evalnet",
    "DartsNetworkCIFAR": "hwnas.dnas.evalnet",
    "DTrainConfig": "hwnas.dnas.training",
    "DTrainResult": "hwnas.dnas.training",
    "dtrain": "hwnas.dnas.training",
    "Genotype": "hwnas.dnas.genotype",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # found at once from now on
        return value
    raise AttributeError(f"module 'hwnas.dnas' has no attribute '{name}'")
