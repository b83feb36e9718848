"""Dataset readers (real shards from the data dir), augmentation, batching."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from hwnas.config import ENV_DATA_DIR, changed_settings
from hwnas.data import BatchIterator, augment_batch, load_dataset, load_image_folder
from hwnas.errors import DataNotFoundError, HwnasError

torch.set_num_threads(1)

# The project's tests read the real data from ``../shared/data`` beside the checkout unless
# HWNAS_DATA_DIR says otherwise; a missing data dir fails (DataNotFoundError), never skips.
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _data_dir(monkeypatch):
    if not os.environ.get(ENV_DATA_DIR):
        monkeypatch.setenv(ENV_DATA_DIR, str(DEFAULT_DATA))


def _check(data, n_classes: int, shape: tuple[int, ...]) -> None:
    assert data.num_classes == n_classes
    for s in ("train", "val", "test"):
        x, y = data.split(s)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert tuple(x.shape[1:]) == shape and len(x) == len(y)
        assert int(y.min()) >= 0 and int(y.max()) < n_classes
    # normalised with training-set statistics
    assert abs(float(data.x_train.mean())) < 0.05
    assert abs(float(data.x_train.std()) - 1.0) < 0.05


def test_cifar10_real_shards() -> None:
    data = load_dataset("cifar10", val_fraction=0.1)
    _check(data, 10, (3, 32, 32))
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (9000, 1000, 10000)
    # stratified validation split held out of the 10k training images
    assert torch.bincount(data.y_val).tolist() == [100] * 10
    assert torch.bincount(data.y_test).tolist() == [1000] * 10
    assert data.flip and data.pad == 4
    # the validation images are not in the training split
    tr = {hash(r.numpy().tobytes()) for r in data.x_train[:, :, 10:20, 10:20].reshape(9000, -1)}
    va = [hash(r.numpy().tobytes()) for r in data.x_val[:, :, 10:20, 10:20].reshape(1000, -1)]
    assert sum(h in tr for h in va) < 10  # (a few near-duplicate images exist in CIFAR)


def test_mnist_flowers_digits() -> None:
    mnist = load_dataset("mnist")
    _check(mnist, 10, (1, 28, 28))
    assert len(mnist.y_train) + len(mnist.y_val) + len(mnist.y_test) == 10000
    assert not mnist.flip
    flowers = load_dataset("flowers17")
    _check(flowers, 17, (3, 16, 16))
    assert (len(flowers.y_train), len(flowers.y_val), len(flowers.y_test)) == (680, 340, 340)
    digits = load_dataset("digits", limit=100)
    _check(digits, 10, (1, 8, 8))
    assert len(digits.y_train) == 100


def test_missing_data_dir_fails_loudly(tmp_path) -> None:
    with pytest.raises(DataNotFoundError, match="cifar10_train_shard00.npz"):
        load_dataset("cifar10", data_dir=tmp_path)
    with pytest.raises(DataNotFoundError, match=ENV_DATA_DIR):
        load_dataset("mnist", data_dir=tmp_path)
    with pytest.raises(HwnasError, match="unknown dataset"):
        load_dataset("imagenet")
    with pytest.raises(HwnasError, match="val_fraction"):
        load_dataset("digits", val_fraction=1.5)


def test_a_truncated_data_file_is_one_line(tmp_path) -> None:
    """A download cut short (a zip without its end) is named, not a BadZipFile deep in
    NumPy: the image sets and the OFA accuracy predictors."""
    import os
    import shutil

    from hwnas.bench import get_benchmark

    src = Path(os.environ[ENV_DATA_DIR])
    for rel in ("images/mnist_test_10k.npz", "ofa/ofa_mbv3_acc_predictor.npz"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        data = (src / rel).read_bytes()
        (tmp_path / rel).write_bytes(data[: len(data) // 2])
    with pytest.raises(HwnasError, match="cannot read data file .*mnist_test_10k.npz"):
        load_dataset("mnist", data_dir=tmp_path)
    shutil.copy(src / "ofa" / "ofa_mbv3_note10_latency_lut.json", tmp_path / "ofa")
    with pytest.raises(HwnasError, match="cannot read OFA accuracy predictor"):
        get_benchmark("ofa-mbv3", data_dir=tmp_path).evaluate(np.zeros((1, 46), int))


def test_image_folder_npy_and_png(tmp_path) -> None:
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / "npy" / c).mkdir(parents=True)
        for i in range(10):
            np.save(tmp_path / "npy" / c / f"{i}.npy", rng.integers(0, 255, (6, 6, 3), np.uint8))
    data = load_image_folder(tmp_path / "npy", val_fraction=0.2, test_fraction=0.2)
    assert data.num_classes == 2 and data.in_channels == 3 and data.image_size == 6
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 20
    assert len(data.y_test) == 4 and len(data.y_val) == 4
    # same via load_dataset("folder:...")
    assert load_dataset(f"folder:{tmp_path / 'npy'}").num_classes == 2
    # train.npz / test.npz variant
    (tmp_path / "npz").mkdir()
    x = rng.integers(0, 255, (30, 5, 5), np.uint8)
    np.savez(tmp_path / "npz" / "train.npz", x=x, y=np.arange(30) % 3)
    np.savez(tmp_path / "npz" / "test.npz", x=x[:6], y=np.arange(6) % 3)
    d2 = load_image_folder(tmp_path / "npz")
    assert d2.in_channels == 1 and len(d2.y_test) == 6 and d2.num_classes == 3
    # png through Pillow (installed here), resized on read
    image = pytest.importorskip("PIL.Image")
    for c in ("a", "b"):
        (tmp_path / "png" / "train" / c).mkdir(parents=True)
        (tmp_path / "png" / "test" / c).mkdir(parents=True)
        for i in range(4):
            arr = rng.integers(0, 255, (12, 10, 3), np.uint8)
            image.fromarray(arr).save(tmp_path / "png" / "train" / c / f"{i}.png")
            image.fromarray(arr).save(tmp_path / "png" / "test" / c / f"{i}.png")
    d3 = load_image_folder(tmp_path / "png", image_size=8, val_fraction=0.25)
    assert d3.image_size == 8 and len(d3.y_test) == 8 and len(d3.y_val) == 2
    with pytest.raises(HwnasError, match="does not exist"):
        load_image_folder(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HwnasError, match="no class sub-folders"):
        load_image_folder(tmp_path / "empty")
    # what a user's folder may hold by mistake: one line each, no traceback
    (tmp_path / "bad" / "a").mkdir(parents=True)
    (tmp_path / "bad" / "a" / "x.png").write_text("hi")
    with pytest.raises(HwnasError, match=r"x.png: not a readable image \(UnidentifiedImage"):
        load_image_folder(tmp_path / "bad")
    (tmp_path / "noy").mkdir()
    np.savez(tmp_path / "noy" / "train.npz", x=x, labels=np.arange(30) % 3)
    with pytest.raises(HwnasError, match="holds arrays x, labels; it needs x .* and y"):
        load_image_folder(tmp_path / "noy")
    for i, shape in enumerate([(6, 6, 3), (7, 7, 3)]):
        (tmp_path / "mixed" / "a").mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / "mixed" / "a" / f"{i}.npy", np.zeros(shape, np.uint8))
    with pytest.raises(HwnasError, match="different shapes .* --image-size N"):
        load_dataset(f"folder:{tmp_path / 'mixed'}")


def _pngs(root: Path, counts: dict[str, int], shape: tuple[int, ...] = (6, 6, 3)) -> Path:
    """``root/<class>/<i>.png``: ``counts[class]`` tiny random images of ``shape`` (an
    empty folder for a count of 0)."""
    image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for c, n in counts.items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image.fromarray(rng.integers(0, 255, shape, np.uint8)).save(root / c / f"{i}.png")
    return root


def test_image_folder_classes_skip_empty_folders_wherever_they_sort(tmp_path) -> None:
    """An empty class folder is no output (it was output 0 sorting first, dropped sorting
    last); the class names in output order are kept; one class is refused."""
    root = _pngs(tmp_path / "ds", {"aaa": 0, "cat": 3, "dog": 3, "zzz": 0})
    with pytest.warns(UserWarning, match="skipping 2 class folder.* without images: aaa, zzz"):
        data = load_image_folder(root)
    assert data.num_classes == 2 and data.classes == ("cat", "dog")
    assert set(data.y_train.tolist()) == {0, 1}
    assert data.summary()["classes"] == ["cat", "dog"]
    prep = data.preprocess()  # Pillow converted them: the metadata says so
    assert prep["channel_order"] == "RGB" and "grey replicated" in prep["color"]
    _pngs(tmp_path / "one", {"cat": 3, "empty": 0})
    with (
        pytest.warns(UserWarning, match="without images: empty"),
        pytest.raises(HwnasError, match="1 class with images .cat.; .* at least 2 classes"),
    ):
        load_image_folder(tmp_path / "one")
    # a test folder: its classes are mapped to the training folder's outputs
    _pngs(tmp_path / "tt" / "train", {"cat": 2, "dog": 2})
    _pngs(tmp_path / "tt" / "test", {"dog": 1})
    d2 = load_image_folder(tmp_path / "tt")
    assert d2.y_test.tolist() == [1] and d2.classes == ("cat", "dog")
    _pngs(tmp_path / "tt" / "test", {"eel": 1})
    with pytest.raises(HwnasError, match="classes the training folder lacks: eel"):
        load_image_folder(tmp_path / "tt")


def test_image_folder_needs_an_image_of_each_class_in_each_split(tmp_path) -> None:
    """Too few images per class: an error saying how many (the splits were silently
    empty); enough: every split held out has each class."""
    _pngs(tmp_path / "few", {"cat": 2, "dog": 5})
    with pytest.raises(HwnasError, match=r"too few images in class cat \(2\); each class needs "):
        load_image_folder(tmp_path / "few")
    with pytest.raises(HwnasError, match="at least 3 .one for training, one for the test split"):
        load_image_folder(tmp_path / "few")
    assert len(load_image_folder(tmp_path / "few", val_fraction=0.0).y_test) == 2
    data = load_image_folder(_pngs(tmp_path / "ok", {"cat": 3, "dog": 3}))
    for split in ("train", "val", "test"):
        assert data.split(split)[1].tolist() == [0, 1], split


def test_image_folder_paths_and_sizes(tmp_path, monkeypatch) -> None:
    """One spelling per folder; an empty path or a file is a clear error; mixed and
    non-square sizes say how to resize them from the CLI (--image-size)."""
    from hwnas.data import folder_spec

    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs").mkdir()
    same = {folder_spec(s) for s in ("folder:imgs", "folder:imgs/", f"folder:{tmp_path}/imgs")}
    assert same == {f"folder:{tmp_path / 'imgs'}"} and folder_spec("digits") == "digits"
    for name in ("folder:", "folder: "):
        with pytest.raises(HwnasError, match="^folder: needs a path"):
            load_dataset(name)
    (tmp_path / "f.png").write_bytes(b"")
    with pytest.raises(HwnasError, match="is a file, not a folder"):
        load_dataset("folder:f.png")
    _pngs(tmp_path / "mixed", {"cat": 3}, (6, 6, 3))
    _pngs(tmp_path / "mixed", {"dog": 3}, (9, 9))  # grey: replicated to RGB
    with pytest.raises(HwnasError, match="different shapes .* --image-size N"):
        load_dataset("folder:mixed")
    data = load_dataset("folder:mixed", image_size=8)
    assert data.image_size == 8 and data.in_channels == 3
    _pngs(tmp_path / "rect", {"cat": 3, "dog": 3}, (6, 9, 3))
    with pytest.raises(HwnasError, match="are 6x9 .* not square; --image-size N"):
        load_dataset("folder:rect")
    with pytest.raises(HwnasError, match="resizes the images of a folder:PATH dataset"):
        load_dataset("digits", image_size=8)


def test_augment_batch_crops_and_flips() -> None:
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    g = torch.Generator().manual_seed(0)
    out = augment_batch(x, pad=2, flip=False, generator=g)
    assert out.shape == x.shape
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for n in range(2):  # every output is some 5x5 window of the padded image
        assert any(
            torch.equal(out[n], xp[n, :, i : i + 5, j : j + 5]) for i in range(5) for j in range(5)
        )
    flips = [augment_batch(x, pad=0, flip=True, generator=g) for _ in range(20)]
    for f in flips:
        for n in range(2):
            assert torch.equal(f[n], x[n]) or torch.equal(f[n], x[n].flip(2))
    assert any(not torch.equal(f, x) for f in flips)


def test_batch_iterator_shuffles_shards_and_caps() -> None:
    x = torch.arange(20, dtype=torch.float32).reshape(20, 1, 1, 1)
    y = torch.arange(20)
    it = BatchIterator(x, y, 6, shuffle=True, generator=torch.Generator().manual_seed(0))
    seen = torch.cat([yb for _, yb in it])
    assert sorted(seen.tolist()) == list(range(20)) and len(it) == 4
    assert len(BatchIterator(x, y, 6, drop_last=True)) == 3
    assert len(BatchIterator(x, y, 6, max_batches=2)) == 2
    parts = []
    for rank in range(2):
        it = BatchIterator(
            x, y, 5, shuffle=True, generator=torch.Generator().manual_seed(1), shard=(rank, 2)
        )
        parts.append(torch.cat([yb for _, yb in it]))
    assert set(parts[0].tolist()).isdisjoint(parts[1].tolist())
    assert len(parts[0]) + len(parts[1]) == 20
    xb, _ = next(iter(BatchIterator(x.expand(20, 3, 4, 4), y, 4, channels_last=True)))
    assert xb.is_contiguous(memory_format=torch.channels_last)


def test_changed_settings_names_what_a_resume_would_change() -> None:
    """A resume refusal names each changed setting, old and new; free keys and a tuple
    given back as a list are no change."""
    old = {"lr": 0.05, "ops": ("a", "b"), "data_dir": "/x", "C": 4}
    assert changed_settings(old, {**old, "ops": ["a", "b"], "data_dir": "/y"}, {"data_dir"}) == ""
    assert changed_settings(old, {**old, "lr": 0.1, "C": 6, "new": None}) == (
        "C 4 (now 6), lr 0.05 (now 0.1)"
    )
    assert changed_settings({"ops": ("a",)}, {"ops": ["a", "b"]}) == 'ops ["a"] (now ["a", "b"])'
    assert changed_settings({}, {"k": 1}) == "k null (now 1)"
