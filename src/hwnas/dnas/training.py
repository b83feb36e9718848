"""Train a derived cell's evaluation network from scratch and measure it (DCA-NAS, paper 001).

``dtrain(DTrainConfig(...), out_dir)`` builds :class:`~hwnas.dnas.evalnet.DartsNetworkCIFAR`
or :class:`~hwnas.dnas.evalnet.NB201Network`, trains it with the DARTS evaluation recipe
(SGD, momentum 0.9, weight decay 3e-4 on all parameters, learning rate 0.025 annealed to 0
by a per-step cosine, gradient clipping at 5, random crop + flip from :mod:`hwnas.data`
plus cutout, drop-path probability raised linearly from 0 over the epochs as
``drop_path_prob * epoch / epochs``, optional auxiliary head with weight 0.4) and writes to
``out_dir``:

* ``metrics.jsonl``, one line per epoch (loss, train/test accuracy, lr, drop-path
  probability, seconds), written before the epoch's checkpoint and rewritten from the
  checkpoint's history on resume, and its curves in ``training.png``;
* ``checkpoint.pt`` every epoch (model, optimiser, scheduler, RNG states, history), from
  which ``resume=True`` continues exactly (the same numbers as an uninterrupted run);
* at the end ``summary.json``: final test accuracy, parameters (without the auxiliary
  head), FLOPs/MACs at batch 1 (:func:`hwnas.measure.cost.count_flops`) and, with
  ``measure_latency``, ``model.onnx`` (eval mode, :func:`hwnas.measure.export.export_onnx`),
  the largest ONNX-vs-PyTorch output difference on test images and the ONNX Runtime CPU
  latency at batch 1 with one thread (:class:`hwnas.measure.measurer.LocalMeasurer`) with
  its measurement settings.

Defaults are the paper's CIFAR-10 evaluation (600 epochs, batch 96, ``C=36``, 20 cells,
cutout 16, drop-path 0.2); NB201 defaults to its ``C=16, N=5`` network (``layers`` is N,
cells per stage), no drop-path. The train/test accuracies are measured on
``train_subset``/``test_subset`` random examples when given (CPU-sized runs); the
"train accuracy" is that of the augmented training batches, as DARTS logs it.
``device`` (``cpu`` default, ``cuda``, ``auto``) picks where training runs; the cost and
latency measurement at the end always run on the CPU copy of the trained network.
One run at a time writes to ``out_dir`` (:func:`hwnas.process.out_dir_lock`).
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from hwnas.config import changed_settings, validate_model
from hwnas.data import BatchIterator, ImageData, load_dataset
from hwnas.dnas import genotype as _genotypes
from hwnas.dnas.evalnet import (
    DartsNetworkCIFAR,
    NB201Network,
    count_params,
    parse_nb201_arch,
    validate_genotype,
)
from hwnas.dnas.genotype import Genotype, genotype_to_dict
from hwnas.dnas.runs import (
    Log,
    check_epochs_reached,
    emit,
    refuse_finished_run,
    stderr_line,
)
from hwnas.errors import HwnasError
from hwnas.process import out_dir_lock
from hwnas.report.progress import StepProgress
from hwnas.train.supernet import (
    append_metrics,
    load_checkpoint,
    resume_schedule,
    save_checkpoint,
    write_metrics,
)
from hwnas.train.utils import accuracy, torch_threads, warmup_cosine

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
SUMMARY_NAME = "summary.json"
PLOT_NAME = "training.png"
ONNX_NAME = "model.onnx"

# Defaults per space: (C, layers); layers is N (cells per stage) for NB201.
SPACE_DEFAULTS: dict[str, tuple[int, int]] = {"darts": (36, 20), "nb201": (16, 5)}
# Config fields that may change between a run and its resumption: how it is run, and
# how long (more epochs stretch the cosine schedule from the step reached, as ``hwnas
# train``; the drop-path ramp follows the new length)
_RESUMABLE_CHANGES = {
    "data_dir",
    "threads",
    "device",
    "measure_latency",
    "latency_settings",
    "epochs",
}

__all__ = [
    "DTrainConfig",
    "DTrainResult",
    "SearchSource",
    "build_network",
    "cutout",
    "dtrain",
    "genotype_from_search",
    "load_network",
    "named_genotypes",
    "read_search",
    "resolve_arch",
    "search_settings",
    "search_summary_file",
]


# ---- architectures ---------------------------------------------------------------------
def named_genotypes() -> dict[str, Genotype]:
    """Published DARTS genotypes by name (those defined in :mod:`hwnas.dnas.genotype`)."""
    return {k: v for k, v in vars(_genotypes).items() if isinstance(v, Genotype)}


def _read_json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise HwnasError(f"cannot read genotype file '{path}': {e}") from None


def _arch_of_summary(data: dict[str, Any]) -> tuple[str, Any] | None:
    """``(space, raw architecture)`` of a result summary, or ``None`` when ``data`` is not
    one: key ``arch_str`` (an NB201 cell); key ``genotype`` (a DARTS genotype, or with
    ``space: nb201`` or a ``|...|`` string an NB201 arch string, as ``hwnas dsearch``
    writes them); nested ``nb201.arch_str``; or ``arch`` with ``space`` (a ``dtrain``
    summary)."""
    if data.get("arch_str"):
        return "nb201", data["arch_str"]
    genotype = data.get("genotype")
    if genotype:
        nb201 = data.get("space") == "nb201" or (
            isinstance(genotype, str) and genotype.strip().startswith("|")
        )
        return ("nb201" if nb201 else "darts"), genotype
    nested = data.get("nb201")
    if isinstance(nested, dict) and nested.get("arch_str"):
        return "nb201", nested["arch_str"]
    if data.get("arch") and data.get("space") in SPACE_DEFAULTS:
        return str(data["space"]), data["arch"]
    return None


def resolve_arch(space: str, value: Any) -> dict[str, Any] | str:
    """The canonical architecture of ``space``: a checked DARTS genotype dict, or a
    canonical NB201 arch string.

    DARTS accepts a :class:`Genotype`, its dict, JSON text, a genotype name
    (``DARTS_V2``), or a JSON file holding a genotype or a search summary (key
    ``genotype``). NB201 accepts an arch string, ``{"arch_str": ...}``, a search summary
    (``genotype`` with ``space: nb201``, or ``nb201.arch_str``) or such a file. A summary
    of the other space is refused with a clear error.
    """
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise HwnasError("empty architecture")
        if not text.startswith(("{", "|")) and text.lower().endswith(".json"):
            path = Path(text).expanduser()
            if not path.is_file():
                raise HwnasError(f"genotype file '{path}' not found")
            value = _read_json_file(path)
        elif text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as e:
                raise HwnasError(f"genotype is not valid JSON: {e}") from None
        else:
            value = text
    if isinstance(value, dict) and "normal" not in value:
        found = _arch_of_summary(value)
        if found is not None:
            found_space, value = found
            if found_space != space:
                raise HwnasError(
                    f"this summary holds a cell of the {found_space} space, not of {space} "
                    f"(use space {found_space})"
                )
    if space == "nb201":
        if isinstance(value, dict):
            raise HwnasError(
                "an NB201 architecture needs an 'arch_str' entry (or a search summary)"
            )
        if not isinstance(value, str):
            raise HwnasError(f"an NB201 architecture is an arch string, got {type(value).__name__}")
        from hwnas.space.nb201 import NB201_OPS, NB201Space

        ops = parse_nb201_arch(value)
        return NB201Space().decode([NB201_OPS.index(o) for o in ops])
    if space != "darts":
        raise HwnasError(f"unknown cell space '{space}' (use darts or nb201)")
    if isinstance(value, str):
        if value.strip().startswith("|"):
            raise HwnasError(f"'{value}' is an NB201 arch string; use space nb201 (--arch)")
        names = named_genotypes()
        key = value.upper().replace("-", "_")
        if key not in names:
            raise HwnasError(
                f"unknown genotype '{value}' (known: {', '.join(names)}; "
                "or give JSON, a JSON file or a search summary)"
            )
        value = names[key]
    return genotype_to_dict(validate_genotype(value))


@dataclass
class SearchSource:
    """What a search result fixes for training: its cell and the evaluation network and
    dataset its budget was about.

    ``settings`` holds the :class:`DTrainConfig` fields taken from the summary (``C``,
    ``layers``, ``dataset``; those it records); ``notes`` what could not be carried over.
    """

    path: Path
    space: str
    arch: dict[str, Any] | str
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _summary_settings(data: dict[str, Any], space: str) -> tuple[dict[str, Any], list[str]]:
    """(C, layers, dataset of the evaluation network, notes) recorded in a summary: a
    ``dsearch`` one (``resource_model.eval_network``, ``config``) or a ``dtrain`` one
    (``network``, ``dataset``)."""
    settings: dict[str, Any] = {}
    notes: list[str] = []
    cfg = data.get("config") if isinstance(data.get("config"), dict) else {}
    rm = data.get("resource_model")
    net = rm.get("eval_network") if isinstance(rm, dict) else None
    if not isinstance(net, dict):
        net = data.get("network") if isinstance(data.get("network"), dict) else {}
    if net.get("space", space) == space:
        for key, alt in (("C", "eval_channels"), ("layers", "eval_layers")):
            v = net.get(key, cfg.get(alt))
            if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
                settings[key] = v
    dataset = cfg.get("dataset", data.get("dataset"))
    if isinstance(dataset, str) and dataset:
        settings["dataset"] = dataset
    for key, what in (("eval_resolution", "resolution"), ("eval_num_classes", "class count")):
        if cfg.get(key) is not None:
            notes.append(
                f"the search constrained a network with {what} {cfg[key]}; training uses "
                f"the dataset's {what}"
            )
    return settings, notes


def read_search(source: str | os.PathLike[str]) -> SearchSource:
    """The cell, evaluation network and dataset of a search run directory or of its
    ``summary.json`` (see :class:`SearchSource`)."""
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / SUMMARY_NAME
    if not path.is_file():
        raise HwnasError(f"search summary '{path}' not found")
    data = _read_json_file(path)
    if not isinstance(data, dict):
        raise HwnasError(f"search summary '{path}' is not a JSON object")
    found = _arch_of_summary(data)
    if found is None:
        raise HwnasError(f"search summary '{path}' holds no 'genotype' or 'arch_str'")
    space = found[0]
    settings, notes = _summary_settings(data, space)
    return SearchSource(path, space, resolve_arch(space, data), settings, notes)


def search_summary_file(value: Any) -> Path | None:
    """``value`` as the path of a result summary file (a JSON object with an
    architecture and more, not a bare genotype), else ``None``."""
    if not isinstance(value, str | os.PathLike):
        return None
    text = os.fspath(value).strip()
    if text.startswith(("{", "|")) or not text.lower().endswith(".json"):
        return None
    path = Path(text).expanduser()
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or "normal" in data or _arch_of_summary(data) is None:
        return None
    return path


def genotype_from_search(run_dir: str | os.PathLike[str]) -> tuple[str, dict[str, Any] | str]:
    """``(space, architecture)`` from a search run's ``summary.json``: key ``genotype``
    (a DARTS genotype, or with ``space: nb201`` an NB201 arch string, as ``hwnas
    dsearch`` writes them) or key ``arch_str`` (an NB201 cell)."""
    found = read_search(run_dir)
    return found.space, found.arch


def search_settings(
    config: DTrainConfig,
) -> tuple[DTrainConfig, SearchSource | None, dict[str, Any]]:
    """``config`` with what its search result fixes, when its genotype is a search's
    ``summary.json``: the space and cell, and the evaluation network (``C``, ``layers``)
    and dataset the search's budget was about, for those fields not set explicitly; an
    explicit one wins with a warning. Returns (config, source or None, the settings
    taken). Otherwise the default C=36, 20 cells on CIFAR-10 would train a network the
    budget never saw."""
    path = search_summary_file(config.genotype)
    if path is None:
        return config, None, {}
    source = read_search(path)
    given = {k for k in config.model_fields_set if getattr(config, k) is not None}
    if "space" in given and config.space != source.space:
        raise HwnasError(
            f"space {config.space} does not match the {source.space} search result '{source.path}'"
        )
    taken = {k: v for k, v in source.settings.items() if k not in given}
    for k, v in source.settings.items():
        mine = getattr(config, k)
        if k in given and mine != v:
            warnings.warn(
                f"{k}={mine} overrides the search's {k}={v}; its budget was for the "
                "search's network",
                stacklevel=3,
            )
    for note in source.notes:
        warnings.warn(note, stacklevel=3)
    update = {"space": source.space, "genotype": source.arch, **taken}
    return config.model_copy(update=update), source, taken


def build_network(
    space: str,
    arch: Any,
    C: int | None = None,
    layers: int | None = None,
    num_classes: int = 10,
    in_channels: int = 3,
    auxiliary: bool = False,
) -> nn.Module:
    """The evaluation network of ``arch`` in ``space`` (defaults: the paper's sizes)."""
    if space not in SPACE_DEFAULTS:
        raise HwnasError(f"unknown cell space '{space}' (use darts or nb201)")
    c0, l0 = SPACE_DEFAULTS[space]
    C, layers = C or c0, layers or l0
    arch = resolve_arch(space, arch)
    if space == "nb201":
        if auxiliary:
            raise HwnasError("the NB201 network has no auxiliary head (use space darts)")
        return NB201Network(str(arch), C, layers, num_classes, in_channels)
    return DartsNetworkCIFAR(arch, C, layers, num_classes, auxiliary, 0.0, in_channels)


def load_network(path: str | os.PathLike[str]) -> nn.Module:
    """The trained network (eval mode) of a ``dtrain`` checkpoint or run directory."""
    ckpt = load_checkpoint(path)
    spec = ckpt.get("network")
    if not isinstance(spec, dict) or "model" not in ckpt:
        raise HwnasError(f"'{path}' is not a dtrain checkpoint")
    model = build_network(**spec)
    model.load_state_dict(ckpt["model"])
    return model.eval()


# ---- augmentation ----------------------------------------------------------------------
def cutout(x: torch.Tensor, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Cutout (DeVries & Taylor, as in DARTS): per image, zero a ``length`` x ``length``
    square (clipped at the border) centred on a uniformly random pixel."""
    if length <= 0:
        return x
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n,), generator=generator)
    cx = torch.randint(0, w, (n,), generator=generator)
    half = length // 2
    rows, cols = torch.arange(h)[None, :], torch.arange(w)[None, :]
    in_y = (rows >= (cy - half)[:, None]) & (rows < (cy + half)[:, None])
    in_x = (cols >= (cx - half)[:, None]) & (cols < (cx + half)[:, None])
    keep = ~(in_y[:, :, None] & in_x[:, None, :])
    return x * keep[:, None].to(x.dtype)


# ---- configuration ---------------------------------------------------------------------
class DTrainConfig(BaseModel):
    """Settings of one training run of a derived architecture (paper defaults)."""

    model_config = ConfigDict(extra="forbid")

    space: Literal["darts", "nb201"] = "darts"
    genotype: dict[str, Any] | str | None = Field(
        None, description="darts: dict/JSON/name/file (default DARTS_V2); nb201: arch string"
    )
    dataset: str = "cifar10"
    data_dir: str | None = None
    C: int | None = Field(None, ge=1, description="initial channels (darts 36, nb201 16)")
    layers: int | None = Field(None, ge=1, description="darts: cells (20); nb201: N (5)")
    epochs: int = Field(600, ge=1)
    batch_size: int = Field(96, ge=1)
    eval_batch_size: int = Field(256, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1, description="cap on steps per epoch")
    lr: float = Field(0.025, gt=0)
    lr_min: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(3e-4, ge=0)
    grad_clip: float | None = Field(5.0, gt=0)
    cutout: int | None = Field(None, ge=0, description="length; default 16 on cifar10 else 0")
    drop_path_prob: float | None = Field(
        None, ge=0, lt=1, description="final drop-path probability (darts default 0.2)"
    )
    auxiliary: bool = False
    auxiliary_weight: float = Field(0.4, ge=0)
    train_subset: int | None = Field(None, ge=1, description="random training examples")
    test_subset: int | None = Field(None, ge=1, description="random test examples")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    threads: int | None = Field(2, ge=1)  # as train; all cores crawled on a busy machine
    device: str = Field("cpu", description="cpu, cuda, cuda:N or auto (cuda when available)")
    channels_last: bool = False
    measure_latency: bool = True
    latency_settings: dict[str, Any] = Field(
        default_factory=dict, description="MeasureSettings overrides (warmup, rounds, ...)"
    )

    @field_validator("space", mode="before")
    @classmethod
    def _space_lower(cls, v: Any) -> Any:
        """``NB201`` names the same space as ``nb201``."""
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("genotype", mode="before")
    @classmethod
    def _genotype_as_dict(cls, v: Any) -> Any:
        return genotype_to_dict(v) if isinstance(v, Genotype) else v

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DTrainConfig:
        """Validate ``d``; problems become one-line :class:`HwnasError` messages."""
        return validate_model(cls, d, "dtrain")

    def resolved(self) -> DTrainConfig:
        """A copy with every automatic default filled in and the architecture canonical."""
        c0, l0 = SPACE_DEFAULTS[self.space]
        if self.genotype is None:
            if self.space == "nb201":
                raise HwnasError("space nb201 needs an arch string (genotype / --arch)")
            arch: dict[str, Any] | str = resolve_arch("darts", "DARTS_V2")
        else:
            arch = resolve_arch(self.space, self.genotype)
        dp = self.drop_path_prob
        if self.space == "nb201":
            if self.auxiliary:
                raise HwnasError("the NB201 network has no auxiliary head (use space darts)")
            if dp:
                raise HwnasError("drop-path is defined for the darts network only")
            dp = 0.0
        elif dp is None:
            dp = 0.2
        cut = self.cutout if self.cutout is not None else (16 if self.dataset == "cifar10" else 0)
        return self.model_copy(
            update={
                "genotype": arch,
                "C": self.C or c0,
                "layers": self.layers or l0,
                "drop_path_prob": dp,
                "cutout": cut,
            }
        )


@dataclass
class DTrainResult:
    """Where a run wrote its files, its per-epoch history and (when done) its summary."""

    out_dir: Path
    checkpoint: Path
    metrics_file: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    model: nn.Module | None = None
    #: the settings taken from a search result given as the genotype (C, layers, dataset)
    from_search: dict[str, Any] = field(default_factory=dict)

    @property
    def summary_file(self) -> Path | None:
        return self.out_dir / SUMMARY_NAME if self.summary is not None else None

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


# ---- helpers ---------------------------------------------------------------------------
def _subset(
    x: torch.Tensor, y: torch.Tensor, n: int | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    if n is None or n >= len(y):
        return x, y
    keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:n]
    keep = keep.sort().values
    return x[keep], y[keep]


def _aux_feature_size(image_size: int, layers: int) -> int:
    """Spatial size of the feature map the auxiliary head sees (stride-2 convs: ceil)."""
    reductions = {layers // 3, 2 * layers // 3}
    s = image_size
    for i in range(2 * layers // 3 + 1):
        if i in reductions:
            s = math.ceil(s / 2)
    return s


def _network_spec(cfg: DTrainConfig, data: ImageData) -> dict[str, Any]:
    return {
        "space": cfg.space,
        "arch": cfg.genotype,
        "C": cfg.C,
        "layers": cfg.layers,
        "num_classes": data.num_classes,
        "in_channels": data.in_channels,
        "auxiliary": cfg.auxiliary,
    }


def _torch_device(name: str) -> torch.device:
    """``cpu``, ``cuda[:N]`` or ``auto`` -> a usable torch device (clear error otherwise)."""
    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise HwnasError(f"unknown device '{name}' (use cpu, cuda, cuda:N or auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise HwnasError(f"device '{name}' requested but CUDA is not available")
    if dev.type not in ("cpu", "cuda"):
        raise HwnasError(f"unsupported device '{name}' (use cpu, cuda, cuda:N or auto)")
    return dev


def _rng_state(gen: torch.Generator, device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "data": gen.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], gen: torch.Generator, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["data"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# ---- the training loop -----------------------------------------------------------------
def stored_dtrain_config(out: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The settings of the dtrain run in ``out`` (its checkpoint's), so that ``--resume``
    needs only the options that change; None where it holds no checkpoint (a summary
    alone cannot be continued: resuming it would train again from scratch)."""
    path = Path(out) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    config = load_checkpoint(path).get("config")
    return config if isinstance(config, dict) else None


def dtrain(
    config: DTrainConfig | dict[str, Any] | None,
    out_dir: str | os.PathLike[str],
    resume: bool = False,
    progress: bool = True,
    data: ImageData | None = None,
    max_epochs: int | None = None,
    return_model: bool = False,
    log: Log = None,
) -> DTrainResult:
    """Train (or, with ``resume``, continue) a derived network; see the module docstring.

    A genotype that is a search's ``summary.json`` brings the search's space, cell,
    evaluation network (``C``, ``layers``) and dataset, for the fields not set
    explicitly (:func:`search_settings`; ``result.from_search`` and the summary say
    which). ``resume=True`` continues ``out_dir/checkpoint.pt`` (where there is none it
    starts the run; the CLI's ``--resume`` refuses that instead); the settings must be
    the checkpoint's except how it is run and ``epochs``: more epochs stretch the
    schedule from the step reached (as ``hwnas train``), fewer than run are refused.
    Without ``resume`` a folder holding a finished run is refused, not replaced.
    ``data`` overrides loading ``config.dataset`` (subsets still apply); ``max_epochs``
    stops after that many epochs of this call (the schedule still spans
    ``config.epochs``; no summary is written before the last epoch). ``log`` gets plain
    lines: the start and, without a progress bar, one line per epoch (default: stderr
    when ``progress``, else nothing).
    """
    if config is None:
        config = DTrainConfig()
    elif isinstance(config, dict):
        config = DTrainConfig.from_dict(config)
    out = Path(out_dir)
    config, source, taken = search_settings(config)
    if source is not None and source.path.parent.resolve() == out.resolve():
        raise HwnasError(
            f"'{out}' is the search's own directory: training there would replace its "
            "summary, checkpoint and metrics; choose another --out (out_dir)"
        )
    cfg = config.resolved()
    device = _torch_device(cfg.device)
    if log is None and progress:
        log = stderr_line
    if log is not None and source is not None and taken:
        shown = ", ".join(f"{k}={v}" for k, v in taken.items())
        log(f"note: taken from the search ({source.path}): {shown}")
    with torch_threads(cfg.threads), out_dir_lock(out, "dtrain"):  # one run writes there
        if not resume:
            refuse_finished_run(out, "training")
        result = _dtrain(
            cfg, out, device, resume, progress, data, max_epochs, return_model, log, source
        )
    result.from_search = taken
    return result


def _dtrain(
    cfg: DTrainConfig,
    out: Path,
    device: torch.device,
    resume: bool,
    progress: bool,
    data: ImageData | None,
    max_epochs: int | None,
    return_model: bool,
    log: Log = None,
    source: SearchSource | None = None,
) -> DTrainResult:
    """The run of :func:`dtrain` (its config resolved, ``out`` locked)."""
    ckpt_path, metrics_path = out / CHECKPOINT_NAME, out / METRICS_NAME
    t_start = time.perf_counter()

    if log is not None:
        cells = f"{cfg.layers} cells" if cfg.space == "darts" else f"N={cfg.layers}"
        log(
            f"dtrain: loading {cfg.dataset if data is None else data.name}, building the "
            f"{cfg.space} network (C={cfg.C}, {cells}) on {device}"
        )
    if data is None:
        data = load_dataset(cfg.dataset, cfg.data_dir, val_fraction=0.0, seed=cfg.seed)
    x_tr, y_tr = _subset(data.x_train, data.y_train, cfg.train_subset, cfg.seed)
    x_te, y_te = _subset(data.x_test, data.y_test, cfg.test_subset, cfg.seed + 1)
    if len(y_tr) == 0 or len(y_te) == 0:
        raise HwnasError("the training and test sets must not be empty")
    if cfg.auxiliary and not 8 <= _aux_feature_size(data.image_size, cfg.layers) <= 10:
        raise HwnasError(
            f"the auxiliary head needs 32x32 inputs and >= 2 reduction cells "
            f"(got {data.image_size}x{data.image_size}, layers={cfg.layers}); "
            "train without the auxiliary head"
        )

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    spec = _network_spec(cfg, data)
    model = build_network(**spec).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_iter = BatchIterator(
        x_tr,
        y_tr,
        cfg.batch_size,
        shuffle=True,
        augment=True,
        pad=data.pad,
        flip=data.flip,
        drop_last=len(y_tr) >= cfg.batch_size,
        generator=gen,
        max_batches=cfg.steps_per_epoch,
        channels_last=cfg.channels_last,
    )
    steps_per_epoch = len(train_iter)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    total = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(total, 0, final=cfg.lr_min / cfg.lr)
    )

    start_epoch = 0
    history: list[dict[str, Any]] = []
    if resume and ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path)
        shown = changed_settings(
            {"network": ckpt.get("network"), **ckpt.get("config", {})},
            {"network": spec, **cfg.model_dump()},
            _RESUMABLE_CHANGES,
        )
        if shown:
            raise HwnasError(
                f"checkpoint '{ckpt_path}' was written with different settings ({shown}); "
                "resume with the same settings (only epochs and how it is run may change), "
                "or use another output directory"
            )
        check_epochs_reached(int(ckpt["epoch"]) + 1, cfg.epochs, ckpt_path)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        resume_schedule(optimizer, sched)  # more epochs: this run's cosine at the step reached
        _set_rng_state(ckpt["rng"], gen, device)
        start_epoch = int(ckpt["epoch"]) + 1
        history = list(ckpt.get("history", []))
        write_metrics(metrics_path, history)
    else:
        for name in (CHECKPOINT_NAME, METRICS_NAME, SUMMARY_NAME, ONNX_NAME, PLOT_NAME):
            (out / name).unlink(missing_ok=True)

    end_epoch = cfg.epochs if max_epochs is None else min(cfg.epochs, start_epoch + max_epochs)
    if log is not None and start_epoch < end_epoch:
        where = f"from epoch {start_epoch} " if start_epoch else ""
        log(f"dtrain: training {where}to {cfg.epochs} epochs of {steps_per_epoch} steps")
    bar = StepProgress(progress, total, start_epoch * steps_per_epoch)
    with bar:
        for epoch in range(start_epoch, end_epoch):
            record = _train_epoch(model, cfg, train_iter, optimizer, sched, gen, epoch, bar, device)
            t0 = time.perf_counter()
            test_iter = BatchIterator(
                x_te, y_te, cfg.eval_batch_size, channels_last=cfg.channels_last
            )
            record["test_acc"], _ = accuracy(
                model, ((x.to(device), y.to(device)) for x, y in test_iter)
            )
            record["seconds"] += time.perf_counter() - t0
            history.append(record)
            # the line first: a kill before the checkpoint only repeats this epoch (a
            # resume rewrites metrics.jsonl from the checkpoint's history)
            append_metrics(metrics_path, record)
            save_checkpoint(
                ckpt_path,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": sched.state_dict(),
                    "rng": _rng_state(gen, device),
                    "epoch": epoch,
                    "config": cfg.model_dump(),
                    "network": spec,
                    "history": history,
                },
            )
            emit(
                bar,
                log,
                f"epoch {record['epoch']}: loss {record['loss']:.4f} "
                f"train {record['train_acc']:.3f} test {record['test_acc']:.3f} "
                f"lr {record['lr']:.4g} ({record['seconds']:.1f} s)",
            )

    if metrics_path.exists():
        from hwnas.report.plots import plot_training

        plot_training(
            metrics_path,
            [("loss", ["loss"]), ("accuracy", ["train_acc", "test_acc"])],
            out / PLOT_NAME,
            title=f"evaluation network ({cfg.space})",
        )
    model = model.cpu().eval()
    result = DTrainResult(out, ckpt_path, metrics_path, history)
    if history and len(history) == cfg.epochs and history[-1]["epoch"] == cfg.epochs - 1:
        result.summary = _finish(
            model, cfg, data, len(y_tr), x_te, spec, history, out, t_start, source
        )
    if return_model:
        result.model = model
    return result


def _train_epoch(
    model: nn.Module,
    cfg: DTrainConfig,
    batches: BatchIterator,
    optimizer: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    gen: torch.Generator,
    epoch: int,
    bar: StepProgress,
    device: torch.device,
) -> dict[str, Any]:
    """One epoch of training; returns its metrics record (without the test accuracy)."""
    t0 = time.perf_counter()
    dp = float(cfg.drop_path_prob or 0.0) * epoch / cfg.epochs
    if isinstance(model, DartsNetworkCIFAR):
        model.drop_path_prob = dp
    model.train()
    lr = float(optimizer.param_groups[0]["lr"])
    loss_sum = 0.0
    correct = seen = steps = 0
    for x, y in batches:
        if cfg.cutout:
            x = cutout(x, cfg.cutout, gen)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        out = model(x)
        logits, aux = out if isinstance(out, tuple) else (out, None)
        loss = F.cross_entropy(logits, y)
        if aux is not None:
            loss = loss + cfg.auxiliary_weight * F.cross_entropy(aux, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        sched.step()
        n = len(y)
        loss_sum += float(loss.detach()) * n
        correct += int((logits.detach().argmax(1) == y).sum())
        seen += n
        steps += 1
        bar.advance(epoch, loss=float(loss.detach()))
    if steps == 0:
        raise HwnasError("the training set gave no batches")
    return {
        "epoch": epoch,
        "steps": steps,
        "loss": loss_sum / seen,
        "train_acc": correct / seen,
        "lr": lr,
        "drop_path_prob": dp,
        "seconds": time.perf_counter() - t0,
    }


def _finish(
    model: nn.Module,
    cfg: DTrainConfig,
    data: ImageData,
    n_train: int,
    x_test: torch.Tensor,
    spec: dict[str, Any],
    history: list[dict[str, Any]],
    out: Path,
    t_start: float,
    source: SearchSource | None = None,
) -> dict[str, Any]:
    """Cost and (optionally) latency of the trained network; writes ``summary.json``."""
    from hwnas.measure.cost import count_flops

    shape = (data.in_channels, data.image_size, data.image_size)
    model = model.eval()
    flops = count_flops(model, shape, batch_size=1)
    last = history[-1]
    summary: dict[str, Any] = {
        "space": cfg.space,
        "arch": cfg.genotype,
        "dataset": data.name,
        "epochs": cfg.epochs,
        "test_acc": last["test_acc"],
        "train_acc": last["train_acc"],
        "loss": last["loss"],
        "train_examples": int(n_train),
        "test_examples": len(x_test),
        "params": count_params(model, exclude_auxiliary=True),
        "params_with_aux": count_params(model, exclude_auxiliary=False),
        "flops": flops["flops"],
        "macs": flops["macs"],
        "cost_batch_size": 1,
        "input_shape": list(shape),
        "network": spec,
        "config": cfg.model_dump(),
        "from_search": str(source.path) if source is not None else None,
        "onnx": None,
        "onnx_max_abs_diff": None,
        "latency_ms": None,
        "latency": None,
    }
    if cfg.measure_latency:
        summary.update(_export_and_measure(model, shape, x_test[:8], cfg, out))
    summary["wall_time_s"] = time.perf_counter() - t_start
    tmp = out / (SUMMARY_NAME + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, out / SUMMARY_NAME)
    return summary


def _export_and_measure(
    model: nn.Module,
    shape: tuple[int, int, int],
    sample: torch.Tensor,
    cfg: DTrainConfig,
    out: Path,
) -> dict[str, Any]:
    """Export to ONNX, check it against PyTorch on ``sample``, measure its latency."""
    import numpy as np
    import onnxruntime as ort

    from hwnas.measure.export import export_onnx
    from hwnas.measure.latency import MeasureSettings
    from hwnas.measure.measurer import LocalMeasurer

    path = export_onnx(model, shape, out / ONNX_NAME, batch_size=1)
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = model(sample.contiguous()).numpy()
    got = sess.run(None, {"input": sample.contiguous().numpy()})[0]
    diff = float(np.abs(ref - got).max())
    base: dict[str, Any] = {
        "runtime": "onnxruntime",
        "provider": "cpu",
        "batch_size": 1,
        "intra_op_threads": 1,
        "inter_op_threads": 1,
        "input_shape": shape,
    }
    settings = MeasureSettings.from_dict({**base, **cfg.latency_settings})
    meas = LocalMeasurer(settings).measure([path])[0]
    return {
        "onnx": str(path),
        "onnx_max_abs_diff": diff,
        "latency_ms": meas.latency_ms,
        "latency": meas.to_dict(),
    }
