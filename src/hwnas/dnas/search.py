"""DCA-NAS: differentiable architecture search under a device resource budget (paper 001).

Each step makes two first-order updates (DARTS-style, alternating):

1. weights ``w`` (SGD, momentum, cosine lr, grad clip) on a batch of the weight half of
   the training subset, minimising the cross-entropy;
2. alpha (Adam) on a batch of the alpha half, minimising
   ``L_val(w, alpha) + lambda * (R(alpha) / B - 1)``, where ``R`` is the expected
   resource of paper eq. 3 (:meth:`ResourceModel.expected`) and ``B`` the search budget.
   Dividing by ``B`` makes the constraint term unit-free, so one ``lambda_lr`` works for
   any metric and budget (paper eq. 4 writes ``lambda (R - B)``; this is the same
   Lagrangian with lambda rescaled by ``B``);
3. ``lambda <- max(0, lambda + lambda_lr * (R(alpha) / B - 1))``: gradient ascent on the
   violation (eq. 2/4), so lambda grows while the budget is exceeded, shrinks towards 0
   while it is met, and never goes negative.

The search budget ``B`` is the constraint's device budget, an explicit ``search_budget``
or, with ``lookup``, the lookup graph's value for the device budget (section 3.2.1).

``penalty`` swaps step 2's Lagrangian for one of the soft resource losses of the
hardware-aware literature, with ``B`` as their reference value (no multiplier, so no
guarantee that the budget is met; the ``feasible`` derivation still answers within it):
``linear`` (ProxylessNAS: ``CE + w (R/B - 1)``), ``log`` (FBNet: ``CE (log R / log B)^e``,
latency in microseconds so that both logs are positive) and ``pow`` (MnasNet's soft reward
as a loss: ``CE (R/B)^e``); see :func:`penalized_objective`. FBNet's and ProxylessNAS's
constant factor in front of the multiplicative forms is left out: it scales the whole alpha
loss, and Adam's update does not change with the loss's scale.

``dsearch(config, out_dir)`` appends one JSON line per epoch to ``metrics.jsonl``, then
checkpoints (model, both optimisers, scheduler, lambda, RNG states, epoch, config,
history) to ``checkpoint.pt``, continues exactly with ``resume=True`` (``metrics.jsonl``
rewritten to the epochs the checkpoint holds), and writes ``summary.json`` at the end
(see :func:`dsearch`). One search at a time writes to ``out_dir``
(:func:`hwnas.process.out_dir_lock`).
"""

from __future__ import annotations

import functools
import json
import math
import os
import random
import resource
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hwnas.config import changed_settings, validate_model
from hwnas.data import BatchIterator, ImageData, load_dataset
from hwnas.dnas.derivation import (
    derive,
    derive_darts_within,
    derive_nb201_within,
    nb201_connected,
    nb201_record,
    nb201_table,
    with_tolerance,
)
from hwnas.dnas.genotype import Genotype, genotype_to_dict
from hwnas.dnas.ops import DARTS_OPS, NB201_OPS
from hwnas.dnas.resources import (
    Constraint,
    EvalNetConfig,
    ResourceModel,
    parse_constraint,
    resource_model,
)
from hwnas.dnas.runs import (
    Log,
    check_epochs_reached,
    emit,
    refuse_finished_run,
    stderr_line,
)
from hwnas.dnas.search_model import SearchNetwork
from hwnas.errors import HwnasError
from hwnas.process import out_dir_lock
from hwnas.report.progress import StepProgress
from hwnas.train.supernet import append_metrics, resume_schedule, write_metrics
from hwnas.train.utils import torch_threads, warmup_cosine

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
SUMMARY_NAME = "summary.json"
CONFIG_NAME = "config.json"
PLOT_NAME = "search.png"

# settings that may differ between a run and its resumption: where it runs, how it
# answers, and how long (more epochs stretch the weights' cosine schedule, as ``hwnas
# train`` does; alpha's Adam and the multiplier have no schedule to stretch)
_RESUME_FREE = ("data_dir", "threads", "derivation", "plot", "epochs")
# the input an NB201 latency table was measured for (NAS-Bench-201's CIFAR network)
NB201_LATENCY_INPUT = (3, 32)

# (weight, exponent) defaults of the soft penalties: ProxylessNAS's lambda 0.1, FBNet's
# beta 0.6, MnasNet's w = -0.07 turned into a loss exponent (None: the form has no such term)
PENALTY_DEFAULTS: dict[str, tuple[float | None, float | None]] = {
    "linear": (0.1, None),
    "log": (None, 0.6),
    "pow": (None, 0.07),
}

__all__ = [
    "PENALTY_DEFAULTS",
    "DSearchConfig",
    "DSearchResult",
    "dsearch",
    "penalized_objective",
    "resolve_budgets",
]


class DSearchConfig(BaseModel):
    """Settings of one DCA-NAS search (defaults: the paper's optimisers, NB201 space)."""

    model_config = ConfigDict(extra="forbid")

    space: Literal["darts", "nb201"] = "nb201"
    dataset: str = Field("cifar10", description="cifar10, digits (8x8), mnist, flowers17, ...")
    data_dir: str | None = None
    constraint: str | None = Field(
        None, description="params<=3.5e6, flops<=600e6 or latency:DEVICE<=MS (None: DARTS)"
    )
    search_budget: float | None = Field(None, gt=0, description="override of B in the loss")
    lookup: str | None = Field(None, description="lookup graph (lug.json) for B")
    latency_table: str | None = Field(None, description="DARTS per-op latency JSON")
    epochs: int = Field(50, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1, description="cap on steps per epoch")
    batch_size: int = Field(64, ge=1)
    channels: int = Field(16, ge=1, description="search network C")
    layers: int = Field(8, ge=3, description="DARTS search network cells")
    stage_cells: int = Field(5, ge=1, description="NB201 search network cells per stage")
    eval_channels: int | None = Field(None, ge=1, description="evaluation C (36 / 16)")
    eval_layers: int | None = Field(None, ge=1, description="evaluation cells (20 / N=5)")
    eval_num_classes: int | None = Field(None, ge=1, description="default: the dataset's")
    eval_resolution: int | None = Field(
        None, ge=4, description="default: the dataset's (>= 4, as image_size)"
    )
    train_subset: int | None = Field(
        None, ge=2, description="training images used (half weights, half alpha)"
    )
    image_size: int | None = Field(None, ge=4, description="downscale inputs for speed")
    augment: bool = True
    seed: int = Field(0, ge=0, le=2**32 - 1)
    threads: int | None = Field(1, ge=1)
    weight_sharing: bool = True
    bottleneck: int = Field(2, ge=1, description="channel bottleneck factor (1: off)")
    derived_cells: bool = True
    derivation: Literal["feasible", "argmax"] = Field(
        "feasible",
        description="feasible: best-scoring cell within the budget (NB201: and connected); "
        "argmax: the plain rule",
    )
    plot: bool = Field(True, description="write search.png (resource, lambda, alphas)")
    lr: float = Field(0.025, gt=0)
    lr_min: float = Field(0.001, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(3e-4, ge=0)
    grad_clip: float | None = Field(5.0, gt=0)
    arch_lr: float = Field(3e-4, gt=0)
    arch_betas: tuple[float, float] = Field((0.5, 0.999), description="Adam betas, in [0, 1)")
    arch_weight_decay: float = Field(1e-3, ge=0)
    lambda_lr: float = Field(0.1, ge=0, allow_inf_nan=False, description="penalty=lagrange only")
    lambda_init: float = Field(0.0, ge=0, allow_inf_nan=False, description="penalty=lagrange only")
    penalty: Literal["lagrange", "linear", "log", "pow"] = Field(
        "lagrange",
        description="how the budget enters the alpha loss: lagrange (DCA-NAS: trainable "
        "multiplier), linear (ProxylessNAS), log (FBNet), pow (MnasNet's soft reward)",
    )
    penalty_weight: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="penalty=linear: weight (default 0.1)"
    )
    penalty_exponent: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="penalty=log/pow: exponent (0.6 / 0.07)"
    )

    @field_validator("space", mode="before")
    @classmethod
    def _space_lower(cls, v: Any) -> Any:
        """``NB201`` names the same space as ``nb201``."""
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("arch_betas")
    @classmethod
    def _betas_in_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"Adam betas must be in [0, 1), got {list(v)}")
        return v

    @model_validator(mode="after")
    def _check(self) -> DSearchConfig:
        if self.latency_table is not None and not Path(self.latency_table).is_file():
            raise HwnasError(f"latency table '{self.latency_table}' not found")
        c = parse_constraint(self.constraint) if self.constraint is not None else None
        darts_latency = c is not None and c.metric == "latency" and self.space == "darts"
        if darts_latency and not self.latency_table:
            raise HwnasError(
                "a DARTS latency constraint needs a per-op latency table (latency_table, "
                "--latency-table JSON)"
            )
        if self.latency_table is not None and not darts_latency:
            raise HwnasError(
                "a per-op latency table (latency_table, --latency-table) is for a DARTS "
                "latency constraint (latency:DEVICE<=MS with space darts); here it would be "
                "ignored"
            )
        nb201_latency = c is not None and c.metric == "latency" and self.space == "nb201"
        other_net = {
            k: v
            for k, v in (("eval_channels", self.eval_channels), ("eval_layers", self.eval_layers))
            if v is not None and v != {"eval_channels": 16, "eval_layers": 5}[k]
        }
        if nb201_latency and self.eval_resolution not in (None, NB201_LATENCY_INPUT[1]):
            raise HwnasError(
                f"an NB201 latency budget is the table's latency of NAS-Bench-201's "
                f"32x32 CIFAR network, not of one at eval_resolution={self.eval_resolution}: "
                "drop it, or constrain params or flops, which are computed for the network "
                "you give"
            )
        if nb201_latency and other_net:
            given = ", ".join(f"{k}={v}" for k, v in other_net.items())
            raise HwnasError(
                f"an NB201 latency budget is the table's latency of NAS-Bench-201's own "
                f"network (C=16, N=5), not of one with {given}: drop them, or constrain "
                "params or flops, which are computed for the network you give"
            )
        if c is None and (self.search_budget is not None or self.lookup is not None):
            raise HwnasError("search_budget/lookup need a constraint (e.g. params<=1e6)")
        if self.search_budget is not None and self.lookup is not None:
            raise HwnasError("give either search_budget or lookup, not both")
        if self.penalty != "lagrange" and self.constraint is None:
            raise HwnasError(
                f"penalty '{self.penalty}' needs a constraint (its budget is the penalty's "
                "reference value), e.g. --constraint 'params<=1e6'"
            )
        if self.penalty == "lagrange" and (
            self.penalty_weight is not None or self.penalty_exponent is not None
        ):
            raise HwnasError(
                "penalty_weight/penalty_exponent are for the soft penalties (linear, log, "
                "pow); the lagrange penalty learns its multiplier (lambda_lr, lambda_init)"
            )
        if self.penalty == "linear" and self.penalty_exponent is not None:
            raise HwnasError("penalty 'linear' has no exponent (only a weight)")
        if self.penalty in ("log", "pow") and self.penalty_weight is not None:
            raise HwnasError(
                f"penalty '{self.penalty}' takes no weight: it multiplies the whole alpha loss, "
                "and Adam's update does not change with the loss's scale; tune "
                "penalty_exponent (--penalty-exponent) instead"
            )
        return self

    def penalty_terms(self) -> tuple[float | None, float | None]:
        """(weight, exponent) of a soft penalty, the defaults filled in (None: no such
        term); (None, None) for the lagrange penalty."""
        if self.penalty == "lagrange":
            return None, None
        w, e = PENALTY_DEFAULTS[self.penalty]
        return (
            w if self.penalty_weight is None else self.penalty_weight,
            e if self.penalty_exponent is None else self.penalty_exponent,
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DSearchConfig:
        """Validate ``d``; errors become one-line :class:`HwnasError`."""
        return validate_model(cls, d, "search")

    def eval_net(self, num_classes: int, in_channels: int, resolution: int) -> EvalNetConfig:
        """The evaluation network the constraint is about."""
        return EvalNetConfig(
            space=self.space,
            C=self.eval_channels,
            layers=self.eval_layers,
            num_classes=self.eval_num_classes or num_classes,
            in_channels=in_channels,
            resolution=self.eval_resolution or resolution,
        )


@dataclass
class DSearchResult:
    """Outcome of :func:`dsearch`; ``summary`` is empty until the last epoch is done."""

    out_dir: Path
    genotype: Genotype | str
    alphas: list[torch.Tensor]
    lam: float
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    model: SearchNetwork | None = None

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


def resolve_budgets(cfg: DSearchConfig) -> tuple[Constraint | None, float | None, str]:
    """(constraint, search budget B, where B came from: constraint/override/lookup)."""
    if cfg.constraint is None:
        return None, None, "none"
    c = parse_constraint(cfg.constraint)
    if cfg.search_budget is not None:
        return c, float(cfg.search_budget), "override"
    if cfg.lookup is not None:
        from hwnas.dnas.lookup import LookupGraph

        lug = LookupGraph.load(cfg.lookup)
        if lug.metric != c.key:
            raise HwnasError(
                f"lookup graph '{cfg.lookup}' is for {lug.metric}, the constraint is on {c.key}"
            )
        if lug.meta.get("space", cfg.space) != cfg.space:
            raise HwnasError(
                f"lookup graph '{cfg.lookup}' was built in the {lug.meta['space']} space, "
                f"the search is in {cfg.space}"
            )
        _check_lookup_network(cfg, lug.meta, cfg.lookup)
        return c, lug.search_budget_for(c.budget), "lookup"
    return c, c.budget, "constraint"


def penalized_objective(
    loss: torch.Tensor,
    expected: torch.Tensor,
    budget: float,
    penalty: str,
    lam: float = 0.0,
    weight: float | None = None,
    exponent: float | None = None,
    metric: str = "params",
) -> torch.Tensor:
    """The alpha loss: ``loss`` (cross-entropy) with the expected resource ``expected``
    measured against the search budget ``budget`` by ``penalty`` (module docstring):
    ``lam`` is the Lagrange multiplier, ``weight`` linear's, ``exponent`` log's and pow's.

    ``log`` takes latency in microseconds and clamps both values at e, so that the ratio of
    logs stays positive for any budget (FBNet's form needs ``log R > 0``)."""
    rel = expected / budget
    if penalty == "lagrange":
        return loss + lam * (rel - 1.0).to(loss.dtype)
    if penalty == "linear":
        if weight is None:
            raise ValueError("penalty 'linear' needs a weight")
        return loss + weight * (rel - 1.0).to(loss.dtype)
    if exponent is None:
        raise ValueError(f"penalty '{penalty}' needs an exponent")
    if penalty == "pow":
        return loss * rel.clamp_min(1e-12).to(loss.dtype) ** exponent
    if penalty == "log":
        scale = 1000.0 if metric == "latency" else 1.0
        r = (expected * scale).clamp_min(math.e)
        b = max(budget * scale, math.e)
        return loss * (torch.log(r) / math.log(b)).to(loss.dtype) ** exponent
    raise ValueError(f"unknown penalty '{penalty}'")


def _eval_network_key(space: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The settings that fix the evaluation network a budget is about (defaults resolved)."""
    net = EvalNetConfig(space, C=fields.get("eval_channels"), layers=fields.get("eval_layers"))
    return {
        "dataset": fields.get("dataset", "cifar10"),
        "eval_channels": net.channels,
        "eval_layers": net.n_layers,
        "eval_num_classes": fields.get("eval_num_classes"),
        "eval_resolution": fields.get("eval_resolution"),
    }


def _check_lookup_network(cfg: DSearchConfig, meta: dict[str, Any], path: Any) -> None:
    """Refuse a lookup graph built for another evaluation network or dataset: its search
    budgets translate budgets of that network, not of this search's."""
    built = meta.get("config")
    if not isinstance(built, dict):  # an older graph without its config: nothing to compare
        if meta.get("dataset") not in (None, cfg.dataset):
            raise HwnasError(
                f"lookup graph '{path}' was built on dataset {meta['dataset']}, "
                f"the search is on {cfg.dataset}"
            )
        return
    try:
        theirs = _eval_network_key(cfg.space, built)
    except (HwnasError, TypeError) as e:
        raise HwnasError(f"lookup graph '{path}' is malformed: {e}") from None
    ours = _eval_network_key(cfg.space, cfg.model_dump())
    diff = [k for k in ours if theirs[k] != ours[k]]
    if diff:
        shown = ", ".join(f"{k} {theirs[k]} (search: {ours[k]})" for k in diff)
        raise HwnasError(
            f"lookup graph '{path}' was built for another evaluation network or dataset: "
            f"{shown}; build one with the same settings (hwnas dsearch lug)"
        )
    # the graph maps search budgets to what searches with its penalty derive
    keys = ("penalty", "penalty_weight", "penalty_exponent")
    theirs_p, ours_p = _comparable(built), _comparable(cfg.model_dump())
    if any(theirs_p[k] != ours_p[k] for k in keys):
        shown = ", ".join(f"{k} {theirs_p[k]}" for k in keys if theirs_p[k] is not None)
        raise HwnasError(
            f"lookup graph '{path}' was built with another penalty ({shown}; the search: "
            f"{_penalty_text(cfg)}); build one with the same penalty (hwnas dsearch lug)"
        )


# ---- data -------------------------------------------------------------------------------
@dataclass
class _SearchData:
    x_w: torch.Tensor
    y_w: torch.Tensor
    x_a: torch.Tensor
    y_a: torch.Tensor
    num_classes: int
    in_channels: int
    resolution: int  # native image size (for the evaluation network)
    pad: int
    flip: bool


@functools.lru_cache(maxsize=1)
def _load_train(dataset: str, data_dir: str | None) -> ImageData:
    """The dataset with no validation hold-out, kept for the next search in this process
    (lookup graphs and tests run many searches; the search never uses the test split, so
    the loader's seed is fixed and ``cfg.seed`` only picks the subset)."""
    return load_dataset(dataset, data_dir, val_fraction=0.0, seed=0)


def _search_data(cfg: DSearchConfig) -> _SearchData:
    """The training split (no held-out validation), a seeded subset, halved (DARTS)."""
    data = _load_train(cfg.dataset, cfg.data_dir)
    x, y = data.x_train, data.y_train
    gen = torch.Generator().manual_seed(cfg.seed)
    n = len(y) if cfg.train_subset is None else min(cfg.train_subset, len(y))
    if n < 2:
        raise HwnasError(f"dataset '{cfg.dataset}' has too few training images ({len(y)})")
    perm = torch.randperm(len(y), generator=gen)[:n]
    x, y = x[perm], y[perm]
    native = int(data.x_train.shape[-1])
    if cfg.image_size is not None and cfg.image_size != native:
        x = F.adaptive_avg_pool2d(x, cfg.image_size)
    half = n // 2
    size = int(x.shape[-1])
    return _SearchData(
        x_w=x[:half].contiguous(),
        y_w=y[:half].contiguous(),
        x_a=x[half:].contiguous(),
        y_a=y[half:].contiguous(),
        num_classes=data.num_classes,
        in_channels=data.in_channels,
        resolution=native,
        pad=max(1, size // 8),
        flip=data.flip,
    )


# ---- RNG state ----------------------------------------------------------------------------
def _rng_state(gens: dict[str, torch.Generator]) -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        **{k: g.get_state() for k, g in gens.items()},
    }


def _set_rng_state(state: dict[str, Any], gens: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    for k, g in gens.items():
        g.set_state(state[k])


def _save(path: Path, payload: dict[str, Any]) -> None:
    """Atomic ``torch.save``."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _peak_rss_mib() -> float:
    """Peak resident set size of this process so far (``getrusage`` ru_maxrss, MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _genotype_json(g: Genotype | str) -> Any:
    return g if isinstance(g, str) else genotype_to_dict(g)


# ---- the search -------------------------------------------------------------------------
def dsearch(
    config: DSearchConfig | dict[str, Any],
    out_dir: str | os.PathLike[str],
    resume: bool = False,
    progress: bool = True,
    max_epochs: int | None = None,
    return_model: bool = False,
    log: Log = None,
) -> DSearchResult:
    """Run (or, with ``resume=True``, continue) a DCA-NAS search; see the module docstring.

    ``resume=True`` continues from ``out_dir/checkpoint.pt``; where there is none yet it
    starts the search, so one call runs or continues it (the lookup graph relies on
    this; ``hwnas dsearch --resume`` instead refuses a folder with nothing to resume, to
    catch a mistyped ``--out``). The config must match the checkpoint's except
    data_dir, threads, derivation, plot and ``epochs``: more epochs stretch the weights'
    cosine schedule from the step reached (as ``hwnas train``), fewer than the
    checkpoint holds are refused. Without ``resume`` a folder holding a finished search
    (its checkpoint and summary) is refused rather than replaced. ``max_epochs``
    stops after that many epochs of this call (the schedules still span
    ``config.epochs``). ``log`` gets plain lines: what is loaded and built at the start
    and, without a progress bar, one line per epoch (default: stderr when ``progress``,
    else nothing). Per epoch ``metrics.jsonl`` gets: epoch, genotype, alpha entropy,
    lambda, expected and derived resource, train/val loss and accuracy (val: the alpha
    batches, before each alpha update), lr, seconds, peak RSS (``getrusage`` maxrss, MiB:
    the process peak so far). ``summary.json`` (after the last epoch): config, genotype,
    derived params/flops (latency where defined), budget, search budget, satisfied,
    seconds; for NB201 also the benchmark index, true test accuracies, 27 device
    latencies and the best table accuracy under the same budget and resource model
    (among connected cells). The summary's ``genotype`` follows ``config.derivation``
    (default: the best-scoring cell within the device budget);
    ``argmax_genotype``/``argmax_derived`` keep the plain rule's cell, and the per-epoch
    log always shows the argmax cell.
    """
    cfg = DSearchConfig.from_dict(config) if isinstance(config, dict) else config
    out = Path(out_dir)
    if log is None and progress:
        log = stderr_line
    with torch_threads(cfg.threads), out_dir_lock(out, "dsearch"):  # one search writes there
        if not resume:
            refuse_finished_run(out, "dsearch")
        return _dsearch(cfg, out, resume, progress, max_epochs, return_model, log)


def _dsearch(
    cfg: DSearchConfig,
    out: Path,
    resume: bool,
    progress: bool,
    max_epochs: int | None,
    return_model: bool,
    log: Log,
) -> DSearchResult:
    """The search of :func:`dsearch` (``out`` locked)."""
    ckpt_path, metrics_path = out / CHECKPOINT_NAME, out / METRICS_NAME
    constraint, search_budget, budget_source = resolve_budgets(cfg)
    lagrange = cfg.penalty == "lagrange"
    weight, exponent = cfg.penalty_terms()

    if log is not None:
        metric = constraint.key if constraint is not None else "params"
        log(
            f"dsearch: loading {cfg.dataset}, building the {metric} resource model and the "
            f"{cfg.space} search network (C={cfg.channels}, "
            + (f"{cfg.layers} cells)" if cfg.space == "darts" else f"N={cfg.stage_cells})")
        )
    data = _search_data(cfg)
    if constraint is not None and constraint.metric == "latency" and cfg.space == "nb201":
        _check_nb201_latency_input(cfg, data)
    eval_cfg = cfg.eval_net(data.num_classes, data.in_channels, data.resolution)
    rmodel = resource_model(
        constraint if constraint is not None else "params",
        eval_cfg,
        data_dir=cfg.data_dir,
        latency_table=cfg.latency_table,
    )
    # refused before any training: nothing can meet it (the argmax rule, e.g. a lookup
    # graph's runs, takes the budget as a reference only)
    if constraint is not None and cfg.derivation == "feasible":
        least = rmodel.cheapest()
        if least > with_tolerance(constraint.budget):
            cell = "connected cell" if cfg.space == "nb201" else "cell"
            raise HwnasError(
                f"no {cell} of {cfg.space} meets {constraint}: the cheapest costs "
                f"{least:.6g}{' ' + rmodel.unit if rmodel.unit else ''} (its evaluation "
                "network's); raise the budget"
            )
    # seed only now: the dataset load and the resource model (which builds modules, with
    # per-process caches) may draw from the global RNGs, and must not shift the search's
    # initialisation (a search must not depend on what ran before it in the process)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    gens = {"data_w": torch.Generator(), "data_a": torch.Generator()}
    gens["data_w"].manual_seed(cfg.seed)
    gens["data_a"].manual_seed(cfg.seed + 1)
    model = SearchNetwork(
        cfg.space,
        C=cfg.channels,
        layers=cfg.layers if cfg.space == "darts" else cfg.stage_cells,
        num_classes=data.num_classes,
        in_channels=data.in_channels,
        weight_sharing=cfg.weight_sharing,
        bottleneck=cfg.bottleneck,
        derived_cells=cfg.derived_cells,
    )
    w_iter = BatchIterator(
        data.x_w,
        data.y_w,
        cfg.batch_size,
        shuffle=True,
        augment=cfg.augment,
        pad=data.pad,
        flip=data.flip,
        drop_last=len(data.y_w) >= cfg.batch_size,
        generator=gens["data_w"],
        max_batches=cfg.steps_per_epoch,
    )
    a_iter = BatchIterator(
        data.x_a,
        data.y_a,
        cfg.batch_size,
        shuffle=True,
        drop_last=len(data.y_a) >= cfg.batch_size,
        generator=gens["data_a"],
        max_batches=cfg.steps_per_epoch,
    )
    steps = min(len(w_iter), len(a_iter))
    if steps == 0:
        raise HwnasError("the training subset is too small for one batch")
    w_opt = torch.optim.SGD(
        model.weight_parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        w_opt, warmup_cosine(cfg.epochs * steps, 0, final=min(1.0, cfg.lr_min / cfg.lr))
    )
    a_opt = torch.optim.Adam(
        model.arch_parameters(),
        lr=cfg.arch_lr,
        betas=cfg.arch_betas,
        weight_decay=cfg.arch_weight_decay,
    )
    lam = float(cfg.lambda_init)
    start_epoch, seconds_before = 0, 0.0
    history: list[dict[str, Any]] = []
    if resume and ckpt_path.is_file():
        ckpt = _load_checkpoint(ckpt_path)
        _check_same_config(ckpt.get("config", {}), cfg, ckpt_path)
        check_epochs_reached(int(ckpt["epoch"]) + 1, cfg.epochs, ckpt_path)
        model.load_state_dict(ckpt["model"])
        w_opt.load_state_dict(ckpt["w_opt"])
        a_opt.load_state_dict(ckpt["a_opt"])
        sched.load_state_dict(ckpt["scheduler"])
        resume_schedule(w_opt, sched)  # more epochs: this run's cosine at the step reached
        lam = float(ckpt["lambda"])
        _set_rng_state(ckpt["rng"], gens)
        start_epoch = int(ckpt["epoch"]) + 1
        seconds_before = float(ckpt.get("seconds", 0.0))
        history = list(ckpt.get("history", []))
        write_metrics(metrics_path, history)  # no line past the checkpoint, no torn one
    else:
        for p in (metrics_path, out / SUMMARY_NAME, ckpt_path):
            if p.exists():
                p.unlink()
    (out / CONFIG_NAME).write_text(json.dumps(cfg.model_dump(), indent=2) + "\n")

    end_epoch = cfg.epochs if max_epochs is None else min(cfg.epochs, start_epoch + max_epochs)
    seconds = seconds_before
    if log is not None and start_epoch < end_epoch:
        where = f"from epoch {start_epoch} " if start_epoch else ""
        log(f"dsearch: searching {where}to {cfg.epochs} epochs of {steps} steps")
    bar = StepProgress(
        progress,
        cfg.epochs * steps,
        start_epoch * steps,
        label="dsearch epoch",
        fields="loss {loss:.3f} lambda {lam:.3g}" if lagrange else "loss {loss:.3f}",
        lam=0.0,
    )
    with bar:
        for epoch in range(start_epoch, end_epoch):
            t0 = time.perf_counter()
            sums = {"train_loss": 0.0, "train_acc": 0.0, "val_loss": 0.0, "val_acc": 0.0}
            n = 0
            model.train()
            for (xw, yw), (xa, ya) in zip(w_iter, a_iter, strict=False):
                # 1. weights on a training batch
                w_opt.zero_grad(set_to_none=True)
                logits = model(xw)
                loss = F.cross_entropy(logits, yw)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.weight_parameters(), cfg.grad_clip)
                w_opt.step()
                sched.step()
                # 2. alpha on a validation batch: L_val + lambda * (R/B - 1)
                alphas = model.arch_parameters()
                a_opt.zero_grad(set_to_none=True)
                logits_a = model(xa)
                val_loss = F.cross_entropy(logits_a, ya)
                objective = val_loss
                violation = 0.0
                if search_budget is not None:
                    r = rmodel.expected(alphas)
                    objective = penalized_objective(
                        val_loss, r, search_budget, cfg.penalty, lam, weight, exponent,
                        rmodel.metric,
                    )  # fmt: skip
                    violation = float(r.detach()) / search_budget - 1.0
                if not (torch.isfinite(objective) and torch.isfinite(loss)):
                    ce, obj = float(loss.detach()), float(objective.detach())
                    raise HwnasError(
                        f"the search diverged at epoch {epoch + 1}, step {n + 1}: its loss is "
                        f"{ce:.4g}, the alpha loss {obj:.4g} ({_penalty_text(cfg)}); lower "
                        f"{_penalty_knob(cfg)} or the learning rates and run again with "
                        "another --out"
                    )
                grads = torch.autograd.grad(objective, alphas)
                for a, g in zip(alphas, grads, strict=True):
                    a.grad = g
                a_opt.step()
                # 3. lambda: gradient ascent on the violation, kept >= 0
                if search_budget is not None and lagrange:
                    lam = max(0.0, lam + cfg.lambda_lr * violation)
                sums["train_loss"] += float(loss.detach())
                sums["train_acc"] += float((logits.argmax(1) == yw).float().mean())
                sums["val_loss"] += float(val_loss.detach())
                sums["val_acc"] += float((logits_a.argmax(1) == ya).float().mean())
                n += 1
                bar.advance(epoch, loss=float(loss.detach()), lam=lam)
            secs = time.perf_counter() - t0
            seconds += secs
            record = _epoch_record(
                epoch, n, sums, model, rmodel, lam if lagrange else None, search_budget, w_opt,
                secs,
            )  # fmt: skip
            history.append(record)
            # the line first: a kill before the checkpoint only repeats this epoch
            append_metrics(metrics_path, record)
            _save(
                ckpt_path,
                {
                    "model": model.state_dict(),
                    "hparams": model.hparams(),
                    "w_opt": w_opt.state_dict(),
                    "a_opt": a_opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "lambda": lam,
                    "rng": _rng_state(gens),
                    "epoch": epoch,
                    "config": cfg.model_dump(),
                    "seconds": seconds,
                    "history": history,
                },
            )
            r = record
            lam_text = f" lambda {r['lambda']:.3g}" if lagrange else ""
            emit(
                bar,
                log,
                f"epoch {r['epoch']}: train {r['train_loss']:.3f}/{r['train_acc']:.3f} "
                f"val {r['val_loss']:.3f}/{r['val_acc']:.3f}{lam_text} "
                f"{r['metric']} expected {r['expected']:.4g} derived {r['derived']:.4g} "
                f"({secs:.1f} s)",
            )

    argmax_genotype = model.genotype()
    genotype, fits = final_genotype(cfg, model.arch_parameters(), rmodel, constraint)
    result = DSearchResult(
        out_dir=out,
        genotype=genotype,
        alphas=[a.detach().clone() for a in model.arch_parameters()],
        lam=lam,
        history=history,
        model=model if return_model else None,
    )
    if end_epoch >= cfg.epochs:
        result.summary = _summary(
            cfg,
            genotype,
            model,
            rmodel,
            constraint,
            search_budget,
            budget_source,
            lam,
            seconds,
            eval_cfg,
            argmax_genotype,
            fits,
        )
        if not fits:
            cell = "connected cell" if cfg.space == "nb201" else "cell"
            warnings.warn(
                f"no {cell} fits {constraint}: the summary holds the argmax cell "
                f"({result.summary['derived']:.4g})",
                stacklevel=2,
            )
        (out / SUMMARY_NAME).write_text(json.dumps(result.summary, indent=2) + "\n")
        if cfg.plot:
            import matplotlib

            from hwnas.report.plots import plot_dsearch

            # no offset notation: an entropy that barely moves read '1e-7+1.609437'
            with matplotlib.rc_context({"axes.formatter.useoffset": False}):
                plot_dsearch(
                    history,
                    _plot_summary(result.summary),
                    [a.numpy() for a in result.alphas],
                    DARTS_OPS if cfg.space == "darts" else NB201_OPS,
                    out / PLOT_NAME,
                )
    return result


def _check_nb201_latency_input(cfg: DSearchConfig, data: _SearchData) -> None:
    """Refuse an NB201 latency budget on data the table was not measured for: its
    latencies are of NAS-Bench-201's 3x32x32 CIFAR network, so a budget on, say, digits
    (1x8x8) would be 'satisfied' by a number about another network."""
    channels, side = NB201_LATENCY_INPUT
    if (data.in_channels, data.resolution) != (channels, side):
        raise HwnasError(
            f"an NB201 latency budget is the table's latency of NAS-Bench-201's "
            f"{channels}x{side}x{side} CIFAR network, but {cfg.dataset} is "
            f"{data.in_channels}x{data.resolution}x{data.resolution}: search on a "
            f"{side}x{side} RGB dataset (cifar10), or constrain params or flops, which are "
            "computed for this dataset's network"
        )


def final_genotype(
    cfg: DSearchConfig,
    alphas: list[torch.Tensor],
    rmodel: ResourceModel,
    constraint: Constraint | None,
) -> tuple[Genotype | str, bool]:
    """The search's answer under ``cfg.derivation`` and whether a cell fitting the device
    budget (and, on NB201, connected) was found; ``argmax`` (or no fitting cell) gives the
    plain rule's cell (see :mod:`hwnas.dnas.derivation`)."""
    argmax = derive(cfg.space, alphas)
    if cfg.derivation == "argmax":
        return argmax, True
    budget = constraint.budget if constraint is not None else float("inf")
    found: Genotype | str | None
    if cfg.space == "nb201":
        found = derive_nb201_within(alphas[0], rmodel.derived_all_nb201(), budget)
    elif constraint is None:
        found = argmax  # the DARTS rule never leaves a node without inputs
    else:
        found = derive_darts_within(alphas[0], alphas[1], rmodel.tables, rmodel.fixed, budget)
    return (found, True) if found is not None else (argmax, False)


def _load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # corrupt / not a checkpoint
        raise HwnasError(f"cannot read checkpoint '{path}': {e}") from None


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A saved or current config with what it leaves out at its default (a checkpoint made
    before a setting existed) and the soft penalty's terms resolved (an explicit default
    is the same search as an implicit one)."""
    d = {k: f.default for k, f in DSearchConfig.model_fields.items()}
    d.update(config)
    kind = d.get("penalty")
    if kind in PENALTY_DEFAULTS:
        w, e = PENALTY_DEFAULTS[kind]
        d["penalty_weight"] = w if d.get("penalty_weight") is None else d["penalty_weight"]
        d["penalty_exponent"] = e if d.get("penalty_exponent") is None else d["penalty_exponent"]
    return d


def _check_same_config(saved: dict[str, Any], cfg: DSearchConfig, path: Path) -> None:
    shown = changed_settings(_comparable(saved), _comparable(cfg.model_dump()), _RESUME_FREE)
    if shown:
        raise HwnasError(
            f"checkpoint '{path}' was made with other settings ({shown}); resume with "
            "the same settings (only epochs and how it is run may change) or use another "
            "--out"
        )


def _epoch_record(
    epoch: int,
    n: int,
    sums: dict[str, float],
    model: SearchNetwork,
    rmodel: ResourceModel,
    lam: float | None,
    search_budget: float | None,
    w_opt: torch.optim.Optimizer,
    secs: float,
) -> dict[str, Any]:
    genotype = model.genotype()
    with torch.no_grad():
        expected = float(rmodel.expected(model.arch_parameters()))
    record: dict[str, Any] = {
        "epoch": epoch,
        "steps": n,
        "genotype": _genotype_json(genotype),
        "alpha_entropy": model.alpha_entropy(),
        "lambda": lam,
        "metric": rmodel.key,
        "expected": expected,
        "derived": rmodel.derived(genotype),
        "search_budget": search_budget,
        **{k: v / max(n, 1) for k, v in sums.items()},
        "lr": w_opt.param_groups[0]["lr"],
        "seconds": secs,
        "peak_rss_mib": _peak_rss_mib(),
    }
    return record


def _summary(
    cfg: DSearchConfig,
    genotype: Genotype | str,
    model: SearchNetwork,
    rmodel: ResourceModel,
    constraint: Constraint | None,
    search_budget: float | None,
    budget_source: str,
    lam: float,
    seconds: float,
    eval_cfg: EvalNetConfig,
    argmax_genotype: Genotype | str,
    fits: bool,
) -> dict[str, Any]:
    params = resource_model("params", eval_cfg)
    flops = resource_model("flops", eval_cfg)
    derived = rmodel.derived(genotype)
    with torch.no_grad():
        expected = float(rmodel.expected(model.arch_parameters()))
    s: dict[str, Any] = {
        "config": cfg.model_dump(),
        "space": cfg.space,
        "genotype": _genotype_json(genotype),
        "params": params.derived(genotype),
        "flops": flops.derived(genotype),
        "constraint": str(constraint) if constraint else None,
        "metric": rmodel.key,
        "budget": constraint.budget if constraint else None,
        "search_budget": search_budget,
        "search_budget_source": budget_source,
        "derived": derived,
        "expected": expected,
        "satisfied": (derived <= with_tolerance(constraint.budget)) if constraint else None,
        "derivation": cfg.derivation,
        "derivation_found": fits,
        "argmax_genotype": _genotype_json(argmax_genotype),
        "argmax_derived": rmodel.derived(argmax_genotype),
        "argmax_satisfied": (
            (rmodel.derived(argmax_genotype) <= with_tolerance(constraint.budget))
            if constraint
            else None
        ),
        "lambda": lam if cfg.penalty == "lagrange" else None,
        "penalty": _penalty_summary(cfg),
        "resource_model": rmodel.describe(),
        "seconds": seconds,
    }
    if rmodel.metric == "latency":
        s["latency_ms"] = derived
    if cfg.space == "nb201":
        try:
            s["nb201"] = _nb201_summary(genotype, rmodel, constraint, cfg.data_dir)
        except HwnasError as exc:  # e.g. no NB201 table: the search itself stands
            warnings.warn(
                "the summary leaves out the found cell's NAS-Bench-201 facts (its table "
                f"accuracy, the best cell under the budget): {exc}",
                stacklevel=2,
            )
    return s


def _penalty_summary(cfg: DSearchConfig) -> dict[str, Any]:
    """How the budget entered the alpha loss (the soft penalties' terms filled in)."""
    if cfg.penalty == "lagrange":
        return {"kind": "lagrange", "lambda_lr": cfg.lambda_lr, "lambda_init": cfg.lambda_init}
    weight, exponent = cfg.penalty_terms()
    terms = {"weight": weight} if cfg.penalty == "linear" else {"exponent": exponent}
    return {"kind": cfg.penalty, **terms}


def _penalty_text(cfg: DSearchConfig) -> str:
    """The penalty in words for a message, e.g. ``pow, exponent 0.07``."""
    terms = _penalty_summary(cfg)
    return ", ".join([terms["kind"], *(f"{k} {v}" for k, v in terms.items() if k != "kind")])


def _penalty_knob(cfg: DSearchConfig) -> str:
    """The setting that scales the resource term, as a flag."""
    return {"lagrange": "--lambda-lr", "linear": "--penalty-weight"}.get(
        cfg.penalty, "--penalty-exponent"
    )


def _plot_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary as the plot should label it: when the feasible derivation found no
    cell and fell back to the argmax cell, the answer is not labelled 'feasible'."""
    if summary.get("derivation") == "feasible" and not summary.get("derivation_found", True):
        return {**summary, "derivation": "argmax fallback, nothing fits"}
    return summary


def _nb201_summary(
    arch: Genotype | str, rmodel: ResourceModel, constraint: Constraint | None, data_dir: Any
) -> dict[str, Any]:
    """Benchmark facts of the found cell and the best table cell under the same budget
    among the connected cells, the ones the feasible derivation may return (a
    disconnected cell outputs a constant)."""
    from hwnas.bench.nb201 import NB201_DATASETS
    from hwnas.space.nb201 import NB201Space

    assert isinstance(arch, str)
    rec = nb201_record(arch, data_dir)
    row_of_code, df = nb201_table(data_dir)
    cost = rmodel.derived_all_nb201()  # by base-5 code
    ok = nb201_connected(NB201Space().all_vectors())  # row i has base-5 code i
    if constraint:
        ok &= cost <= constraint.budget
    best: dict[str, Any] = {"feasible_cells": int(ok.sum()), "connected_only": True}
    for d in NB201_DATASETS:
        acc = df[f"{d}_test_acc"].to_numpy(dtype=np.float64)[row_of_code]
        if not ok.any():
            best[d] = None
            continue
        code = int(np.flatnonzero(ok)[np.argmax(acc[ok])])
        row = int(row_of_code[code])
        best[d] = {
            "test_acc": float(acc[code]),
            "index": int(df["index"].iloc[row]) if "index" in df.columns else row,
            "arch_str": str(df["arch_str"].iloc[row]),
            "resource": float(cost[code]),
            "regret": float(acc[code]) - rec["test_acc"][d],
        }
    return {**rec, "best_under_budget": best}
