"""Dataset readers: CIFAR-10 / MNIST / Flowers-17 shards, scikit-learn digits, folders."""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwnas.config import data_file
from hwnas.errors import HwnasError


@dataclass
class ImageData:
    """Normalised (N, C, H, W) float tensors and int64 labels for three splits."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    mean: tuple[float, ...] = field(default_factory=tuple)
    std: tuple[float, ...] = field(default_factory=tuple)
    flip: bool = True  # horizontal flips are label-preserving for this data
    pad: int = 4  # random-crop padding for augmentation
    scale: float = 255.0  # raw pixel values are divided by this before (x - mean) / std
    #: the class names in output order (output ``i`` is ``classes[i]``); empty where the
    #: labels are the only names
    classes: tuple[str, ...] = ()
    #: images decoded from files (.png, .jpg, ...) were converted to RGB
    rgb: bool = False

    def preprocess(self) -> dict[str, Any]:
        """What a deployed network's input needs, from raw pixels (the exported models
        carry it in their metadata): NCHW float, ``pixel / scale``, then per channel
        ``(x - mean) / std``; empty for data given already normalised (no stats)."""
        if not self.mean:
            return {}
        prep: dict[str, Any] = {
            "layout": "NCHW",
            "scale": self.scale,
            "mean": list(self.mean),
            "std": list(self.std),
            "formula": "(pixel / scale - mean[c]) / std[c]",
            "image_size": self.image_size,
        }
        if self.rgb:  # what Pillow's convert("RGB") did to each image file
            prep["channel_order"] = "RGB"
            prep["color"] = "converted to RGB: grey replicated to 3 channels, alpha dropped"
        return prep

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[-1])

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name not in ("train", "val", "test"):
            raise HwnasError(f"unknown split '{name}' (use train, val, test)")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def summary(self) -> dict[str, object]:
        """Sizes, shape, preprocessing and class names (what a checkpoint keeps)."""
        out: dict[str, object] = {
            "name": self.name,
            "train": len(self.y_train),
            "val": len(self.y_val),
            "test": len(self.y_test),
            "num_classes": self.num_classes,
            "shape": list(self.x_train.shape[1:]),
            "preprocess": self.preprocess(),
        }
        if self.classes:
            out["classes"] = list(self.classes)
        return out


def _nhwc(x: np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) -> (N, H, W, C)."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise HwnasError(f"images must be (N, H, W) or (N, H, W, C), got shape {x.shape}")
    return x


def _split_val(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int, at_least_one: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hold a random, class-stratified ``fraction`` of (x, y) out as the validation set;
    ``at_least_one`` holds out one example of each class at least (for a fraction > 0),
    so that a small folder's split is not silently empty (callers check the counts)."""
    if not 0.0 <= fraction < 1.0:
        raise HwnasError(f"val_fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    val_idx: list[np.ndarray] = []
    for c in np.unique(y):
        idx = np.nonzero(y == c)[0]
        idx = rng.permutation(idx)
        k = round(fraction * len(idx))
        if at_least_one and fraction > 0:
            k = max(k, 1)
        val_idx.append(idx[:k])
    val = np.sort(np.concatenate(val_idx)) if val_idx else np.zeros(0, dtype=np.int64)
    mask = np.ones(len(y), dtype=bool)
    mask[val] = False
    return x[mask], y[mask], x[val], y[val]


def _finish(
    name: str,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    num_classes: int | None = None,
    flip: bool = True,
    scale: float = 255.0,
    classes: Sequence[str] = (),
    rgb: bool = False,
) -> ImageData:
    """uint8 NHWC arrays -> normalised NCHW float tensors (stats from the train split)."""
    tensors = {}
    xtr = _nhwc(splits["train"][0]).astype(np.float32) / scale
    mean = xtr.mean(axis=(0, 1, 2))
    std = xtr.std(axis=(0, 1, 2)) + 1e-6
    for k, (x, y) in splits.items():
        xf = (_nhwc(x).astype(np.float32) / scale - mean) / std
        tensors[f"x_{k}"] = torch.from_numpy(np.ascontiguousarray(xf.transpose(0, 3, 1, 2)))
        tensors[f"y_{k}"] = torch.from_numpy(np.asarray(y).astype(np.int64))
    ncls = int(num_classes or (max(int(np.max(v[1])) for v in splits.values() if len(v[1])) + 1))
    size = int(tensors["x_train"].shape[-1])
    return ImageData(
        name=name,
        num_classes=ncls,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        flip=flip,
        pad=max(1, size // 8),
        scale=float(scale),
        classes=tuple(classes),
        rgb=rgb,
        **tensors,
    )


_NPZ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def _npz_arrays(path: Path, names: Sequence[str]) -> list[np.ndarray]:
    """The named arrays of a data file, or one line saying the file is damaged (a
    truncated download is a ``BadZipFile`` deep inside NumPy)."""
    try:
        with np.load(path) as d:
            return [d[n] for n in names]
    except _NPZ_ERRORS as exc:
        raise HwnasError(
            f"cannot read data file '{path}' ({type(exc).__name__}: {exc}): damaged or cut "
            "short? fetch it again ('hwnas data list' says where it comes from)"
        ) from None


def load_cifar10(
    data_dir: str | os.PathLike[str] | None = None, val_fraction: float = 0.1, seed: int = 0
) -> ImageData:
    """CIFAR-10 from ``images/cifar10/cifar10_{train,test}_shardNN.npz`` (10k + 10k)."""
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in ("train", "test"):
        xs, ys = [], []
        for i in range(10):
            path = data_file(f"images/cifar10/cifar10_{split}_shard{i:02d}.npz", data_dir)
            x, y = _npz_arrays(path, ("x", "y"))
            xs.append(x)
            ys.append(y)
        parts[split] = (np.concatenate(xs), np.concatenate(ys))
    xtr, ytr, xva, yva = _split_val(*parts["train"], val_fraction, seed)
    return _finish("cifar10", {"train": (xtr, ytr), "val": (xva, yva), "test": parts["test"]}, 10)


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    test_fraction: float = 0.2,
) -> ImageData:
    """MNIST from ``images/mnist_test_10k.npz`` (the 10k MNIST test images; a stratified
    ``test_fraction`` of them is our test split, the rest train + validation)."""
    x, y = _npz_arrays(data_file("images/mnist_test_10k.npz", data_dir), ("x", "y"))
    xrest, yrest, xte, yte = _split_val(x, y, test_fraction, seed + 1)
    xtr, ytr, xva, yva = _split_val(xrest, yrest, val_fraction, seed)
    return _finish(
        "mnist", {"train": (xtr, ytr), "val": (xva, yva), "test": (xte, yte)}, 10, flip=False
    )


def load_flowers17(
    data_dir: str | os.PathLike[str] | None = None, val_fraction: float = 0.1, seed: int = 0
) -> ImageData:
    """Oxford Flowers-17 at 16x16 from ``images/flowers17_16px.npz`` (its own splits;
    ``val_fraction`` is unused because the file has a validation split)."""
    path = data_file("images/flowers17_16px.npz", data_dir)
    names = [f"{a}_{s}" for s in ("train", "val", "test") for a in ("x", "y")]
    arrays = _npz_arrays(path, names)
    splits = {s: (arrays[2 * i], arrays[2 * i + 1]) for i, s in enumerate(("train", "val", "test"))}
    return _finish("flowers17", splits, 17)


def load_digits(
    data_dir: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    test_fraction: float = 0.2,
) -> ImageData:
    """scikit-learn's 8x8 digits (1,797 images, shipped with scikit-learn): the embedded
    default for quick runs. Stratified test split, then validation from the rest."""
    from sklearn.datasets import load_digits as _load

    bunch = _load()
    x = bunch.images.astype(np.float32)  # 0..16
    y = bunch.target
    xrest, yrest, xte, yte = _split_val(x, y, test_fraction, seed + 1)
    xtr, ytr, xva, yva = _split_val(xrest, yrest, val_fraction, seed)
    return _finish(
        "digits",
        {"train": (xtr, ytr), "val": (xva, yva), "test": (xte, yte)},
        10,
        flip=False,
        scale=16.0,
    )


_IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp"}


def folder_spec(name: str) -> str:
    """A dataset name with the path of ``folder:PATH`` made absolute (``~`` expanded,
    resolved): one spelling per folder, so stored configs compare equal and work from
    any working directory; other names unchanged. ``folder:`` alone is an error."""
    if not name.startswith("folder:"):
        return name
    path = name[len("folder:") :]
    if not path.strip():
        raise HwnasError("folder: needs a path (folder:PATH, e.g. folder:images)")
    return "folder:" + str(Path(path).expanduser().resolve())


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Arrays ``x`` and ``y`` of an image folder's ``train.npz`` / ``test.npz``."""
    try:
        with np.load(path) as d:
            if "x" not in d or "y" not in d:
                raise HwnasError(
                    f"{path} holds arrays {', '.join(d.files) or 'none'}; it needs x (images, "
                    "N x H x W[ x C] uint8) and y (labels)"
                )
            return d["x"], d["y"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise HwnasError(f"cannot read {path}: {exc}") from None


def _read_image(path: Path, size: int | None) -> np.ndarray:
    try:
        return _decode_image(path, size)
    except HwnasError:
        raise
    except Exception as exc:  # Pillow's UnidentifiedImageError, a truncated .npy, ...
        raise HwnasError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None


def _decode_image(path: Path, size: int | None) -> np.ndarray:
    """One image as an (H, W[, C]) array: a ``.npy`` as stored, any other file through
    Pillow converted to RGB (resized to ``size`` x ``size`` when given)."""
    if path.suffix.lower() == ".npy":
        arr = np.load(path)
        if size is not None and tuple(arr.shape[:2]) != (size, size):
            raise HwnasError(
                f"{path}: a .npy image is {arr.shape[0]}x{arr.shape[1]}; --image-size "
                f"(image_size) resizes image files only (.png, .jpg, ...): store it at "
                f"{size}x{size} or as an image file"
            )
        return arr
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - PIL is optional
        raise HwnasError(
            f"reading {path.suffix} images needs Pillow, which is not installed; "
            "store the images as .npy arrays instead"
        ) from None
    with Image.open(path) as im:
        im = im.convert("RGB")
        if size is not None:
            im = im.resize((size, size))
        return np.asarray(im)


def _is_image(path: Path) -> bool:
    ext = path.suffix.lower()
    return not path.name.startswith(".") and (ext == ".npy" or ext in _IMAGE_EXT)


def _class_files(root: Path) -> dict[str, list[Path]]:
    """Class name -> image files, for the sub-folders of ``root`` in sorted order (hidden
    ones left out); folders without images are skipped with a warning naming them, so the
    classes and their order do not depend on where an empty folder sorts."""
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise HwnasError(
            f"image folder '{root}' has no class sub-folders (it needs ROOT/<class>/<image> "
            "or ROOT/train/<class>/<image>; see docs/DATA.md)"
        )
    found = {d.name: sorted(f for f in d.iterdir() if f.is_file() and _is_image(f)) for d in dirs}
    empty = [name for name, files in found.items() if not files]
    if empty and len(empty) < len(found):
        warnings.warn(
            f"image folder '{root}': skipping {len(empty)} class folder(s) without images: "
            + ", ".join(empty),
            stacklevel=2,
        )
    return {name: files for name, files in found.items() if files}


def _read_class_dirs(
    root: Path, size: int | None, classes: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str], bool]:
    """The images of ``root/<class>/`` with labels (a class's index in ``classes``, by
    default the classes found), the class names and whether any went through Pillow."""
    files = _class_files(root)
    if not files:
        raise HwnasError(f"image folder '{root}' holds no images (.png/.jpg/.npy)")
    if classes is None:
        classes = list(files)
    unknown = [c for c in files if c not in classes]
    if unknown:
        raise HwnasError(
            f"'{root}' has classes the training folder lacks: {', '.join(unknown)} (train and "
            "test need the same class folders)"
        )
    xs: list[np.ndarray] = []
    ys: list[int] = []
    for cname, paths in files.items():
        for f in paths:
            xs.append(_read_image(f, size))
            ys.append(list(classes).index(cname))
    shapes = {a.shape for a in xs}
    if len(shapes) > 1:
        raise HwnasError(
            f"images in '{root}' have different shapes {sorted(shapes)[:3]}; resize them to "
            "one size: --image-size N (image_size in the config) resizes image files to NxN"
        )
    rgb = any(f.suffix.lower() != ".npy" for paths in files.values() for f in paths)
    return np.stack(xs), np.asarray(ys, dtype=np.int64), list(classes), rgb


def _check_images(root: Path, x: np.ndarray) -> None:
    """Square images (the networks take NxN), with a hint how to get them."""
    h, w = x.shape[1], x.shape[2]
    if h != w:
        raise HwnasError(
            f"images in '{root}' are {h}x{w} (height x width), not square; --image-size N "
            "(image_size in the config) resizes them to NxN (stretched), or crop them square "
            "first to keep their aspect ratio"
        )


def _check_counts(root: Path, y: np.ndarray, classes: Sequence[str], held_out: list[str]) -> None:
    """At least 2 classes, and enough images in each for training plus one for each
    split ``held_out`` of them (their names, as the error says them)."""
    if len(classes) < 2:
        raise HwnasError(
            f"image folder '{root}' has {len(classes)} class with images "
            f"({', '.join(classes) or 'none'}); a classifier needs at least 2 classes"
        )
    need = 1 + len(held_out)
    counts = np.bincount(y, minlength=len(classes))
    few = [f"{classes[i]} ({n})" for i, n in enumerate(counts) if n < need]
    if few:
        what = "one for training" + "".join(f", one for {s}" for s in held_out)
        raise HwnasError(
            f"image folder '{root}': too few images in class {', '.join(few)}; each class "
            f"needs at least {need} ({what})"
        )


def _npz_labels(path: Path, y: np.ndarray, n: int | None = None) -> np.ndarray:
    """The labels ``y`` of an npz file as int64, checked: 0, 1, ... (below ``n``)."""
    y = np.asarray(y).reshape(-1)
    if len(y) and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0):
        raise HwnasError(f"{path}: y must hold class indices 0, 1, ... (integers)")
    if n is not None and len(y) and int(y.max()) >= n:
        raise HwnasError(f"{path}: label {int(y.max())} is not a class of train.npz (0..{n - 1})")
    return y.astype(np.int64)


def load_image_folder(
    root: str | os.PathLike[str],
    val_fraction: float = 0.1,
    seed: int = 0,
    image_size: int | None = None,
    test_fraction: float = 0.2,
) -> ImageData:
    """An image folder: ``root/<class>/<image>`` (or ``root/{train,test}/<class>/...``).

    Images are .png/.jpg/... read with Pillow and converted to RGB (resized to
    ``image_size`` when given) or ``.npy`` arrays (H, W[, C]) that need no Pillow. A
    folder may instead hold ``train.npz``/``test.npz`` files with arrays ``x``
    (N, H, W[, C]) uint8 and ``y``. Without a test split a stratified ``test_fraction``
    is held out. Classes are the sub-folders with images, in sorted order (empty ones
    skipped with a warning); each split held out gets at least one image of each class.
    """
    if not os.fspath(root).strip():
        raise HwnasError("folder: needs a path (folder:PATH, e.g. folder:images)")
    root = Path(root).expanduser()
    if root.is_file():
        raise HwnasError(
            f"'{root}' is a file, not a folder: folder:PATH takes a folder of class "
            "sub-folders (or of train.npz/test.npz)"
        )
    if not root.is_dir():
        raise HwnasError(f"image folder '{root}' does not exist")
    rgb = False
    test: tuple[np.ndarray, np.ndarray] | None = None  # a test set of its own
    if (root / "train.npz").is_file():
        x, y = _read_npz(root / "train.npz")
        y = _npz_labels(root / "train.npz", y)
        classes = [str(c) for c in range(int(y.max()) + 1 if len(y) else 0)]
        if (root / "test.npz").is_file():
            xte, yte = _read_npz(root / "test.npz")
            test = (xte, _npz_labels(root / "test.npz", yte, len(classes)))
        if image_size is not None:
            raise HwnasError(
                f"--image-size (image_size) resizes image files, not the arrays of "
                f"'{root / 'train.npz'}': store them at the size you want"
            )
    elif (root / "train").is_dir():
        x, y, classes, rgb = _read_class_dirs(root / "train", image_size)
        if (root / "test").is_dir():
            xte, yte, _, rgb_te = _read_class_dirs(root / "test", image_size, classes)
            test, rgb = (xte, yte), rgb or rgb_te
    else:
        x, y, classes, rgb = _read_class_dirs(root, image_size)
    held_out = [] if test is not None or test_fraction <= 0 else ["the test split"]
    held_out += [f"validation (val_fraction {val_fraction:g})"] if val_fraction > 0 else []
    _check_counts(root, y, classes, held_out)
    if test is None:
        x, y, xte, yte = _split_val(x, y, test_fraction, seed + 1, at_least_one=True)
        test = (xte, yte)
    elif len(test[1]) == 0:
        raise HwnasError(f"the test set of image folder '{root}' holds no images")
    _check_images(root, _nhwc(x))
    xtr, ytr, xva, yva = _split_val(x, y, val_fraction, seed, at_least_one=True)
    return _finish(
        f"folder:{root}",
        {"train": (xtr, ytr), "val": (xva, yva), "test": test},
        len(classes),
        classes=classes,
        rgb=rgb,
    )


DATASETS: dict[str, Callable[..., ImageData]] = {
    "digits": load_digits,
    "cifar10": load_cifar10,
    "mnist": load_mnist,
    "flowers17": load_flowers17,
}


def load_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    limit: int | None = None,
    image_size: int | None = None,
) -> ImageData:
    """Load a dataset by name (``digits``, ``cifar10``, ``mnist``, ``flowers17`` or
    ``folder:PATH``); ``limit`` keeps a seeded random ``limit`` examples of each split;
    ``image_size`` resizes a folder's image files to that square size."""
    if name.startswith("folder:"):
        data = load_image_folder(name.split(":", 1)[1], val_fraction, seed, image_size)
    else:
        try:
            loader = DATASETS[name]
        except KeyError:
            known = ", ".join([*sorted(DATASETS), "folder:PATH"])
            raise HwnasError(f"unknown dataset '{name}' (known: {known})") from None
        if image_size is not None:
            raise HwnasError(
                f"image_size (--image-size) resizes the images of a folder:PATH dataset; "
                f"'{name}' has its own size: leave it unset"
            )
        data = loader(data_dir, val_fraction, seed)
    if limit is not None:
        gen = torch.Generator().manual_seed(seed)
        for s in ("train", "val", "test"):
            x, y = data.split(s)
            keep = torch.randperm(len(y), generator=gen)[:limit].sort().values
            setattr(data, f"x_{s}", x[keep])
            setattr(data, f"y_{s}", y[keep])
    return data
