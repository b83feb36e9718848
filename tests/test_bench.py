import gzip
import os
import shutil

import numpy as np
import pytest

from hwnas.bench import get_benchmark
from hwnas.bench.nb201 import nb201_devices
from hwnas.errors import DataNotFoundError, HwnasError
from hwnas.search.pareto import ExactFront, hypervolume, non_dominated_mask, reference_point
from hwnas.space import get_space


def test_nb201_lookup_matches_table(nb201_pixel3, data_dir):
    import pandas as pd

    df = pd.read_csv(data_dir / "nb201/nb201_acc200_latency27.csv.gz")
    row = df.iloc[1234]
    b = nb201_pixel3
    v = b.space.encode(row["arch_str"])
    acc, lat = b.evaluate(v[None])[0]
    assert acc == pytest.approx(row["cifar10_test_acc"])
    assert lat == pytest.approx(row["lat_pixel3"])
    assert b.benchmark_index(v[None])[0] == row["index"]


def test_nb201_devices_and_datasets(data_dir):
    devs = nb201_devices()
    assert len(devs) == 27 and "pixel3" in devs and "fpga" in devs
    b = get_benchmark("nb201", dataset="imagenet16_120", devices=["raspi4", "fpga"])
    assert [o.name for o in b.objectives] == ["accuracy", "latency_raspi4", "latency_fpga"]
    _, V = b.table()
    assert V.shape == (15625, 3)
    assert V[:, 0].max() == pytest.approx(47.31, abs=0.01)
    # the comma-separated form the CLI takes works in the library too
    same = get_benchmark("nb201", dataset="imagenet16_120", devices="raspi4, fpga")
    assert [o.name for o in same.objectives] == [o.name for o in b.objectives]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"devices": "iphone99"}, "unknown device 'iphone99'"),
        ({"dataset": "mnist"}, "unknown dataset 'mnist'"),
    ],
)
def test_nb201_bad_options(kwargs, match, data_dir):
    with pytest.raises(HwnasError, match=match):
        get_benchmark("nb201", **kwargs)


def test_missing_data_dir(tmp_path):
    with pytest.raises(DataNotFoundError, match="hwnas data fetch nb201"):
        get_benchmark("nb201", data_dir=tmp_path / "nowhere")


def test_corrupt_csv(tmp_path, data_dir):
    (tmp_path / "nb201").mkdir()
    src = data_dir / "nb201/nb201_acc200_latency27.csv.gz"
    with gzip.open(src, "rt") as f:
        lines = f.readlines()
    with gzip.open(tmp_path / "nb201/nb201_acc200_latency27.csv.gz", "wt") as f:
        f.writelines(lines[:500])  # truncated
    with pytest.raises(HwnasError, match="corrupt"):
        get_benchmark("nb201", data_dir=tmp_path)
    (tmp_path / "nb201/nb201_acc200_latency27.csv.gz").write_bytes(b"\x1f\x8bgarbage")
    with pytest.raises(HwnasError, match="cannot read NB201 table|corrupt"):
        get_benchmark("nb201", data_dir=tmp_path)


def test_exact_front_brute_force(nb201_pixel3):
    vecs, V = nb201_pixel3.table()
    F = V * np.array([-1.0, 1.0])
    keys = nb201_pixel3.space.keys(vecs)
    ef = ExactFront.from_table(keys, F)
    # brute force on a candidate subset that surely contains the front: the 2000 most
    # accurate and the 2000 fastest plus the front itself
    mask = non_dominated_mask(F)
    sub = np.unique(
        np.concatenate(
            [np.argsort(F[:, 0])[:2000], np.argsort(F[:, 1])[:2000], np.nonzero(mask)[0]]
        )
    )
    G = F[sub]
    dominated = (
        (G[:, None, :] <= G[None, :, :]).all(2) & (G[:, None, :] < G[None, :, :]).any(2)
    ).any(0)
    brute = set(sub[~dominated].tolist())
    # nothing outside the subset dominates a subset front point either
    for i in list(brute)[:10]:
        assert not ((F <= F[i]).all(1) & (F < F[i]).any(1)).any()
    assert set(np.nonzero(mask)[0].tolist()) == brute
    assert len(ef.keys) == len(brute)
    assert 13 <= len(ef.keys) <= 43
    assert ef.hv == pytest.approx(hypervolume(F[mask], ef.ref))
    ref = reference_point(F[mask])
    span = F[mask].max(0) - F[mask].min(0)
    assert np.allclose(ref, F[mask].max(0) + 0.1 * span)


def test_non_dominated_mask_random_brute_force():
    """Against the definition, with ties and with inf (a failed row's mark) among values."""
    rng = np.random.default_rng(1)
    for m, n_inf in ((2, 0), (3, 0), (2, 40), (3, 40), (2, 390)):
        F = rng.integers(0, 15, size=(400, m)).astype(float)
        F.flat[rng.choice(F.size, n_inf, replace=False)] = np.inf
        dom = (
            (F[:, None, :] <= F[None, :, :]).all(2) & (F[:, None, :] < F[None, :, :]).any(2)
        ).any(0)
        assert np.array_equal(non_dominated_mask(F), ~dom)


def test_exact_front_scores(nb201_pixel3):
    vecs, V = nb201_pixel3.table()
    F = V * np.array([-1.0, 1.0])
    keys = nb201_pixel3.space.keys(vecs)
    ef = ExactFront.from_table(keys, F)
    s = ef.scores(ef.F, ef.keys, ef.F)
    assert s["hv_fraction"] == pytest.approx(1.0)
    assert s["front_recall"] == 1.0 and s["igd"] == pytest.approx(0.0)
    s = ef.scores(np.zeros((0, 2)), [], np.zeros((0, 2)))
    assert s["hv_fraction"] == 0.0 and s["front_recall"] == 0.0


def test_ofa_mbv3_surrogate(data_dir):
    b = get_benchmark("ofa-mbv3")
    sp = b.space
    X = np.stack([sp.smallest(), sp.largest()])
    acc, lat = b.evaluate(X).T
    assert 60 < acc[0] < acc[1] < 90  # ImageNet top-1 in %
    assert 0 < lat[0] < lat[1]
    # latency is the sum of table entries: a deeper stage adds a block's entry
    v = sp.smallest().copy()
    w = v.copy()
    w[40] = 1  # stage 0 depth 2 -> 3
    assert b.note10_latency(w[None])[0] > b.note10_latency(v[None])[0]
    # resolution raises latency
    w = v.copy()
    w[-1] = 4
    assert b.note10_latency(w[None])[0] > b.note10_latency(v[None])[0]
    assert b.table() is None


def test_ofa_mbv3_latency_range_refuses_a_budget_no_subnet_meets(data_dir):
    """The Note10 table's exact latency range (the smallest and the largest subnet), so an
    impossible budget fails before any evaluation instead of after the whole budget."""
    from hwnas.search import SearchProblem

    b = get_benchmark("ofa-mbv3")
    lo, hi = b.metric_range()["latency"]
    ends = b.note10_latency(np.stack([b.space.smallest(), b.space.largest()]))
    np.testing.assert_allclose(ends, [lo, hi])
    lat = b.note10_latency(b.space.sample(5000, np.random.default_rng(0)))
    assert lo <= lat.min() and lat.max() <= hi
    with pytest.raises(
        HwnasError, match=r"no architecture of ofa-mbv3 satisfies latency<=1 .*9\.89"
    ):
        SearchProblem(b, 5, constraints=["latency<=1"])
    SearchProblem(b, 5, constraints=[f"latency<={lo + 0.01}"])  # the smallest subnet meets it
    assert get_benchmark("ofa-mbv3", latency=True).metric_range() == {}  # measured: unknown


def test_ofa_mbv3_refuses_other_devices_and_datasets(data_dir):
    """Note10 latency and ImageNet accuracy are all it has; asking for more must fail,
    not be answered with them."""
    assert get_benchmark("ofa-mbv3", devices="note10", dataset="imagenet").table() is None
    assert get_benchmark("ofa-mbv3", devices=["note10"]).table() is None
    with pytest.raises(HwnasError, match="note10 only .* not 'raspi4'"):
        get_benchmark("ofa-mbv3", devices="raspi4")
    with pytest.raises(HwnasError, match="not 'pixel3'"):
        get_benchmark("ofa-mbv3", devices=["note10", "pixel3"])
    with pytest.raises(HwnasError, match="dataset 'cifar10' does not apply"):
        get_benchmark("ofa-mbv3", dataset="cifar10")


def test_ofa_mbv3_module_is_the_network_of_the_latency_table(data_dir):
    """The subnet build_module gives is the one OFA's Note10 table measured: every
    block's shape (input, output, expand width, kernel, stride, skip, SE, hardswish) is
    an entry of the table at the subnet's resolution, as many blocks as its depths say."""
    import json

    import torch

    from hwnas.space.ofa_mbv3 import OFAMobileNetV3Space, build_module
    from hwnas.supernet.static import MBConv

    lut = json.loads((data_dir / "ofa/ofa_mbv3_note10_latency_lut.json").read_text())
    sp = OFAMobileNetV3Space()
    for v in (*sp.sample(3, np.random.default_rng(0)), sp.largest(), sp.smallest()):
        cfg = sp.decode(v)
        module = build_module(v).eval()
        seen: list[str] = []

        def key(block, inputs, output, seen=seen):
            dw, h, ho = block.depthwise[0], inputs[0].shape[-1], output.shape[-1]
            hs = int(isinstance(block.depthwise[2], torch.nn.Hardswish))
            seen.append(
                f"expanded_conv-input:{h}x{h}x{inputs[0].shape[1]}-output:{ho}x{ho}x"
                f"{output.shape[1]}-expand:{dw.out_channels}-kernel:{dw.kernel_size[0]}"
                f"-stride:{dw.stride[0]}-idskip:{int(block.residual)}"
                f"-se:{int(block.se is not None)}-hs:{hs}"
            )

        for m in module.modules():
            if isinstance(m, MBConv):
                m.register_forward_hook(key)
        with torch.no_grad():
            out = module(torch.zeros(1, 3, cfg["r"], cfg["r"]))
        assert out.shape == (1, 1000)
        assert len(seen) == 1 + sum(cfg["d"])  # the first block, then the stages' depths
        missing = [k for k in seen if k not in lut[str(cfg["r"])]]
        assert not missing, missing


def test_ofa_mbv3_measured_latency(data_dir):
    """latency=true: OFA's subnets built, exported and timed on this machine instead of
    Note10's table; the accuracy is the same predictor's."""
    b = get_benchmark("ofa-mbv3", latency=True, rounds=2)
    assert [o.name for o in b.objectives] == ["accuracy", "latency"]
    assert b.source == "measured" and b.reference_point() is None and b.max_batch == 8
    small, big = b.space.smallest(), b.space.largest()
    small_224 = small.copy()
    small_224[-1] = big[-1]
    x = np.stack([small, small_224, big])  # at 160, 224, 224: one interleaved call
    b.prepare()
    calls: list[int] = []
    measure = b.measured._measurer.measure

    def counted(models, settings=None):
        calls.append(len(models))
        return measure(models, settings)

    b.measured._measurer.measure = counted
    values = b.evaluate(x)
    assert calls == [4] and (values[:, 1] > 0).all()  # and the drift anchor
    # the largest has 4x the smallest's MACs at 224, which has 2x its own at 160
    assert values[2, 1] > 1.5 * values[1, 1] and values[1, 1] > values[0, 1]
    table = get_benchmark("ofa-mbv3").evaluate(x)
    assert values[:, 0] == pytest.approx(table[:, 0])
    assert b.describe()["latency"] | {"rounds": 2, "on": "this machine"} == b.describe()["latency"]
    for bad, match in (
        ({"latency": "yes"}, "latency must be true or false"),
        ({"threads": 2}, "they need latency=true"),
        ({"latency": True, "rounds": 0}, "rounds must be an integer >= 1"),
        ({"latency": True, "agent": "http://127.0.0.1:1"}, "needs both agent=URL and token"),
        ({"latency": True, "devices": "note10"}, "not on a listed device; drop --device"),
    ):
        with pytest.raises(HwnasError, match=match):
            get_benchmark("ofa-mbv3", **bad)
    # more threads than CPUs would inflate every latency: refused before any work
    cpus = os.cpu_count() or 1
    with pytest.raises(HwnasError, match=f"threads {cpus + 1}: this machine has {cpus} CPU"):
        get_benchmark("ofa-mbv3", latency=True, threads=cpus + 1).prepare()


def test_measured_latency_takes_drift_out_with_its_anchor(data_dir, monkeypatch):
    """With the drift anchor (default) a call in which the machine runs twice as slow
    gives the same latencies; without it, twice the latencies. The reference is measured
    once and a resumed search's restore keeps it. (The measurer's answers are replaced by
    made-up ones, each model's latency its ONNX size times the call's slow-down, so that
    the machine's own drift cannot decide the test.)"""
    import dataclasses

    def made_up(b, factors):  # each call's slow-down, in order
        measure, calls = b.measured._measurer.measure, iter(factors)

        def run(models, settings=None):
            f = next(calls)
            out = []
            for m, blob in zip(measure(models, settings), models, strict=True):
                t = len(blob) / 1e6 * f
                n = len(m.stats.round_min_ms)
                stats = dataclasses.replace(
                    m.stats, median_ms=t, median_of_round_min_ms=t, round_min_ms=[t] * n
                )
                out.append(dataclasses.replace(m, stats=stats))
            return out

        b.measured._measurer.measure = run

    sp = get_space("ofa-mbv3")
    x = np.stack([sp.smallest(), sp.smallest()])
    x[1, -1] = sp.largest()[-1]  # the smallest at 160 and at 224
    b = get_benchmark("ofa-mbv3", latency=True, rounds=2)
    b.prepare()  # the real measurer, then made-up answers: calls at 1x, 1x, 2x
    made_up(b, [1.0, 2.0])
    ref = b.describe()["latency"]["anchor"]["reference_ms"]
    assert (
        ref > 0 and b.describe()["latency"]["anchor"]["arch"] == sp.keys(b.measured.anchor[None])[0]
    )
    small_at_192 = sp.decode(sp.smallest()) | {"r": 192}  # the middle resolution
    assert sp.decode(b.measured.anchor) == small_at_192
    import hwnas.measure.export as export

    exported, export_onnx = [], export.export_onnx
    monkeypatch.setattr(
        export, "export_onnx", lambda m, *a, **k: exported.append(m) or export_onnx(m, *a, **k)
    )
    steady = b.evaluate(x)[:, 1]
    assert b.evaluate(x)[:, 1] == pytest.approx(steady, rel=1e-9)  # at 2x: the same
    assert b.describe()["latency"]["anchor"]["reference_ms"] == ref  # measured once
    assert len(exported) == 4  # the batch's subnets, twice; the anchor's model kept
    plain = get_benchmark("ofa-mbv3", latency=True, rounds=2, anchor=False)
    assert plain.describe()["latency"]["anchor"] is None
    plain.prepare()
    made_up(plain, [1.0, 2.0])
    raw = plain.evaluate(x)[:, 1]
    assert plain.evaluate(x)[:, 1] == pytest.approx(2 * raw, rel=1e-9)
    assert steady / raw == pytest.approx(steady[0] / raw[0], rel=1e-9)  # one scale
    # a resumed search's benchmark takes the reference back instead of measuring one
    again = get_benchmark("ofa-mbv3", latency=True, rounds=2)
    again.restore(b.describe())
    assert again.measured.reference_ms == ref
    other = get_benchmark("ofa-mbv3", latency=True, rounds=2)
    other.restore({"latency": {"anchor": {"arch": "0-0", "reference_ms": 1.0}}})
    assert other.measured.reference_ms is None  # another anchor's: not taken
    with pytest.raises(HwnasError, match="anchor set how latency is measured; they need"):
        get_benchmark("ofa-mbv3", anchor=False)
    with pytest.raises(HwnasError, match="anchor must be true or false, got 'no'"):
        get_benchmark("ofa-mbv3", latency=True, anchor="no")


def test_ofa_latency_table_entries(data_dir):
    import json

    lut = json.loads((data_dir / "ofa/ofa_mbv3_note10_latency_lut.json").read_text())
    b = get_benchmark("ofa-mbv3")
    v = b.space.smallest()  # r=160, all stages depth 2, kernel 3, expand 3
    t = lut["160"]
    expected = sum(
        t[k]["mean"]
        for k in [
            "Conv-input:160x160x3-output:80x80x24",
            "expanded_conv-input:80x80x24-output:80x80x24-expand:24-kernel:3-stride:1-idskip:1-se:0-hs:0",
            "expanded_conv-input:80x80x24-output:40x40x32-expand:72-kernel:3-stride:2-idskip:0-se:0-hs:0",
            "expanded_conv-input:40x40x32-output:40x40x32-expand:96-kernel:3-stride:1-idskip:1-se:0-hs:0",
            "expanded_conv-input:40x40x32-output:20x20x48-expand:96-kernel:3-stride:2-idskip:0-se:1-hs:0",
            "expanded_conv-input:20x20x48-output:20x20x48-expand:144-kernel:3-stride:1-idskip:1-se:1-hs:0",
            "expanded_conv-input:20x20x48-output:10x10x96-expand:144-kernel:3-stride:2-idskip:0-se:0-hs:1",
            "expanded_conv-input:10x10x96-output:10x10x96-expand:288-kernel:3-stride:1-idskip:1-se:0-hs:1",
            "expanded_conv-input:10x10x96-output:10x10x136-expand:288-kernel:3-stride:1-idskip:0-se:1-hs:1",
            "expanded_conv-input:10x10x136-output:10x10x136-expand:408-kernel:3-stride:1-idskip:1-se:1-hs:1",
            "expanded_conv-input:10x10x136-output:5x5x192-expand:408-kernel:3-stride:2-idskip:0-se:1-hs:1",
            "expanded_conv-input:5x5x192-output:5x5x192-expand:576-kernel:3-stride:1-idskip:1-se:1-hs:1",
            "Conv_1-input:5x5x192-output:5x5x1152",
            "AvgPool2D-input:5x5x1152-output:1x1x1152",
            "Conv_2-input:1x1x1152-output:1x1x1536",
            "Logits-input:1x1x1536-output:1000",
        ]
    )
    assert b.note10_latency(v[None])[0] == pytest.approx(expected)


def test_ofa_resnet50_surrogate(data_dir):
    b = get_benchmark("ofa-resnet50")
    sp = b.space
    assert [o.name for o in b.objectives] == ["accuracy", "mflops"]
    ends = np.stack([sp.smallest(), sp.largest()])
    (acc0, mf0), (acc1, mf1) = b.evaluate(ends)
    assert 70 < acc0 < acc1 < 85  # ImageNet top-1 in %, OFA's predictor
    assert 600 < mf0 < mf1 < 20000
    # the MLP by hand: three hidden ReLU layers, no output bias, plus base_acc
    with np.load(data_dir / "ofa/ofa_resnet50_acc_predictor.npz") as z:
        h = sp.features(ends)
        for i in range(3):
            h = np.maximum(h @ z[f"layers_{i}_0_weight"].T + z[f"layers_{i}_0_bias"], 0)
        by_hand = 100 * (h @ z["layers_3_weight"].T + z["base_acc"])[:, 0]
    np.testing.assert_allclose(b.evaluate(ends)[:, 0], by_hand, rtol=1e-6)
    # accuracy rises with compute across the space, and no table is known
    x = sp.sample(200, 0)
    acc = b.accuracy(x)
    assert acc.std() > 0.5 and b.table() is None
    assert (acc == np.round(acc, 6)).all()  # saturated subnets tie instead of by noise
    assert np.corrcoef(acc, np.log(b.evaluate_cheap(x)[:, 0]))[0, 1] > 0.5
    np.testing.assert_array_equal(b.evaluate_cheap(x)[:, 0], b.evaluate(x)[:, 1])
    np.testing.assert_array_equal(b.evaluate_metrics(x)[:, 0], sp.params_batch(x))
    assert b.metric_range()["params"] == sp.size_range()["params"]
    with pytest.raises(HwnasError, match="drop --device"):
        get_benchmark("ofa-resnet50", devices="raspi4")
    with pytest.raises(HwnasError, match="dataset 'cifar10' does not apply"):
        get_benchmark("ofa-resnet50", dataset="cifar10")
    with pytest.raises(DataNotFoundError, match="ofa_resnet50_acc_predictor.npz"):
        get_benchmark("ofa-resnet50", data_dir=data_dir / "nowhere")


def test_ofa_resnet50_measured_latency(data_dir):
    """latency=true: the subnets are built, exported and timed on this machine; the
    cost objective is then latency and MFLOPs a constrainable metric."""
    b = get_benchmark("ofa-resnet50", latency=True, rounds=3)
    assert [o.name for o in b.objectives] == ["accuracy", "latency"]
    assert b.cheap_objectives == () and b.metrics == ("mflops", "params")
    assert b.source == "measured" and b.reference_point() is None
    small = b.space.smallest()
    big = small.copy()
    big[-1] = len(b.space.dims[-1].choices) - 1  # the same network at 256 instead of 128
    values = b.evaluate(np.stack([small, big]))
    assert np.isfinite(values).all() and (values[:, 1] > 0).all()
    assert values[1, 1] > 1.5 * values[0, 1]  # 4x the pixels
    m = b.evaluate_metrics(np.stack([small, big]))
    assert m[1, 0] > 3.5 * m[0, 0] and m[0, 1] == m[1, 1]  # MFLOPs grow, params do not
    assert b.describe()["latency"]["rounds"] == 3
    for bad in ({"latency": "yes"}, {"threads": 0}, {"rounds": 1.5}, {"threads": 2}):
        with pytest.raises(HwnasError, match="ofa-resnet50"):
            get_benchmark("ofa-resnet50", **bad)


def test_ofa_missing_file(tmp_path, data_dir):
    (tmp_path / "ofa").mkdir()
    shutil.copy(data_dir / "ofa/ofa_mbv3_acc_predictor.npz", tmp_path / "ofa")
    with pytest.raises(DataNotFoundError, match="ofa_mbv3_note10_latency_lut.json"):
        get_benchmark("ofa-mbv3", data_dir=tmp_path)


def test_benchmarks_refuse_invalid_vectors(nb201_pixel3, data_dir):
    # NB201's base-5 code of [0,0,0,0,1,5] equals that of [0,0,0,0,2,0], and -1 indexed
    # the table's last row: both answered silently before
    for bad in ([[0, 0, 0, 0, 0, -1]], [[0, 0, 0, 0, 1, 5]], [[0.7, 0, 0, 0, 0, 0]]):
        with pytest.raises(HwnasError):
            nb201_pixel3.evaluate(np.asarray(bad))
    ofa = get_benchmark("ofa-mbv3", data_dir=data_dir)
    x = ofa.space.sample(1, 0)
    x[0, 0] = -1
    with pytest.raises(HwnasError, match="outside"):
        ofa.evaluate(x)


def test_non_dominated_mask_refuses_nan():
    for F in ([[0.2, np.nan], [0.5, 0.5]], [[np.nan, 0, 0], [0.5, 0.5, 0.5]]):
        with pytest.raises(HwnasError, match="NaN"):
            non_dominated_mask(np.asarray(F))


def test_pareto_helpers_refuse_what_they_cannot_score():
    """Two objectives with inf keep what is not dominated; hypervolume takes a list as the
    reference point and refuses a mismatched one or NaN; reference_point needs points."""
    F = np.array([[np.inf, 1], [1, np.inf], [2, 2]])
    assert non_dominated_mask(F).all()
    assert non_dominated_mask(np.array([[1, np.inf], [1, np.inf]])).all()
    # three objectives with mixed infinities (pymoo's sorting crashed the process)
    assert non_dominated_mask(np.array([[1, -np.inf, np.inf], [0, 1, -np.inf]])).all()
    assert hypervolume(np.array([[1.0, 1.0]]), [2, 2]) == pytest.approx(1.0)
    with pytest.raises(HwnasError, match="do not match a reference point of 3"):
        hypervolume(np.array([[1.0, 1.0]]), [2, 2, 2])
    with pytest.raises(HwnasError, match="NaN"):
        hypervolume(np.array([[1.0, np.nan]]), [2, 2])
    with pytest.raises(HwnasError, match="non-empty"):
        reference_point(np.zeros((0, 2)))
