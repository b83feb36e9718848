"""OFA MobileNetV3 surrogate benchmark: OFA's published accuracy predictor and the
Samsung Note10 latency lookup table (the surrogate DyNAS-T's paper searched on), or
latency measured on this machine or on a device agent (``latency=true``)."""

from __future__ import annotations

import functools
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.bench.base import Evaluator, Objective
from hwnas.bench.measured import MeasuredLatency, check_latency_options
from hwnas.config import data_file
from hwnas.errors import HwnasError
from hwnas.registry import BENCHMARKS
from hwnas.space.ofa_mbv3 import (
    MAX_DEPTH,
    N_BLOCKS,
    N_STAGES,
    OFA_CLASSES,
    OFA_D,
    OFA_E,
    OFA_FEATURE_MIX,
    OFA_FINAL_EXPAND,
    OFA_KS,
    OFA_R,
    OFA_STAGES,
    OFA_STEM,
    OFAMobileNetV3Space,
    build_module,
)

ACC_FILE = "ofa/ofa_mbv3_acc_predictor.npz"
LUT_FILE = "ofa/ofa_mbv3_note10_latency_lut.json"


def _down(h: int, stride: int) -> int:
    return (h - 1) // stride + 1


def _block_key(h: int, cin: int, cout: int, expand: int, k: int, s: int, se: int, hs: int) -> str:
    ho = _down(h, s)
    skip = int(s == 1 and cin == cout)
    return (
        f"expanded_conv-input:{h}x{h}x{cin}-output:{ho}x{ho}x{cout}-expand:{expand}"
        f"-kernel:{k}-stride:{s}-idskip:{skip}-se:{se}-hs:{hs}"
    )


@functools.lru_cache(maxsize=2)
def _lut_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Per resolution: fixed latency (stem, first block, head) and per-slot latency of each
    (kernel, expand) choice, so a network's latency is one gather and one sum."""
    try:
        lut = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise HwnasError(f"cannot read OFA latency table '{path}': {exc}") from None
    fixed = np.zeros(len(OFA_R))
    per_slot = np.zeros((len(OFA_R), N_BLOCKS, len(OFA_KS), len(OFA_E)))
    for ri, r in enumerate(OFA_R):
        try:
            table = lut[str(r)]

            def ms(key: str, table: dict = table) -> float:
                return float(table[key]["mean"])

            h = _down(r, 2)
            keys = [f"Conv-input:{r}x{r}x3-output:{h}x{h}x{OFA_STEM}"]
            keys.append(_block_key(h, OFA_STEM, OFA_STEM, OFA_STEM, 3, 1, 0, 0))
            cin = OFA_STEM
            for s, (width, stride, se, hs) in enumerate(OFA_STAGES):
                for b in range(MAX_DEPTH):
                    st = stride if b == 0 else 1
                    for ki, k in enumerate(OFA_KS):
                        for ei, e in enumerate(OFA_E):
                            key = _block_key(h, cin, width, cin * e, k, st, se, hs)
                            per_slot[ri, s * MAX_DEPTH + b, ki, ei] = ms(key)
                    h, cin = _down(h, st), width
            keys += [
                f"Conv_1-input:{h}x{h}x{cin}-output:{h}x{h}x{OFA_FINAL_EXPAND}",
                f"AvgPool2D-input:{h}x{h}x{OFA_FINAL_EXPAND}-output:1x1x{OFA_FINAL_EXPAND}",
                f"Conv_2-input:1x1x{OFA_FINAL_EXPAND}-output:1x1x{OFA_FEATURE_MIX}",
                f"Logits-input:1x1x{OFA_FEATURE_MIX}-output:{OFA_CLASSES}",
            ]
            fixed[ri] = sum(ms(k) for k in keys)
        except KeyError as exc:
            raise HwnasError(f"OFA latency table '{path}' lacks entry {exc}") from None
    return fixed, per_slot


@functools.lru_cache(maxsize=2)
def _acc_weights(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    try:
        with np.load(path) as z:
            return [(z[f"{i}_weight"], z[f"{i}_bias"]) for i in (0, 2, 4, 6)]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise HwnasError(f"cannot read OFA accuracy predictor '{path}': {exc}") from None


@functools.lru_cache(maxsize=1)
def _largest_params() -> float:
    """Parameters of the largest subnet (d 4, e 6, k 7 everywhere), counted on the
    module itself: the size of its ONNX file, which an agent must accept."""
    module = build_module(OFAMobileNetV3Space().largest())
    return float(sum(p.numel() for p in module.parameters()))


@BENCHMARKS.register("ofa-mbv3")
class OFAMobileNetV3Benchmark(Evaluator):
    """OFA-MobileNetV3 w1.2: ImageNet top-1 (%) from OFA's accuracy predictor and Samsung
    Note10 latency (ms) from OFA's per-op lookup table, or (``latency=true``) latency
    measured with ONNX Runtime on this machine or a device agent (``agent=URL``,
    ``token_file=PATH``)."""

    source = "surrogate"

    DEVICES = ("note10",)
    DATASETS = ("imagenet",)

    @classmethod
    def available_devices(cls, data_dir: str | None = None) -> list[str]:
        return list(cls.DEVICES)

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        devices: str | list[str] | None = None,
        dataset: str | None = None,
        latency: bool = False,
        threads: int = 1,
        rounds: int = 5,
        agent: str | None = None,
        token_file: str | None = None,
        anchor: bool = True,
        agent_timeout_s: float | None = None,
    ) -> None:
        check_latency_options(
            "ofa-mbv3",
            latency,
            threads,
            rounds,
            agent,
            token_file,
            "Note10's lookup table",
            anchor,
            agent_timeout_s,
        )
        if latency and devices:
            raise HwnasError(
                "ofa-mbv3: latency=true measures latency on this machine or the agent, "
                "not on a listed device; drop --device"
            )
        # the device and dataset are fixed; a request for another one must not be
        # answered silently with Note10 latency or ImageNet accuracy
        for dev in devices.split(",") if isinstance(devices, str) else list(devices or []):
            if dev not in self.DEVICES:
                raise HwnasError(
                    f"ofa-mbv3: latency is known for note10 only (OFA's lookup table), "
                    f"not '{dev}'; measure this machine with --bench-option latency=true "
                    "(or a device agent: and agent=URL, token_file=PATH)"
                )
        if dataset is not None and dataset not in self.DATASETS:
            raise HwnasError(
                f"ofa-mbv3: accuracy is OFA's ImageNet predictor; dataset '{dataset}' "
                "does not apply"
            )
        self.space = OFAMobileNetV3Space()
        self._layers = _acc_weights(data_file(ACC_FILE, data_dir))
        self._fixed, self._per_slot = _lut_arrays(data_file(LUT_FILE, data_dir))
        self.objectives = [
            Objective("accuracy", "max", "%", "quality"),
            Objective("latency", "min", "ms"),
        ]
        # latency=true: measured on this machine or an agent, instead of Note10's table
        self.measured: MeasuredLatency | None = None
        if latency:
            self.source = "measured"
            self.measured = MeasuredLatency(
                "ofa-mbv3",
                self.space,
                build=build_module,
                largest_params=_largest_params,
                threads=threads,
                rounds=rounds,
                agent=agent,
                token_file=token_file,
                anchor=anchor,
                agent_timeout_s=agent_timeout_s,
            )
            # a second or so per subnet: measured 8 at a time (interleaved), each 8 stored
            self.max_batch = 8

    def prepare(self) -> None:
        """Reach where latency is measured (an agent: its limits and host) before any
        work; nothing to do for the lookup table."""
        if self.measured is not None:
            self.measured.prepare()

    def accuracy(self, vectors: np.ndarray) -> np.ndarray:
        """Predicted ImageNet top-1 in % (OFA's MLP: 3 hidden ReLU layers)."""
        h = self.space.features(vectors)
        for i, (w, b) in enumerate(self._layers):
            h = h @ w.T + b
            if i < len(self._layers) - 1:
                h = np.maximum(h, 0.0)
        return 100.0 * h[:, 0]

    def note10_latency(self, vectors: np.ndarray) -> np.ndarray:
        """Note10 latency in ms: fixed layers plus the table entries of the active blocks."""
        x = self.space.canonicalize(vectors)
        r = x[:, -1]
        slots = np.arange(N_BLOCKS)[None, :]
        per = self._per_slot[r[:, None], slots, x[:, :N_BLOCKS], x[:, N_BLOCKS : 2 * N_BLOCKS]]
        active = self.space.active_mask(x)
        return self._fixed[r] + (per * active).sum(axis=1)

    def metric_range(self) -> dict[str, tuple[float, float]]:
        """Note10 latency's exact range (each slot's cheapest choice at the least depth,
        each slot's dearest at the most, over the resolutions), so a budget no subnet
        meets is refused before any evaluation; measured latency has none."""
        if self.measured is not None:
            return {}
        per = self._per_slot.reshape(len(OFA_R), len(OFA_STAGES), MAX_DEPTH, -1)
        lo = self._fixed + per[:, :, : min(OFA_D)].min(axis=-1).sum(axis=(1, 2))
        hi = self._fixed + per.max(axis=-1).sum(axis=(1, 2))
        return {"latency": (float(lo.min()), float(hi.max()))}

    def reference_point(self) -> np.ndarray | None:
        """The space's worst corner plus 10 % of its range: the smallest subnet's
        accuracy and the largest subnet's latency (the same for every run). Measured
        latency has no fixed reference (each run's front gives its own)."""
        if self.measured is not None:
            return None
        lo, hi = self.evaluate(np.stack([self.space.smallest(), self.space.largest()]))
        span = np.abs(hi - lo)
        return np.array([lo[0] - 0.1 * span[0], hi[1] + 0.1 * span[1]])

    def evaluate(self, vectors: np.ndarray) -> np.ndarray:
        x = self.space.check_vectors(vectors)
        cost = self.note10_latency(x) if self.measured is None else self.measured(x)
        return np.stack([self.accuracy(x), cost], axis=1)

    def describe(self) -> dict[str, object]:
        d = super().describe()
        if self.measured is not None:
            d["latency"] = self.measured.describe()
        return d

    def restore(self, described: dict[str, Any]) -> None:
        """A resumed search measures on the scale of its start (the anchor's reference)."""
        if self.measured is not None:
            self.measured.restore(described.get("latency"))  # type: ignore[arg-type]


assert len(OFA_STAGES) == N_STAGES
