"""Profile a search space on a device: measured latency of subnets spread over its size.

:func:`profile_space` samples subnets of an MBv3 supernet space stratified over their MACs
(the smallest and the largest subnet always included), extracts each from a randomly
initialised supernet (weights do not change latency), exports it to ONNX, computes its
cost (FLOPs, parameters, peak activation memory, ONNX size) and measures it with a
:class:`~hwnas.measure.measurer.LatencyMeasurer` in groups, with the interleaved protocol
of :mod:`hwnas.measure.latency`.

Drift anchor (on by default): one fixed subnet of the plan (the one nearest its median
MACs) is measured inside every group, interleaved with the others. A subnet's latency is
the median over rounds of (its round minimum / the anchor's round minimum of the same
round), times the anchor's latency in the first group. Groups measured minutes apart on
a shared machine drift by 10-30 %; the ratio cancels that drift, which is what ranks
subnets of different groups consistently. The raw statistic is kept as
``latency_raw_ms``; the anchor's own measurements form a run of kind
``"profile-anchor"`` in the same store.

Every measurement is committed to ``OUT/results.sqlite`` as an evaluation of a run of
kind ``"profile"`` the moment its group has been measured: objectives ``latency_ms``
(drift-corrected as above; without the anchor, the median over rounds of the per-round
minimum), ``latency_raw_ms`` (always the latter), ``flops``, ``macs``, ``params``,
``peak_activation_bytes`` and ``onnx_size_bytes``; ``extra`` holds the full statistics,
the settings, runtime, threads, host and model hash. The planned subnets are stored in the
run's config, so re-running with the same ``OUT`` measures only what is missing: a killed
profile loses nothing that was stored and repeats nothing. Re-running with a larger
``--samples`` grows the profile the same way.

Only errors of a subnet itself (it cannot be exported, loaded or run, it needs too much
memory or time: :data:`hwnas.measure.worker.MODEL_ERRORS`) are stored as that subnet's
failure. Any other error (an agent that cannot be reached, refuses the token, stays busy,
does not answer in time, refuses the settings) stops the profile with that error and
stores nothing for the group being measured; a resume measures it then. So does a group
in which every subnet runs out of the measurement's time or memory: the limit is too
low, not each subnet at fault. Failures stored
as plain ``HwnasError`` by older versions (such errors, stored by mistake) are measured
again on resume.

One profile at a time writes to ``OUT`` (:func:`hwnas.process.out_dir_lock`). The
subnets' ONNX files are written to ``OUT/.hwnas-profile-tmp``, emptied when a profile
starts and removed when it ends; SIGTERM ends a profile like Ctrl-C (the run marked
interrupted, the temporary files removed, exit status 143), and what a SIGKILL leaves
there the next run removes.
Groups are numbered on from the highest stored one, so the groups of a resumed profile
never share a number with the stored ones.

:func:`load_profile` reads a profile run back as arrays for predictors and lookup tables.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hwnas.config import changed_settings
from hwnas.errors import HwnasError, SetupError, reworded
from hwnas.measure.agent import AgentUploadTooLargeError
from hwnas.measure.latency import MeasureSettings
from hwnas.measure.worker import MODEL_ERRORS, MeasureOutOfMemoryError, MeasureTimeoutError
from hwnas.process import Terminated, out_dir_lock, sigterm_ends
from hwnas.store.sqlite import EvaluationRecord, ResultsStore

if TYPE_CHECKING:  # pragma: no cover
    from hwnas.measure.measurer import LatencyMeasurer
    from hwnas.space.mbv3_ramnas import MBv3SupernetSpace

PROFILE_KIND = "profile"
ANCHOR_KIND = "profile-anchor"
STORE_NAME = "results.sqlite"
#: the subnets' ONNX files while a profile runs (inside OUT, so a killed run leaks nothing)
TMP_NAME = ".hwnas-profile-tmp"  # ours alone: a user's .tmp there is left alone
#: objective names stored for every measured subnet
OBJECTIVES = (
    "latency_ms",
    "flops",
    "macs",
    "params",
    "peak_activation_bytes",
    "onnx_size_bytes",
    "latency_raw_ms",
)
#: classifier outputs per space (CIFAR-10 for the CIFAR variant, ImageNet otherwise)
DEFAULT_NUM_CLASSES = {"mbv3-cifar": 10, "mbv3-ramnas": 1000}
#: settings that must agree for a profile to be resumed (the rest may change)
_RESUME_KEYS = (
    "space",
    "samples",
    "seed",
    "num_classes",
    "in_channels",
    "input_size",
    "settings",
    "device",
    "anchor",
)

ProgressFn = Callable[[int, int], None]


def num_classes_for(space_name: str) -> int:
    return DEFAULT_NUM_CLASSES.get(space_name, 1000)


# ---------------------------------------------------------------------------------------
# sampling
# ---------------------------------------------------------------------------------------
def _candidate_pool(space: MBv3SupernetSpace, n: int, rng: np.random.Generator) -> np.ndarray:
    """Half uniform vectors, half 'size-biased' ones (every index ~ Binomial(card-1, u)
    with one u ~ U(0, 1) per vector), so both tails of the size range are populated."""
    card = space.cardinalities
    half = n // 2
    uniform = space.sample(half, rng)
    u = rng.uniform(size=(n - half, 1))
    biased = space.canonicalize(rng.binomial(card[None, :] - 1, u))
    return np.concatenate([uniform, biased])


def stratified_sample(
    space: MBv3SupernetSpace,
    n: int,
    seed: int = 0,
    num_classes: int | None = None,
    pool_size: int | None = None,
) -> np.ndarray:
    """``n`` distinct canonical vectors spread evenly over the space's MACs range.

    The smallest and the largest subnet come first; the other ``n - 2`` fill ``n - 2``
    equal-width MACs bins between them, one each (a random pool member of the bin, or the
    unused member nearest the bin's centre when the bin is empty), in a seeded random
    order. Deterministic for a given (space, n, seed).
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 2:
        raise HwnasError(f"the number of samples must be an integer >= 2, got {n!r}")
    n = int(n)
    nc = num_classes if num_classes is not None else num_classes_for(space.name)
    rng = np.random.default_rng(seed)
    lo, hi = space.smallest(), space.largest()
    m_lo, m_hi = space.macs(lo, num_classes=nc), space.macs(hi, num_classes=nc)
    chosen = [lo, hi]
    if n > 2:
        pool = _candidate_pool(space, pool_size or max(20 * n, 1000), rng)
        keys = space.keys(pool)
        seen = set(space.keys(np.stack(chosen)))
        keep = []
        for i, k in enumerate(keys):
            if k not in seen:
                seen.add(k)
                keep.append(i)
        pool = pool[keep]
        if len(pool) < n - 2:
            raise HwnasError(f"{space.name}: cannot find {n} distinct subnets to profile")
        macs = space.macs_batch(pool, num_classes=nc).astype(np.float64)
        edges = np.linspace(m_lo, m_hi, n - 1)
        used = np.zeros(len(pool), dtype=bool)
        picks = []
        for b in range(n - 2):
            left, right = edges[b], edges[b + 1]
            upper = macs <= right if b == n - 3 else macs < right
            inside = np.flatnonzero((macs >= left) & upper & ~used)
            if inside.size:
                j = int(rng.choice(inside))
            else:
                free = np.flatnonzero(~used)
                j = int(free[np.argmin(np.abs(macs[free] - (left + right) / 2))])
            used[j] = True
            picks.append(j)
        rest = pool[np.asarray(picks)]
        chosen += list(rest[rng.permutation(len(rest))])
    return np.stack(chosen).astype(np.int64)


# ---------------------------------------------------------------------------------------
# one subnet -> ONNX + cost
# ---------------------------------------------------------------------------------------
def _describe_measurer(measurer: Any) -> dict[str, Any]:
    from hwnas.measure.measurer import LocalMeasurer, RemoteMeasurer

    if isinstance(measurer, RemoteMeasurer):
        return {"measurer": "remote", "agent": getattr(measurer.client, "url", None)}
    if isinstance(measurer, LocalMeasurer):
        return {"measurer": "local"}
    return {"measurer": type(measurer).__name__}


def export_subnet(
    net: Any,
    space: MBv3SupernetSpace,
    vector: np.ndarray,
    path: Path,
    batch_size: int,
    input_size: int | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Extract ``vector`` from the supernet, export it to ``path`` and compute its cost.
    With ``input_size`` the subnet takes images of that size and resizes them to its
    resolution first, as a network deployed on such images does."""
    from hwnas.measure.cost import model_cost
    from hwnas.measure.export import export_onnx

    cfg = space.decode(vector)
    r = cfg["resolution"] if input_size is None else input_size
    sub = net.get_subnet(vector, include_resize=r != cfg["resolution"]).eval()
    shape = (net.in_channels, r, r)
    export_onnx(sub, shape, path, batch_size)
    cost = model_cost(sub, shape, batch_size, onnx_path=path)
    return path, cost


# ---------------------------------------------------------------------------------------
# the profile run
# ---------------------------------------------------------------------------------------
def extend_plan(
    space: MBv3SupernetSpace, plan: Sequence[str], samples: int, seed: int, num_classes: int
) -> list[str]:
    """``plan`` grown to ``samples`` subnets, its order kept: the new ones come from a
    stratified sample of ``samples``, each time the one whose MACs are farthest from
    everything planned, so a grown profile stays spread over the size range. (It is not
    the plan a fresh profile of ``samples`` would make: that one is drawn whole.)"""
    plan = list(plan)
    if samples <= len(plan):
        return plan
    planned = set(plan)
    drawn = space.keys(stratified_sample(space, samples, seed + 1, num_classes))
    pool = [k for k in dict.fromkeys(drawn) if k not in planned]

    def macs(keys: Sequence[str]) -> np.ndarray:
        return np.array(
            [space.macs(space.from_key(k), num_classes=num_classes) for k in keys], dtype=float
        )

    pool_macs = macs(pool)
    gap = np.abs(pool_macs[:, None] - macs(plan)[None, :]).min(axis=1)
    while len(plan) < samples and np.isfinite(gap).any():
        j = int(np.argmax(gap))
        plan.append(pool[j])
        gap = np.minimum(gap, np.abs(pool_macs - pool_macs[j]))
        gap[j] = -np.inf
    if len(plan) < samples:
        raise HwnasError(f"{space.name}: cannot find {samples} distinct subnets to profile")
    return plan


def _open_run(
    store: ResultsStore,
    config: dict[str, Any],
    seed: int,
    resume: bool,
    out_dir: Path,
    space: MBv3SupernetSpace,
) -> tuple[str, list[str]]:
    """(run id, planned keys): the existing profile run when compatible, else a new one.
    A larger ``samples`` than stored grows the stored plan (``extend_plan``); the
    subnets already measured are kept."""
    runs = store.runs(PROFILE_KIND)
    if not runs:
        return store.create_run(config, seed, kind=PROFILE_KIND), list(config["plan"])
    run = runs[-1]
    if not resume:
        raise HwnasError(
            f"{out_dir} already holds a profile run ({run['run_id']}); "
            "resume it or choose another output directory"
        )
    old = run["config"]
    if config["samples"] < old["samples"]:
        raise HwnasError(
            f"{out_dir} holds a profile of {old['samples']} subnets; --samples can grow it, "
            f"not shrink it (got {config['samples']})"
        )
    for key in _RESUME_KEYS:
        a, b = old.get(key), config.get(key)
        if a != b and key != "samples":
            if isinstance(a, dict) and isinstance(b, dict):
                what = changed_settings(a, b)
            else:
                what = changed_settings({key: a}, {key: b}).removeprefix(f"{key} ")
            noun = "other measurement settings" if key == "settings" else f"a different {key}"
            raise HwnasError(
                f"{out_dir} holds a profile with {noun}: {what}; "
                "use the same options to resume, or another output directory"
            )
    plan = list(old["plan"])
    if config["samples"] > old["samples"]:
        plan = extend_plan(space, plan, config["samples"], seed, config["num_classes"])
        store.update_run_config(run["run_id"], {**old, "samples": config["samples"], "plan": plan})
    store.mark_resumed(run["run_id"])
    return run["run_id"], plan


def _next_group(store: ResultsStore, run_id: str, recs: Sequence[EvaluationRecord]) -> int:
    """The first group number of a new session: one past the highest stored one (of the
    profile's subnets and of its anchor's measurements), 0 for a new profile."""
    anchor_recs = [
        rec
        for run in store.runs(ANCHOR_KIND)
        if run["config"].get("profile_run") == run_id
        for rec in store.evaluations(run["run_id"])
    ]
    groups = [(r.extra or {}).get("group") for r in [*recs, *anchor_recs]]
    stored = [int(g) for g in groups if isinstance(g, int) and not isinstance(g, bool)]
    return max(stored) + 1 if stored else 0


class ProfileTerminated(Terminated):
    """SIGTERM during :func:`profile_space`: the profile ends as on Ctrl-C (run marked
    interrupted, temporary files removed) and the process exits with status 143."""


def anchor_key(space: MBv3SupernetSpace, plan: Sequence[str], num_classes: int) -> str:
    """The drift anchor of a plan: its subnet nearest the plan's median MACs."""
    macs = np.array([space.macs(space.from_key(k), num_classes=num_classes) for k in plan])
    return plan[int(np.argmin(np.abs(macs - np.median(macs))))]


@dataclass(frozen=True)
class AnchorCorrection:
    """Per-round latency ratios to the anchor measured in the same group."""

    reference_ms: float  # the anchor's latency in the profile's first group
    group_ms: float  # the anchor's latency in this group

    def apply(self, m: Any, anchor: Any) -> dict[str, float]:
        """Drift-corrected latency of measurement ``m`` and the spread of its ratios."""
        mine = np.asarray(m.stats.round_min_ms, dtype=np.float64)
        ref = np.asarray(anchor.stats.round_min_ms, dtype=np.float64)
        n = min(len(mine), len(ref))
        if n == 0:  # no per-round data (should not happen): fall back to group ratio
            ratio = float(m.latency_ms) / self.group_ms
            return {"latency_ms": ratio * self.reference_ms, "ratio": ratio, "ratio_cv": 0.0}
        ratios = mine[:n] / ref[:n]
        ratio = float(np.median(ratios))
        q1, q3 = np.percentile(ratios, [25, 75])
        return {
            "latency_ms": ratio * self.reference_ms,
            "ratio": ratio,
            "ratio_cv": float((q3 - q1) / 1.349 / ratio) if ratio > 0 else 0.0,
        }


def _record(
    m: Any,
    cost: dict[str, Any],
    cfg: dict[str, Any],
    prep_s: float,
    group: int,
    corrected: dict[str, float] | None = None,
) -> tuple[dict[str, float], dict[str, Any]]:
    objectives = {
        "latency_ms": float(corrected["latency_ms"] if corrected else m.latency_ms),
        "latency_raw_ms": float(m.latency_ms),
        "flops": float(cost["flops"]),
        "macs": float(cost["macs"]),
        "params": float(cost["params"]),
        "peak_activation_bytes": float(cost["peak_activation_bytes"]),
        "onnx_size_bytes": float(cost["onnx_size_bytes"] or 0),
    }
    extra = m.to_dict()
    extra.pop("latency_ms", None)
    extra["cost"] = cost
    extra["resolution"] = cfg["resolution"]
    extra["prepare_s"] = prep_s
    extra["group"] = group
    if corrected:
        extra["anchor"] = {k: v for k, v in corrected.items() if k != "latency_ms"}
    return objectives, extra


def profile_space(
    space_name: str,
    samples: int,
    out_dir: str | Path,
    settings: MeasureSettings | None = None,
    measurer: LatencyMeasurer | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
    resume: bool = True,
    group_size: int = 8,
    num_classes: int | None = None,
    anchor: bool = True,
    in_channels: int = 3,
    input_size: int | None = None,
) -> dict[str, Any]:
    """Measure ``samples`` subnets of ``space_name`` and store them in ``out_dir``.

    ``measurer`` defaults to a :class:`~hwnas.measure.measurer.LocalMeasurer` with
    ``settings``; pass a :class:`~hwnas.measure.measurer.RemoteMeasurer` to measure on a
    device agent. Subnets are measured ``group_size`` at a time, interleaved; each group is
    committed as soon as it is measured. With ``resume`` (default) an existing profile in
    ``out_dir`` with the same space, seed, settings and kind of measurer is continued,
    and a larger ``samples`` than stored grows it (the measured subnets are kept, the
    new ones fill the largest gaps of its MACs range); ``progress(done, total)`` is
    called after each stored subnet.
    ``num_classes`` and ``in_channels`` shape the subnets' head and stem as the
    deployed networks will have them (a supernet trained on 1-channel digits: 1);
    ``input_size`` makes each subnet take images of that size and resize them to its
    resolution inside (the deployed network of a dataset whose images have that size;
    default: inputs at the subnet's resolution).
    ``anchor`` (default) corrects drift between groups with an anchor subnet measured
    in every group (see the module docstring); ``latency_raw_ms`` keeps the raw value.

    Returns a summary: run id, counts (``stored``, ``measured`` now, ``resumed_from``,
    ``failed``), latency range, median robust CV, unstable count and time per subnet.
    """
    import torch

    from hwnas.measure.measurer import LocalMeasurer
    from hwnas.space.mbv3_ramnas import space_for
    from hwnas.supernet.mbv3 import MBv3Supernet

    settings = settings or MeasureSettings()
    if settings.runtime != "onnxruntime":
        raise HwnasError(
            f"profile exports subnets to ONNX and measures them with onnxruntime, "
            f"not {settings.runtime!r}"
        )
    if settings.input_shape is not None:
        settings = dataclasses.replace(settings, input_shape=None)  # each subnet its own
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise HwnasError(f"group size must be a positive integer, got {group_size!r}")
    space = space_for(space_name)
    nc = int(num_classes) if num_classes is not None else num_classes_for(space.name)
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise HwnasError(f"in_channels must be an integer >= 1, got {in_channels!r}")
    if input_size is not None and (
        isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1
    ):
        raise HwnasError(f"input_size must be an integer >= 1, got {input_size!r}")
    measurer = measurer if measurer is not None else LocalMeasurer(settings)
    out_dir = Path(out_dir)  # out_dir_lock refuses a file there, and makes the folder

    t_start = time.perf_counter()
    tmp = out_dir / TMP_NAME
    with (
        out_dir_lock(out_dir, "profile"),
        sigterm_ends(ProfileTerminated),  # SIGTERM ends it as Ctrl-C does
        ResultsStore(out_dir / STORE_NAME) as store,
    ):
        others = {r["kind"] for r in store.runs()} - {PROFILE_KIND, ANCHOR_KIND}
        if others:  # e.g. a search's folder: its summary.json would be overwritten
            raise HwnasError(
                f"{out_dir} holds a {', '.join(sorted(others))} run in {STORE_NAME}, not a "
                "profile; profile into another --out"
            )
        shutil.rmtree(tmp, ignore_errors=True)  # what a killed run left
        has_run = bool(store.runs(PROFILE_KIND))
        plan_keys = (
            [] if has_run else space.keys(stratified_sample(space, samples, seed, num_classes=nc))
        )
        config = {
            "space": space.name,
            "samples": int(samples),
            "seed": int(seed),
            "num_classes": nc,
            "settings": settings.to_dict(),
            "device": _describe_measurer(measurer),
            "group_size": group_size,
            "plan": plan_keys,
            "anchor": anchor_key(space, plan_keys, nc) if anchor and plan_keys else None,
        }
        if in_channels != 3:  # stored only when not the default: older runs still resume
            config["in_channels"] = in_channels
        if input_size is not None:
            config["input_size"] = input_size
        if has_run and anchor:  # the anchor follows from the stored plan
            old_plan = store.runs(PROFILE_KIND)[-1]["config"]["plan"]
            config["anchor"] = anchor_key(space, old_plan, nc) if old_plan else None
        run_id, plan = _open_run(store, config, seed, resume, out_dir, space)
        recs = store.evaluations(run_id)
        retry = {r.arch_key for r in recs if _retryable(r)}
        done = {r.arch_key for r in recs} - retry
        resumed_from = len(done)
        todo = [k for k in plan if k not in done]
        total = len(plan)
        if progress is not None:
            progress(len(done), total)
        measured = 0
        anchors: _AnchorLog | None = None
        first_group = _next_group(store, run_id, recs)
        try:
            if todo:
                net = MBv3Supernet(space, num_classes=nc, in_channels=in_channels).eval()
                tmp.mkdir(exist_ok=True)
                with torch.no_grad():
                    if config["anchor"]:
                        anchors = _AnchorLog(
                            store, run_id, space, net, config["anchor"], settings, tmp, input_size
                        )
                    for g0 in range(0, len(todo), group_size):
                        keys = todo[g0 : g0 + group_size]
                        measured += _profile_group(
                            store,
                            run_id,
                            space,
                            net,
                            keys,
                            settings,
                            measurer,
                            tmp,
                            group=first_group + g0 // group_size,
                            anchors=anchors,
                            replace=retry,
                            input_size=input_size,
                        )
                        if progress is not None:
                            progress(resumed_from + measured, total)
        except (KeyboardInterrupt, ProfileTerminated):
            _finish(store, run_id, out_dir, resumed_from, measured, t_start, "interrupted")
            raise
        except HwnasError as exc:
            summary = _finish(store, run_id, out_dir, resumed_from, measured, t_start, "incomplete")
            fix = "fix that, then " if isinstance(exc, SetupError) else ""
            raise reworded(
                exc,
                f"{exc}; profile stopped with {summary['stored']} of {total} subnets stored: "
                f"{fix}run the same command again to continue",
            ) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        summary = _finish(store, run_id, out_dir, resumed_from, measured, t_start, None, total)
    return summary


def _finish(
    store: ResultsStore,
    run_id: str,
    out_dir: Path,
    resumed_from: int,
    measured: int,
    t_start: float,
    status: str | None,
    total: int | None = None,
) -> dict[str, Any]:
    """Summarize the profile run, mark it (and its anchor runs) ``status`` (default:
    finished when all ``total`` subnets are stored, else incomplete), write the CSV and
    summary.json; returns the summary."""
    summary = summarize_profile(store, run_id)
    wall = time.perf_counter() - t_start
    # over every call of the profile: a resumed one (with nothing left, a pipeline run
    # again) adds its own time to the earlier calls', not overwrites it
    before = next(
        (r.get("summary") or {} for r in store.runs(PROFILE_KIND) if r["run_id"] == run_id), {}
    )
    earlier = before.get("wall_time_s")  # an earlier call's, stored or not
    summary.update(
        out_dir=str(out_dir),
        resumed_from=resumed_from,
        measured=measured,
        wall_time_s=wall + (float(earlier) if isinstance(earlier, int | float) else 0.0),
    )
    if measured:
        summary["seconds_per_subnet"] = wall / measured
    elif "seconds_per_subnet" in before:
        summary["seconds_per_subnet"] = before["seconds_per_subnet"]
    if status is None:
        pending = any(_retryable(r) for r in store.evaluations(run_id))
        status = "finished" if summary["stored"] == total and not pending else "incomplete"
    store.finish_run(run_id, summary, status=status)
    for run in store.runs(ANCHOR_KIND):
        if run["config"].get("profile_run") == run_id and run["status"] == "running":
            recs = store.evaluations(run["run_id"])
            anchor = {"groups": len(recs), "profile_status": status}
            if recs and recs[0].objectives:
                anchor["reference_ms"] = recs[0].objectives.get("latency_ms")
            store.finish_run(run["run_id"], anchor, status=status)
    # each written whole or not at all; one that cannot be written is said, not hidden
    # (the measurements are safe in the store: the next run writes it again)
    for name, write in (
        ("profile.csv", lambda p: store.export_csv(run_id, p)),
        ("summary.json", lambda p: p.write_text(json.dumps(summary, indent=2) + "\n")),
    ):
        tmp = out_dir / f".{name}.tmp"
        try:
            write(tmp)
            os.replace(tmp, out_dir / name)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            warnings.warn(
                f"could not write {out_dir / name} ({exc.strerror or exc}); the measurements "
                f"are in {out_dir / STORE_NAME}, and the next profile run writes it again",
                stacklevel=2,
            )
    return summary


def _retryable(rec: EvaluationRecord) -> bool:
    """A stored failure that was no fault of the subnet: measured again on resume.

    Subnet errors are stored under their own class (``ModelRunError: ...``, an export's
    ``RuntimeError: ...``); a plain ``HwnasError`` was an agent or settings problem that
    versions before the fix stored as the subnet's failure."""
    return not rec.ok and (rec.error or "").startswith("HwnasError: ")


def _profile_group(
    store: ResultsStore,
    run_id: str,
    space: MBv3SupernetSpace,
    net: Any,
    keys: Sequence[str],
    settings: MeasureSettings,
    measurer: LatencyMeasurer,
    tmp: Path,
    group: int,
    anchors: _AnchorLog | None = None,
    replace: set[str] | frozenset[str] = frozenset(),
    input_size: int | None = None,
) -> int:
    """Export, cost and measure one group; store every result. Returns how many stored.

    With ``anchors`` the anchor subnet is measured first in the same interleaved call
    and every latency is corrected by the per-round ratio to it. A subnet that fails
    (:data:`~hwnas.measure.worker.MODEL_ERRORS`) is stored as failed; any other error
    (agent unreachable, wrong token, busy, no reply in time, bad settings) is raised
    before anything of the group is stored. Keys in ``replace`` hold a stored failure
    that the new result replaces."""
    ready: list[tuple[str, np.ndarray, Path, dict[str, Any], float]] = []
    stored = 0
    for i, key in enumerate(keys):
        vec = space.from_key(key)
        t0 = time.perf_counter()
        try:
            path, cost = export_subnet(
                net, space, vec, tmp / f"subnet{i}.onnx", settings.batch_size, input_size
            )
        except Exception as exc:  # a subnet that cannot be exported is recorded as failed
            wall = time.perf_counter() - t0
            _store_failure(store, run_id, space, key, vec, exc, wall, key in replace)
            stored += 1
            continue
        ready.append((key, vec, path, cost, time.perf_counter() - t0))
    if not ready:
        return stored
    t0 = time.perf_counter()
    head = [anchors.path] if anchors is not None else []
    # per model: its measurement (or the error) and the anchor measured beside it
    found: list[Any]
    beside: list[Any]
    try:
        got = list(measurer.measure(head + [r[2] for r in ready], settings))
        found, beside = got[len(head) :], [got[0] if head else None] * len(ready)
    except (*MODEL_ERRORS, AgentUploadTooLargeError):
        # isolate the failing model(s): measure one by one (with the anchor), record each;
        # an upload too large for the agent even alone, or any error that is not the
        # model's, stops the profile (raised from here, nothing of the group stored)
        found, beside = [], []
        for r in ready:
            try:
                got = measurer.measure([*head, r[2]], settings)
                found.append(got[-1])
                beside.append(got[0] if head else None)
            except MODEL_ERRORS as exc:
                found.append(exc)
                beside.append(None)
        limits = (MeasureTimeoutError, MeasureOutOfMemoryError)
        if len(found) > 1 and all(isinstance(m, limits) for m in found):
            # every subnet of the group ran out of time or memory: the limit is too low
            # for these networks (or the machine too busy), not a fault of each one
            raise HwnasError(
                f"every subnet of a group of {len(found)} hit the measurement's limit "
                f"({found[0]}); raise the limit (an agent's --timeout-s / --memory-mb) "
                "and run the same command again"
            ) from None
    share = (time.perf_counter() - t0) / len(ready)
    corrections: dict[int, AnchorCorrection] = {}
    if anchors is not None:
        for a in beside:
            if a is not None and id(a) not in corrections:
                corrections[id(a)] = anchors.log(a, group)
    for (key, vec, path, cost, prep_s), m, a in zip(ready, found, beside, strict=True):
        if isinstance(m, Exception):
            _store_failure(store, run_id, space, key, vec, m, prep_s + share, key in replace)
        else:
            cfg = space.decode(vec)
            corrected = corrections[id(a)].apply(m, a) if a is not None else None
            objectives, extra = _record(m, cost, cfg, prep_s, group, corrected)
            _store_row(
                store,
                run_id,
                key,
                vec,
                objectives,
                arch=cfg,
                wall=prep_s + share,
                extra=extra,
                replace=key in replace,
            )
        stored += 1
        with contextlib.suppress(OSError):
            path.unlink()
    return stored


def anchor_reference(run_dir: str | Path) -> tuple[str, float] | None:
    """The anchor subnet (arch key) of the profile in ``run_dir`` and its reference
    latency (ms, its first group's); None for a profile without an anchor. Measuring the
    anchor again beside other models says how much faster or slower the machine is now
    than during the profile."""
    with ResultsStore(find_store(run_dir), readonly=True) as store:
        runs = store.runs(PROFILE_KIND)
        if not runs or not runs[-1]["config"].get("anchor"):
            return None
        prof = runs[-1]
        anchor = [
            r for r in store.runs(ANCHOR_KIND) if r["config"].get("profile_run") == prof["run_id"]
        ]
        if not anchor:
            return None
        done = [r for r in store.evaluations(anchor[-1]["run_id"]) if r.ok and r.objectives]
        if not done:
            return None
        return str(prof["config"]["anchor"]), float(done[0].objectives["latency_ms"])


class _AnchorLog:
    """The anchor subnet of a profile: its ONNX file, its measurement per group (a run of
    kind ``profile-anchor``) and the reference latency (its first group's)."""

    def __init__(
        self,
        store: ResultsStore,
        profile_run: str,
        space: MBv3SupernetSpace,
        net: Any,
        key: str,
        settings: MeasureSettings,
        tmp: Path,
        input_size: int | None = None,
    ) -> None:
        self.store, self.key = store, key
        self.vector = space.from_key(key)
        self.path, _ = export_subnet(
            net, space, self.vector, tmp / "anchor.onnx", settings.batch_size, input_size
        )
        runs = [r for r in store.runs(ANCHOR_KIND) if r["config"].get("profile_run") == profile_run]
        if runs:
            self.run_id = runs[-1]["run_id"]
            store.mark_resumed(self.run_id)
        else:
            config = {"profile_run": profile_run, "anchor": key}
            self.run_id = store.create_run(config, None, kind=ANCHOR_KIND)
        recs = store.evaluations(self.run_id)
        done = [r for r in recs if r.ok and r.objectives]
        self.count = len(recs)
        self.reference_ms = float(done[0].objectives["latency_ms"]) if done else None

    def log(self, m: Any, group: int) -> AnchorCorrection:
        """Store the anchor's measurement in ``group``; the correction it implies."""
        if self.reference_ms is None:
            self.reference_ms = float(m.latency_ms)
        extra = m.to_dict()
        extra.pop("latency_ms", None)
        extra["group"] = group
        self.store.add_evaluation(
            self.run_id,
            f"group-{self.count}",
            self.vector.tolist(),
            {"latency_ms": float(m.latency_ms)},
            arch=self.key,
            source="anchor",
            extra=extra,
        )
        self.count += 1
        return AnchorCorrection(self.reference_ms, float(m.latency_ms))


def _store_failure(
    store: ResultsStore,
    run_id: str,
    space: MBv3SupernetSpace,
    key: str,
    vec: np.ndarray,
    exc: BaseException,
    wall: float,
    replace: bool = False,
) -> None:
    _store_row(
        store,
        run_id,
        key,
        vec,
        None,
        arch=space.decode(vec),
        wall=wall,
        status="failed",
        error=f"{type(exc).__name__}: {exc}",
        replace=replace,
    )


def _store_row(
    store: ResultsStore,
    run_id: str,
    key: str,
    vec: np.ndarray,
    objectives: dict[str, float] | None,
    *,
    arch: Any,
    wall: float,
    status: str = "ok",
    error: str | None = None,
    extra: dict[str, Any] | None = None,
    replace: bool = False,
) -> None:
    """Store one subnet's result; with ``replace``, overwrite its stored failure in place
    (same sequence number), committed at once."""
    store.add_evaluation(
        run_id,
        key,
        vec.tolist(),
        objectives,
        arch=arch,
        status=status,
        error=error,
        wall_time_s=wall,
        source="measured",
        extra=extra,
        replace=replace,
    )


def summarize_profile(store: ResultsStore, run_id: str) -> dict[str, Any]:
    """Counts and latency statistics of a stored profile run."""
    recs = store.evaluations(run_id)
    ok = [r for r in recs if r.ok and r.objectives]
    lat = np.array([r.objectives["latency_ms"] for r in ok], dtype=np.float64)
    cvs = np.array([(r.extra or {}).get("stats", {}).get("robust_cv", np.nan) for r in ok])
    unstable = sum(bool((r.extra or {}).get("stats", {}).get("unstable")) for r in ok)
    out: dict[str, Any] = {"run_id": run_id, "stored": len(recs), "ok": len(ok)}
    out["failed"] = len(recs) - len(ok)
    out["unstable"] = int(unstable)
    if len(ok):
        out["latency_ms_min"] = float(lat.min())
        out["latency_ms_median"] = float(np.median(lat))
        out["latency_ms_max"] = float(lat.max())
        out["robust_cv_median"] = float(np.nanmedian(cvs)) if np.isfinite(cvs).any() else None
    return out


# ---------------------------------------------------------------------------------------
# reading a profile back
# ---------------------------------------------------------------------------------------
@dataclass
class ProfileData:
    """The successful measurements of one profile run, as arrays."""

    space_name: str
    run: dict[str, Any]
    records: list[EvaluationRecord]
    vectors: np.ndarray
    objectives: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def host(self) -> dict[str, Any]:
        return dict((self.records[0].extra or {}).get("host") or {}) if self.records else {}

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.run["config"].get("settings") or {})

    def target(self, name: str) -> np.ndarray:
        """Values of an objective; ``latency`` is an alias of ``latency_ms``."""
        key = resolve_target(name, self.objectives)
        return self.objectives[key]


def resolve_target(name: str, available: Sequence[str] | dict[str, Any]) -> str:
    names = list(available)
    for cand in (name, f"{name}_ms", f"{name}_bytes"):
        if cand in names:
            return cand
    raise HwnasError(f"unknown target '{name}' (stored: {', '.join(names) or 'none'})")


def find_store(run_dir: str | Path) -> Path:
    """``DIR/results.sqlite`` (or the file itself); error when missing."""
    p = Path(run_dir)
    path = p if p.is_file() else p / STORE_NAME
    if not path.is_file():
        raise HwnasError(f"no results store at {path} (run 'hwnas profile --out {p}' first)")
    return path


def load_profile(run_dir: str | Path, run_id: str | None = None) -> ProfileData:
    """Read a profile run (the latest in ``run_dir`` unless ``run_id``): ok rows only."""
    with ResultsStore(find_store(run_dir), readonly=True) as store:
        runs = store.runs(PROFILE_KIND)
        if not runs:
            raise HwnasError(f"{run_dir} holds no profile run")
        if run_id is None:
            run = runs[-1]
        else:
            match = [r for r in runs if r["run_id"] == run_id]
            if not match:
                raise HwnasError(f"{run_dir} holds no profile run '{run_id}'")
            run = match[0]
        recs = [r for r in store.evaluations(run["run_id"]) if r.ok and r.objectives]
    names = [n for n in OBJECTIVES if recs and all(n in (r.objectives or {}) for r in recs)]
    vectors = (
        np.asarray([r.vector for r in recs], dtype=np.int64)
        if recs
        else np.zeros((0, 0), dtype=np.int64)
    )
    objectives = {
        n: np.asarray([(r.objectives or {})[n] for r in recs], dtype=np.float64) for n in names
    }
    return ProfileData(run["config"]["space"], run, recs, vectors, objectives)
