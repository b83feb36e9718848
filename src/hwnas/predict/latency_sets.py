"""Published measured latency sets as predictor data: FBNet and OFA-MobileNetV3 subnets
measured by HELP, and HAT's SubTransformers, each as (features, latency in ms) per device.

They feed ``hwnas predictors evaluate --benchmark NAME`` (and
:func:`hwnas.predict.evaluate.sample_efficiency`) beside the registered benchmarks, so a
predictor's sample efficiency can be judged on real measurements of spaces that have no
accuracy table. Space-backed sets give the space's cost features and feature views, as
LINAS fits them; HAT, which has no hwnas space, gives its 10 numeric columns.
"""

from __future__ import annotations

import functools
import os
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import NamedTuple

import numpy as np

from hwnas.config import data_file
from hwnas.errors import HwnasError
from hwnas.registry import Registry
from hwnas.space.base import SearchSpace
from hwnas.space.fbnet import FBNET_LAYERS, FBNET_OPS, FBNetSpace
from hwnas.space.ofa_mbv3 import (
    N_BLOCKS,
    N_STAGES,
    OFA_D,
    OFA_E,
    OFA_KS,
    OFA_R,
    OFAMobileNetV3Space,
)

DataDir = str | os.PathLike[str] | None

FBNET_FILE = "fbnet/fbnet_latency_help.npz"
OFA_FILE = "ofa/ofa_mbv3_latency_help.npz"
# HAT device name -> file: one device per published latency CSV, '<task>_<device>'
HAT_FILES: dict[str, str] = {
    "iwslt14deen_titanxp": "hat/iwslt14deen_gpu_titanxp_all.csv",
    "wmt14ende_raspberrypi": "hat/wmt14ende_cpu_raspberrypi_all.csv",
    "wmt14ende_titanxp": "hat/wmt14ende_gpu_titanxp_all.csv",
    "wmt14ende_xeon": "hat/wmt14ende_cpu_xeon_all.csv",
    "wmt19ende_titanxp": "hat/wmt19ende_gpu_titanxp_all.csv",
}
# the features HAT's own latency predictor fits on (utils.get_config_features), in order
HAT_FEATURES: tuple[str, ...] = (
    "encoder_embed_dim",
    "encoder_layer_num",
    "encoder_ffn_embed_dim_avg",
    "encoder_self_attention_heads_avg",
    "decoder_embed_dim",
    "decoder_layer_num",
    "decoder_ffn_embed_dim_avg",
    "decoder_self_attention_heads_avg",
    "decoder_ende_attention_heads_avg",
    "decoder_arbitrary_ende_attn_avg",
)
HAT_TARGET: tuple[str, str] = ("latency_mean_encoder", "latency_mean_decoder")


class LatencySetData(NamedTuple):
    """One device's data: features ``X`` (n, d), latency ``y`` (n,) in ms, and the feature
    views a cost predictor chooses among by CV (``None``: all columns only)."""

    X: np.ndarray
    y: np.ndarray
    views: list[np.ndarray | None] | None


class LatencySet(ABC):
    """A named table of architectures with latency measured on several devices."""

    name: str
    description: str

    @abstractmethod
    def devices(self, data_dir: DataDir = None) -> list[str]:
        """The devices with measured latency, in the file's order."""

    @abstractmethod
    def load(self, device: str, data_dir: DataDir = None) -> LatencySetData:
        """Features, latency (ms) and feature views for one device."""

    def check_device(self, device: str, data_dir: DataDir = None) -> list[str]:
        """Refuse an unknown device with the known ones listed; returns the device list."""
        known = self.devices(data_dir)
        if device not in known:
            raise HwnasError(f"{self.name}: unknown device '{device}' (known: {', '.join(known)})")
        return known


def _corrupt(what: str, path: Path, reason: str) -> HwnasError:
    """The one error a malformed data file gives: which file and what is wrong."""
    return HwnasError(f"{what} '{path}' is corrupt: {reason}")


@functools.lru_cache(maxsize=8)
def _load_npz(path: Path, what: str, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Read the named arrays of an ``.npz`` once per file (no pickles), checking that the
    latency matrix is finite, positive and matches the device list."""
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in (*keys, "devices", "latency_ms") if k not in f.files]
            if missing:
                raise _corrupt(what, path, f"missing arrays {missing}")
            arrays = {k: np.asarray(f[k]) for k in (*keys, "devices", "latency_ms")}
    except HwnasError:
        raise
    except Exception as exc:  # zipfile / numpy raise many types for a corrupt file
        raise HwnasError(f"cannot read {what} '{path}': {exc}") from None
    lat, devices = arrays["latency_ms"], arrays["devices"]
    if lat.ndim != 2 or devices.ndim != 1 or lat.shape[1] != devices.shape[0]:
        raise _corrupt(what, path, f"latency_ms {lat.shape} does not match {devices.size} devices")
    if not np.issubdtype(lat.dtype, np.number) or not (np.isfinite(lat) & (lat > 0)).all():
        raise _corrupt(what, path, "latency_ms holds non-finite or non-positive values")
    return arrays


class _SpaceLatencySet(LatencySet):
    """A set whose architectures are vectors of an hwnas search space: X is the space's
    cost features, as LINAS fits a latency predictor on them."""

    file: str
    space: SearchSpace

    @abstractmethod
    def _arrays(self, data_dir: DataDir) -> dict[str, np.ndarray]:
        """The file's arrays (cached)."""

    @abstractmethod
    def encoded(self, data_dir: DataDir = None) -> tuple[np.ndarray, np.ndarray]:
        """(canonical vectors, file row of each): the rows the space can encode."""

    def devices(self, data_dir: DataDir = None) -> list[str]:
        return [str(d) for d in self._arrays(data_dir)["devices"]]

    def load(self, device: str, data_dir: DataDir = None) -> LatencySetData:
        known = self.check_device(device, data_dir)
        vectors, rows = self.encoded(data_dir)
        y = self._arrays(data_dir)["latency_ms"][rows, known.index(device)].astype(np.float64)
        return LatencySetData(
            self.space.predictor_features(vectors, "cost"), y, self.space.predictor_views("cost")
        )


class FBNetLatencySet(_SpaceLatencySet):
    """HELP's 5,000 FBNet architectures on 27 devices, in the ``fbnet`` space."""

    name = "fbnet"
    description = "FBNet: 5,000 architectures measured on 27 devices (HELP), fbnet space"
    file = FBNET_FILE

    def __init__(self) -> None:
        self.space = FBNetSpace()

    def _arrays(self, data_dir: DataDir) -> dict[str, np.ndarray]:
        return _load_npz(
            data_file(self.file, data_dir), "FBNet latency file", ("op_idx", "op_names")
        )

    def encoded(self, data_dir: DataDir = None) -> tuple[np.ndarray, np.ndarray]:
        """Every row: the file's op indices mapped onto the space's op order by name."""
        a = self._arrays(data_dir)
        path = data_file(self.file, data_dir)
        op_idx, names = a["op_idx"], [str(n) for n in a["op_names"]]
        n = a["latency_ms"].shape[0]
        if op_idx.shape != (n, FBNET_LAYERS) or not np.issubdtype(op_idx.dtype, np.integer):
            raise _corrupt("FBNet latency file", path, f"op_idx has shape {op_idx.shape}")
        unknown = sorted(set(names) - set(FBNET_OPS))
        if unknown:
            raise _corrupt("FBNet latency file", path, f"unknown ops {unknown}")
        if op_idx.min() < 0 or op_idx.max() >= len(names):
            raise _corrupt("FBNet latency file", path, "op_idx outside op_names")
        to_space = np.array([FBNET_OPS.index(op) for op in names], dtype=np.int64)
        return to_space[op_idx.astype(np.int64)], np.arange(n)


class OFAMobileNetV3LatencySet(_SpaceLatencySet):
    """HELP's OFA-MobileNetV3 subnets on 12 GPU settings, in the ``ofa-mbv3`` space."""

    name = "ofa-mbv3-gpu"
    description = (
        "OFA-MobileNetV3: HELP's subnets on 12 GPU settings (suffix = batch size), "
        "ofa-mbv3 space; only the ~1,000 of 5,000 at its resolutions 160..224 step 16"
    )
    file = OFA_FILE

    def __init__(self) -> None:
        self.space = OFAMobileNetV3Space()

    def _arrays(self, data_dir: DataDir) -> dict[str, np.ndarray]:
        return _load_npz(data_file(self.file, data_dir), "OFA latency file", ("ks", "e", "d", "r"))

    def raw_vectors(self, data_dir: DataDir = None) -> tuple[np.ndarray, np.ndarray]:
        """(canonical vectors with the resolution slot left at 0, resolution in pixels) of
        every row; a kernel, expand ratio or depth outside the space is a corrupt file."""
        a = self._arrays(data_dir)
        path = data_file(self.file, data_dir)
        n = a["latency_ms"].shape[0]
        shapes = {"ks": (n, N_BLOCKS), "e": (n, N_BLOCKS), "d": (n, N_STAGES), "r": (n,)}
        for key, shape in shapes.items():
            if a[key].shape != shape:
                raise _corrupt("OFA latency file", path, f"{key} has shape {a[key].shape}")
        parts = []
        for key, choices in (("ks", OFA_KS), ("e", OFA_E), ("d", OFA_D)):
            values = a[key].astype(np.int64)
            index = np.searchsorted(choices, values)
            ok = (index < len(choices)) & (
                np.asarray(choices)[np.minimum(index, len(choices) - 1)] == values
            )
            if not ok.all():
                bad = sorted(set(values[~ok].tolist()))
                raise _corrupt("OFA latency file", path, f"{key} values {bad} not in {choices}")
            parts.append(index)
        vectors = np.concatenate([*parts, np.zeros((n, 1), dtype=np.int64)], axis=1)
        return self.space.canonicalize(vectors), a["r"].astype(np.int64)

    def encoded(self, data_dir: DataDir = None) -> tuple[np.ndarray, np.ndarray]:
        """The rows whose resolution is one of the space's; blocks beyond a stage's depth
        are canonicalised away. The other rows are reported (a ``UserWarning``), not
        dropped silently."""
        vectors, r = self.raw_vectors(data_dir)
        keep = np.isin(r, OFA_R)
        if not keep.all():
            warnings.warn(
                f"{self.name}: {int((~keep).sum())} of {r.size} subnets have a resolution "
                f"the ofa-mbv3 space lacks (file: {r.min()}..{r.max()}, "
                f"{np.unique(r).size} values; space: {', '.join(map(str, OFA_R))}) and are "
                f"left out; {int(keep.sum())} remain (all rows: 'ofa-mbv3-gpu-allres')",
                UserWarning,
                stacklevel=3,
            )
        vectors = vectors[keep]
        vectors[:, -1] = np.searchsorted(OFA_R, r[keep])
        return vectors, np.nonzero(keep)[0]


class OFAMobileNetV3AllResLatencySet(OFAMobileNetV3LatencySet):
    """All 5,000 OFA rows: the space's block features plus the resolution as a number."""

    name = "ofa-mbv3-gpu-allres"
    description = (
        "OFA-MobileNetV3 on 12 GPU settings, all 5,000 subnets (resolution 128..224 step 4): "
        "ofa-mbv3 block features + resolution in pixels"
    )

    def load(self, device: str, data_dir: DataDir = None) -> LatencySetData:
        known = self.check_device(device, data_dir)
        vectors, r = self.raw_vectors(data_dir)
        # the first 120 columns: kernel and expand one-hots of the active blocks
        blocks = self.space.features(vectors)[:, : 6 * N_BLOCKS]
        X = np.concatenate([blocks, r[:, None].astype(np.float64)], axis=1)
        y = self._arrays(data_dir)["latency_ms"][:, known.index(device)].astype(np.float64)
        return LatencySetData(X, y, None)


@functools.lru_cache(maxsize=8)
def _load_hat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """HAT's 10 feature columns and encoder + decoder latency (ms) of one CSV, checked."""
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except Exception as exc:  # pandas raises many types for a corrupt file
        raise HwnasError(f"cannot read HAT latency file '{path}': {exc}") from None
    missing = [c for c in (*HAT_FEATURES, *HAT_TARGET) if c not in df.columns]
    if missing:
        raise _corrupt("HAT latency file", path, f"missing columns {missing}")
    try:
        X = df[list(HAT_FEATURES)].to_numpy(dtype=np.float64)
        y = df[list(HAT_TARGET)].to_numpy(dtype=np.float64).sum(axis=1)
    except (TypeError, ValueError):
        raise _corrupt("HAT latency file", path, "non-numeric values") from None
    if len(df) == 0 or not np.isfinite(X).all() or not (np.isfinite(y) & (y > 0)).all():
        raise _corrupt("HAT latency file", path, "no rows, or missing or non-positive values")
    return X, y


class HATLatencySet(LatencySet):
    """Hardware-Aware Transformers: 2,000 SubTransformers per task and device; features
    are HAT's 10 columns, the target the whole model's latency (encoder + decoder)."""

    name = "hat"
    description = (
        "HAT: 2,000 SubTransformers per task_device, HAT's 10 features, "
        "latency = encoder + decoder (ms)"
    )

    def devices(self, data_dir: DataDir = None) -> list[str]:
        return list(HAT_FILES)

    def load(self, device: str, data_dir: DataDir = None) -> LatencySetData:
        self.check_device(device, data_dir)
        X, y = _load_hat(data_file(HAT_FILES[device], data_dir))
        return LatencySetData(X.copy(), y.copy(), None)


LATENCY_SETS: Registry = Registry("measured latency set")
for _set in (
    FBNetLatencySet(),
    OFAMobileNetV3LatencySet(),
    OFAMobileNetV3AllResLatencySet(),
    HATLatencySet(),
):
    LATENCY_SETS.register(_set.name, doc=_set.description)(_set)


def get_latency_set(name: str) -> LatencySet:
    """The registered latency set of that name (an unknown name lists the known ones)."""
    return LATENCY_SETS.get(name)


def latency_set_data(
    name: str, target: str, dataset: str | None = None, data_dir: DataDir = None
) -> LatencySetData:
    """What ``hwnas predictors evaluate`` studies on a latency set: ``target`` must be
    ``latency:DEVICE`` (the sets hold no accuracy), ``dataset`` must be left out."""
    lat_set = get_latency_set(name)
    kind, _, device = target.partition(":")
    hint = f"'hwnas devices --benchmark {name}' lists them"
    if kind != "latency":
        raise HwnasError(
            f"target '{target}': latency set '{name}' holds measured latency only, "
            f"no {kind or 'other target'}; use --target latency:DEVICE ({hint})"
        )
    if not device:
        raise HwnasError(f"target 'latency' needs a device: --target latency:DEVICE ({hint})")
    if dataset is not None:
        raise HwnasError(f"--dataset does not apply to latency set '{name}' (latency only)")
    return lat_set.load(device, data_dir)
