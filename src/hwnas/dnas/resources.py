"""Resource models of the *evaluation* network for the DCA-NAS constraint (paper eq. 3).

A :class:`ResourceModel` holds, per cell type, a cost table ``(n_edges, n_ops)``: the
cost of op ``k`` on edge ``e`` summed over all cells of that type in the evaluation
network (cells of one type share the genotype but sit at different widths and
resolutions), plus a ``fixed`` part that no cell choice changes. Then

* ``expected(alphas)`` = sum over types and edges of ``softmax(alpha) . table`` + fixed:
  paper eq. 3, a differentiable torch scalar. For DARTS it weights all 14 edges of a cell
  although the derived cell keeps 8; the lookup graph (:mod:`hwnas.dnas.lookup`)
  corrects that and the softmax mixing gap;
* ``derived(genotype)`` = the exact cost of the discrete cell's evaluation network.

Evaluation networks (:class:`EvalNetConfig`), built exactly as DARTS ``NetworkCIFAR``
(stem 3x3 conv with 3C channels + BN; ``layers`` cells, reductions at 1/3 and 2/3, each
cell with ReLUConvBN / FactorizedReduce preprocessing; global pool; linear; the
auxiliary head is not counted) and NAS-Bench-201's network (stem 3x3 conv + BN; three
stages of N cells at C, 2C, 4C with a ResNet basic block between stages; BN + ReLU;
global pool; linear), with the ops of :func:`hwnas.dnas.ops.make_op` (affine BN).

Metrics:

* ``params``: ``sum(p.numel())`` of the modules (so ``derived`` equals the evaluation
  network's parameter count);
* ``flops``: ``torch.utils.flop_counter`` on each module at its input shape, batch 1
  (convolutions and matmuls at 2 FLOPs per multiply-accumulate; pooling, BN, ReLU and
  additions are not counted), the definition of :func:`hwnas.measure.cost.count_flops`;
* ``latency`` (ms): NB201 from the benchmark's 27 devices: per-(edge, op) costs fitted
  by least squares with an intercept, all bounded below by 0 (the intercept is
  ``fixed``; 'none' is the reference op with cost 0) on all 15,625 cells; ``meta``
  holds R^2 and Kendall tau of the fit; ``derived`` is the cell's true table value.
  DARTS: a per-op table from a JSON file (:func:`load_darts_latency_table`).
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.dnas.derivation import DARTS_STEPS, genotype_edges, nb201_ops_of, nb201_table
from hwnas.dnas.genotype import Genotype
from hwnas.dnas.ops import (
    DARTS_OPS,
    NB201_OPS,
    FactorizedReduce,
    ReLUConvBN,
    ResNetBasicBlock,
    make_op,
)
from hwnas.errors import HwnasError

METRICS = ("params", "flops", "latency")
UNITS = {"params": "", "flops": "FLOPs", "latency": "ms"}

__all__ = [
    "Constraint",
    "EvalNetConfig",
    "ResourceModel",
    "load_darts_latency_table",
    "parse_constraint",
    "resource_model",
]


# ---- constraints ------------------------------------------------------------------------
@dataclass(frozen=True)
class Constraint:
    """An upper bound ``metric <= budget`` (``latency`` with a device, in ms)."""

    metric: str
    budget: float
    device: str | None = None

    @property
    def key(self) -> str:
        """``params``, ``flops`` or ``latency:DEVICE``."""
        return f"{self.metric}:{self.device}" if self.device else self.metric

    def __str__(self) -> str:
        return f"{self.key}<={self.budget:g}"


_CONSTRAINT_RE = re.compile(r"^\s*([A-Za-z_]+)(?::([^<>=\s]*))?\s*<=\s*(\S+)\s*$")


def parse_constraint(text: str) -> Constraint:
    """Parse ``params<=3.5e6``, ``flops<=600e6`` or ``latency:pixel3<=5`` (ms)."""
    example = "e.g. params<=3.5e6, flops<=600e6 or latency:pixel3<=5"
    if not isinstance(text, str) or not text.strip():
        raise HwnasError(f"empty constraint ({example})")
    if "<=" not in text:
        if any(op in text for op in (">=", "<", ">", "=")):
            raise HwnasError(f"constraint '{text}': only upper bounds 'METRIC<=BUDGET' ({example})")
        raise HwnasError(f"constraint '{text}' must look like METRIC<=BUDGET ({example})")
    m = _CONSTRAINT_RE.match(text)
    if not m:
        raise HwnasError(f"malformed constraint '{text}' ({example})")
    metric, device, value = m.group(1).lower(), m.group(2), m.group(3)
    if metric not in METRICS:
        raise HwnasError(
            f"unknown constraint metric '{metric}' in '{text}' (use params, flops, latency:DEVICE)"
        )
    if metric == "latency" and not device:
        raise HwnasError(f"latency constraint '{text}' needs a device: latency:DEVICE<=MS")
    if metric != "latency" and device is not None:
        raise HwnasError(f"constraint '{text}': {metric} takes no device")
    if re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d*)?", value.strip()):
        raise HwnasError(
            f"constraint '{text}': write the budget without thousands separators, e.g. "
            f"{value.replace(',', '')}"
        )
    if re.search(r"[,;]|<=|>=", value):
        raise HwnasError(
            f"constraint '{text}': DCA-NAS takes one budget (one Lagrange multiplier); give "
            "one constraint, e.g. 'params<=6e5'"
        )
    try:
        budget = float(value)
    except ValueError:
        raise HwnasError(f"constraint '{text}': budget '{value}' is not a number") from None
    if not math.isfinite(budget) or budget <= 0:
        raise HwnasError(f"constraint '{text}': budget must be a positive number")
    return Constraint(metric, budget, device)


# ---- evaluation network configuration -----------------------------------------------------
@dataclass(frozen=True)
class EvalNetConfig:
    """The evaluation network whose resources are constrained. ``C``/``layers`` default
    per space: DARTS C=36, 20 cells; NB201 C=16, N=5 cells per stage."""

    space: str = "nb201"
    C: int | None = None
    layers: int | None = None
    num_classes: int = 10
    in_channels: int = 3
    resolution: int = 32

    def __post_init__(self) -> None:
        if self.space not in ("darts", "nb201"):
            raise HwnasError(f"unknown cell space '{self.space}' (use darts or nb201)")
        for name in ("C", "layers", "num_classes", "in_channels", "resolution"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise HwnasError(f"evaluation network {name} must be >= 1, got {v}")
        if self.space == "darts" and self.layers is not None and self.layers < 3:
            raise HwnasError("a DARTS evaluation network needs >= 3 cells")

    @property
    def channels(self) -> int:
        return self.C if self.C is not None else (36 if self.space == "darts" else 16)

    @property
    def n_layers(self) -> int:
        if self.layers is not None:
            return self.layers
        return 20 if self.space == "darts" else 5

    def as_dict(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "C": self.channels,
            "layers": self.n_layers,
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "resolution": self.resolution,
        }


# ---- per-module costs -------------------------------------------------------------------
def _down(h: int) -> int:
    return (h + 1) // 2


def module_cost(module: nn.Module, shape: Sequence[int], metric: str) -> float:
    """Parameters of ``module`` or its FLOPs on one input of ``shape`` (C, H, W) or (F,)."""
    if metric == "params":
        return float(sum(p.numel() for p in module.parameters()))
    if metric != "flops":
        raise HwnasError(f"no module cost for metric '{metric}'")
    from torch.utils.flop_counter import FlopCounterMode

    module.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(torch.zeros(1, *shape))
    return float(counter.get_total_flops())


@functools.lru_cache(maxsize=4096)
def op_cost(space: str, op: str, channels: int, stride: int, res: int, metric: str) -> float:
    """Cost of one candidate op (affine BN, as in the evaluation network) at input ``res``."""
    if op == "none":
        return 0.0
    return module_cost(make_op(space, op, channels, stride, True), (channels, res, res), metric)


# ---- the model ----------------------------------------------------------------------------
@dataclass
class ResourceModel:
    """Cost tables of an evaluation network; see the module docstring."""

    space: str
    metric: str
    tables: dict[str, torch.Tensor]
    fixed: float
    device: str | None = None
    cells: dict[str, int] = field(default_factory=dict)
    eval_config: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    # NB201 latency: true table value of every base-5 code (derived = measured)
    _measured: np.ndarray | None = None

    @property
    def key(self) -> str:
        return f"{self.metric}:{self.device}" if self.device else self.metric

    @property
    def unit(self) -> str:
        return UNITS[self.metric]

    def _types(self) -> tuple[str, ...]:
        return ("normal", "reduce") if self.space == "darts" else ("normal",)

    def expected(self, alphas: Sequence[torch.Tensor]) -> torch.Tensor:
        """Paper eq. 3: softmax(alpha)-weighted per-op costs over all edges and cells,
        plus the fixed part; differentiable in ``alphas`` (same order as
        ``SearchNetwork.arch_parameters()``)."""
        types = self._types()
        if len(alphas) != len(types):
            raise HwnasError(f"{self.space} needs {len(types)} alpha tensors, got {len(alphas)}")
        total = torch.zeros((), dtype=torch.float64)
        for t, a in zip(types, alphas, strict=True):
            table = self.tables[t]
            if tuple(a.shape) != tuple(table.shape):
                raise HwnasError(f"alpha for {t} cells must be {tuple(table.shape)}")
            w = torch.softmax(a.double(), dim=-1)
            total = total + (w * table.to(w.device)).sum()
        return total + self.fixed

    def predicted(self, genotype: Genotype | str | Sequence[int]) -> float:
        """The table (linear) cost of a discrete cell: the value ``expected`` tends to
        as alpha becomes one-hot on it (for NB201 latency, the fit's prediction)."""
        if self.space == "darts":
            total = self.fixed
            for t, pairs in genotype_edges(_darts_genotype(genotype)).items():
                for e, op in pairs:
                    total += float(self.tables[t][e, DARTS_OPS.index(op)])
            return total
        ops = _nb201_ops(genotype)
        table = self.tables["normal"]
        return self.fixed + float(sum(table[e, k] for e, k in enumerate(ops)))

    def derived(self, genotype: Genotype | str | Sequence[int]) -> float:
        """Exact cost of the evaluation network of a discrete cell (NB201 latency: the
        measured table value)."""
        if self._measured is not None:
            from hwnas.space.nb201 import NB201Space

            code = int(NB201Space().index_of(np.asarray(_nb201_ops(genotype)))[0])
            return float(self._measured[code])
        return self.predicted(genotype)

    def cheapest(self) -> float:
        """The least a derivable cell costs: the cheapest connected NB201 cell, or on
        DARTS each node's two cheapest inputs with their cheapest op other than 'none'
        (so a budget below it is refused before a search is spent on it)."""
        if self.space == "nb201":
            from hwnas.dnas.derivation import nb201_connected
            from hwnas.space.nb201 import NB201Space

            ok = nb201_connected(NB201Space().all_vectors())
            return float(self.derived_all_nb201()[ok].min())
        total = self.fixed
        none = DARTS_OPS.index("none")
        for t in ("normal", "reduce"):
            table = np.asarray(self.tables[t], dtype=np.float64)
            per_edge = np.delete(table, none, axis=1).min(axis=1)
            start, n = 0, 2
            while start < len(per_edge):
                total += float(np.sort(per_edge[start : start + n])[:2].sum())
                start, n = start + n, n + 1
        return total

    def derived_all_nb201(self) -> np.ndarray:
        """``derived`` of every NB201 cell, indexed by base-5 code (0..15624)."""
        if self.space != "nb201":
            raise HwnasError("derived_all_nb201 is for the nb201 space")
        if self._measured is not None:
            return self._measured.copy()
        from hwnas.space.nb201 import NB201Space

        v = NB201Space().all_vectors()
        table = self.tables["normal"].numpy()
        return self.fixed + table[np.arange(6)[None, :], v].sum(axis=1)

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary: metric, unit, cells per type, fixed part, fit metadata."""
        return {
            "space": self.space,
            "metric": self.key,
            "unit": self.unit,
            "fixed": self.fixed,
            "cells": self.cells,
            "eval_network": self.eval_config,
            **self.meta,
        }


def _darts_genotype(genotype: Any) -> Genotype:
    """``genotype`` checked for the cost tables: a :class:`Genotype` with two
    ``(op, input)`` pairs for each of the 4 intermediate nodes of both cell types, known
    ops and inputs from earlier states (a shorter genotype would be costed partially)."""
    if not isinstance(genotype, Genotype):
        raise HwnasError("a DARTS resource needs a Genotype")
    from hwnas.dnas.evalnet import validate_genotype

    g = validate_genotype(genotype)  # known ops, inputs from earlier states
    for t in ("normal", "reduce"):
        n = len(getattr(g, t))
        if n != 2 * DARTS_STEPS:
            raise HwnasError(
                f"the DARTS resource model needs {2 * DARTS_STEPS} (op, input) pairs per "
                f"cell (two for each of {DARTS_STEPS} nodes); the {t} cell has {n}"
            )
    return g


def _nb201_ops(genotype: Genotype | str | Sequence[int]) -> list[int]:
    if isinstance(genotype, str):
        from hwnas.space.nb201 import NB201Space

        return [int(i) for i in NB201Space().encode(genotype)]
    if isinstance(genotype, Genotype):
        raise HwnasError("an NB201 resource needs an arch string, not a DARTS Genotype")
    if isinstance(genotype, torch.Tensor) and genotype.ndim == 2:
        return nb201_ops_of(genotype)
    ops = [int(i) for i in genotype]
    if len(ops) != 6 or not all(0 <= i < len(NB201_OPS) for i in ops):
        raise HwnasError(f"an NB201 cell is 6 op indices in 0..4, got {ops}")
    return ops


# ---- builders -----------------------------------------------------------------------------
def _darts_tables(cfg: EvalNetConfig, metric: str) -> tuple[dict[str, torch.Tensor], float, dict]:
    C, layers, res = cfg.channels, cfg.n_layers, cfg.resolution
    steps, mult = 4, 4
    n_edges = sum(2 + i for i in range(steps))
    tables = {
        t: torch.zeros(n_edges, len(DARTS_OPS), dtype=torch.float64) for t in ("normal", "reduce")
    }
    counts = {"normal": 0, "reduce": 0}
    c_curr = 3 * C
    fixed = module_cost(
        nn.Sequential(
            nn.Conv2d(cfg.in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr)
        ),
        (cfg.in_channels, res, res),
        metric,
    )
    c_pp, c_p, c_curr = c_curr, c_curr, C
    r_pp = r_p = res
    reduction_prev = False
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        if reduction:
            c_curr *= 2
        pre0: nn.Module = (
            FactorizedReduce(c_pp, c_curr) if reduction_prev else ReLUConvBN(c_pp, c_curr, 1, 1, 0)
        )
        fixed += module_cost(pre0, (c_pp, r_pp, r_pp), metric)
        fixed += module_cost(ReLUConvBN(c_p, c_curr, 1, 1, 0), (c_p, r_p, r_p), metric)
        t = "reduce" if reduction else "normal"
        counts[t] += 1
        r_out = _down(r_p) if reduction else r_p
        e = 0
        for node in range(steps):
            for j in range(2 + node):
                stride = 2 if reduction and j < 2 else 1
                r_in = r_p if j < 2 else r_out
                for k, op in enumerate(DARTS_OPS):
                    tables[t][e, k] += op_cost("darts", op, c_curr, stride, r_in, metric)
                e += 1
        reduction_prev = reduction
        c_pp, c_p = c_p, mult * c_curr
        r_pp, r_p = r_p, r_out
    fixed += module_cost(nn.Linear(c_p, cfg.num_classes), (c_p,), metric)
    return tables, fixed, counts


def _nb201_tables(cfg: EvalNetConfig, metric: str) -> tuple[dict[str, torch.Tensor], float, dict]:
    C, N, res = cfg.channels, cfg.n_layers, cfg.resolution
    table = torch.zeros(6, len(NB201_OPS), dtype=torch.float64)
    fixed = module_cost(
        nn.Sequential(nn.Conv2d(cfg.in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C)),
        (cfg.in_channels, res, res),
        metric,
    )
    c_prev, r = C, res
    for stage in range(3):
        c = C * 2**stage
        if stage > 0:
            fixed += module_cost(ResNetBasicBlock(c_prev, c, 2), (c_prev, r, r), metric)
            r = _down(r)
        for k, op in enumerate(NB201_OPS):
            table[:, k] += N * op_cost("nb201", op, c, 1, r, metric)
        c_prev = c
    fixed += module_cost(nn.BatchNorm2d(c_prev), (c_prev, r, r), metric)
    fixed += module_cost(nn.Linear(c_prev, cfg.num_classes), (c_prev,), metric)
    return {"normal": table}, fixed, {"normal": 3 * N}


def _nb201_latency(
    device: str, data_dir: str | os.PathLike[str] | None
) -> tuple[dict[str, torch.Tensor], float, np.ndarray, dict[str, Any]]:
    """Least-squares per-(edge, op) latency costs (>= 0) on all 15,625 NB201 cells."""
    from scipy.optimize import lsq_linear
    from scipy.stats import kendalltau

    from hwnas.space.nb201 import NB201Space

    row_of_code, df = nb201_table(data_dir)
    col = f"lat_{device}"
    if col not in df.columns:
        known = ", ".join(sorted(c[4:] for c in df.columns if c.startswith("lat_")))
        raise HwnasError(f"nb201 has no latency for device '{device}' (known: {known})")
    space = NB201Space()
    vectors = space.all_vectors()  # base-5 code order
    y = df[col].to_numpy(dtype=np.float64)[row_of_code]
    X = np.concatenate(
        [np.ones((len(vectors), 1))]
        + [(vectors[:, [e]] == k).astype(np.float64) for e in range(6) for k in range(1, 5)],
        axis=1,
    )
    # no latency is negative and no op saves time over 'none': the intercept and every
    # op cost are bounded below by 0 (plain least squares gives some ops and the
    # intercept negative values, and a search then drives its expected latency below
    # zero by choosing those ops)
    coef = lsq_linear(X, y, bounds=(0.0, np.inf)).x
    pred = X @ coef
    r2 = 1.0 - float(((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum())
    tau = float(kendalltau(pred, y).statistic)
    table = torch.zeros(6, len(NB201_OPS), dtype=torch.float64)
    table[:, 1:] = torch.from_numpy(coef[1:].reshape(6, 4))
    meta = {
        "latency_fit": {
            "device": device,
            "method": "least squares on one-hot (edge, op), 'none' as reference, intercept; "
            "all >= 0",
            "n": len(y),
            "r2": r2,
            "kendall_tau": tau,
            "mae_ms": float(np.abs(y - pred).mean()),
        }
    }
    return {"normal": table}, float(coef[0]), y, meta


def load_darts_latency_table(
    path: str | os.PathLike[str], device: str | None = None
) -> tuple[dict[str, torch.Tensor], float, dict[str, Any]]:
    """Read a DARTS per-op latency table (JSON) measured for the evaluation network.

    Format::

        {"device": "pixel3",            # optional; must match the constraint's device
         "unit": "ms",                  # optional; only "ms" is accepted
         "fixed": 1.8,                  # stem, preprocessing, pooling and classifier
         "normal": {"sep_conv_3x3": 0.21, ..., "skip_connect": [14 numbers]},
         "reduce": {...}}

    ``normal``/``reduce`` give, for each of the 7 non-'none' DARTS ops, its latency on
    one edge summed over all cells of that type in the evaluation network: one number
    for every edge, or a list of 14 (one per edge row, node 0: rows 0-1, node 1: 2-4,
    node 2: 5-8, node 3: 9-13; in reduction cells rows from inputs 0 and 1 run at
    stride 2). 'none' costs 0. The derived latency of a genotype is ``fixed`` plus its
    16 (op, edge) entries; latency is treated as additive over ops.
    """
    p = Path(path)
    try:
        d = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise HwnasError(f"cannot read DARTS latency table '{p}': {exc}") from None
    if not isinstance(d, dict) or "normal" not in d or "reduce" not in d or "fixed" not in d:
        raise HwnasError(f"DARTS latency table '{p}' needs 'fixed', 'normal' and 'reduce'")
    if d.get("unit", "ms") != "ms":
        raise HwnasError(f"DARTS latency table '{p}': unit must be 'ms'")
    if device and d.get("device") not in (None, device):
        raise HwnasError(f"DARTS latency table '{p}' is for device '{d['device']}', not {device}")
    tables: dict[str, torch.Tensor] = {}
    for t in ("normal", "reduce"):
        table = torch.zeros(14, len(DARTS_OPS), dtype=torch.float64)
        entries = d[t]
        if not isinstance(entries, dict):
            raise HwnasError(f"DARTS latency table '{p}': '{t}' must map op names to latencies")
        for k, op in enumerate(DARTS_OPS):
            if op == "none":
                continue
            if op not in entries:
                raise HwnasError(f"DARTS latency table '{p}': {t} lacks op '{op}'")
            v = entries[op]
            vals = v if isinstance(v, list) else [v] * 14
            if len(vals) != 14:
                raise HwnasError(
                    f"DARTS latency table '{p}': {t}.{op} must be a number or a list of 14"
                )
            table[:, k] = torch.tensor(
                [_latency_ms(x, p, f"{t}.{op}") for x in vals], dtype=torch.float64
            )
        tables[t] = table
    fixed = _latency_ms(d["fixed"], p, "fixed")
    return tables, fixed, {"latency_table": str(p)}


def _latency_ms(value: Any, path: Path, name: str) -> float:
    """One latency entry of a DARTS table: a finite number >= 0 (ms), not a boolean."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise HwnasError(
            f"DARTS latency table '{path}': {name} must hold numbers (ms), got {value!r}"
        )
    try:
        v = float(value)
    except OverflowError:
        v = math.inf
    if not math.isfinite(v) or v < 0:
        raise HwnasError(
            f"DARTS latency table '{path}': {name} must be finite and >= 0 ms, got {value!r}"
        )
    return v


def resource_model(
    metric: str | Constraint,
    eval_config: EvalNetConfig | None = None,
    device: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    latency_table: str | os.PathLike[str] | None = None,
) -> ResourceModel:
    """Build the resource model of ``metric`` ('params', 'flops', 'latency' or a
    :class:`Constraint`) for ``eval_config`` (default: NB201 C=16, N=5, 10 classes).
    NB201 latency reads the benchmark table from ``data_dir``; DARTS latency needs
    ``latency_table`` (see :func:`load_darts_latency_table`)."""
    if isinstance(metric, Constraint):
        metric, device = metric.metric, metric.device
    cfg = eval_config or EvalNetConfig()
    if metric not in METRICS:
        raise HwnasError(f"unknown resource metric '{metric}' (use params, flops, latency)")
    measured = None
    meta: dict[str, Any] = {}
    if metric == "latency":
        if not device:
            raise HwnasError("a latency resource needs a device (latency:DEVICE)")
        if cfg.space == "nb201":
            tables, fixed, measured, meta = _nb201_latency(device, data_dir)
            meta["note"] = "NB201 latencies are for the benchmark's network (C=16, N=5)"
            counts = {"normal": 3 * cfg.n_layers}
        else:
            if latency_table is None:
                raise HwnasError(
                    "DARTS latency needs a per-op latency table (JSON; see "
                    "hwnas.dnas.resources.load_darts_latency_table)"
                )
            tables, fixed, meta = load_darts_latency_table(latency_table, device)
            counts = {}
    else:
        if cfg.space == "darts":
            tables, fixed, counts = _darts_tables(cfg, metric)
        else:
            tables, fixed, counts = _nb201_tables(cfg, metric)
        if metric == "flops":
            meta["flops_method"] = "torch.utils.flop_counter, batch 1, conv/matmul only"
    return ResourceModel(
        space=cfg.space,
        metric=metric,
        tables=tables,
        fixed=float(fixed),
        device=device if metric == "latency" else None,
        cells=counts,
        eval_config=cfg.as_dict(),
        meta=meta,
        _measured=measured,
    )
