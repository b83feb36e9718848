"""Latency lookup tables: a network's latency as the sum of its blocks' latencies.

For the MBv3 supernet spaces (:mod:`hwnas.space.mbv3_ramnas`) a network is a stem, a chain
of MBConv blocks and a head. :func:`build_lut` measures every distinct block
configuration *in context* — at the input resolution and channels it sees in the network,
with its kernel, expand ratio, stride, SE, activation and residual — as a small ONNX
model, with the same interleaved protocol as whole networks, and stores one entry per
block key (:class:`LatencyLUT`, a JSON file). :meth:`LatencyLUT.predict` sums the entries
of a network; :func:`evaluate_lut` compares those sums with whole networks measured by
:func:`hwnas.measure.profile.profile_space` (Kendall tau, Spearman rho, MAPE).

Per-block timings carry the runtime's per-call overhead once per block, miss the fusion
and cache effects across blocks, and time each block with warm caches, so the sum is
biased (either way, depending on the device and the network size, often by a factor):
it ranks networks but is not their latency, and no scale is fitted to it. What a search
needs is the ranking, which :func:`evaluate_lut` reports (its MAPE and sum/measured
ratio show the bias).

Published tables: :func:`ofa_note10_latency` (OFA's Samsung Note10 table, through the
vectorised reader of :mod:`hwnas.bench.ofa_mbv3`) and :func:`read_proxylessnas_lut`
(ProxylessNAS' mobile table, YAML).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hwnas.config import changed_settings
from hwnas.errors import HwnasError
from hwnas.measure.latency import MeasureSettings
from hwnas.measure.profile import num_classes_for

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from hwnas.measure.measurer import LatencyMeasurer
    from hwnas.space.mbv3_ramnas import MBv3SupernetSpace

LUT_FORMAT = "hwnas-lut/1"
ProgressFn = Callable[[int, int], None]


def _down(h: int, stride: int) -> int:
    """Output size of a 'same'-padded odd-kernel conv."""
    return (h - 1) // stride + 1


@dataclass(frozen=True)
class BlockSpec:
    """One block of an MBv3 network in context. ``kind``: stem, mbconv or head."""

    kind: str
    h: int
    cin: int
    cout: int
    stage: int = -1
    position: int = 0
    kernel: int = 3
    expand: int = 1
    stride: int = 1
    se: bool = False
    act: str = "hswish"
    residual: bool = False
    mid: int = 0  # head: channels of the 1x1 expansion before pooling
    classes: int = 0  # head: classifier outputs

    @property
    def key(self) -> str:
        ho = _down(self.h, self.stride)
        io = f"input:{self.h}x{self.h}x{self.cin}-output:{ho}x{ho}x{self.cout}"
        if self.kind == "stem":
            return f"stem-{io}-kernel:{self.kernel}-stride:{self.stride}-act:{self.act}"
        if self.kind == "mbconv":
            return (
                f"mbconv-{io}-expand:{self.expand}-kernel:{self.kernel}-stride:{self.stride}"
                f"-se:{int(self.se)}-act:{self.act}-res:{int(self.residual)}"
            )
        if self.kind == "head":
            return (
                f"head-input:{self.h}x{self.h}x{self.cin}-mid:{self.mid}-last:{self.cout}"
                f"-classes:{self.classes}"
            )
        raise HwnasError(f"unknown block kind '{self.kind}'")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.cin, self.h, self.h)


def _head_mid(space: MBv3SupernetSpace, cin: int) -> int:
    # the MBPool 1x1 expansion: final_expand x the active last-stage width
    return cin * space.spec.final_expand


def arch_blocks(
    space: MBv3SupernetSpace, arch: Any, num_classes: int | None = None
) -> list[BlockSpec]:
    """The blocks of one network (config dict or vector), stem first, head last."""
    nc = num_classes if num_classes is not None else num_classes_for(space.name)
    cfg = space.config(arch)
    sp = space.spec
    r = cfg["resolution"]
    c = cfg["stem"]
    out = [BlockSpec("stem", r, 3, c, kernel=3, stride=sp.stem_stride, act=sp.stem_act)]
    h = _down(r, sp.stem_stride)
    for s, (st, sc) in enumerate(zip(sp.stages, cfg["stages"], strict=True)):
        for p in range(sc["depth"]):
            stride = st.stride if p == 0 else 1
            w = sc["width"]
            out.append(
                BlockSpec(
                    "mbconv",
                    h,
                    c,
                    w,
                    stage=s,
                    position=p,
                    kernel=sc["kernel"][p],
                    expand=sc["expand"][p],
                    stride=stride,
                    se=st.se,
                    act=st.act,
                    residual=p > 0,
                )
            )
            h, c = _down(h, stride), w
    out.append(BlockSpec("head", h, c, cfg["last"], mid=_head_mid(space, c), classes=nc))
    return out


def all_blocks(space: MBv3SupernetSpace, num_classes: int | None = None) -> list[BlockSpec]:
    """Every distinct block configuration of the space (stem, MBConv, head)."""
    nc = num_classes if num_classes is not None else num_classes_for(space.name)
    sp = space.spec
    found: dict[str, BlockSpec] = {}

    def add(b: BlockSpec) -> None:
        found.setdefault(b.key, b)

    for r in sp.resolutions:
        for c in sp.stem_widths:
            add(BlockSpec("stem", r, 3, c, kernel=3, stride=sp.stem_stride, act=sp.stem_act))
        h = _down(r, sp.stem_stride)
        cins: Sequence[int] = sp.stem_widths
        for s, st in enumerate(sp.stages):
            ho = _down(h, st.stride)
            for k in st.kernels:
                for e in st.expands:
                    for w in st.widths:
                        for cin in cins:
                            add(
                                BlockSpec(
                                    "mbconv", h, cin, w, stage=s, position=0, kernel=k,
                                    expand=e, stride=st.stride, se=st.se, act=st.act,
                                )
                            )  # fmt: skip
                        if st.max_depth > 1:
                            add(
                                BlockSpec(
                                    "mbconv", ho, w, w, stage=s, position=1, kernel=k,
                                    expand=e, stride=1, se=st.se, act=st.act, residual=True,
                                )
                            )  # fmt: skip
            h, cins = ho, st.widths
        for cin in cins:
            for last in sp.last_widths:
                add(BlockSpec("head", h, cin, last, mid=_head_mid(space, cin), classes=nc))
    return list(found.values())


def block_module(net: Any, b: BlockSpec) -> nn.Module:
    """The block as a standalone module cut from ``net`` (an ``MBv3Supernet``) exactly the
    way ``get_subnet`` cuts it. Changes the active choices of that block of ``net``."""
    from torch import nn

    from hwnas.supernet.static import make_act

    if b.kind == "stem":
        net.stem.active_out = b.cout
        return net.stem.export_with_input(b.cin)
    if b.kind == "mbconv":
        block = net.stages[b.stage][0 if b.position == 0 else 1]
        block.set_active(b.cout, b.kernel, b.expand)
        return block.export_with_input(b.cin)
    if b.kind == "head":
        net.final_expand.active_out = b.mid
        expand = net.final_expand.export_with_input(b.cin)
        net.feature_mix.active_out = b.cout
        return nn.Sequential(
            expand,
            nn.AdaptiveAvgPool2d(1),
            net.feature_mix.export_with_input(net.final_expand.active_out),
            make_act("hswish"),
            nn.Flatten(1),
            net.classifier.export_with_input(b.cout),
        )
    raise HwnasError(f"unknown block kind '{b.kind}'")


# ---------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------
@dataclass
class LatencyLUT:
    """Per-block latencies (ms) of one space on one device, with how they were taken."""

    space: str
    num_classes: int
    settings: dict[str, Any]
    host: dict[str, Any] = field(default_factory=dict)
    device: dict[str, Any] = field(default_factory=dict)
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: str = ""

    def __len__(self) -> int:
        return len(self.entries)

    def _space(self) -> MBv3SupernetSpace:
        from hwnas.space.mbv3_ramnas import space_for

        return space_for(self.space)

    def keys_of(self, vectors: Any) -> list[list[str]]:
        """The block keys of each network: vectors (checked against the space), or one
        config dict or name ('min', 'max') as :func:`arch_blocks` takes them."""
        space = self._space()
        if isinstance(vectors, dict | str):
            return [[b.key for b in arch_blocks(space, vectors, self.num_classes)]]
        x = space.canonicalize(space.check_vectors(vectors))
        return [[b.key for b in arch_blocks(space, v, self.num_classes)] for v in x]

    def missing(self, vectors: np.ndarray) -> list[str]:
        """Block keys the networks need that the table lacks."""
        need = {k for ks in self.keys_of(vectors) for k in ks}
        return sorted(need - set(self.entries))

    def predict(self, vectors: Any, strict: bool = True) -> np.ndarray:
        """Sum of block latencies (ms) per vector (or of one config or 'min'/'max'); a
        network with a block missing from the table is an error, or nan with
        ``strict=False``."""
        out = []
        for keys in self.keys_of(vectors):
            try:
                out.append(sum(float(self.entries[k]["latency_ms"]) for k in keys))
            except KeyError as exc:
                if strict:
                    raise HwnasError(
                        f"latency table of {self.space} lacks block {exc}; build it for "
                        "these networks (hwnas lut build --from-run) or the whole space"
                    ) from None
                out.append(float("nan"))
        return np.asarray(out, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["format"] = LUT_FORMAT
        return d

    def save(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=False) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LatencyLUT:
        """Read a table written by :meth:`save`; anything else is a one-line error."""
        path = Path(path)
        if path.is_dir():
            raise HwnasError(f"latency table {path} is a directory, not a JSON file")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise HwnasError(f"latency table not found: {path}") from None
        except UnicodeDecodeError:
            raise HwnasError(
                f"{path} is not an hwnas latency table (a binary file, not JSON)"
            ) from None
        except (OSError, json.JSONDecodeError) as exc:
            raise HwnasError(f"cannot read latency table {path}: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != LUT_FORMAT:
            raise HwnasError(f"{path} is not an hwnas latency table ({LUT_FORMAT})")
        try:
            lut = cls(
                space=str(data["space"]),
                num_classes=int(data["num_classes"]),
                settings=dict(data.get("settings") or {}),
                host=dict(data.get("host") or {}),
                device=dict(data.get("device") or {}),
                entries=dict(data["entries"]),
                created=str(data.get("created", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise HwnasError(f"malformed latency table {path}: {exc}") from None
        for key, entry in lut.entries.items():
            value = entry.get("latency_ms") if isinstance(entry, dict) else None
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise HwnasError(
                    f"malformed latency table {path}: entry '{key}' needs a latency_ms >= 0 "
                    f"(a number), got {value if isinstance(entry, dict) else entry!r}"
                )
        return lut


def _device_text(device: dict[str, Any]) -> str:
    """'local' or 'agent URL' (or the raw description)."""
    if device.get("measurer") == "remote":
        return f"agent {device.get('agent')}"
    return str(device.get("measurer") or json.dumps(device))


#: measurement settings that change what a latency is (batch size is refused apart)
_SETUP_KEYS = ("intra_op_threads", "inter_op_threads", "provider")


def setup_differences(table: dict[str, Any], run: dict[str, Any]) -> list[str]:
    """What differs between where and how a table's blocks and a profile's networks were
    (or are to be) measured, each as ``what TABLE (run: RUN)``: the device (local or which
    agent), the threads and provider, and the host when the device is the same. Each side
    holds ``device``, ``settings`` and ``host`` dicts; what a side lacks is not compared."""
    out = []
    a, b = table.get("device") or {}, run.get("device") or {}
    if a and b and a != b:
        out.append(f"device {_device_text(a)} (run: {_device_text(b)})")
    sa, sb = table.get("settings") or {}, run.get("settings") or {}
    out += [
        f"{k} {sa[k]} (run: {sb[k]})" for k in _SETUP_KEYS if k in sa and k in sb and sa[k] != sb[k]
    ]
    ha = (table.get("host") or {}).get("hostname")
    hb = (run.get("host") or {}).get("hostname")
    if ha and hb and ha != hb and not (a and b and a != b):
        out.append(f"host {ha} (run: {hb})")
    return out


def build_lut(
    space_name: str,
    settings: MeasureSettings | None = None,
    measurer: LatencyMeasurer | None = None,
    vectors: np.ndarray | None = None,
    num_classes: int | None = None,
    group_size: int = 16,
    out: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
    seed: int = 0,
) -> LatencyLUT:
    """Measure the blocks of ``vectors`` (default: every block of the space).

    Blocks are exported one by one and measured ``group_size`` at a time, interleaved.
    With ``out`` the table is written after every group, and an existing table at ``out``
    for the same space, classes, settings and device (the same kind of measurer: local,
    or the same agent) is extended (its entries are not measured again), so a killed
    build resumes; a table of another device is refused, never mixed.
    """
    import dataclasses

    import torch

    from hwnas.measure.export import export_onnx
    from hwnas.measure.measurer import LocalMeasurer
    from hwnas.measure.profile import _describe_measurer
    from hwnas.space.mbv3_ramnas import space_for
    from hwnas.supernet.mbv3 import MBv3Supernet

    settings = settings or MeasureSettings()
    if settings.runtime != "onnxruntime":
        raise HwnasError(f"lut build measures ONNX blocks with onnxruntime, not {settings.runtime}")
    settings = dataclasses.replace(settings, input_shape=None)
    if group_size < 1:
        raise HwnasError(f"group size must be >= 1, got {group_size}")
    space = space_for(space_name)
    nc = int(num_classes) if num_classes is not None else num_classes_for(space.name)
    if vectors is None:
        specs = all_blocks(space, nc)
    else:
        if np.asarray(vectors).size == 0:
            raise HwnasError("no networks given to build the table for (an empty profile?)")
        seen: dict[str, BlockSpec] = {}
        for v in space.canonicalize(np.atleast_2d(np.asarray(vectors, dtype=np.int64))):
            for b in arch_blocks(space, v, nc):
                seen.setdefault(b.key, b)
        specs = list(seen.values())
    measurer = measurer if measurer is not None else LocalMeasurer(settings)
    lut = LatencyLUT(space.name, nc, settings.to_dict(), device=_describe_measurer(measurer))
    if out is not None and Path(out).exists():
        old = LatencyLUT.load(out)
        if (old.space, old.num_classes, old.settings) != (lut.space, nc, lut.settings):
            what = changed_settings(
                {"space": old.space, "num_classes": old.num_classes, **old.settings},
                {"space": lut.space, "num_classes": nc, **lut.settings},
            )
            raise HwnasError(
                f"{out} holds a table with other settings: {what}; use the same options to "
                "extend it, or another output file"
            )
        if old.device and old.device != lut.device:
            raise HwnasError(
                f"{out} holds a table measured on a different device ({_device_text(old.device)}"
                f", now {_device_text(lut.device)}); use another output file"
            )
        lut.entries = dict(old.entries)
        lut.host = old.host
    todo = [b for b in specs if b.key not in lut.entries]
    # shuffle so each interleaved group mixes block sizes (seeded, reproducible)
    todo = [todo[i] for i in np.random.default_rng(seed).permutation(len(todo))]
    total = len(specs)
    if progress is not None:
        progress(total - len(todo), total)
    if todo:
        net = MBv3Supernet(space, num_classes=nc).eval()
        with torch.no_grad(), tempfile.TemporaryDirectory(prefix="hwnas-lut-") as tmp:
            for g0 in range(0, len(todo), group_size):
                group = todo[g0 : g0 + group_size]
                paths = []
                for i, b in enumerate(group):
                    mod = block_module(net, b).eval()
                    path = Path(tmp) / f"block{i}.onnx"
                    export_onnx(mod, b.input_shape, path, settings.batch_size, check=False)
                    paths.append(path)
                found = measurer.measure(paths, settings)
                for b, m in zip(group, found, strict=True):
                    lut.entries[b.key] = {
                        "latency_ms": float(m.latency_ms),
                        "robust_cv": float(m.stats.robust_cv),
                        "unstable": bool(m.stats.unstable),
                        "kind": b.kind,
                        "spec": asdict(b),
                    }
                    if not lut.host:
                        lut.host = dict(m.host)
                lut.created = time.strftime("%Y-%m-%dT%H:%M:%S")
                if out is not None:
                    lut.save(out)
                if progress is not None:
                    progress(total - len(todo) + g0 + len(group), total)
    elif out is not None:
        lut.save(out)
    return lut


def check_profile_networks(config: dict[str, Any], run_dir: str | os.PathLike[str]) -> None:
    """Refuse a profile whose networks a table's blocks cannot add up to: blocks take
    3-channel images at the subnet's own resolution, with no resize in front."""
    odd = {k: config[k] for k in ("in_channels", "input_size") if config.get(k) is not None}
    if odd.get("in_channels") == 3:
        odd.pop("in_channels")
    if odd:
        given = ", ".join(f"{k}={v}" for k, v in odd.items())
        raise HwnasError(
            f"{run_dir} measured networks with {given}; a table's blocks take 3-channel "
            "images at the subnet's resolution, so its sums cannot stand for them"
        )


def evaluate_lut(lut: LatencyLUT, run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """How well the table's sums rank whole networks measured by a profile run.

    Returns ``n`` (networks compared), ``n_missing`` (networks with a block the table
    lacks, left out), ``kendall_tau``, ``spearman_rho``, ``mape`` of the sums against the
    measured latency, ``ratio_median`` (sum / measured), and ``flops_kendall_tau`` (the
    ranking by FLOPs alone, for comparison) on the same networks. Warns when the table
    was measured on another device or host, or with other threads, than the run.
    """
    from hwnas.measure.profile import load_profile
    from hwnas.predict.evaluate import kendall_tau, rank_metrics

    data = load_profile(run_dir)
    if data.space_name != lut.space:
        raise HwnasError(
            f"the table is for {lut.space} but the profile run is of {data.space_name}"
        )
    if len(data) == 0:
        raise HwnasError(f"{run_dir} holds no successful measurement")
    check_profile_networks(data.run["config"], run_dir)
    measured_nc = data.run["config"].get("num_classes")
    if measured_nc is not None and int(measured_nc) != lut.num_classes:
        raise HwnasError(
            f"the table was built for {lut.num_classes} classes but {run_dir} measured networks "
            f"with {measured_nc} classes (their heads differ); build the table with "
            f"--num-classes {measured_nc} (or --from-run {run_dir})"
        )
    sizes = (lut.settings.get("batch_size"), data.settings.get("batch_size"))
    if None not in sizes and sizes[0] != sizes[1]:
        raise HwnasError(
            f"the table was measured at batch size {sizes[0]} but {run_dir} at {sizes[1]}: "
            "the sums would not be comparable"
        )
    differ = setup_differences(
        {"device": lut.device, "settings": lut.settings, "host": lut.host},
        {"device": data.run["config"].get("device"), "settings": data.settings, "host": data.host},
    )
    if differ:
        warnings.warn(
            f"the table and {run_dir} were measured differently: {', '.join(differ)}; its "
            "sums stand for another setup than the measured networks (build it with "
            f"'hwnas lut build --from-run {run_dir}' and the run's options)",
            stacklevel=2,
        )
    pred = lut.predict(data.vectors, strict=False)
    ok = np.isfinite(pred)
    if not ok.any():
        raise HwnasError("the table covers none of the measured networks")
    y = data.target("latency")[ok]
    metrics = rank_metrics(y, pred[ok])
    out: dict[str, Any] = {"n": int(ok.sum()), "n_missing": int((~ok).sum())}
    out.update(metrics)
    out["ratio_median"] = float(np.median(pred[ok] / y))
    if "flops" in data.objectives:
        out["flops_kendall_tau"] = kendall_tau(y, data.objectives["flops"][ok])
    return out


# ---------------------------------------------------------------------------------------
# published tables
# ---------------------------------------------------------------------------------------
OFA_NOTE10_FILE = "ofa/ofa_mbv3_note10_latency_lut.json"
PROXYLESSNAS_FILE = "ofa/proxylessnas_mobile_trim_lut.yaml"


def ofa_note10_arrays(data_dir: str | os.PathLike[str] | None = None) -> tuple[Any, Any]:
    """OFA's Samsung Note10 table as arrays ``(fixed[r], per_slot[r, slot, k, e])`` (ms):
    the reader of :mod:`hwnas.bench.ofa_mbv3`, shared, not duplicated."""
    from hwnas.bench.ofa_mbv3 import _lut_arrays
    from hwnas.config import data_file

    return _lut_arrays(data_file(OFA_NOTE10_FILE, data_dir))


def ofa_note10_latency(
    vectors: np.ndarray, data_dir: str | os.PathLike[str] | None = None
) -> np.ndarray:
    """Note10 latency (ms) of OFA-MobileNetV3 vectors (:mod:`hwnas.space.ofa_mbv3`)."""
    from hwnas.bench.ofa_mbv3 import OFAMobileNetV3Benchmark

    return OFAMobileNetV3Benchmark(data_dir=data_dir).note10_latency(
        np.atleast_2d(np.asarray(vectors, dtype=np.int64))
    )


def _parse_simple_yaml(text: str) -> dict[str, dict[str, float]]:
    """The two-level ``KEY:\\n  field: number`` structure of ProxylessNAS' table (used
    when PyYAML is not installed)."""
    out: dict[str, dict[str, float]] = {}
    current: dict[str, float] | None = None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            if not line.endswith(":"):
                raise HwnasError(f"ProxylessNAS table line {n}: expected 'KEY:'")
            current = out.setdefault(line[:-1].strip().strip("'\""), {})
            continue
        name, sep, value = line.strip().partition(": ")
        if current is None or not sep:
            raise HwnasError(f"ProxylessNAS table line {n}: expected '  field: value'")
        try:
            current[name] = float(value)
        except ValueError:
            raise HwnasError(f"ProxylessNAS table line {n}: '{value}' is not a number") from None
    return out


def read_proxylessnas_lut(
    path: str | os.PathLike[str] | None = None, data_dir: str | os.PathLike[str] | None = None
) -> dict[str, dict[str, float]]:
    """ProxylessNAS' mobile latency table: ``{op key: {"count", "mean", "var"}}``, mean in
    ms. Reads with PyYAML (``safe_load``) when installed, else with a minimal reader of
    the file's two-level structure."""
    from hwnas.config import data_file

    p = Path(path) if path is not None else data_file(PROXYLESSNAS_FILE, data_dir)
    try:
        text = p.read_text()
    except OSError as exc:
        raise HwnasError(f"cannot read ProxylessNAS table {p}: {exc}") from None
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML is present in the dev venv
        table = _parse_simple_yaml(text)
    else:
        try:
            table = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise HwnasError(f"cannot parse ProxylessNAS table {p}: {exc}") from None
    if not isinstance(table, dict) or not all(
        isinstance(v, dict) and "mean" in v for v in table.values()
    ):
        raise HwnasError(f"{p} is not a ProxylessNAS latency table (KEY: {{mean: ms}})")
    return {str(k): {f: float(x) for f, x in v.items()} for k, v in table.items()}


def proxylessnas_block_key(
    h: int, cin: int, cout: int, expand: int, kernel: int, stride: int
) -> str:
    """The table's key of an inverted-residual block (``idskip`` when shapes allow)."""
    ho = _down(h, stride)
    skip = int(stride == 1 and cin == cout)
    return (
        f"expanded_conv-input:{h}x{h}x{cin}-output:{ho}x{ho}x{cout}-expand:{expand}"
        f"-kernel:{kernel}-stride:{stride}-idskip:{skip}"
    )


def table_sum(table: dict[str, dict[str, float]], keys: Iterable[str]) -> float:
    """Sum of the ``mean`` latencies of ``keys`` in a published table."""
    total = 0.0
    for k in keys:
        try:
            total += float(table[k]["mean"])
        except KeyError:
            raise HwnasError(f"latency table lacks '{k}'") from None
    return total
