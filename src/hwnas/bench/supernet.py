"""A trained supernet as a search benchmark: the second half of the one-shot pipeline.

Each subnet's accuracy is *measured*: extracted from the supernet (``hwnas train``), its
batch-norm statistics re-estimated on training batches, then evaluated on the
checkpoint's validation split. Its latency comes from a predictor fitted on this
machine's (or a device agent's) measurements (``hwnas profile`` + ``hwnas predictors
fit``); without one, the cost objective is MFLOPs. The test split is left alone, so the
pipeline can report unbiased accuracy for the front it picks on validation accuracy.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hwnas.bench.base import Evaluator, Objective
from hwnas.errors import HwnasError
from hwnas.registry import BENCHMARKS

SPLITS = ("train", "val", "test")


@BENCHMARKS.register("supernet")
class SupernetBenchmark(Evaluator):
    """Subnets of a trained supernet checkpoint ('hwnas train'): validation top-1 (%)
    measured per subnet after BN recalibration, and latency (ms) from a fitted predictor
    (option latency=P.joblib), else MFLOPs.

    Options: ``checkpoint`` (required), ``latency`` (a predictor saved by ``hwnas
    predictors fit`` on a profile of the same space), ``flops`` (add MFLOPs as an
    objective; the default when there is no latency predictor), ``split`` (``val``),
    ``calib_batches`` and ``batch_size`` (BN recalibration and evaluation), ``threads``
    (PyTorch threads), ``data_dir`` (where the checkpoint's dataset is). Constraints may
    also name ``mflops`` and ``params`` (parameters), exact for any subnet, when they are
    not objectives: FLOPs and memory budgets.
    """

    DEFAULT_OPTIONS: ClassVar[dict[str, object]] = {}

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | None = None,
        latency: str | os.PathLike[str] | None = None,
        flops: bool | None = None,
        split: str = "val",
        calib_batches: int = 4,
        batch_size: int = 256,
        threads: int | None = 2,
        data_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        from hwnas.train.evaluate import checkpoint_data, set_threads
        from hwnas.train.supernet import CHECKPOINT_NAME, load_checkpoint, model_from_checkpoint

        if checkpoint is None:
            raise HwnasError(
                "benchmark 'supernet' needs the option checkpoint=PATH (a checkpoint.pt "
                "written by 'hwnas train')"
            )
        if split not in SPLITS:
            raise HwnasError(f"split must be one of {', '.join(SPLITS)}, got '{split}'")
        for name, value, low in (
            ("calib_batches", calib_batches, 0),
            ("batch_size", batch_size, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise HwnasError(f"{name} must be an integer >= {low}, got {value!r}")
        if threads is not None:
            set_threads(threads, "threads")
        path = Path(checkpoint)
        if path.is_dir():  # a training's run folder, as eval and export take it
            path = path / CHECKPOINT_NAME
        if not path.is_file():
            raise HwnasError(f"supernet checkpoint not found: {path}")
        self.checkpoint = str(path)
        ckpt = load_checkpoint(path)
        self.model = model_from_checkpoint(ckpt)
        self.space = self.model.space
        self.data = checkpoint_data(
            ckpt, self.model, data_dir=None if data_dir is None else str(data_dir)
        )
        if len(self.data.split(split)[1]) == 0:
            raise HwnasError(
                f"the checkpoint's dataset has no '{split}' examples to measure accuracy on "
                "(train with a val_fraction > 0, or use split=test)"
            )
        self.split = split
        self.calib_batches = calib_batches
        self.batch_size = batch_size
        self.channels_last = bool(ckpt.get("train_config", {}).get("channels_last", False))
        self.latency_path = None if latency is None else str(latency)
        self.latency_predictor: Any = None
        self.objectives = [Objective("accuracy", "max", "%", "quality")]
        if latency is not None:
            from hwnas.predict.fitted import load_fitted

            pred = load_fitted(latency)
            if pred.space_name != self.space.name:
                raise HwnasError(
                    f"latency predictor {latency} was fitted on {pred.space_name}, but the "
                    f"supernet's space is {self.space.name}"
                )
            _check_predicted_networks(pred.metadata.get("networks"), self.model, self.data, latency)
            self.latency_predictor = pred
            self.objectives.append(Objective("latency", "min", "ms", "cost"))
        self.flops = latency is None if flops is None else bool(flops)
        if self.flops:
            self.objectives.append(Objective("mflops", "min", "MFLOPs", "cost"))
        if len(self.objectives) < 2:
            raise HwnasError("benchmark 'supernet' needs a latency predictor or flops=true")
        # predicted latency and MFLOPs are exact for any number of subnets at once; only
        # accuracy needs the supernet
        self.cheap_objectives = tuple(o.name for o in self.objectives[1:])
        # what a FLOPs or memory budget constrains, whichever the objectives are
        self.metrics = tuple(m for m in ("mflops", "params") if m not in self.cheap_objectives)
        self.source = "measured" if self.latency_predictor is None else "measured+predicted"
        # seconds of BN recalibration and validation per subnet: stored one by one
        self.max_batch = 1

    def accuracy(self, vector: np.ndarray) -> float:
        """Top-1 (%) of one subnet on the benchmark's split, after BN recalibration."""
        from hwnas.train.supernet import evaluate_config

        cfg = self.space.decode(vector)
        acc = evaluate_config(
            self.model,
            cfg,
            self.data,
            self.split,
            self.calib_batches,
            self.batch_size,
            channels_last=self.channels_last,
        )
        return 100.0 * acc

    def mflops(self, vectors: np.ndarray) -> np.ndarray:
        """MFLOPs (2 x MACs) of subnets at their resolution, for this supernet's input."""
        m = self.model
        return self.space.mflops_batch(vectors, m.in_channels, m.num_classes)

    def params(self, vectors: np.ndarray) -> np.ndarray:
        """Parameters of each subnet as extracted (its model size), for this supernet."""
        m = self.model
        return self.space.params_batch(vectors, m.in_channels, m.num_classes).astype(float)

    def evaluate_metrics(self, vectors: np.ndarray) -> np.ndarray:
        """MFLOPs (unless an objective) and parameters of each subnet."""
        x = np.atleast_2d(np.asarray(vectors))
        return np.stack([getattr(self, m)(x) for m in self.metrics], axis=1)

    def metric_range(self) -> dict[str, tuple[float, float]]:
        """MFLOPs and parameters over the space, for this supernet's input and classes
        (MFLOPs also when they are an objective)."""
        return self.space.size_range(self.model.in_channels, self.model.num_classes)

    def evaluate(self, vectors: np.ndarray) -> np.ndarray:
        x = self.space.check_vectors(np.atleast_2d(np.asarray(vectors)))
        acc = np.array([self.accuracy(v) for v in x], dtype=np.float64)
        return np.concatenate([acc[:, None], self.evaluate_cheap(x)], axis=1)

    def evaluate_cheap(self, vectors: np.ndarray) -> np.ndarray:
        """Predicted latency and/or MFLOPs (the cost objectives), no supernet needed."""
        x = np.atleast_2d(np.asarray(vectors))
        cols = []
        if self.latency_predictor is not None:
            cols.append(np.asarray(self.latency_predictor.predict(x), dtype=np.float64))
        if self.flops:
            cols.append(self.mflops(x))
        return np.stack(cols, axis=1)

    def reference_point(self) -> np.ndarray:
        """Fixed hypervolume reference (raw units): 0 % accuracy and 1.1 x each cost of
        the largest subnet, so hypervolumes of one supernet's searches compare and a
        longer search never scores less."""
        largest = np.asarray(self.space.largest())[None, :]
        costs = []
        if self.latency_predictor is not None:
            costs.append(float(np.asarray(self.latency_predictor.predict(largest))[0]))
        if self.flops:
            costs.append(float(self.mflops(largest)[0]))
        return np.array([0.0, *(1.1 * c for c in costs)], dtype=np.float64)

    def describe(self) -> dict[str, object]:
        d = super().describe()
        d["checkpoint"] = self.checkpoint
        d["split"] = self.split
        d["dataset"] = self.data.name
        d["objective_sources"] = {
            "accuracy": f"measured on the {self.split} split ({len(self.data.split(self.split)[1])}"
            " images) after BN recalibration",
            **({"latency": f"predicted by {self.latency_path}"} if self.latency_path else {}),
            **({"mflops": "computed"} if self.flops else {}),
        }
        return d


def _check_predicted_networks(
    networks: dict[str, Any] | None, model: Any, data: Any, latency: object
) -> None:
    """Warn when the latency predictor was fitted on networks of another input or head
    than the supernet deploys (a profile of 3-channel networks at their own resolution
    for a digits supernet of 1 channel, 8 px images resized inside): its latencies
    would be other networks'. Predictors of older versions recorded nothing to compare."""
    if not networks:
        return
    size = networks.get("input_size")
    have = {
        "in_channels": networks.get("in_channels"),
        "num_classes": networks.get("num_classes"),
        "input_size": size,
    }
    want = {
        "in_channels": model.in_channels,
        "num_classes": model.num_classes,
        "input_size": data.image_size,
    }
    differ = [k for k in want if have[k] is not None and have[k] != want[k]]
    if size is None and data.image_size not in model.space.spec.resolutions:
        differ.append("input_size")  # profiled at each subnet's own resolution
    if differ:
        flags = {"in_channels": "--in-channels", "num_classes": "--num-classes"}
        flags["input_size"] = "--input-size"
        warnings.warn(
            f"latency predictor {latency} was fitted on networks with "
            + ", ".join(f"{k} {have[k] if have[k] is not None else 'own'}" for k in differ)
            + ", the supernet deploys "
            + ", ".join(f"{k} {want[k]}" for k in differ)
            + ": its latencies are of other networks; profile with "
            + " ".join(f"{flags[k]} {want[k]}" for k in differ),
            stacklevel=3,
        )
