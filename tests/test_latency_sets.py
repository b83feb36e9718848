"""The published measured latency sets (FBNet, OFA-MBv3 on GPUs, HAT) as predictor data:
shapes, encodings back to the files' rows, and `hwnas predictors evaluate` on them."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from hwnas.cli import app
from hwnas.errors import HwnasError
from hwnas.predict.latency_sets import (
    FBNET_FILE,
    HAT_FEATURES,
    HAT_FILES,
    LATENCY_SETS,
    OFA_FILE,
    get_latency_set,
    latency_set_data,
)
from hwnas.space.fbnet import FBNET_OPS
from hwnas.space.ofa_mbv3 import N_BLOCKS, OFA_R, OFAMobileNetV3Space

runner = CliRunner()


def hwnas(*args):
    return subprocess.run(
        [sys.executable, "-m", "hwnas.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "80"},
    )


def test_registry_names_do_not_shadow_benchmarks():
    from hwnas.bench import BENCHMARKS

    assert LATENCY_SETS.names() == ["fbnet", "hat", "ofa-mbv3-gpu", "ofa-mbv3-gpu-allres"]
    assert not set(LATENCY_SETS.names()) & set(BENCHMARKS.names())
    with pytest.raises(HwnasError, match="unknown measured latency set 'nope'"):
        get_latency_set("nope")


def test_fbnet_rows_decode_to_the_files_ops(data_dir):
    raw = np.load(data_dir / FBNET_FILE)
    fb = get_latency_set("fbnet")
    devices = fb.devices()
    assert devices == [str(d) for d in raw["devices"]] and len(devices) == 27
    assert tuple(str(n) for n in raw["op_names"]) == FBNET_OPS  # the space's op order
    vectors, rows = fb.encoded()
    assert vectors.shape == (5000, 22) and (rows == np.arange(5000)).all()
    names = raw["op_names"]
    for i in (0, 1, 2499, 4999):
        assert fb.space.decode(vectors[i]) == [str(names[j]) for j in raw["op_idx"][i]]
    assert np.isfinite(raw["latency_ms"]).all() and (raw["latency_ms"] > 0).all()
    for dev in ("pixel3", "fpga"):
        X, y, views = fb.load(dev)
        assert X.shape == (5000, 22 * 9 + 7 * 9 + 9) and y.shape == (5000,)
        assert [len(v) for v in views] == [9, 63, 198]  # op counts, per stage, one-hot
        assert (X == fb.space.predictor_features(vectors, "cost")).all()
        assert (y == raw["latency_ms"][:, devices.index(dev)]).all()


def test_fbnet_op_counts_rank_latency_from_few_samples(data_dir):
    """FBNet's latency adds up over layers of similar cost within a stage: from 100
    samples the predictor choosing among the count views ranks it far better than one
    on the 198 one-hot ops alone (HW-NAS-Bench's pixel3 figures are per-layer sums)."""
    from hwnas.predict.evaluate import sample_efficiency

    X, y, views = get_latency_set("fbnet").load("pixel3")
    kw = dict(models=["ridge"], sizes=[100], test_size=1000, trials=2, seed=0)
    with_views = sample_efficiency(X, y, views=views, **kw)
    one_hot = sample_efficiency(X[:, views[2]], y, **kw)
    tau_views = np.median([r["kendall_tau"] for r in with_views])
    tau_hot = np.median([r["kendall_tau"] for r in one_hot])
    assert tau_views > 0.7 and tau_views > tau_hot + 0.15, (tau_views, tau_hot)
    counts = X[:, views[0]]
    assert (counts.sum(axis=1) == 22).all() and (X[:, views[1]].sum(axis=1) == 22).all()
    ops = get_latency_set("fbnet").encoded()[0]
    assert (counts[:, -1] == (ops == FBNET_OPS.index("skip")).sum(axis=1)).all()


def test_ofa_rows_encode_and_unencodable_ones_are_reported(data_dir):
    raw = np.load(data_dir / OFA_FILE)
    ofa = get_latency_set("ofa-mbv3-gpu")
    assert ofa.devices() == [str(d) for d in raw["devices"]] and len(ofa.devices()) == 12
    outside = ~np.isin(raw["r"], OFA_R)
    # HELP sampled resolutions 128..224 step 4; the space has 160..224 step 16
    assert sorted(set(raw["r"].tolist())) == list(range(128, 225, 4))
    with pytest.warns(UserWarning, match=f"{outside.sum()} of 5000 subnets .* left out"):
        vectors, rows = ofa.encoded()
    assert (rows == np.nonzero(~outside)[0]).all() and len(rows) == 1013
    space = OFAMobileNetV3Space()
    assert (space.canonicalize(vectors) == vectors).all()
    active = space.active_mask(vectors)
    for k in range(0, len(rows), 97):
        i, cfg = rows[k], space.decode(vectors[k])
        assert cfg["d"] == raw["d"][i].tolist() and cfg["r"] == raw["r"][i]
        on = active[k]
        assert (np.array(cfg["ks"])[on] == raw["ks"][i][on]).all()
        assert (np.array(cfg["e"])[on] == raw["e"][i][on]).all()
        assert on.sum() == raw["d"][i].sum()
    with pytest.warns(UserWarning):
        X, y, views = ofa.load("v100_64")
    # the space's cost features: MACs per part and resolution (a view), then OFA's encoding
    assert X.shape == (1013, 12 + 128) and views[1] is None and list(views[0]) == list(range(12))
    assert (y == raw["latency_ms"][rows, ofa.devices().index("v100_64")]).all()
    # every row, resolution as a number
    X, y, views = get_latency_set("ofa-mbv3-gpu-allres").load("2080ti_1")
    assert X.shape == (5000, 6 * N_BLOCKS + 1) and views is None
    assert (X[:, -1] == raw["r"]).all() and (X[:, :-1].sum(axis=1) == 2 * raw["d"].sum(1)).all()
    assert np.isfinite(raw["latency_ms"]).all() and (raw["latency_ms"] > 0).all()


def test_hat_target_is_encoder_plus_decoder(data_dir):
    hat = get_latency_set("hat")
    assert hat.devices() == sorted(HAT_FILES) and len(HAT_FILES) == 5
    for dev, rel in HAT_FILES.items():
        df = pd.read_csv(data_dir / rel)
        X, y, views = hat.load(dev)
        assert X.shape == (2000, 10) and y.shape == (2000,) and views is None
        assert (X == df[list(HAT_FEATURES)].to_numpy()).all()
        assert np.allclose(y, df["latency_mean_encoder"] + df["latency_mean_decoder"])
        assert np.isfinite(y).all() and (y > 0).all()


def test_target_errors():
    with pytest.raises(HwnasError, match="measured latency only"):
        latency_set_data("hat", "accuracy")
    with pytest.raises(HwnasError, match="needs a device"):
        latency_set_data("fbnet", "latency")
    with pytest.raises(HwnasError, match=r"unknown device 'nope' \(known: .*pixel3"):
        latency_set_data("fbnet", "latency:nope")


def test_corrupt_and_missing_files(tmp_path):
    (tmp_path / "fbnet").mkdir()
    (tmp_path / "fbnet" / "fbnet_latency_help.npz").write_bytes(b"not a zip")
    with pytest.raises(HwnasError, match="cannot read FBNet latency file"):
        get_latency_set("fbnet").load("pixel3", tmp_path)
    (tmp_path / "ofa").mkdir()
    np.savez(tmp_path / OFA_FILE, devices=np.array(["a"]), latency_ms=np.ones((3, 1)))
    with pytest.raises(HwnasError, match=r"corrupt: missing arrays \['ks'"):
        get_latency_set("ofa-mbv3-gpu").load("a", tmp_path)
    with pytest.raises(HwnasError, match="not found in data dir"):
        get_latency_set("hat").load("wmt14ende_xeon", tmp_path)


def test_predictors_evaluate_on_latency_sets(data_dir):
    opts = ["--models", "ridge", "--sizes", "25,50", "--trials", "1", "--test-size", "100"]
    hat = ["predictors", "evaluate", "--benchmark", "hat", "--target", "latency:wmt14ende_xeon"]
    res = runner.invoke(app, [*hat, *opts, "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [(r["model"], r["size"]) for r in rows] == [("ridge", 25), ("ridge", 50)]
    # HAT's 10 features are close to linear in latency: ridge ranks well from 50 samples
    assert rows[1]["kendall_tau_median"] > 0.75 and rows[1]["mape_median"] < 15
    base = ["predictors", "evaluate", "--benchmark", "fbnet", "--target", "latency:pixel3"]
    res = runner.invoke(app, [*base, *opts, "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert 0.1 < rows[1]["kendall_tau_median"] < 1 and rows[1]["mape_median"] > 0
    res = runner.invoke(app, ["devices", "--benchmark", "ofa-mbv3-gpu", "--json"])
    assert res.exit_code == 0 and "v100_64" in json.loads(res.stdout)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--benchmark", "fbnet", "--target", "accuracy"], "measured latency only"),
        (["--benchmark", "hat", "--target", "latency:pi"], "(known: iwslt14deen_titanxp, "),
        (["--benchmark", "nope"], "measured latency sets: fbnet, hat, ofa-mbv3-gpu"),
        # 10 rows left for sizes of 25: an error, not an empty table and exit 0
        (
            ["--benchmark", "hat", "--target", "latency:wmt14ende_xeon", "--test-size", "1990"],
            "no training size fits: 10 rows are left",
        ),
    ],
)
def test_cli_errors_one_line_exit_2(args, message, data_dir):
    res = hwnas("predictors", "evaluate", *args, "--models", "ridge", "--sizes", "25")
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
    assert "Traceback" not in res.stderr
