"""NAS-Bench-201 as an evaluator: 200-epoch accuracy and latency measured on 27 devices."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from hwnas.bench.base import Evaluator, Objective
from hwnas.config import data_file
from hwnas.errors import HwnasError
from hwnas.registry import BENCHMARKS
from hwnas.space.nb201 import NB201Space

NB201_FILE = "nb201/nb201_acc200_latency27.csv.gz"
NB201_DATASETS = ("cifar10", "cifar100", "imagenet16_120")
NB201_SIZE = 15625


@functools.lru_cache(maxsize=4)
def _load_table(path: Path) -> tuple[np.ndarray, pd.DataFrame]:
    """Read and check the table once per file: (row of each base-5 code, frame)."""
    try:
        df = pd.read_csv(path)
    except Exception as exc:  # pandas raises many types for a corrupt file
        raise HwnasError(f"cannot read NB201 table '{path}': {exc}") from None
    needed = {"arch_str", *(f"{d}_test_acc" for d in NB201_DATASETS)}
    missing = needed - set(df.columns)
    if missing or not any(c.startswith("lat_") for c in df.columns):
        raise HwnasError(
            f"NB201 table '{path}' is corrupt: missing columns {sorted(missing) or ['lat_*']}"
        )
    if len(df) != NB201_SIZE:
        raise HwnasError(f"NB201 table '{path}' is corrupt: {len(df)} rows, expected 15625")
    space = NB201Space()
    try:
        vectors = np.stack([space.encode(s) for s in df["arch_str"]])
    except HwnasError as exc:
        raise HwnasError(f"NB201 table '{path}' is corrupt: {exc}") from None
    numeric = df.drop(columns=["arch_str"]).select_dtypes(include="number")
    if numeric.shape[1] != df.shape[1] - 1 or numeric.isna().to_numpy().any():
        raise HwnasError(f"NB201 table '{path}' is corrupt: non-numeric or missing values")
    codes = space.index_of(vectors)
    row_of_code = np.full(NB201_SIZE, -1, dtype=np.int64)
    row_of_code[codes] = np.arange(NB201_SIZE)
    if (row_of_code < 0).any():
        raise HwnasError(f"NB201 table '{path}' is corrupt: duplicated architectures")
    return row_of_code, df


def nb201_devices(data_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Devices with measured latency in the NB201 table."""
    _, df = _load_table(data_file(NB201_FILE, data_dir))
    return sorted(c[4:] for c in df.columns if c.startswith("lat_"))


@BENCHMARKS.register("nb201")
class NB201Benchmark(Evaluator):
    """NAS-Bench-201: test accuracy (200 epochs) on cifar10/cifar100/imagenet16_120 and
    latency on any of 27 measured devices (HELP / HW-NAS-Bench)."""

    source = "benchmark"
    DEFAULT_OPTIONS: ClassVar[dict[str, object]] = {"dataset": "cifar10", "devices": "pixel3"}
    #: the devices a search-efficiency study covers when none are given (issue 2's four)
    STUDY_DEVICES: ClassVar[tuple[str, ...]] = ("pixel3", "raspi4", "fpga", "2080ti_1")

    @classmethod
    def available_devices(cls, data_dir: str | None = None) -> list[str]:
        return nb201_devices(data_dir)

    def __init__(
        self,
        dataset: str = "cifar10",
        devices: str | list[str] = "pixel3",
        data_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if dataset not in NB201_DATASETS:
            raise HwnasError(
                f"nb201: unknown dataset '{dataset}' (known: {', '.join(NB201_DATASETS)})"
            )
        self.space = NB201Space()
        self.row_of_code, df = _load_table(data_file(NB201_FILE, data_dir))
        # "pixel3,raspi4" (as the CLI and a stored run config give it) or a list
        devices = [d.strip() for d in devices.split(",")] if isinstance(devices, str) else devices
        devices = list(devices) if isinstance(devices, list | tuple) else [devices]
        if not devices or any(not isinstance(d, str) or not d for d in devices):
            raise HwnasError(f"nb201: devices must be device names, got {devices!r}")
        repeated = sorted({d for d in devices if devices.count(d) > 1})
        if repeated:
            raise HwnasError(f"nb201: device {', '.join(repeated)} given twice")
        known = sorted(c[4:] for c in df.columns if c.startswith("lat_"))
        for dev in devices:
            if dev not in known:
                raise HwnasError(f"nb201: unknown device '{dev}' (known: {', '.join(known)})")
        self.dataset = dataset
        self.devices = devices
        self.objectives = [Objective("accuracy", "max", "%", "quality")] + [
            Objective(
                "latency" if len(devices) == 1 else f"latency_{d}",
                "min",
                "ms",
                aliases=(f"latency_{d}", f"latency:{d}")
                if len(devices) == 1
                else (f"latency:{d}",),
            )
            for d in devices
        ]
        cols = [f"{dataset}_test_acc"] + [f"lat_{d}" for d in devices]
        self._values = df[cols].to_numpy(dtype=np.float64)
        self._arch_index = df["index"].to_numpy() if "index" in df else np.arange(len(df))

    def rows(self, vectors: np.ndarray) -> np.ndarray:
        """Table rows of the given vectors."""
        x = self.space.check_vectors(vectors)
        return self.row_of_code[self.space.index_of(x)]

    def benchmark_index(self, vectors: np.ndarray) -> np.ndarray:
        """The NAS-Bench-201 architecture index of each vector."""
        return self._arch_index[self.rows(vectors)]

    def evaluate(self, vectors: np.ndarray) -> np.ndarray:
        return self._values[self.rows(vectors)]

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        vectors = self.space.all_vectors()
        return vectors, self.evaluate(vectors)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "dataset": self.dataset, "devices": self.devices}
