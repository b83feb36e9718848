"""Evaluate and export subnets of a trained supernet checkpoint."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from hwnas.data import ImageData, load_dataset
from hwnas.errors import HwnasError, check_output_file
from hwnas.measure.export import json_plain
from hwnas.supernet.mbv3 import MBv3Supernet
from hwnas.train.supernet import (
    calibrated_subnet,
    evaluate_config,
    load_checkpoint,
    model_from_checkpoint,
)
from hwnas.train.utils import torch_threads


def parse_subnet(
    model: MBv3Supernet, subnet: Any, rng: np.random.Generator | int | None = None
) -> dict[str, Any]:
    """'min' | 'max' | 'random' | JSON text | config dict | vector -> canonical config."""
    if isinstance(subnet, str):
        s = subnet.strip()
        if s == "random":
            return model.sample_config(np.random.default_rng(rng))
        if s in ("min", "max"):
            return model.canonical(s)
        if s.startswith(("{", "[")):
            try:
                subnet = json.loads(s)
            except json.JSONDecodeError as e:
                raise HwnasError(f"subnet is not valid JSON: {e}") from None
        elif Path(s).is_file():
            try:
                subnet = json.loads(Path(s).read_text())
            except json.JSONDecodeError as e:
                raise HwnasError(f"subnet file '{s}' is not valid JSON: {e}") from None
        else:
            raise HwnasError(
                f"subnet must be min, max, random, a JSON config/vector or a JSON file; got {s!r}"
            )
    return model.canonical(subnet)


def set_threads(threads: int, flag: str = "--threads") -> None:
    """``torch.set_num_threads`` for a count >= 1; anything else a one-line error."""
    _check_counts(**{flag: (threads, 1)})
    torch.set_num_threads(threads)


def _opset_range() -> tuple[int, int]:
    """ONNX opsets this export writes loadable models for: 9 (BatchNormalization in its
    current form) up to the newest torch's exporter knows."""
    try:
        from torch.onnx import _constants

        return 9, int(_constants.ONNX_MAX_OPSET)
    except (ImportError, AttributeError):  # pragma: no cover - another torch layout
        return 9, 99


def _check_counts(**counts: tuple[Any, int]) -> None:
    """Each ``name=(value, least)`` an integer >= least, else a one-line error."""
    for name, (value, least) in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise HwnasError(f"{name} must be an integer >= {least}, got {value!r}")


def load_supernet(
    checkpoint: str | os.PathLike[str] | dict[str, Any],
) -> tuple[dict[str, Any], MBv3Supernet]:
    """A checkpoint (file, run dir or loaded dict) and the supernet it holds."""
    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    return ckpt, model_from_checkpoint(ckpt)


def _same_dataset(a: str, b: str) -> bool:
    """Whether two dataset names are one dataset (an image folder by its resolved path)."""
    if a.startswith("folder:") and b.startswith("folder:"):
        return Path(a[7:]).expanduser().resolve() == Path(b[7:]).expanduser().resolve()
    return a == b


def checkpoint_data(
    ckpt: dict[str, Any],
    model: MBv3Supernet,
    data: ImageData | None = None,
    data_dir: str | None = None,
) -> ImageData:
    """The checkpoint's own dataset and splits (``data`` when given), checked against the
    supernet's input channels and classes."""
    if data is None:
        tc = ckpt.get("train_config", {})
        trained_on = (ckpt.get("data") or {}).get("name")
        if trained_on and not _same_dataset(trained_on, tc.get("dataset", "digits")):
            # trained on data handed over in memory: the config's dataset is another
            raise HwnasError(
                f"the checkpoint was trained on data '{trained_on}' given in memory, not on "
                f"its config's dataset '{tc.get('dataset', 'digits')}': pass that data "
                "(data=) to evaluate or export it"
            )
        data = load_dataset(
            tc.get("dataset", "digits"),
            data_dir if data_dir is not None else tc.get("data_dir"),
            tc.get("val_fraction", 0.1),
            tc.get("seed", 0),
            tc.get("limit"),
            tc.get("image_size"),
        )
    if data.in_channels != model.in_channels or data.num_classes != model.num_classes:
        raise HwnasError(
            f"data ({data.in_channels} channels, {data.num_classes} classes) does not match "
            f"the checkpoint ({model.in_channels} channels, {model.num_classes} classes)"
        )
    return data


def evaluate_subnet(
    checkpoint: str | os.PathLike[str] | dict[str, Any],
    subnet: Any = "max",
    data: ImageData | None = None,
    split: Literal["train", "val", "test"] = "test",
    calib_batches: int = 16,
    batch_size: int = 256,
    data_dir: str | None = None,
    seed: int = 0,
    num_threads: int | None = 2,
) -> dict[str, Any]:
    """Top-1 accuracy of one subnet of a checkpoint, after BN recalibration.

    The subnet is extracted, its BN statistics re-estimated on ``calib_batches`` training
    batches, and evaluated on ``split`` of the checkpoint's dataset (or ``data``).
    """
    _check_counts(calib_batches=(calib_batches, 0), batch_size=(batch_size, 1))
    if num_threads is not None:  # used for the evaluation; the caller's count comes back
        _check_counts(num_threads=(num_threads, 1))
    ckpt, model = load_supernet(checkpoint)
    cfg = parse_subnet(model, subnet, seed)
    data = checkpoint_data(ckpt, model, data, data_dir)
    if len(data.split(split)[1]) == 0:
        tc = ckpt.get("train_config") if isinstance(ckpt.get("train_config"), dict) else {}
        why = (
            "trained with val_fraction=0"
            if split == "val" and tc.get("val_fraction", 0.1) == 0
            else "too few examples to hold any out for it"
        )
        raise HwnasError(
            f"the {split} split of the checkpoint's dataset is empty ({why}); evaluate "
            "another --split"
        )
    with torch_threads(num_threads):
        acc = evaluate_config(model, cfg, data, split, calib_batches, batch_size, seed)
    sub = model.get_subnet(cfg)
    return {
        "top1": acc,
        "split": split,
        "n": len(data.split(split)[1]),
        "subnet": cfg,
        "params": sum(p.numel() for p in sub.parameters()),
        "macs": model.space.macs(cfg, model.in_channels, model.num_classes),
        "calib_batches": calib_batches,
    }


def export_subnet(
    checkpoint: str | os.PathLike[str] | dict[str, Any],
    subnet_config: Any,
    format: Literal["onnx", "torch"] = "onnx",
    out: str | os.PathLike[str] = "subnet.onnx",
    batch_size: int = 1,
    include_resize: bool | None = None,
    opset: int = 17,
    calib_batches: int = 0,
    data: ImageData | None = None,
    data_dir: str | None = None,
    seed: int = 0,
) -> Path:
    """Write one subnet of a checkpoint as a standalone model.

    ``onnx``: ``torch.onnx.export`` with ``dynamo=False`` (the dynamo exporter needs
    onnxscript, which is not a dependency); dynamic batch axis, input ``input`` of shape
    (N, C, r, r), output ``logits``. ``torch``: a ``torch.export`` program
    (``torch.export.load(out).module()`` runs it without hwnas) with a dynamic batch
    dimension (1 to 4096; traced with a batch of at least 2, since torch.export fixes a
    traced batch of 1).

    ``calib_batches`` 0 (default) keeps the supernet's BN statistics, so the output
    equals the supernet's for that config. More re-estimates them on that many training
    batches of the checkpoint's dataset (``data``), as :func:`evaluate_subnet` does, so
    the file computes what ``hwnas eval`` reported; the input resize then goes inside
    the model when the data's image size is not the subnet's resolution (input
    (N, C, size, size)), unless ``include_resize`` says otherwise.
    """
    if format not in ("onnx", "torch"):
        raise HwnasError(f"unknown export format '{format}' (use onnx or torch)")
    _check_counts(batch_size=(batch_size, 1), calib_batches=(calib_batches, 0))
    lo, hi = _opset_range()
    if isinstance(opset, bool) or not isinstance(opset, int) or not lo <= opset <= hi:
        # below, torch writes a file ONNX Runtime cannot load (a BatchNormalization of
        # opset 5 lacks an attribute), and says so only in a warning
        raise HwnasError(f"opset must be an integer in {lo}..{hi}, got {opset!r}")
    out = check_output_file(out)
    folder = out.parent
    while not folder.exists():
        folder = folder.parent
    if not os.access(folder, os.W_OK):  # torch.export's own error is a C++ trace
        raise HwnasError(f"cannot write '{out}': '{folder}' is not writable")
    ckpt, model = load_supernet(checkpoint)
    cfg = parse_subnet(model, subnet_config, seed)
    if calib_batches > 0:
        data = checkpoint_data(ckpt, model, data, data_dir)
        if include_resize is None:
            include_resize = data.image_size != cfg["resolution"]
        sub = calibrated_subnet(
            model, cfg, data, calib_batches, seed=seed, include_resize=include_resize
        )
        size = data.image_size if include_resize else cfg["resolution"]
    else:
        sub = model.get_subnet(cfg, include_resize=bool(include_resize)).eval()
        size = cfg["resolution"]
        if include_resize:  # the model takes the data's images: traced at their size
            size = checkpoint_data(ckpt, model, data, data_dir).image_size
    from hwnas.measure.export import write_metadata

    x = torch.randn(batch_size, model.in_channels, size, size)
    meta = subnet_metadata(model, cfg, ckpt, data, size)
    out.parent.mkdir(parents=True, exist_ok=True)
    # written beside, then renamed over: a kill or a full disk leaves the old file whole
    tmp = out.with_name(f".{out.name}.tmp{out.suffix}")
    try:
        if format == "onnx":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    sub,
                    (x,),
                    str(tmp),
                    dynamo=False,
                    input_names=["input"],
                    output_names=["logits"],
                    dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                    opset_version=opset,
                )
            write_metadata(tmp, meta)
        else:
            save_torch_program(sub, (model.in_channels, size, size), tmp, batch_size, meta)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def save_torch_program(
    module: torch.nn.Module,
    shape: tuple[int, ...],
    out: Path,
    batch_size: int = 1,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """``module`` as a ``torch.export`` program at ``out`` for inputs of one sample's
    ``shape``, with a dynamic batch dimension (1 to 4096; traced with a batch of at least
    2, since torch.export fixes a traced batch of 1). ``metadata`` is stored beside it as
    the extra file ``hwnas.json`` (``torch.export.load(out, extra_files={"hwnas.json":
    ""})`` reads it back)."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    x = torch.randn(max(2, batch_size), *shape)
    prog = torch.export.export(module, (x,), dynamic_shapes=({0: batch},))
    extra = {"hwnas.json": json.dumps(metadata, default=json_plain)} if metadata else None
    torch.export.save(prog, str(out), extra_files=extra)
    return out


def subnet_metadata(
    model: Any, cfg: dict[str, Any], ckpt: dict[str, Any], data: ImageData | None, size: int
) -> dict[str, Any]:
    """What an exported subnet is and what its input needs, for the file's metadata: its
    config, the space, the classes (and their names in output order, where known), the
    input shape and, where known, the data's preprocessing (raw pixels to the normalised
    input the network was trained on)."""
    stored = ckpt.get("data") if isinstance(ckpt.get("data"), dict) else {}
    prep = data.preprocess() if data is not None else stored.get("preprocess") or {}
    meta: dict[str, Any] = {
        "subnet": json.loads(json.dumps(cfg, default=json_plain)),
        "space": model.space.name,
        "num_classes": model.num_classes,
        "input_shape": [model.in_channels, size, size],
        "dataset": (data.name if data is not None else stored.get("name")) or "",
    }
    classes = getattr(data, "classes", ()) if data is not None else stored.get("classes")
    if classes:  # output i is classes[i]
        meta["classes"] = list(classes)
    if prep:
        meta["preprocess"] = {**prep, "image_size": size}
        src = prep.get("image_size")
        if src and src != size:  # the network takes another size than the data has
            meta["preprocess"]["resize"] = (
                f"the data's {src}x{src} images to {size}x{size}: bilinear, "
                "align_corners=False (torch.nn.functional.interpolate), as training did"
            )
    return meta


def subnet_from_checkpoint(
    checkpoint: str | os.PathLike[str] | dict[str, Any], subnet: Any = "max"
) -> torch.nn.Module:
    """The extracted subnet (plain ``nn.Sequential``, eval mode) of a checkpoint."""
    _, model = load_supernet(checkpoint)
    return model.get_subnet(parse_subnet(model, subnet)).eval()
