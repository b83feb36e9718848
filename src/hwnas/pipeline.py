"""The whole one-shot pipeline in one call: train a supernet, profile the target device
(this machine or a device agent), fit a latency predictor, search, verify and export the
front, write a report.

Stages (each in its own folder of ``out``, each resumable, so a killed pipeline run again
with the same config continues where it stopped):

1. ``supernet/``: :func:`hwnas.train.supernet.train_supernet` (sandwich rule, subnet
   mutual distillation, DKD; the ``train`` section of the config).
2. ``profile/``: :func:`hwnas.measure.profile.profile_space` measures ``profile_samples``
   subnets spread over the MACs range with ONNX Runtime on the target device (this
   machine, or the device agent at ``agent``, ``hwnas agent serve``), each shaped as the
   deployed network (the supernet's input channels and classes, the dataset's images
   resized inside).
3. ``predictor/latency.joblib``: :func:`hwnas.predict.fitted.fit_on_profile` (model
   ``predictor``, default ``auto``: chosen by cross-validation).
4. ``search/``: :func:`hwnas.search.run_search` on the ``supernet`` benchmark: each
   subnet's validation accuracy measured (BN recalibrated), its latency predicted.
5. ``front/``: every architecture of the search's front is extracted with recalibrated
   BN, evaluated on the held-out *test* split, exported to ONNX (and ``torch.export``
   where asked), and the exported files are measured on the target device, interleaved,
   beside the profile's anchor subnet. The shipped front is the feasible non-dominated set on
   validation accuracy and *measured* latency (divided by the anchor's drift where the
   device is slower now than during the profile).
Then (unnumbered, as the CLI prints ``1/5`` .. ``5/5``) ``report.md``, ``front.png``
(predicted vs measured latency of the front) and ``summary.json``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import itertools
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hwnas.config import changed_settings, known_settings
from hwnas.errors import HwnasError, reworded

CONFIG_NAME = "pipeline.json"
TIMINGS_NAME = "timings.json"
STAGES = ("train", "profile", "predictor", "search", "front")
SUMMARY_NAME = "summary.json"
REPORT_NAME = "report.md"
FRONT_PLOT = "front.png"
FRONT_CSV = "front.csv"
#: where the front's model files go once a longer search drops them from the front
SUPERSEDED = "superseded"
#: settings a resumed run may change: none changes what is trained, measured or searched
FREE_KEYS = ("evaluations", "data_dir", "token_file", "agent_timeout_s")
#: what the pipeline's constraints may bound: its objectives, and the subnets' exact size
CONSTRAINABLE = {
    "accuracy": "%",
    "latency": "ms",
    "mflops": "MFLOPs",
    "params": "parameters",
}
#: most models per measurement call of the front (the agent's default ``max_models``)
MEASURE_GROUP = 16
#: subnets per interleaved group of the profile (``profile_space``'s default)
PROFILE_GROUP = 8
#: what the pipeline changes from ``TrainConfig``'s own defaults: a larger validation
#: split, since the search ranks subnets on it
TRAIN_DEFAULTS: dict[str, Any] = {"dataset": "digits", "epochs": 5, "val_fraction": 0.2}

#: ``progress(label)`` gives a context manager yielding ``update(done, total)``
ProgressFactory = Callable[[str], contextlib.AbstractContextManager[Callable[[int, int], None]]]


class PipelineConfig(BaseModel):
    """Settings of one pipeline run (defaults: the embedded digits run, about 7-11 minutes
    on 2 CPU cores). ``train`` holds ``TrainConfig`` fields (``hwnas train --help``); a
    run's ``pipeline.json`` holds all of these fields, a complete config to copy."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, ge=0, lt=2**63, strict=True)
    train: dict[str, Any] = Field(default_factory=dict)
    profile_samples: int = Field(60, ge=5, strict=True)  # a predictor needs 5
    measure_threads: int = Field(1, ge=1, strict=True)
    predictor: str = "auto"
    algorithm: str = "linas"
    algorithm_options: dict[str, Any] = Field(default_factory=dict)
    evaluations: int = Field(100, ge=2, strict=True)
    constraints: list[str] = Field(default_factory=list)
    calib_batches: int = Field(4, ge=0, strict=True)
    threads: int = Field(2, ge=1, strict=True)
    export_formats: list[Literal["onnx", "torch"]] = Field(default_factory=lambda: ["onnx"])
    data_dir: str | None = None
    #: URL of a device agent (``hwnas agent serve`` on the target device): the profile
    #: and the front are measured there instead of on this machine
    agent: str | None = None
    token_file: str | None = None
    agent_timeout_s: float = Field(600.0, gt=0, le=7 * 86400)
    #: a trained supernet to reuse instead of training one (its checkpoint, its
    #: ``hwnas train`` directory, or another pipeline run's directory): train once, then
    #: profile and search for each device; its training settings come with it
    supernet: str | None = None
    #: a front to evaluate first, counted in the search budget (DyNAS-T's warm start):
    #: another pipeline run's directory (its search's front, e.g. for another device
    #: with the same --supernet), a search directory or a CSV with an arch_key column
    warm_start: str | None = None

    @field_validator("supernet", "warm_start", "token_file", "data_dir")
    @classmethod
    def _absolute(cls, path: str | None) -> str | None:
        """One spelling per file (absolute): a resumed run compares it, and the stored
        config (the report's command that repeats the run) works from another working
        directory."""
        return None if path is None else _abspath(path)

    @field_validator("train")
    @classmethod
    def _train_folder_absolute(cls, train: dict[str, Any]) -> dict[str, Any]:
        """``train.dataset`` ``folder:PATH`` with PATH absolute, as the training stores it:
        one spelling per folder for a resumed run to compare, and a stored config that
        works from another working directory."""
        return _train_absolute(train)

    @field_validator("agent")
    @classmethod
    def _agent_url(cls, url: str | None) -> str | None:
        """One spelling per agent (no trailing slash): a resumed run compares it."""
        if url is None:
            return None
        url = url.strip().rstrip("/")
        if not url:
            raise ValueError("the agent URL is empty (e.g. http://HOST:8765)")
        return url

    def measure_settings(self) -> Any:
        """ONNX Runtime settings of every latency measurement (profile and front)."""
        from hwnas.measure.latency import MeasureSettings

        return MeasureSettings(
            intra_op_threads=self.measure_threads, inter_op_threads=1, seed=self.seed
        )

    def train_config(self, out: Path, progress: bool) -> Any:
        """The ``TrainConfig`` of stage 1 (``out/supernet``); with ``supernet``, the
        reused training's own settings (its dataset, split and space)."""
        from hwnas.train.supernet import CHECKPOINT_NAME, TrainConfig

        if self.supernet is not None:
            if self.train:
                raise HwnasError(
                    "pipeline config: the training settings come with the reused supernet "
                    f"({self.supernet}); drop train ({', '.join(sorted(self.train))}), "
                    "--dataset and --epochs"
                )
            # once copied into the run, the copy is what counts (the source may be gone)
            copied = out / "supernet" / CHECKPOINT_NAME
            tc = reused_supernet(copied if copied.is_file() else self.supernet)[1]["train_config"]
            return TrainConfig.from_dict(
                {
                    **tc,
                    "out_dir": str(out / "supernet"),
                    "data_dir": self.data_dir,
                    "num_threads": self.threads,
                    "resume": True,
                    "progress": progress,
                }
            )

        fixed = {"out_dir", "seed", "resume", "progress", "data_dir"}
        clash = sorted(fixed & set(self.train))
        if clash:
            raise HwnasError(
                f"pipeline config: train.{clash[0]} is set by the pipeline (use the "
                "pipeline's own seed / data_dir; the output goes to OUT/supernet)"
            )
        return TrainConfig.from_dict(
            {
                **TRAIN_DEFAULTS,
                "num_threads": self.threads,
                **self.train,
                "out_dir": str(out / "supernet"),
                "seed": self.seed,
                "data_dir": self.data_dir,
                "resume": True,
                "progress": progress,
            }
        )


def _train_settings(train: dict[str, Any]) -> dict[str, Any]:
    """A pipeline config's ``train`` with the settings left at their default dropped."""
    from hwnas.train.supernet import TrainConfig

    defaults = {k: f.default for k, f in TrainConfig.model_fields.items()}
    defaults.update(TRAIN_DEFAULTS)
    return {k: v for k, v in train.items() if k not in defaults or defaults[k] != v}


def _abspath(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def _train_absolute(train: dict[str, Any]) -> dict[str, Any]:
    """``train`` with a ``folder:PATH`` dataset's path made absolute (relative to the
    working directory, as training resolves it); ``folder:`` alone is a ValueError."""
    from hwnas.data import folder_spec

    dataset = train.get("dataset")
    if not isinstance(dataset, str):
        return train
    try:
        return {**train, "dataset": folder_spec(dataset)}
    except HwnasError as exc:
        raise ValueError(str(exc)) from None


def _warm_start(cfg: PipelineConfig, train_cfg: Any, out: Path) -> list[str] | None:
    """The warm start's architecture keys, checked against the supernet's space and the
    budget before any work; None once the search has begun (its store replays them, and
    the source may be gone)."""
    from hwnas.search.runner import STORE_NAME, warm_start_keys, warm_vectors
    from hwnas.space import get_space

    if cfg.warm_start is None or (out / "search" / STORE_NAME).is_file():
        return None
    p = Path(cfg.warm_start)
    if p.is_dir() and (p / CONFIG_NAME).is_file() and (p / "search").is_dir():
        p = p / "search"  # another pipeline run: its search's front
    keys = warm_start_keys(p)
    warm_vectors(get_space(train_cfg.space), keys, cfg.evaluations)
    return keys


def reused_supernet(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """The checkpoint file of a supernet to reuse and its contents: ``path`` is the file,
    a directory holding ``checkpoint.pt`` (``hwnas train --out``) or a pipeline run
    (``supernet/checkpoint.pt``); refused unless its training finished."""
    from hwnas.train.supernet import CHECKPOINT_NAME, load_checkpoint

    p = Path(path)
    if p.is_dir() and not (p / CHECKPOINT_NAME).is_file():
        p = p / "supernet"
    if p.is_dir():
        p = p / CHECKPOINT_NAME
    if not p.is_file():
        raise HwnasError(
            f"no supernet checkpoint at '{path}' (a checkpoint.pt, an 'hwnas train' directory "
            "or a pipeline run directory)"
        )
    ckpt = load_checkpoint(p)
    tc = ckpt.get("train_config")
    if not isinstance(tc, dict) or "epoch" not in ckpt:
        raise HwnasError(f"'{p}' is not a checkpoint of 'hwnas train' (no training config)")
    done, total = int(ckpt["epoch"]) + 1, int(tc.get("epochs", 0))
    if done < total:
        raise HwnasError(
            f"the supernet at '{p}' is trained for {done} of {total} epochs: finish it "
            f"first (hwnas train --config ... --out {p.parent}, or its pipeline run)"
        )
    return p.resolve(), ckpt


def load_config(config: PipelineConfig | dict[str, Any] | None) -> PipelineConfig:
    """A config from a dict (one clear error line for a bad field)."""
    if isinstance(config, PipelineConfig):
        return config
    try:
        return PipelineConfig(**(config or {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        msg = first["msg"].removeprefix("Value error, ")  # a validator's own words
        if first["type"] == "extra_forbidden":  # the keys are the fields, not the flags
            msg = (
                f"unknown setting ({known_settings(PipelineConfig, first['loc'])}: the "
                f"fields of PipelineConfig, not the flags' names; a run's {CONFIG_NAME} is "
                "a complete config to copy)"
            )
        raise HwnasError(f"bad pipeline config: {loc}: {msg}") from None


def check_config(cfg: PipelineConfig, train_cfg: Any) -> Any:
    """Names a later stage would refuse (dataset, predictor, algorithm and its options,
    constraints), refused before anything runs or is written. Returns the training data
    (an unknown dataset, a missing file or folder fails here), loaded once for training
    and the front's test."""
    from hwnas.data import load_dataset
    from hwnas.predict.models import make_predictor
    from hwnas.search.problem import Constraint
    from hwnas.search.spec import build_algorithm

    t = train_cfg
    data = load_dataset(t.dataset, t.data_dir, t.val_fraction, t.seed, t.limit, t.image_size)
    make_predictor(cfg.predictor)
    build_algorithm(cfg.algorithm, cfg.seed, cfg.algorithm_options)
    for text in cfg.constraints:
        c = Constraint.parse(text)
        if c.objective not in CONSTRAINABLE:
            raise HwnasError(
                f"constraint '{text}': the pipeline constrains "
                + ", ".join(f"{k} ({v})" for k, v in CONSTRAINABLE.items())
            )
        if c.objective in ("params", "mflops"):  # exact: one no subnet meets is refused now
            _check_size_bound(c, t.space, data)
        # latency is known only once measured, but no network runs in no time at all,
        # and accuracy is a percentage
        if not c.satisfiable(
            *{"latency": (1e-9, np.inf), "accuracy": (0.0, 100.0)}.get(
                c.objective, (-np.inf, np.inf)
            )
        ):
            rng = "a positive time" if c.objective == "latency" else "0..100 %"
            raise HwnasError(f"constraint '{c}': no subnet meets it ({c.objective} is {rng})")
    return data


def _check_size_bound(c: Any, space_name: str, data: Any) -> None:
    """Refuse a parameter or MFLOPs bound that no subnet of the space meets for this
    dataset's channels and classes (no checkpoint, so no benchmark, exists yet)."""
    from hwnas.space.mbv3_ramnas import space_for

    lo, hi = space_for(space_name).size_range(data.in_channels, data.num_classes)[c.objective]
    if not c.satisfiable(lo, hi):
        raise HwnasError(
            f"constraint '{c}': no subnet of {space_name} meets it on this data ({c.objective} "
            f"from {lo:.6g} to {hi:.6g})"
        )


@dataclasses.dataclass
class Target:
    """Where the pipeline measures latency: this machine (each call in a child process) or
    a device agent (``client``), asked for its description and limits by :meth:`connect`
    (until then ``device`` has no ``host``). ``device`` is what the summary records."""

    measurer: Any
    device: dict[str, Any]
    client: Any = None
    #: the most models, and bytes, one measurement call may carry (None: no limit)
    max_models: int = MEASURE_GROUP
    max_bytes: int | None = None

    def connect(self, measure_threads: int = 1) -> None:
        """Ask an agent for its description and limits (a wrong URL or token, or more
        measuring threads than it has cores, fails here), once; for this machine, check
        the threads against its CPUs."""
        if self.client is None:  # this machine: as the measurement checks it, but now
            cpus = os.cpu_count() or 1
            if measure_threads > cpus:
                raise HwnasError(
                    f"measure_threads {measure_threads} exceeds the {cpus} CPU(s) of this "
                    f"machine; use at most {cpus}"
                )
            return
        if "host" in self.device:
            return
        info = self.client.info()
        limits = info.get("limits") or {}
        cores = limits.get("max_threads")
        url = self.client.url
        if cores and measure_threads > cores:
            raise HwnasError(
                f"measure_threads {measure_threads}: the agent at {url} has {cores} core(s)"
            )
        group = min(MEASURE_GROUP, int(limits.get("max_models") or MEASURE_GROUP))
        if group < 2:
            raise HwnasError(
                f"the agent at {url} takes {group} model per request; the pipeline "
                "measures each subnet beside an anchor subnet, so it needs 2"
            )
        self.max_models = group
        self.max_bytes = int(limits["max_bytes"]) if limits.get("max_bytes") else None
        self.device["host"] = info.get("host") or {}

    @property
    def label(self) -> str:
        """The device in words, for the report, the plot and the terminal."""
        host = self.device.get("host")
        name = ""
        if host:
            what = host.get("board") or host.get("cpu_model") or "unknown CPU"
            name = f" ({host.get('hostname', '?')}, {what})"
        if self.device["kind"] == "agent":
            return f"the agent at {self.device['url']}{name}"
        return f"this machine{name}"


def make_target(cfg: PipelineConfig) -> Target:
    """The target device of ``cfg``, not yet asked anything (its URL and token file are
    checked): :meth:`Target.connect` asks an agent for its limits."""
    from hwnas.measure.measurer import LocalMeasurer, RemoteMeasurer

    settings = cfg.measure_settings()
    if not cfg.agent:
        if cfg.token_file:
            raise HwnasError("pipeline config: token_file is only used with agent")
        from hwnas.measure.host import host_info

        host = host_info(include_torch=False)
        return Target(LocalMeasurer(settings, isolate=True), {"kind": "local", "host": host})
    from hwnas.measure.agent import AgentClient, read_token_file

    if not cfg.token_file:
        raise HwnasError(
            "pipeline config: agent needs token_file (the agent's token; "
            "'hwnas agent token FILE' makes one)"
        )
    client = AgentClient(cfg.agent, read_token_file(cfg.token_file), cfg.agent_timeout_s)
    return Target(RemoteMeasurer(client, settings), {"kind": "agent", "url": client.url}, client)


def _no_progress(label: str) -> contextlib.AbstractContextManager[Callable[[int, int], None]]:
    return contextlib.nullcontext(lambda done, total: None)


def _check_same_config(out: Path, config: PipelineConfig) -> None:
    """A run directory holds one pipeline: resuming it takes the same config, except a
    larger search budget (``evaluations``), where the data is (``data_dir``) and how the
    agent is reached (``token_file``, ``agent_timeout_s``)."""
    path = out / CONFIG_NAME
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise HwnasError(f"{path} is not a pipeline config: {exc}") from None
    new = config.model_dump()
    for key in ("supernet", "warm_start"):  # a run made before paths were made absolute
        if isinstance(old.get(key), str):
            old[key] = _abspath(old[key])
    if isinstance(old.get("train"), dict):  # a folder:RELPATH, from the same directory
        with contextlib.suppress(ValueError):
            old["train"] = _train_absolute(old["train"])
    for d in (old, new):  # a training setting spelt out at its default is the same run
        if isinstance(d.get("train"), dict):
            d["train"] = _train_settings(d["train"])
    what = changed_settings(old, new, FREE_KEYS)
    if what:
        reuse = ""
        if (out / "supernet" / "checkpoint.pt").is_file() and old.get("train") == new.get(
            "train"
        ):  # same training, finished: another run can start from this one's supernet
            with contextlib.suppress(HwnasError):
                reused_supernet(out)
                reuse = f"; with --supernet {out} a new --out starts from its trained supernet"
        raise HwnasError(
            f"{out} holds a pipeline run with another config: {what}; run it with the same "
            f"settings to continue it (hwnas pipeline --config {path} --out {out}, adding "
            "only a flag it may change, e.g. a larger --evaluations), or choose another "
            f"--out{reuse}"
        )
    if new["evaluations"] < old.get("evaluations", 0):
        raise HwnasError(
            f"{out} holds a pipeline with {old['evaluations']} search evaluations; "
            f"--evaluations can raise it, not lower it (got {new['evaluations']})"
        )


def run_pipeline(
    config: PipelineConfig | dict[str, Any] | None = None,
    out: str | Path = "runs/default",
    progress: ProgressFactory | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run (or continue) the whole pipeline into ``out``; returns the summary.

    ``progress(label)`` gives per-stage progress bars (the CLI passes rich bars; training
    shows its own when ``progress`` is given); ``log`` receives one line per stage.
    """
    from hwnas.process import out_dir_lock

    cfg = load_config(config)
    out = Path(out)
    bars = progress or _no_progress
    say = log or (lambda line: None)
    if out.exists() and not out.is_dir():
        raise HwnasError(f"output path {out} exists and is not a directory")
    train_cfg = cfg.train_config(out, progress is not None)  # checked before any work
    data = check_config(cfg, train_cfg)
    warm = _warm_start(cfg, train_cfg, out)
    target = make_target(cfg)
    _check_same_config(out, cfg)  # (again under the lock) before an agent is asked anything
    if not (out / SUMMARY_NAME).is_file():
        # a new or unfinished run: an agent that cannot serve it fails before any work
        # (a finished one, run again, may have nothing left to measure)
        target.connect(cfg.measure_threads)
        _check_upload_limit(cfg, train_cfg.space, data, target)
    with out_dir_lock(out, "pipeline"):
        _check_same_config(out, cfg)
        (out / CONFIG_NAME).write_text(json.dumps(cfg.model_dump(), indent=2) + "\n")
        try:
            return _run(cfg, train_cfg, data, target, out, bars, say, warm)
        except HwnasError as exc:  # an agent gone, a file removed: resumable
            if "run the same command again" in str(exc):
                raise
            raise reworded(exc, f"{exc}; then run the same command again to continue") from None


@contextlib.contextmanager
def _stage(timings: dict[str, float], name: str, path: Path) -> Iterator[dict[str, bool]]:
    """Time a stage; the time adds to what earlier calls (a killed run) spent on it, and
    is written at once to ``path``, so the report's times are the whole run's. A stage
    that sets ``idle`` in the yielded dict found nothing left to do (a finished run, run
    again): its look adds nothing."""
    t0 = time.perf_counter()
    state = {"idle": False}
    try:
        yield state
    finally:
        spent = 0.0 if state["idle"] else time.perf_counter() - t0
        timings[name] = round(timings.get(name, 0.0) + spent, 2)
        path.write_text(json.dumps(timings, indent=2) + "\n")


def _read_timings(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, int | float)}


def _run(
    cfg: PipelineConfig,
    train_cfg: Any,
    data: Any,
    target: Target,
    out: Path,
    bars: ProgressFactory,
    say: Callable[[str], None],
    warm: list[str] | None = None,
) -> dict[str, Any]:
    from hwnas.measure.profile import profile_space
    from hwnas.predict.fitted import fit_on_profile
    from hwnas.search.runner import STORE_NAME, resume_search, run_search
    from hwnas.train.supernet import load_checkpoint, model_from_checkpoint, train_supernet

    tpath = out / TIMINGS_NAME
    timings = _read_timings(tpath)

    if cfg.supernet is not None:
        say(f"1/5 supernet: reused from {cfg.supernet} ({train_cfg.space} on {train_cfg.dataset})")
        _copy_supernet(cfg.supernet, out / "supernet")
    else:
        n = train_cfg.epochs
        say(f"1/5 supernet: {train_cfg.space} on {train_cfg.dataset}, {n} epoch{'s' * (n != 1)}")
    with _stage(timings, "train", tpath) as stage:
        trained = train_supernet(train_cfg, data)  # a reused one: nothing left to train
        stage["idle"] = trained.epochs_trained == 0
    final = trained.final
    ckpt_path = trained.checkpoint.resolve()
    ckpt = load_checkpoint(ckpt_path)
    model = model_from_checkpoint(ckpt)

    settings = cfg.measure_settings()
    say(f"2/5 profile: {cfg.profile_samples} subnets measured on {target.label}")
    with _stage(timings, "profile", tpath) as stage, bars("profile") as update:
        prof = profile_space(
            model.space.name,
            cfg.profile_samples,
            out / "profile",
            settings=settings,
            seed=cfg.seed,
            progress=update,
            num_classes=model.num_classes,
            in_channels=model.in_channels,
            input_size=_image_size(ckpt),
            measurer=target.measurer,
            group_size=profile_group_size(target, model),
        )
        stage["idle"] = not prof.get("measured")

    say(f"3/5 latency predictor: {cfg.predictor} on {prof['stored']} measured subnets")
    pred_path = out / "predictor" / "latency.joblib"
    with _stage(timings, "predictor", tpath) as stage:
        fitted = _fitted_before(pred_path, cfg, prof)
        stage["idle"] = fitted is not None
        if fitted is None:
            fitted = fit_on_profile(out / "profile", "latency", cfg.predictor, seed=cfg.seed)
            pred_path.parent.mkdir(parents=True, exist_ok=True)
            fitted.save(pred_path)

    search_dir = out / "search"
    first = f", {len(warm)} of them from {cfg.warm_start} first" if warm else ""
    say(f"4/5 search: {cfg.algorithm}, {cfg.evaluations} subnets (accuracy measured){first}")
    files = {"checkpoint": str(ckpt_path), "latency": str(pred_path.resolve())}
    with (
        _stage(timings, "search", tpath) as stage,
        bars(f"{cfg.algorithm} on the supernet") as update,
    ):
        if _retarget_search(search_dir / STORE_NAME, files):
            search = resume_search(
                search_dir, progress=update, evaluations=cfg.evaluations, data_dir=cfg.data_dir
            )
        else:
            search = run_search(
                {
                    "benchmark": "supernet",
                    "benchmark_options": {
                        **files,
                        "calib_batches": cfg.calib_batches,
                        "threads": cfg.threads,
                    },
                    "algorithm": cfg.algorithm,
                    "algorithm_options": cfg.algorithm_options,
                    "evaluations": cfg.evaluations,
                    "seed": cfg.seed,
                    "constraints": cfg.constraints,
                    "data_dir": cfg.data_dir,
                    "warm_start": warm or [],
                },
                out=search_dir,
                progress=update,
            )
        stage["idle"] = search.get("evaluated_now") == 0

    say(f"5/5 front: {len(search['pareto'])} subnets tested, exported and measured")
    done: dict[str, int] = {}
    with _stage(timings, "front", tpath) as stage, bars("front") as update:
        front = verify_front(
            ckpt, model, data, search["pareto"], out / "front", cfg, target, out / "profile",
            update, done,
        )  # fmt: skip
        stage["idle"] = not done.get("measured")
    timings["total"] = round(sum(timings.get(k, 0.0) for k in STAGES), 2)

    summary = _summary(cfg, out, final, prof, fitted, search, front, timings, target)
    summary["supernet"].update(
        space=train_cfg.space,
        dataset=train_cfg.dataset,
        epochs=train_cfg.epochs,
        reused_from=cfg.supernet,
    )
    (out / SUMMARY_NAME).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    plot_front(front, search, out / FRONT_PLOT, cfg.constraints, target.label)
    write_report(summary, out / REPORT_NAME)
    return summary


def _fitted_before(path: Path, cfg: PipelineConfig, prof: dict[str, Any]) -> Any:
    """The predictor an earlier call fitted on this very profile (same model, seed, run
    and number of measured subnets), or None: a finished run, run again, neither fits it
    again nor stores another fit in the profile."""
    from hwnas.predict.fitted import load_fitted

    if not path.is_file():
        return None
    try:
        fitted = load_fitted(path)
    except HwnasError:
        return None
    meta = fitted.metadata
    same = (
        meta.get("model") == cfg.predictor
        and meta.get("seed") == cfg.seed
        and meta.get("run_id") == prof.get("run_id")
        and meta.get("n_measured") == prof.get("stored")
    )
    return fitted if same else None


def _copy_supernet(source: str, dest: Path) -> None:
    """Copy a reused supernet's checkpoint (and its metrics and plot) into the run, once:
    the run directory stays whole if the source moves; a kill mid-copy leaves no partial
    file."""
    import shutil

    from hwnas.train.supernet import CHECKPOINT_NAME, METRICS_NAME, PLOT_NAME

    dest.mkdir(parents=True, exist_ok=True)
    if (dest / CHECKPOINT_NAME).is_file():
        return
    src = reused_supernet(source)[0]
    for name in (METRICS_NAME, PLOT_NAME):
        if (src.parent / name).is_file():
            shutil.copyfile(src.parent / name, dest / name)
    tmp = dest / (CHECKPOINT_NAME + ".tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(dest / CHECKPOINT_NAME)


def profile_group_size(target: Target, model: Any) -> int:
    """Subnets per profile group on ``target``: with the anchor, within its model limit
    and, with room for the largest subnet's weights (float32), its upload limit (a group
    over it is refused and measured again one by one: a wasted upload to a device)."""
    group = min(PROFILE_GROUP, target.max_models - 1)
    if target.max_bytes:
        sp = model.space
        params = sp.params_batch(sp.largest()[None, :], model.in_channels, model.num_classes)
        largest = 1.05 * 4 * float(params[0])  # + the graph's own few per cent
        group = min(group, int(target.max_bytes // largest) - 1)
    return max(group, 1)


def _check_upload_limit(cfg: PipelineConfig, space_name: str, data: Any, target: Target) -> None:
    """Refuse, before any training, an agent whose upload limit cannot carry the largest
    subnet beside the anchor subnet: the profile measures both (its plan starts with the
    largest), so the run would fail after training. Float32 weights alone are a lower
    bound of an ONNX file's size."""
    if not target.max_bytes:
        return
    from hwnas.measure.profile import anchor_key, stratified_sample
    from hwnas.space.mbv3_ramnas import space_for

    space = space_for(space_name)
    nc = data.num_classes
    plan = space.keys(stratified_sample(space, cfg.profile_samples, cfg.seed, num_classes=nc))
    vecs = np.stack([space.largest(), space.from_key(anchor_key(space, plan, nc))])
    weights = 4 * space.params_batch(vecs, data.in_channels, nc).astype(float)
    need = float(weights.sum())
    if need > target.max_bytes:
        mb = int(np.ceil(1.1 * need / 2**20))  # the graph's own few per cent, and room
        raise HwnasError(
            f"the agent at {target.client.url} takes uploads up to "
            f"{target.max_bytes / 2**20:.1f} MB, but the largest subnet with the anchor subnet "
            f"is at least {need / 2**20:.1f} MB of weights (the profile measures them "
            f"together): restart the agent with --max-mb {mb} or more"
        )


def _retarget_search(store_path: Path, files: dict[str, str]) -> bool:
    """Whether ``store_path`` holds a search run to continue; if so, point its stored
    checkpoint and predictor paths at this run directory's (a run directory that was
    moved or copied still resumes on its own files)."""
    from hwnas.store.sqlite import ResultsStore

    if not store_path.is_file():
        return False
    with ResultsStore(store_path) as store:
        runs = store.runs("search")
        if not runs:  # killed between creating the store and storing the run
            return False
        run = runs[-1]
        opts = dict(run["config"].get("benchmark_options") or {})
        if any(opts.get(k) != v for k, v in files.items()):
            opts.update(files)
            store.update_run_config(run["run_id"], {**run["config"], "benchmark_options": opts})
    return True


# ---------------------------------------------------------------------------------------
# stage 5: the front, tested, exported and measured
# ---------------------------------------------------------------------------------------
def verify_front(
    ckpt: dict[str, Any],
    model: Any,
    data: Any,
    pareto: list[dict[str, Any]],
    out: Path,
    cfg: PipelineConfig,
    target: Target,
    profile_dir: Path,
    progress: Callable[[int, int], None] | None = None,
    stats: dict[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Test accuracy, exported files and measured latency of each front architecture.

    ``data`` is the checkpoint's dataset (:func:`hwnas.train.evaluate.checkpoint_data`).
    Each subnet is extracted with BN recalibrated exactly as the search evaluated it, so
    the exported model is the one whose validation accuracy the search saw. Rows already
    in ``out/front.csv`` (a resumed run) are kept; the rest are measured on ``target``,
    interleaved, beside the profile's anchor subnet, whose drift since the profile says
    how the device's load then and now differ: ``latency_ms`` is the measured latency,
    divided by the drift where the device is slower now (:func:`_set_latencies`).
    ``feasible`` checks the constraints on it, and ``on_front`` marks the feasible
    rows non-dominated on validation accuracy and it: the networks to ship. ``out`` is
    the pipeline's own folder: model files of networks no longer on the front (a search
    that went on) are moved to ``out/superseded/`` (one may have been shipped).
    ``stats["measured"]`` says how many rows this call exported and measured.
    """

    import torch

    from hwnas.data import BatchIterator
    from hwnas.measure.export import export_onnx
    from hwnas.search.pareto import non_dominated_mask
    from hwnas.search.problem import Constraint
    from hwnas.train.evaluate import checkpoint_data, save_torch_program, subnet_metadata
    from hwnas.train.supernet import calibrated_subnet
    from hwnas.train.utils import accuracy

    out.mkdir(parents=True, exist_ok=True)
    done = {
        r["arch_key"]: r
        for r in _read_front(out / FRONT_CSV)
        if (out / r["onnx"]).is_file() and (not r["torch"] or (out / r["torch"]).is_file())
    }
    data = checkpoint_data(ckpt, model, data)  # checks channels and classes
    x_test, y_test = data.split("test")
    channels_last = bool(ckpt.get("train_config", {}).get("channels_last", False))
    rows: list[dict[str, Any]] = []
    todo: list[dict[str, Any]] = []
    total = len(pareto)
    for p in sorted(pareto, key=lambda p: p["latency"]):
        key = p["arch_key"]
        if key in done:
            rows.append(done[key])
            continue
        vec = model.space.from_key(key)
        arch = model.space.decode(vec)
        # as the search evaluated it: same calibration batches, input resize inside
        sub = calibrated_subnet(model, arch, data, cfg.calib_batches, 256, 0, channels_last)
        test_iter = BatchIterator(x_test, y_test, 256, channels_last=channels_last)
        with torch.no_grad():
            top1, _ = accuracy(sub, test_iter)
        stem = f"subnet_{hashlib.sha1(key.encode()).hexdigest()[:10]}"
        files = {"onnx": f"{stem}.onnx", "torch": ""}
        shape = (model.in_channels, data.image_size, data.image_size)  # the data's images
        sub = sub.to(memory_format=torch.contiguous_format)
        meta = subnet_metadata(model, arch, ckpt, data, data.image_size)
        export_onnx(sub, shape, out / files["onnx"], metadata=meta)
        if "torch" in cfg.export_formats:
            files["torch"] = f"{stem}.pt2"
            save_torch_program(sub, shape, out / files["torch"], metadata=meta)
        row = {
            "arch_key": key,
            "val_top1": p["accuracy"],
            "test_top1": 100.0 * top1,
            "predicted_latency_ms": p["latency"],
            "measured_latency_ms": None,
            "params": sum(q.numel() for q in sub.parameters()),
            "mflops": float(
                model.space.mflops_batch(vec[None, :], model.in_channels, model.num_classes)[0]
            ),
            "resolution": arch["resolution"],
            **files,
        }
        rows.append(row)
        todo.append(row)
        if progress is not None:
            progress(len(rows), total + 1)  # + 1: the measurement of them all
    if stats is not None:
        stats["measured"] = len(todo)
    if todo:
        _measure(
            todo, model, ckpt, out, profile_dir, target, lambda: _write_front(out / FRONT_CSV, rows)
        )
    keep = {r[k] for r in rows for k in ("onnx", "torch") if r.get(k)}
    for old in [*out.glob("*.onnx"), *out.glob("*.pt2")]:
        if old.name not in keep:  # a network no longer on the front (a longer search),
            # perhaps shipped already: moved aside, not deleted
            (out / SUPERSEDED).mkdir(exist_ok=True)
            old.replace(out / SUPERSEDED / old.name)
    if progress is not None:
        progress(total + 1, total + 1)
    constraints = [Constraint.parse(c) for c in cfg.constraints]
    for row in rows:  # the constraints again, on measured latency (see _set_latencies)
        _set_latencies(row)
        measured = {
            "accuracy": row["val_top1"],
            "latency": row["latency_ms"],
            "mflops": row["mflops"],
            "params": row["params"],
        }
        row["feasible"] = all(
            c.violation(np.array([measured[c.objective]]))[0] <= 0 for c in constraints
        )
        row["on_front"] = False
    ok = [r for r in rows if r["feasible"]]
    if ok:
        F = np.array([[-r["val_top1"], r["latency_ms"]] for r in ok], dtype=float)
        for row, keep in zip(ok, non_dominated_mask(F), strict=True):
            row["on_front"] = bool(keep)
    rows.sort(key=lambda r: r["latency_ms"])
    _write_front(out / FRONT_CSV, rows)
    return rows


FRONT_COLUMNS = [
    "arch_key",
    "on_front",
    "feasible",
    "val_top1",
    "test_top1",
    "predicted_latency_ms",
    "measured_latency_ms",
    "latency_ms",
    "latency_at_profile_ms",
    "latency_cv",
    "drift",
    "params",
    "mflops",
    "resolution",
    "onnx",
    "torch",
]


def _image_size(ckpt: dict[str, Any]) -> int:
    """The size of the checkpoint's dataset images: the deployed networks take them and
    resize to their resolution inside, so the profile measures them that way too."""
    return int(ckpt["data"]["shape"][-1])


def _measure(
    rows: list[dict[str, Any]],
    model: Any,
    ckpt: dict[str, Any],
    out: Path,
    profile_dir: Path,
    target: Target,
    on_group: Callable[[], None] | None = None,
) -> None:
    """Measure the rows' ONNX files on ``target``, interleaved, beside the profile's anchor
    subnet, with the profile's settings: the anchor's latency now over its latency during
    the profile (``drift``) says how much slower the device is now, so a gap to the
    prediction can be told from a busy device. In calls within the target's limits
    (:func:`_groups`), each with the anchor and its own drift; ``on_group()`` after each
    (the pipeline saves what was measured)."""
    import torch

    from hwnas.measure.profile import anchor_reference, export_subnet
    from hwnas.supernet.mbv3 import MBv3Supernet

    anchor = anchor_reference(profile_dir)
    tmp = out / ".anchor.onnx"
    head: list[Path] = []
    if anchor is not None:
        net = MBv3Supernet(model.space, model.num_classes, model.in_channels).eval()
        with torch.no_grad():
            vec = model.space.from_key(anchor[0])
            export_subnet(net, model.space, vec, tmp, 1, _image_size(ckpt))
        head = [tmp]
    settings = dataclasses.replace(target.measurer.settings, input_shape=None)
    target.connect(settings.intra_op_threads or 1)  # an agent's limits, for the groups
    try:
        for group in _groups(rows, out, head, target):
            found = target.measurer.measure(head + [out / r["onnx"] for r in group], settings)
            drift = found[0].latency_ms / anchor[1] if anchor is not None else None
            for row, m in zip(group, found[len(head) :], strict=True):
                row["measured_latency_ms"] = m.latency_ms
                row["latency_cv"] = m.stats.robust_cv
                row["drift"] = drift
                _set_latencies(row)
            if on_group is not None:
                on_group()
    finally:
        tmp.unlink(missing_ok=True)


def _set_latencies(row: dict[str, Any]) -> None:
    """A front row's latency as the predictor learnt it (``latency_at_profile_ms``:
    measured / drift, the device's load during the profile) and as the constraints and
    the choice of networks judge it (``latency_ms``): measured / drift only where the
    device is slower now than during the profile. Load only slows a device down, so the
    quieter of the two conditions is nearer the device's own latency; a profile measured
    under load (drift < 1) must not push a network measured under budget over it."""
    m, d = row["measured_latency_ms"], row.get("drift")
    row["latency_at_profile_ms"] = m / d if d else m
    row["latency_ms"] = m / max(d, 1.0) if d else m


def _groups(
    rows: list[dict[str, Any]], out: Path, head: list[Path], target: Target
) -> Iterator[list[dict[str, Any]]]:
    """The rows in measurement calls within the target's limits: at most
    ``max_models`` files and ``max_bytes`` bytes a call, the anchor (``head``) included."""
    from hwnas.measure.agent import AgentUploadTooLargeError

    base = sum(p.stat().st_size for p in head)
    group: list[dict[str, Any]] = []
    size = base
    for row in rows:
        n = (out / row["onnx"]).stat().st_size
        if target.max_bytes is not None and base + n > target.max_bytes:
            raise AgentUploadTooLargeError(
                f"{row['onnx']} ({n} bytes) with the anchor subnet ({base} bytes) is more than "
                f"the agent's upload limit of {target.max_bytes} bytes: raise its --max-mb"
            )
        full = len(head) + len(group) >= target.max_models
        if group and (full or (target.max_bytes is not None and size + n > target.max_bytes)):
            yield group
            group, size = [], base
        group.append(row)
        size += n
    if group:
        yield group


def _write_front(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, FRONT_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    tmp.replace(path)


def _read_front(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            if not r.get("measured_latency_ms"):
                continue
            row: dict[str, Any] = dict(r)
            for k in (
                "val_top1",
                "test_top1",
                "predicted_latency_ms",
                "measured_latency_ms",
                "latency_ms",
            ):
                row[k] = float(r[k])
            for k in ("latency_cv", "drift"):
                row[k] = float(r[k]) if r.get(k) else None
            row["torch"] = r.get("torch") or ""
            row["mflops"] = float(r["mflops"])
            row["params"] = int(r["params"])
            row["resolution"] = int(r["resolution"])
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------
# summary, plot and report
# ---------------------------------------------------------------------------------------
def _summary(
    cfg: PipelineConfig,
    out: Path,
    final: dict[str, Any],
    prof: dict[str, Any],
    fitted: Any,
    search: dict[str, Any],
    front: list[dict[str, Any]],
    timings: dict[str, float],
    target: Target,
) -> dict[str, Any]:
    from hwnas.predict.evaluate import rank_metrics

    meta = fitted.metadata
    pred = np.array([r["predicted_latency_ms"] for r in front], dtype=float)
    meas = np.array([r["measured_latency_ms"] for r in front], dtype=float)
    drifts = [r["drift"] for r in front if r.get("drift") is not None]
    drift = float(np.median(drifts)) if drifts else None
    agreement: dict[str, Any] = {"n": len(front), "drift": drift}
    if len(front):
        raw = rank_metrics(meas, pred)
        agreement["mape"] = raw["mape"]
        agreement["kendall_tau"] = raw["kendall_tau"] if len(front) > 1 else None
        if drift is not None:  # measured latency as the device was during the profile
            m2 = [r["latency_at_profile_ms"] for r in front]
            agreement["mape_drift_corrected"] = rank_metrics(m2, pred)["mape"]
    return {
        "out": str(out),
        "config": cfg.model_dump(),
        "device": {**_device(target, out), "label": target.label},
        "timings_s": timings,
        "supernet": {
            "checkpoint": str(out / "supernet" / "checkpoint.pt"),
            "final_epoch": final,
        },
        "profile": {
            k: prof.get(k)
            for k in ("stored", "failed", "unstable", "robust_cv_median", "wall_time_s")
        }
        | {"latency_range_ms": [prof.get("latency_ms_min"), prof.get("latency_ms_max")]},
        "predictor": {
            "file": str(out / "predictor" / "latency.joblib"),
            "model": meta.get("chosen", meta.get("model")),
            "n_train": meta.get("n_train"),
            "scores": meta.get("scores"),
        },
        "search": {
            k: search.get(k)
            for k in (
                "algorithm",
                "evaluations",
                "failed",
                "feasible",
                "hypervolume",
                "reference_point",
                "warm_start",
            )
        },
        "front_latency_agreement": agreement,
        "front": front,
        "shipped": [r for r in front if r.get("on_front")],
    }


def _device(target: Target, out: Path) -> dict[str, Any]:
    """What the summary records of the target: an agent not asked this time (a finished
    run, run again) keeps the description of the previous summary."""
    if target.device.get("host") is not None:
        return target.device
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        old = json.loads((out / SUMMARY_NAME).read_text())["device"]
        if old.get("url") == target.device.get("url"):
            target.device["host"] = old.get("host")
    return target.device


def plot_front(
    front: list[dict[str, Any]],
    search: dict[str, Any],
    path: Path,
    constraints: list[str] | None = None,
    device: str = "this machine",
) -> Path:
    """Validation accuracy vs latency on ``device`` (words for the axis): the search's
    front at predicted latency, moved to measured latency (:func:`_set_latencies`); the shipped
    networks filled, those over a latency budget marked, the budget drawn."""
    from hwnas.report.plots import _plt
    from hwnas.search.problem import Constraint

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in front:
        ax.annotate(
            "",
            xy=(r["latency_ms"], r["val_top1"]),
            xytext=(r["predicted_latency_ms"], r["val_top1"]),
            arrowprops={"arrowstyle": "->", "color": "0.6", "lw": 0.8},
        )
    ax.scatter(
        [r["predicted_latency_ms"] for r in front],
        [r["val_top1"] for r in front],
        facecolors="none",
        edgecolors="tab:blue",
        label="search front (predicted latency)",
    )
    feasible = [r for r in front if r.get("feasible", True)]
    measured = (
        ([r for r in feasible if r.get("on_front")], "measured, non-dominated (shipped)",
         {"color": "tab:orange"}),
        ([r for r in feasible if not r.get("on_front")], "measured, dominated",
         {"color": "0.5", "marker": "x"}),
        ([r for r in front if not r.get("feasible", True)], "measured, over the budget",
         {"color": "tab:red", "marker": "x"}),
    )  # fmt: skip
    for rows, label, style in measured:
        if rows:
            ax.scatter(
                [r["latency_ms"] for r in rows],
                [r["val_top1"] for r in rows],
                label=label,
                zorder=3,
                **style,
            )
    for text in constraints or []:
        c = Constraint.parse(text)
        if c.objective == "latency":
            ax.axvline(c.bound, color="tab:red", ls="--", lw=1, label=f"budget {c}")
    if not front:
        ax.text(0.5, 0.5, "no searched subnet satisfies the constraints", ha="center",
                transform=ax.transAxes)  # fmt: skip
    drifts = [r["drift"] for r in front if r.get("drift")]
    d = float(np.median(drifts)) if drifts else None
    ax.set_xlabel(
        f"latency on {device}\n(ms, ONNX Runtime"
        + (f"; measured / {d:.2f}, the device's drift since the profile)" if d and d > 1 else ")")
    )
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title(f"{search.get('algorithm')}: {search.get('evaluations')} subnets searched")
    ax.grid(alpha=0.3)
    if front:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _f(x: Any, nd: int = 3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def write_report(summary: dict[str, Any], path: Path) -> Path:
    """A Markdown report a person can read: what ran, how well, and what to ship."""
    s = summary
    c = s["config"]
    t = s["timings_s"]
    fe = s["supernet"]["final_epoch"]
    pr = s["predictor"]
    sc = pr.get("scores") or {}
    ag = s["front_latency_agreement"]
    reused = s["supernet"].get("reused_from")
    trained = f"Reused from `{reused}`, trained" if reused else "Trained"
    dataset = s["supernet"].get("dataset") or c["train"].get("dataset", TRAIN_DEFAULTS["dataset"])
    lines = [
        "# hwnas pipeline report",
        "",
        f"Run directory `{s['out']}`; its settings are in `{CONFIG_NAME}` (`hwnas pipeline "
        f"--config {CONFIG_NAME} --out DIR` repeats it). Total {t['total']:.0f} s: training "
        f"{t['train']:.0f} s, profiling {t['profile']:.0f} s, predictor {t['predictor']:.0f} "
        f"s, search {t['search']:.0f} s, front {t['front']:.0f} s.",
        "",
        "## 1. Supernet",
        "",
        f"{trained} on `{dataset}`; last epoch: largest subnet {_pct(fe.get('max_acc'))}, "
        f"smallest {_pct(fe.get('min_acc'))} validation top-1. Curves: `supernet/training.png`.",
        "",
        "## 2. Latency profile of the target device",
        "",
        f"Measured on {s['device']['label']}.",
        "",
        f"{s['profile']['stored']} subnets measured ({s['profile']['failed']} failed), "
        f"{_f(s['profile']['latency_range_ms'][0])}-{_f(s['profile']['latency_range_ms'][1])}"
        f" ms, {c['measure_threads']} thread(s). {_noise_words(s['profile'])}Data: "
        "`profile/`.",
        "",
        "## 3. Latency predictor",
        "",
        f"`{pr['model']}` (chosen by cross-validation where `auto`) on {pr['n_train']} "
        f"subnets. {_scores(sc)} Data: `predictor/latency.joblib` (+ `.json`).",
        "",
        "## 4. Search",
        "",
        f"`{s['search']['algorithm']}`, {s['search']['evaluations']} subnets evaluated "
        f"({s['search']['failed']} failed): validation accuracy measured, latency predicted"
        + (
            f"; constraints {', '.join(f'`{x}`' for x in c['constraints'])}"
            if c["constraints"]
            else ""
        )
        + (
            f"; the first {s['search']['warm_start']} from `{c['warm_start']}` (warm start)"
            if s["search"].get("warm_start") and c.get("warm_start")
            else ""
        )
        + ". Plots: `search/pareto.png`, `search/progress.png`.",
        "",
        "## 5. The front, tested and measured",
        "",
        f"On the {ag['n']} front subnets, predicted vs measured latency: MAPE "
        f"{_f(ag.get('mape'), 1)} %, Kendall tau {_f(ag.get('kendall_tau'))}. "
        + _drift_words(ag)
        + "Test accuracy is on the held-out test split, which neither training nor the "
        "search saw. *noise* = the measurement's robust CV. *judged* = the latency the "
        "constraints and the choice of networks to ship use: the measured one, divided by "
        "the drift only where the device is slower now than during the profile (load only "
        "slows a device down, so the quieter of the two is nearer its own latency). *at "
        "profile load* = measured / the drift, the latency the predictor learnt to predict. "
        "ship: `yes` = non-dominated on validation accuracy and judged latency (the "
        "networks to deploy); `over budget` = breaks a constraint that the predicted "
        f"latency met. Plot: `{FRONT_PLOT}`.",
        "",
        f"![front]({FRONT_PLOT})",
        "",
        "| ship | val top-1 % | test top-1 % | predicted ms | measured ms | noise | judged ms "
        "| at profile load ms | params | MFLOPs | files |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    if not s["front"]:
        cons = " and ".join(c["constraints"]) or "the constraints"
        lines[-6:] = [
            f"No searched subnet satisfies {cons} by the search's values, so nothing was "
            "tested or measured: loosen the constraint, or search more (a larger "
            "--evaluations).",
        ]
    for r in s["front"]:
        ship = "yes" if r.get("on_front") else "" if r.get("feasible", True) else "over budget"
        files = ", ".join(f"`front/{r[k]}`" for k in ("onnx", "torch") if r.get(k))
        cv = r.get("latency_cv")
        noise = "-" if cv is None else f"{100 * cv:.1f} %"
        at_profile = r.get("latency_at_profile_ms", r["latency_ms"])
        lines.append(
            f"| {ship} | {r['val_top1']:.2f} | {r['test_top1']:.2f} | "
            f"{r['predicted_latency_ms']:.3f} | {r['measured_latency_ms']:.3f} | {noise} | "
            f"{r['latency_ms']:.3f} | {at_profile:.3f} | {r['params']:,} | {r['mflops']:.2f} | "
            f"{files} |"
        )
    ties = _ties(s["shipped"])
    if ties:
        lines += ["", ties]
    lines.append("")
    path.write_text("\n".join(lines))
    return path


def _scores(sc: dict[str, Any]) -> str:
    """The predictor's scores in words: cross-validated, held out, FLOPs baseline."""
    parts = []
    for key, what in (("cv", "cross-validated"), ("test", "on held-out test rows")):
        if sc.get(key):
            parts.append(
                f"{what}: Kendall tau {_f(sc[key].get('kendall_tau'))}, MAPE "
                f"{_f(sc[key].get('mape'), 1)} %"
            )
    base = sc.get("flops_baseline") or sc.get("flops_baseline_all") or {}
    if base.get("kendall_tau") is not None:
        parts.append(f"ranking by FLOPs alone: tau {_f(base['kendall_tau'])}")
    return ("; ".join(parts) + ".") if parts else "No scores (too few subnets)."


def _drift_words(ag: dict[str, Any]) -> str:
    d = ag.get("drift")
    if d is None:
        return ""
    words = (
        f"The profile's anchor subnet, measured beside them, took {d:.2f}x its latency "
        f"during the profile (the device's load then and now); with that factor taken "
        f"out, MAPE {_f(ag.get('mape_drift_corrected'), 1)} %. "
    )
    warning = drift_warning(d)
    return words + (f"**{warning}** " if warning else "")


#: an anchor drift outside these bounds is worth a warning (a busy device, then or now)
DRIFT_OK = (0.8, 1.25)


def drift_warning(drift: float | None) -> str:
    """Words on a drift large enough to matter ('' for none): which way the load
    changed, and what the pipeline did about it."""
    if drift is None or not np.isfinite(drift) or drift <= 0:
        return ""
    if DRIFT_OK[0] <= drift <= DRIFT_OK[1]:
        return ""
    if drift < DRIFT_OK[0]:
        return (
            f"The device ran the anchor {1 / drift:.2f}x as fast as during the profile: the "
            "profile was measured under load (or its reference was a noisy measurement), so "
            "the predicted latencies run high; budgets and the shipped set use the measured "
            "latency. Profile again on an idle device (a new --out) for a truer predictor."
        )
    return (
        f"The device is {drift:.2f}x as slow as during the profile: the measured latencies "
        "are divided by that for budgets and the shipped set; measure the shipped files "
        "again when the device is idle ('hwnas measure FILE ...') to confirm them."
    )


#: a profile with more than this share of unstable measurements was measured on a noisy
#: device
NOISY_PROFILE = 0.25


def _noise_words(prof: dict[str, Any]) -> str:
    """The profile's measurement noise in words, with a warning where much of it was
    unstable (the predictor learnt from noisy latencies)."""
    stored, unstable = prof.get("stored") or 0, prof.get("unstable")
    if unstable is None or not stored:
        return ""
    cv = prof.get("robust_cv_median")
    words = f"{unstable} of {stored} flagged unstable" + (
        f" (median robust CV {100 * cv:.1f} %). " if cv is not None else ". "
    )
    if unstable > NOISY_PROFILE * stored:
        words += (
            "**A noisy device: the predictor learnt from latencies that moved between runs; "
            "profile again when the device is idle (a new --out) for a sharper one.** "
        )
    return words


def _ties(shipped: list[dict[str, Any]]) -> str:
    """A note on shipped networks whose latencies lie within each other's measurement
    noise ('' for none): between those, only accuracy tells them apart."""
    rows = sorted(shipped, key=lambda r: r["latency_ms"])
    pairs = []
    for a, b in itertools.pairwise(rows):
        noise = max(a.get("latency_cv") or 0.0, b.get("latency_cv") or 0.0)
        if noise and b["latency_ms"] - a["latency_ms"] <= noise * a["latency_ms"]:
            pairs.append(f"{a['latency_ms']:.3f} and {b['latency_ms']:.3f} ms")
    if not pairs:
        return ""
    return (
        "Within the measurement noise of each other: "
        + "; ".join(pairs)
        + ". Between these the latency gap is not measured reliably; choose by accuracy."
    )


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"
