"""Supernet spaces, elastic layers, subnet extraction and export."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from hwnas.errors import HwnasError
from hwnas.space.mbv3_ramnas import CifarMBv3Space, RamNasMBv3Space
from hwnas.supernet import ElasticModule, MBv3Supernet
from hwnas.supernet.elastic import ElasticBatchNorm2d, ElasticConv2d

# One thread: the test machine is shared, and OpenMP workers spin-waiting on an
# oversubscribed CPU make small-batch convs ~10x slower than a single thread.
torch.set_num_threads(1)


def _randomise_bn(net: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)


# ---- search spaces ---------------------------------------------------------------------
def test_space_imports_without_torch() -> None:
    code = (
        "import sys; import hwnas.space.mbv3_ramnas as m; m.RamNasMBv3Space().sample(3, 0); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ramnas_space_matches_table_one() -> None:
    sp = RamNasMBv3Space()
    spec = sp.spec
    assert spec.stem_widths == (16, 24)
    assert [s.widths for s in spec.stages] == [
        (16, 24),
        (24, 32),
        (32, 40),
        (64, 72),
        (112, 120, 128),
        (192, 200, 208, 216),
        (216, 224),
    ]
    assert [s.depths for s in spec.stages][4] == (3, 4, 5, 6, 7, 8)
    assert [s.stride for s in spec.stages] == [1, 2, 2, 2, 1, 2, 1]
    assert [s.se for s in spec.stages] == [False, False, True, False, True, True, True]
    assert spec.stages[0].expands == (1,)
    assert [s.expands for s in spec.stages][5:] == [(6,), (6,)]
    assert spec.last_widths == (1792, 1984)
    assert spec.resolutions == (192, 224, 256, 288)  # Table I's 276 is a typo for 256
    # 1 stem + 7x(width, depth) + 37 kernel slots + 25 expand slots + last + resolution
    assert sp.n_dims == 1 + 14 + 37 + 25 + 2
    # the paper: supernet sizes from about 200 to 2000 MFLOPs
    assert 190e6 < sp.macs("min") < 210e6
    assert 1.8e9 < sp.macs("max") < 2.0e9


def test_space_macs_equal_the_extracted_subnets_macs() -> None:
    """space.macs (used to stratify profiles) counts exactly what the subnet computes,
    including the MBPool expansion at 6x the *active* last-stage width."""
    from hwnas.measure.cost import model_cost
    from hwnas.supernet.mbv3 import MBv3Supernet

    sp = CifarMBv3Space()
    net = MBv3Supernet(sp, num_classes=10).eval()
    small_last = sp.largest().copy()
    cfg = sp.decode(small_last)
    cfg["stages"][-1]["width"] = min(sp.spec.stages[-1].widths)
    vectors = [sp.smallest(), sp.largest(), sp.encode(cfg), *sp.sample(3, rng=4)]
    for v in vectors:
        r = sp.decode(v)["resolution"]
        sub = net.get_subnet(v).eval()
        assert model_cost(sub, (3, r, r), 1)["macs"] == sp.macs(v, num_classes=10)
    # the CIFAR space's helpers count its 10 classes unless told otherwise
    assert sp.macs(vectors[0]) == sp.macs(vectors[0], num_classes=10)
    assert sp.size_range()["params"] == sp.size_range(3, 10)["params"]
    assert RamNasMBv3Space.num_classes == 1000
    # cost features keep their definition (the head at 1000 classes): a predictor saved
    # before the CIFAR default changed sees the features it was fitted on
    x = sp.sample(3, rng=1)
    assert (sp.cost_features(x) == sp.cost_terms_batch(x, num_classes=1000)).all()


@pytest.mark.parametrize(
    ("space_cls", "in_channels", "num_classes"),
    [(CifarMBv3Space, 3, 10), (CifarMBv3Space, 1, 17), (RamNasMBv3Space, 3, 1000)],
)
def test_space_params_equal_the_extracted_subnets_parameters(
    space_cls: type, in_channels: int, num_classes: int
) -> None:
    """space.params_batch (memory budgets in a search) counts exactly the parameters of
    the extracted subnet, SE and BN included."""
    sp = space_cls()
    net = MBv3Supernet(sp, num_classes=num_classes, in_channels=in_channels).eval()
    x = np.concatenate([sp.sample(4, rng=5), sp.largest()[None], sp.smallest()[None]])
    real = [sum(p.numel() for p in net.get_subnet(v).parameters()) for v in x]
    assert sp.params_batch(x, in_channels, num_classes).tolist() == real


@pytest.mark.parametrize("space_cls", [RamNasMBv3Space, CifarMBv3Space])
def test_space_roundtrip_and_canonicalize(space_cls) -> None:
    sp = space_cls()
    x = sp.sample(40, rng=1)
    for v in x:
        cfg = sp.decode(v)
        assert np.array_equal(sp.encode(cfg), v)
        for st, sc in zip(sp.spec.stages, cfg["stages"], strict=True):
            assert len(sc["kernel"]) == len(sc["expand"]) == sc["depth"]
            assert sc["width"] in st.widths
    # blocks beyond a stage's depth do not matter
    v = sp.smallest().copy()
    raw = v.copy()
    raw[sp._k_off : sp._k_off + sp.spec.n_slots] = 1
    canon = sp.canonicalize(raw[None])[0]
    assert np.array_equal(sp.decode(raw), sp.decode(canon))
    assert canon[sp._k_off + 1] == 0  # stage 0 slot 1 is beyond depth 1
    assert sp.keys(raw[None]) == sp.keys(canon[None])
    # per-stage shorthand: one int for a whole stage
    cfg = sp.decode(sp.largest())
    short = json.loads(json.dumps(cfg))
    for sc in short["stages"]:
        sc["kernel"] = sc["kernel"][0]
        sc["expand"] = sc["expand"][0]
    assert np.array_equal(sp.encode(short), sp.largest())


@pytest.mark.parametrize("name", ["mbv3-ramnas", "mbv3-cifar"])
def test_registered_and_generic_space_operations(name: str) -> None:
    import hwnas.space.mbv3_ramnas  # noqa: F401  (registers the spaces)
    from hwnas.registry import SPACES

    sp = SPACES.get(name)()
    assert sp.name == name
    rng = np.random.default_rng(0)
    x = sp.sample(5, rng)
    xl, xu = sp.bounds
    assert np.all((x >= xl) & (x <= xu))
    m = sp.mutate(x[0], rng, p=0.5)
    assert np.array_equal(sp.canonicalize(m[None])[0], m)
    f = sp.features(x)
    assert f.shape == (5, int(sp.cardinalities.sum())) and np.all(f.sum(1) == sp.n_dims)
    assert sp.from_key(sp.keys(x[:1])[0]).tolist() == x[0].tolist()
    small, large = sp.decode(sp.smallest()), sp.decode(sp.largest())
    assert small["resolution"] == min(sp.spec.resolutions)
    assert large["stages"][4]["depth"] == 8 and sp.macs(small) < sp.macs(large)


def test_bad_configs_give_clear_errors() -> None:
    sp = CifarMBv3Space()
    cfg = sp.decode(sp.largest())
    bad = json.loads(json.dumps(cfg))
    bad["stages"][2]["width"] = 99
    with pytest.raises(HwnasError, match=r"stages\[2\]\.width=99"):
        sp.encode(bad)
    bad = json.loads(json.dumps(cfg))
    bad["resolution"] = 30
    with pytest.raises(HwnasError, match="resolution=30"):
        sp.encode(bad)
    bad = json.loads(json.dumps(cfg))
    bad["stages"][1]["kernel"] = [3, 7]
    with pytest.raises(HwnasError, match="kernel"):
        sp.encode(bad)
    with pytest.raises(HwnasError, match="missing"):
        sp.encode({"stem": 8})
    with pytest.raises(HwnasError, match="outside"):
        sp.decode([0] * (sp.n_dims - 1) + [7])
    net = MBv3Supernet("mbv3-cifar", num_classes=10)
    with pytest.raises(HwnasError):
        net.set_active(bad)
    with pytest.raises(HwnasError, match="unknown subnet name"):
        net.set_active("medium")


def test_wrong_input_size_is_an_error() -> None:
    net = MBv3Supernet("mbv3-cifar", num_classes=10).eval()
    with pytest.raises(HwnasError, match=r"expected input of shape \(N, 3, H, W\)"):
        net(torch.zeros(2, 1, 32, 32))
    with pytest.raises(HwnasError, match="expected input"):
        net(torch.zeros(3, 32, 32))
    with pytest.raises(HwnasError, match="square"):
        net(torch.zeros(1, 3, 32, 28))
    strict = MBv3Supernet("mbv3-cifar", num_classes=10, resize_input=False).eval()
    with pytest.raises(HwnasError, match="active resolution is 32"):
        strict(torch.zeros(1, 3, 28, 28))
    with pytest.raises(HwnasError, match="unknown supernet space"):
        MBv3Supernet("nb201")


# ---- elastic layers --------------------------------------------------------------------
def test_elastic_conv_kernel_and_channel_slicing() -> None:
    conv = ElasticConv2d(8, 6, (3, 5), stride=1)
    conv.active_out, conv.active_k = 4, 3
    x = torch.randn(2, 5, 9, 9)
    ref = torch.nn.functional.conv2d(x, conv.weight[:4, :5, 1:4, 1:4], None, 1, 1)
    assert torch.allclose(conv(x), ref)
    plain = conv.export_with_input(5)
    assert isinstance(plain, torch.nn.Conv2d) and plain.weight.shape == (4, 5, 3, 3)
    assert torch.allclose(plain(x), ref)
    # OFA kernel transformation: a learnable 9x9 matrix on the centre 3x3
    kt = ElasticConv2d(4, 4, (3, 5), depthwise=True, kernel_transform=True)
    with torch.no_grad():
        kt.transforms["5to3"].copy_(torch.randn(9, 9))
    kt.active_k = 3
    w = kt.kernel_weight(4, 4, 3)
    expect = kt.weight[:, :, 1:4, 1:4].reshape(-1, 9) @ kt.transforms["5to3"].T
    assert torch.allclose(w.reshape(-1, 9), expect)
    x = torch.randn(1, 4, 7, 7)
    assert torch.allclose(kt(x), kt.export_with_input(4)(x), atol=1e-6)


def test_elastic_bn_updates_only_active_slice() -> None:
    bn = ElasticBatchNorm2d(8)
    bn.train()
    bn(torch.randn(4, 5, 3, 3) + 3.0)
    assert torch.all(bn.bn.running_mean[:5] > 0.1)
    assert torch.all(bn.bn.running_mean[5:] == 0)
    assert torch.all(bn.bn.running_var[5:] == 1)


# ---- extraction ------------------------------------------------------------------------
def _check_extraction(net: MBv3Supernet, archs, batch: int = 2) -> None:
    _randomise_bn(net)
    net.eval()
    for arch in archs:
        cfg = net.set_active(arch)
        r = cfg["resolution"]
        x = torch.randn(batch, net.in_channels, r, r)
        with torch.no_grad():
            a = net(x)
            sub = net.get_subnet(cfg).eval()
            b = sub(x)
        assert not any(isinstance(m, ElasticModule) for m in sub.modules())
        assert (a - b).abs().max().item() < 1e-5, arch
        assert net.config == cfg  # extraction restores the active config


def test_extraction_exact_cifar() -> None:
    torch.manual_seed(0)
    net = MBv3Supernet("mbv3-cifar", num_classes=10, dropout=0.1)
    rng = np.random.default_rng(0)
    _check_extraction(net, ["min", "max", net.sample_config(rng), net.sample_config(rng)])
    # smaller subnets have fewer parameters
    n_min = sum(p.numel() for p in net.get_subnet("min").parameters())
    n_max = sum(p.numel() for p in net.get_subnet("max").parameters())
    assert n_min < n_max == sum(p.numel() for p in net.parameters())


def test_extraction_exact_kernel_transform_and_channels_last() -> None:
    torch.manual_seed(1)
    net = MBv3Supernet("mbv3-cifar", num_classes=7, in_channels=1, kernel_transform=True)
    with torch.no_grad():
        for n, p in net.named_parameters():
            if "transforms" in n:
                p.add_(0.05 * torch.randn_like(p))
    net = net.to(memory_format=torch.channels_last)
    rng = np.random.default_rng(1)
    _check_extraction(net, [net.sample_config(rng), "min"])


def test_extraction_exact_ramnas() -> None:
    torch.manual_seed(2)
    net = MBv3Supernet("mbv3-ramnas", num_classes=1000)
    rng = np.random.default_rng(2)
    _check_extraction(net, ["min", net.sample_config(rng)], batch=1)


@pytest.mark.slow
def test_extraction_exact_ramnas_max() -> None:
    net = MBv3Supernet("mbv3-ramnas", num_classes=1000)
    _check_extraction(net, ["max"], batch=2)


def test_extracted_subnet_with_resize_matches_supernet_on_small_inputs() -> None:
    net = MBv3Supernet("mbv3-cifar", num_classes=10, in_channels=1)
    _randomise_bn(net)
    net.eval()
    cfg = net.set_active(net.sample_config(np.random.default_rng(3)))
    x = torch.randn(3, 1, 8, 8)  # digits-sized input, resized to the subnet's resolution
    with torch.no_grad():
        a = net(x)
        b = net.get_subnet(cfg, include_resize=True).eval()(x)
    assert (a - b).abs().max().item() < 1e-5


# ---- export ----------------------------------------------------------------------------
def _checkpoint(net: MBv3Supernet) -> dict:
    return {"model": net.state_dict(), "hparams": net.hparams()}


def test_onnx_export_matches_pytorch(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from hwnas.train.evaluate import export_subnet

    torch.manual_seed(4)
    net = MBv3Supernet("mbv3-cifar", num_classes=10)
    _randomise_bn(net, 4)
    net.eval()
    ckpt = _checkpoint(net)
    cfg = net.sample_config(np.random.default_rng(4))
    path = export_subnet(ckpt, json.dumps(cfg), "onnx", tmp_path / "sub.onnx")
    r = cfg["resolution"]
    x = torch.randn(3, 3, r, r)
    net.set_active(cfg)
    with torch.no_grad():
        ref = net(x).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    assert got.shape == (3, 10)
    assert np.abs(got - ref).max() < 1e-4


def test_torch_export_matches_pytorch(tmp_path) -> None:
    from hwnas.train.evaluate import export_subnet

    net = MBv3Supernet("mbv3-cifar", num_classes=10)
    _randomise_bn(net, 5)
    net.eval()
    path = export_subnet(_checkpoint(net), "min", "torch", tmp_path / "sub.pt2", batch_size=2)
    prog = torch.export.load(str(path)).module()
    cfg = net.set_active("min")
    x = torch.randn(4, 3, cfg["resolution"], cfg["resolution"])
    with torch.no_grad():
        assert (prog(x) - net(x)).abs().max().item() < 1e-5
    with pytest.raises(HwnasError, match="format"):
        export_subnet(_checkpoint(net), "min", "tflite", tmp_path / "x")  # type: ignore[arg-type]
