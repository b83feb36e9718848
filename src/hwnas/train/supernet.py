"""One-shot supernet training (BigNAS sandwich rule; RAM-NAS SMD and DKD, paper 000 III-B).

Each step samples the largest subnet, ``num_random`` random subnets and the smallest
subnet (sandwich rule), runs forward/backward for each in that order, accumulates the
gradients and makes one optimiser step. Losses by ``distill``:

* ``none``: every subnet learns from the labels;
* ``inplace`` (BigNAS): the largest learns from the labels (label smoothing), the others
  from its detached predictions;
* ``smd`` (RAM-NAS subnet mutual distillation, eq. 3-4): the largest learns from the
  labels and every subnet is a teacher of all subnets sampled after it, student ``j``
  learning ``sum_{i<j} D(p_i || p_j) / (k - i)`` (1-based ``i``); gradients reach only
  the student of each pair.

``kd_loss`` picks ``D``: ``kl`` (temperature-scaled KL), ``dkd`` (decoupled KD, eq. 5,
alpha=1, beta=0.5) or ``soft_ce`` (BigNAS). The max subnet runs at the largest
resolution, the min at the smallest, random ones at random resolutions.

``train_supernet(TrainConfig(...))`` appends one JSON line per epoch to
``out_dir/metrics.jsonl`` (loss, lr, BN-recalibrated validation accuracy of the min and
max subnets, time), then checkpoints (model, optimiser, scheduler, RNG states, epoch, the
metrics history) to ``out_dir/checkpoint.pt``, resumes from it (``resume=True``;
``metrics.jsonl`` is rewritten to the epochs the checkpoint holds, so a kill between the
two writes or in the middle of a line leaves no trace), and plots the metrics at the end
of each call in ``out_dir/training.png``. Starting over (``resume=False``) removes the
old checkpoint together with the old metrics. One run at a time writes to ``out_dir``
(:func:`hwnas.process.out_dir_lock`).
Distributed (torchrun, gloo on CPU): every rank samples the same subnets, trains on its
shard of each batch order, and gradients are averaged before each step.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import random
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
from hwnas.data import BatchIterator, ImageData, folder_spec, load_dataset
from hwnas.errors import HwnasError, check_not_under_file, reworded
from hwnas.process import LOCK_NAME, out_dir_lock
from hwnas.report.progress import StepProgress
from hwnas.supernet.mbv3 import MBv3Supernet
from hwnas.train.losses import LogitLoss, make_kd_loss, smd_student_loss
from hwnas.train.sampling import ComplexityAwareSampler, ProgressiveShrinking, make_sampler
from hwnas.train.utils import (
    accuracy,
    param_groups,
    recalibrate_bn,
    torch_threads,
    warmup_cosine,
)

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
PLOT_NAME = "training.png"
#: the loss panel's axis: ``loss`` sums every subnet of a sandwich step and its distillation
#: terms, so it is not comparable across distill modes; ``ce_max`` is the largest's CE
LOSS_LABEL = "loss (sum over the step's subnets)"


class TrainConfig(BaseModel):
    """Settings of one supernet training run (defaults: a quick CPU run on digits)."""

    model_config = ConfigDict(extra="forbid")

    space: Literal["mbv3-cifar", "mbv3-ramnas"] = "mbv3-cifar"
    dataset: str = "digits"
    data_dir: str | None = None
    out_dir: str = "runs/supernet"
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(64, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1, description="cap on steps per epoch")
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(1e-4, ge=0)
    warmup_epochs: float = Field(1.0, ge=0)
    warmup_start: float = Field(0.1, ge=0, le=1, description="initial lr fraction")
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    grad_clip: float | None = Field(None, gt=0)
    num_random: int = Field(2, ge=0, description="random subnets per sandwich step")
    sampling: Literal["uniform", "complexity", "progressive"] = Field(
        "uniform",
        description="random subnets uniform over the space; complexity-aware (ElasticViT: "
        "each step's within one MFLOPs bin, the bin moving by at most one); or progressive "
        "shrinking (OFA: resolution, then + kernel, + depth, + width elastic, in four "
        "equal parts of the steps)",
    )
    sampling_bins: int = Field(8, ge=1, description="MFLOPs bins of complexity-aware sampling")
    distill: Literal["smd", "inplace", "none"] = "smd"
    kd_loss: Literal["dkd", "kl", "soft_ce"] = "dkd"
    dkd_alpha: float = 1.0
    dkd_beta: float = 0.5
    temperature: float = Field(1.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    kernel_transform: bool = False
    augment: bool = True
    val_fraction: float = Field(0.1, ge=0, lt=1)
    limit: int | None = Field(None, ge=1, description="cap examples per split")
    image_size: int | None = Field(
        None, ge=4, description="resize a folder:PATH dataset's image files to this square size"
    )
    bn_calib_batches: int = Field(8, ge=0)
    eval_batch_size: int = Field(256, ge=1)
    eval_every: int = Field(1, ge=0, description="evaluate min/max every N epochs (0: never)")
    seed: int = 0
    num_threads: int | None = Field(2, ge=1)
    channels_last: bool = True
    resume: bool = True
    progress: bool = True

    @field_validator("dataset")
    @classmethod
    def _folder_absolute(cls, value: str) -> str:
        """``folder:RELPATH`` stored absolute: the checkpoint's eval, export and search
        find the images from any working directory."""
        try:
            return folder_spec(value)
        except HwnasError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _sampling_needs_random_subnets(self) -> TrainConfig:
        if self.sampling == "complexity" and self.num_random == 0:
            raise ValueError(
                "complexity-aware sampling picks the random subnets, and num_random=0 trains "
                "none (only the largest and smallest): raise num_random or use uniform"
            )
        return self

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return validate_model(cls, d, "training")


@dataclass
class TrainResult:
    out_dir: Path
    checkpoint: Path
    metrics_file: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    model: MBv3Supernet | None = None
    #: epochs trained by this call (0: a resumed run that had already finished)
    epochs_trained: int = 0
    #: the epochs the checkpoint held when this call started (resumed runs)
    resumed_epochs: int = 0

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


# ---- distributed helpers --------------------------------------------------------------
def _dist() -> tuple[int, int, bool]:
    """(rank, world size, whether we created the process group); under torchrun
    (WORLD_SIZE > 1) initialises a gloo process group unless one exists."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    created = False
    if not dist.is_initialized():
        dist.init_process_group("gloo")
        created = True
    return dist.get_rank(), dist.get_world_size(), created


def _allreduce_grads(model: torch.nn.Module, world: int) -> None:
    import torch.distributed as dist

    grads = []
    for p in model.parameters():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    off = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[off : off + n].view_as(g))
        off += n


# ---- sandwich step --------------------------------------------------------------------
def sandwich_configs(
    model: MBv3Supernet,
    num_random: int,
    rng: np.random.Generator,
    sampler: ComplexityAwareSampler | ProgressiveShrinking | None = None,
) -> list[dict[str, Any]]:
    """[largest, num_random random ones, smallest] subnet configs (BigNAS order): random
    ones uniform over the space, or as ``sampler`` picks them (complexity-aware sampling;
    progressive shrinking, whose smallest is its phase's)."""
    if sampler is not None:
        return [model.space.decode(v) for v in sampler.sandwich(num_random, rng)]
    middle = [model.sample_config(rng) for _ in range(num_random)]
    return [model.canonical("max"), *middle, model.canonical("min")]


def sandwich_step(
    model: MBv3Supernet,
    x: torch.Tensor,
    y: torch.Tensor,
    configs: list[dict[str, Any]],
    distill: str = "smd",
    kd: LogitLoss | None = None,
    label_smoothing: float = 0.0,
) -> dict[str, Any]:
    """Forward/backward every subnet of ``configs`` in order, accumulating gradients.

    Does not zero gradients or step the optimiser. Returns the total loss, each subnet's
    loss and the largest subnet's label cross-entropy.
    """
    kd = kd or make_kd_loss("kl")
    k = len(configs)
    teachers: list[torch.Tensor] = []
    losses: list[float] = []
    ce_max = float("nan")
    for j, cfg in enumerate(configs):
        model.set_active(cfg)
        logits = model(x)
        if j == 0 or distill == "none":
            loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
            if j == 0:
                ce_max = float(loss.detach())
        elif distill == "inplace":
            loss = kd(logits, teachers[0], y)
        elif distill == "smd":
            loss = smd_student_loss(j, teachers, logits, y, k, kd)
        else:
            raise HwnasError(f"unknown distillation mode '{distill}' (use smd, inplace, none)")
        loss.backward()
        teachers.append(logits.detach())
        losses.append(float(loss.detach()))
    model.set_active(configs[0])
    return {"loss": float(sum(losses)), "subnet_losses": losses, "ce_max": ce_max}


# ---- checkpoints ----------------------------------------------------------------------
def _rng_state(np_rng: np.random.Generator, gen: torch.Generator) -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "numpy_global": np.random.get_state(),
        "python": random.getstate(),
        "sampler": np_rng.bit_generator.state,
        "data": gen.get_state(),
    }


def check_out_dir(out: Path) -> None:
    """Refuse an output directory that cannot hold the run (a file, under a file, not
    writable, a checkpoint path that is a directory) before any training."""
    if out.exists() and not out.is_dir():
        raise HwnasError(f"output directory '{out}' is an existing file; choose a directory")
    check_not_under_file(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise HwnasError(f"cannot create output directory '{out}': {e.strerror or e}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise HwnasError(f"output directory '{out}' is not writable")
    for name in (CHECKPOINT_NAME, METRICS_NAME):
        if (out / name).is_dir():
            raise HwnasError(f"'{out / name}' is a directory; choose another output directory")


def _set_rng_state(state: dict[str, Any], np_rng: np.random.Generator, gen: torch.Generator):
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy_global"])
    random.setstate(state["python"])
    np_rng.bit_generator.state = state["sampler"]
    gen.set_state(state["data"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Atomic ``torch.save`` (write to a temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` log (none when it is missing); a line that is
    not a JSON object with an ``epoch`` (a line cut short by a kill) is skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    records = []
    for line in lines:
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(r, dict) and isinstance(r.get("epoch"), int):
            records.append(r)
    return records


def write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
    """Replace ``metrics.jsonl`` by one line per record of ``history`` (atomically)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in history))
    os.replace(tmp, path)


def append_metrics(path: Path, record: dict[str, Any]) -> None:
    """Append one epoch's line to ``metrics.jsonl``."""
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _checkpoint_history(ckpt: dict[str, Any], metrics_path: Path) -> list[dict[str, Any]]:
    """The per-epoch records of the epochs a checkpoint holds: its ``history``; for a
    checkpoint of an older version without one, the readable lines of ``metrics.jsonl``
    up to its epoch (its own record last)."""
    history = ckpt.get("history")
    if isinstance(history, list):
        return list(history)
    epoch = int(ckpt["epoch"])
    by_epoch = {r["epoch"]: r for r in read_metrics(metrics_path) if r["epoch"] <= epoch}
    if isinstance(ckpt.get("metrics"), dict):
        by_epoch[epoch] = ckpt["metrics"]
    return [by_epoch[e] for e in sorted(by_epoch)]


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint file (or ``DIR/checkpoint.pt``); one-line errors for a missing
    or unreadable file, or one that does not hold a dict."""
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT_NAME
    if not p.is_file():
        raise HwnasError(f"checkpoint '{p}' not found")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # corrupt / not a checkpoint
        raise HwnasError(f"cannot read checkpoint '{p}': {e}") from None
    if not isinstance(ckpt, dict):
        raise HwnasError(
            f"'{p}' is not a supernet checkpoint (it holds a {type(ckpt).__name__}, not the "
            "dict 'hwnas train' writes)"
        )
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> MBv3Supernet:
    """Rebuild the supernet stored in a checkpoint and load its weights (eval mode)."""
    if not isinstance(ckpt, dict):
        raise HwnasError(
            f"not a supernet checkpoint (a {type(ckpt).__name__}, not the dict 'hwnas train' "
            "writes)"
        )
    if "model" not in ckpt or "hparams" not in ckpt:
        raise HwnasError("not a supernet checkpoint (missing 'model'/'hparams')")
    hparams, state = ckpt["hparams"], ckpt["model"]
    if not isinstance(hparams, dict) or not isinstance(state, dict):
        raise HwnasError("not a supernet checkpoint ('hparams' and 'model' must be dicts)")
    known = set(inspect.signature(MBv3Supernet.__init__).parameters) - {"self"}
    unknown = sorted(str(k) for k in set(hparams) - known)
    if unknown:
        raise HwnasError(
            f"not a supernet checkpoint of this hwnas: unknown hparams {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})"
        )
    try:
        model = MBv3Supernet(**hparams)
    except HwnasError as e:
        raise HwnasError(f"not a usable supernet checkpoint: {e}") from None
    except (TypeError, ValueError, KeyError) as e:
        raise HwnasError(f"not a usable supernet checkpoint: bad hparams {hparams}: {e}") from None
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError, AttributeError) as e:
        first = str(e).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        if len(detail) > 300:
            detail = detail[:300] + "..."
        raise HwnasError(
            f"not a supernet checkpoint matching its hparams ({hparams.get('space')}): "
            f"the weights do not fit: {detail}"
        ) from None
    model.eval()
    return model


# ---- evaluation during training ---------------------------------------------------------
def evaluate_config(
    model: MBv3Supernet,
    cfg: dict[str, Any],
    data: ImageData,
    split: str = "val",
    calib_batches: int = 8,
    batch_size: int = 256,
    seed: int = 0,
    channels_last: bool = False,
) -> float:
    """Top-1 of subnet ``cfg``: extract it, recalibrate BN on training batches, evaluate."""
    sub = calibrated_subnet(model, cfg, data, calib_batches, batch_size, seed, channels_last)
    x, y = data.split(split)
    acc, _ = accuracy(sub, BatchIterator(x, y, batch_size, channels_last=channels_last))
    return acc


def calibrated_subnet(
    model: MBv3Supernet,
    cfg: dict[str, Any],
    data: ImageData,
    calib_batches: int = 8,
    batch_size: int = 256,
    seed: int = 0,
    channels_last: bool = False,
    include_resize: bool | None = None,
) -> torch.nn.Module:
    """Subnet ``cfg`` extracted from the supernet with its BN statistics re-estimated on
    ``calib_batches`` seeded training batches (what :func:`evaluate_config` evaluates).
    ``include_resize`` (default: when the data's size differs from the subnet's
    resolution) puts the input resize inside the subnet."""
    if include_resize is None:
        include_resize = data.image_size != cfg["resolution"]
    sub = model.get_subnet(cfg, include_resize=include_resize)
    if channels_last:
        sub = sub.to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(seed)
    calib = BatchIterator(
        data.x_train,
        data.y_train,
        batch_size,
        shuffle=True,
        augment=False,
        generator=gen,
        channels_last=channels_last,
    )
    recalibrate_bn(sub, calib, calib_batches)
    return sub.eval()


# ---- the training loop ------------------------------------------------------------------
#: settings a resumed run may change: how long it runs (the schedule stretches), where its
#: files are, and how it is watched or evaluated; every other one shapes the training
RESUMABLE_CHANGES = frozenset(
    {
        "epochs",
        "out_dir",
        "data_dir",
        "resume",
        "progress",
        "num_threads",
        "channels_last",
        "eval_every",
        "eval_batch_size",
        "bn_calib_batches",
    }
)


def _resumable_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint a resume continues; one it cannot read (a disk filled mid-write, a
    file copied in part) says how to start over instead."""
    try:
        return load_checkpoint(path)
    except HwnasError as exc:
        raise reworded(
            exc, f"{exc}; to start over: --no-resume (resume=False) or another --out"
        ) from None


def stored_train_config(out_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The settings a checkpoint in ``out_dir`` was trained with, for a resume to start
    from (the ones a resume may change left out); None when there is none to resume."""
    path = Path(out_dir) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    stored = _resumable_checkpoint(path).get("train_config")
    if not isinstance(stored, dict):
        return None
    keep = set(TrainConfig.model_fields) - (RESUMABLE_CHANGES - {"epochs", "num_threads"})
    return {k: v for k, v in stored.items() if k in keep}


def resume_schedule(optimizer: torch.optim.Optimizer, sched: Any) -> None:
    """After loading a checkpoint's optimizer and ``LambdaLR`` state: the learning rate
    of this run's schedule at the step reached. A run resumed with more epochs would
    otherwise take its first step at the old schedule's last rate (0 after a finished
    run): the loaded optimizer holds that, and the new schedule applies only a step later."""
    for group, base, fn in zip(
        optimizer.param_groups, sched.base_lrs, sched.lr_lambdas, strict=True
    ):
        group["lr"] = base * fn(sched.last_epoch)


def _check_resumable(ckpt: dict[str, Any], path: Path, cfg: TrainConfig) -> None:
    """Refuse to resume a checkpoint with other training settings (the epochs would mix
    two runs, e.g. digits then MNIST) or one that holds only weights."""
    missing = [k for k in ("optimizer", "scheduler", "rng", "epoch") if k not in ckpt]
    if missing:
        raise HwnasError(
            f"checkpoint '{path}' holds no training state ({', '.join(missing)} missing: "
            "weights only?): it can be evaluated and exported, not resumed; --no-resume "
            "(resume=False) starts over"
        )
    stored = ckpt.get("train_config")
    if not isinstance(stored, dict):
        return  # written before checkpoints kept their settings
    now = cfg.model_dump()
    if isinstance(stored.get("dataset"), str):  # folder:RELPATH of an earlier version
        stored = {**stored, "dataset": TrainConfig._folder_absolute(stored["dataset"])}
    # a setting newer than the checkpoint is compared only where the checkpoint has it
    shown = changed_settings(
        {k: stored[k] for k in now if k in stored},
        {k: now[k] for k in now if k in stored},
        RESUMABLE_CHANGES,
    )
    if shown:
        raise HwnasError(
            f"checkpoint '{path}' was trained with other settings ({shown}): resume with "
            "the same settings (only epochs and how it is run may change), or use another "
            "--out (out_dir) or --no-resume (resume=False) to start over"
        )


def train_supernet(
    config: TrainConfig | dict[str, Any] | None = None,
    data: ImageData | None = None,
    max_epochs: int | None = None,
    return_model: bool = False,
) -> TrainResult:
    """Train (or resume training) a supernet; see the module docstring.

    ``data`` overrides loading ``config.dataset``; ``max_epochs`` stops after that many
    epochs of this call (the schedule still spans ``config.epochs``): used to test resume.
    ``return_model`` keeps the trained supernet in ``result.model``.
    """
    if config is None:
        config = TrainConfig()
    elif isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    cfg = config
    out = Path(cfg.out_dir)
    created = not out.exists()
    check_out_dir(out)  # before the data and a whole epoch of training
    rank, world, own_group = _dist()
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch_threads(cfg.num_threads))
        if rank == 0:  # the rank that writes; one run at a time
            stack.enter_context(out_dir_lock(out, "training"))
        try:
            return _train(cfg, out, rank, world, own_group, data, max_epochs, return_model)
        except BaseException:
            if created and rank == 0:  # refused data, say: no empty folder left behind
                _remove_if_unused(out)
            raise


def _remove_if_unused(out: Path) -> None:
    """Remove ``out`` (made by this run, still locked by it) when the run wrote nothing
    there: only its lock file, or nothing at all."""
    with contextlib.suppress(OSError):
        names = [p.name for p in out.iterdir()]
        if names in ([], [LOCK_NAME]):
            (out / LOCK_NAME).unlink(missing_ok=True)
            out.rmdir()


def _warn_idle_settings(cfg: TrainConfig) -> None:
    """Warn of settings given explicitly that do not act as asked: a warm-up lasting the
    whole run (the default's one epoch of a one-epoch quick run is not worth a warning),
    distillation-loss settings with ``distill="none"``."""
    given = cfg.model_fields_set
    if "warmup_epochs" in given and cfg.warmup_epochs >= cfg.epochs > 0:
        warnings.warn(
            f"warmup_epochs {cfg.warmup_epochs:g} >= epochs {cfg.epochs}: the learning rate "
            "only rises (to its peak at the end) and never decays; lower warmup_epochs "
            "(a --config setting)",
            stacklevel=4,
        )
    kd = sorted(given & {"kd_loss", "temperature", "dkd_alpha", "dkd_beta"})
    if cfg.distill == "none" and kd:
        warnings.warn(
            f"{', '.join(kd)} set, but distill is none: no distillation loss is used; use "
            "distill smd or inplace for it to act",
            stacklevel=4,
        )


def _train(
    cfg: TrainConfig,
    out: Path,
    rank: int,
    world: int,
    own_group: bool,
    data: ImageData | None,
    max_epochs: int | None,
    return_model: bool,
) -> TrainResult:
    """The training loop of :func:`train_supernet` (its output directory checked and,
    on rank 0, locked)."""
    ckpt_path = out / CHECKPOINT_NAME
    metrics_path = out / METRICS_NAME

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    np_rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)

    if data is None:
        data = load_dataset(
            cfg.dataset, cfg.data_dir, cfg.val_fraction, cfg.seed, cfg.limit, cfg.image_size
        )
    elif cfg.image_size is not None and data.image_size != cfg.image_size:
        raise HwnasError(
            f"the data given is {data.image_size}x{data.image_size}, but image_size is "
            f"{cfg.image_size}: load it with image_size={cfg.image_size}"
        )
    model = MBv3Supernet(
        cfg.space,
        num_classes=data.num_classes,
        in_channels=data.in_channels,
        dropout=cfg.dropout,
        kernel_transform=cfg.kernel_transform,
    )
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_iter = BatchIterator(
        data.x_train,
        data.y_train,
        cfg.batch_size,
        shuffle=True,
        augment=cfg.augment,
        pad=data.pad,
        flip=data.flip,
        drop_last=len(data.y_train) // world >= cfg.batch_size,
        generator=gen,
        max_batches=cfg.steps_per_epoch,
        shard=(rank, world),
        channels_last=cfg.channels_last,
    )
    steps_per_epoch = len(train_iter)
    if steps_per_epoch == 0:
        raise HwnasError("training set is empty")
    optimizer = torch.optim.SGD(
        param_groups(model, cfg.weight_decay),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
    )
    total = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        warmup_cosine(total, round(cfg.warmup_epochs * steps_per_epoch), cfg.warmup_start),
    )
    sampler = make_sampler(
        cfg.sampling, model.space, cfg.sampling_bins, (data.in_channels, data.num_classes), total
    )
    kd = make_kd_loss(cfg.kd_loss, cfg.temperature, cfg.dkd_alpha, cfg.dkd_beta)

    start_epoch = 0
    last_record: dict[str, Any] | None = None
    history: list[dict[str, Any]] = []  # every epoch's record, kept in the checkpoint
    if cfg.resume and ckpt_path.is_file():
        ckpt = _resumable_checkpoint(ckpt_path)
        if ckpt.get("hparams") != model.hparams():
            raise HwnasError(
                f"checkpoint '{ckpt_path}' is for a different supernet "
                f"({ckpt.get('hparams')}); use another --out (out_dir) or --no-resume "
                "(resume=False) to start over"
            )
        _check_resumable(ckpt, ckpt_path, cfg)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        resume_schedule(optimizer, sched)
        _set_rng_state(ckpt["rng"], np_rng, gen)
        if sampler is not None:
            sampler.load_state(ckpt.get("sampler"))
        start_epoch = int(ckpt["epoch"]) + 1
        last_record = ckpt.get("metrics")
        history = _checkpoint_history(ckpt, metrics_path)
        if rank == 0:  # exactly the epochs the checkpoint holds: no line past it, no torn one
            write_metrics(metrics_path, history)
    elif rank == 0:
        # starting over: the old checkpoint goes with the old metrics, so a kill before
        # the first new epoch cannot leave a checkpoint whose history is gone
        for name in (CHECKPOINT_NAME, METRICS_NAME):
            (out / name).unlink(missing_ok=True)

    result = TrainResult(out, ckpt_path, metrics_path, resumed_epochs=start_epoch)
    end_epoch = cfg.epochs if max_epochs is None else min(cfg.epochs, start_epoch + max_epochs)
    if start_epoch == 0:
        _warn_idle_settings(cfg)  # only where a training starts (a reused one trains nothing)
    if start_epoch >= end_epoch:  # a finished run resumed: nothing to train, no progress bar
        if isinstance(last_record, dict):
            result.history.append(last_record)
        if world > 1 and own_group:
            import torch.distributed as dist

            dist.destroy_process_group()
        if return_model:
            result.model = model
        return result
    progress = StepProgress(cfg.progress and rank == 0, total, start_epoch * steps_per_epoch)
    with progress:
        for epoch in range(start_epoch, end_epoch):
            model.train()
            t0 = time.perf_counter()
            loss_sum = ce_sum = 0.0
            n_steps = 0
            for x, y in train_iter:
                configs = sandwich_configs(model, cfg.num_random, np_rng, sampler)
                optimizer.zero_grad(set_to_none=True)
                info = sandwich_step(model, x, y, configs, cfg.distill, kd, cfg.label_smoothing)
                if not math.isfinite(info["loss"]):  # diverged: the next steps are all NaN
                    raise HwnasError(
                        f"the loss is {info['loss']} at epoch {epoch}, step {n_steps + 1}: "
                        "training diverged (lower --lr or set --grad-clip); the checkpoint "
                        "keeps the last finished epoch"
                    )
                if world > 1:
                    _allreduce_grads(model, world)
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                sched.step()
                loss_sum += info["loss"]
                ce_sum += info["ce_max"]
                n_steps += 1
                result.step_losses.append(info["loss"])
                progress.advance(epoch, loss=info["loss"])
            result.epochs_trained += 1
            record: dict[str, Any] = {
                "epoch": epoch,
                "steps": n_steps,
                "loss": loss_sum / n_steps,
                "ce_max": ce_sum / n_steps,
                "lr": optimizer.param_groups[0]["lr"],
                "train_time_s": time.perf_counter() - t0,
            }
            if isinstance(sampler, ProgressiveShrinking):  # the phase(s) of the epoch's steps
                record["phase"] = sampler.phase_of(sampler.step - 1)
                record["phases"] = sampler.phases_between(sampler.step - n_steps, sampler.step - 1)
            if rank == 0:
                do_eval = cfg.eval_every > 0 and (
                    (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs
                )
                if do_eval and len(data.y_val):
                    for which in ("max", "min"):
                        record[f"{which}_acc"] = evaluate_config(
                            model,
                            model.canonical(which),
                            data,
                            "val",
                            cfg.bn_calib_batches,
                            cfg.eval_batch_size,
                            cfg.seed,
                            cfg.channels_last,
                        )
                model.set_active("max")
                history.append(record)
                # the line first: a kill before the checkpoint only repeats this epoch
                # (the resumed run rewrites metrics.jsonl to the checkpoint's history)
                append_metrics(metrics_path, record)
                save_checkpoint(
                    ckpt_path,
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": sched.state_dict(),
                        "rng": _rng_state(np_rng, gen),
                        "sampler": None if sampler is None else sampler.state(),
                        "epoch": epoch,
                        "hparams": model.hparams(),
                        "train_config": cfg.model_dump(),
                        "data": data.summary(),
                        "metrics": record,
                        "history": history,
                    },
                )
                accs = " ".join(
                    f"{k}={record[k]:.3f}" for k in ("max_acc", "min_acc") if k in record
                )
                progress.print(
                    f"epoch {record['epoch']}: loss {record['loss']:.4f} {accs}".rstrip()
                )
            result.history.append(record)
    if rank == 0 and metrics_path.exists():
        from hwnas.report.plots import plot_training

        plot_training(
            metrics_path,
            [(LOSS_LABEL, ["loss", "ce_max"]), ("validation accuracy", ["max_acc", "min_acc"])],
            out / PLOT_NAME,
            title=f"supernet training ({cfg.space})",
        )
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        if own_group:
            dist.destroy_process_group()
    if return_model:
        result.model = model
    return result
