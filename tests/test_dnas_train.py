"""Evaluation networks of derived cells (NB201, DARTS), their training, resume, export, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hwnas.data import ImageData, load_dataset
from hwnas.dnas.evalnet import (
    DartsNetworkCIFAR,
    NB201Network,
    count_params,
    drop_path,
    validate_genotype,
)
from hwnas.dnas.genotype import DARTS_V2, Genotype, genotype_to_dict
from hwnas.dnas.training import (
    DTrainConfig,
    cutout,
    dtrain,
    genotype_from_search,
    load_network,
    resolve_arch,
)
from hwnas.errors import HwnasError

# One thread: the test machine is shared.
torch.set_num_threads(1)

ALL_CONV = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
MIXED = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|nor_conv_1x1~0|avg_pool_3x3~1|none~2|"
# Parameter-light DARTS genotype whose parameters are easy to count by hand: normal cells
# hold only identities; each reduction cell one FactorizedReduce (skip_connect, stride 2).
TINY = Genotype(
    normal=[("skip_connect", 0), ("skip_connect", 1)] * 4,
    normal_concat=[2, 3, 4, 5],
    reduce=[("skip_connect", 0), ("max_pool_3x3", 1)]
    + [("max_pool_3x3", 0), ("skip_connect", 2)] * 3,
    reduce_concat=[2, 3, 4, 5],
)
FAST_LATENCY = {"warmup": 1, "rounds": 3, "repeats_per_round": 2}


@pytest.fixture(scope="module")
def cifar(data_dir: Path) -> ImageData:
    """Real CIFAR-10, cut to 256 training and 128 test images (loaded once)."""
    data = load_dataset("cifar10", data_dir, val_fraction=0.0)
    gen = torch.Generator().manual_seed(0)
    tr = torch.randperm(len(data.y_train), generator=gen)[:256]
    te = torch.randperm(len(data.y_test), generator=gen)[:128]
    data.x_train, data.y_train = data.x_train[tr], data.y_train[tr]
    data.x_test, data.y_test = data.x_test[te], data.y_test[te]
    return data


# ---- networks ----------------------------------------------------------------------------
def test_nb201_param_counts_published_and_by_hand() -> None:
    # NAS-Bench-201 (CIFAR-10, C=16, N=5): 1.53 M for the all-3x3 cell, 0.07 M without convs
    assert count_params(NB201Network(ALL_CONV)) == pytest.approx(1.53e6, rel=0.005)
    assert count_params(NB201Network(ALL_CONV)) == 1_531_546
    for arch in (ALL_NONE, ALL_SKIP):
        assert count_params(NB201Network(arch)) == pytest.approx(0.073e6, rel=0.01)
    # by hand: C=4, N=1, MIXED cell = one conv3x3 (9c^2 + 2c) and one conv1x1 (c^2 + 2c)
    stem = 3 * 9 * 4 + 2 * 4
    cells = sum(10 * c * c + 4 * c for c in (4, 8, 16))

    def res(ci: int, co: int) -> int:  # conv_a + BN, conv_b + BN, avgpool + 1x1 shortcut
        return 9 * ci * co + 2 * co + 9 * co * co + 2 * co + ci * co

    head = 2 * 16 + 16 * 10 + 10
    assert (
        count_params(NB201Network(MIXED, C=4, N=1)) == stem + cells + res(4, 8) + res(8, 16) + head
    )


def test_nb201_forward_shapes_and_none_edges() -> None:
    net = NB201Network(MIXED, C=4, N=1, num_classes=7)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    net1 = NB201Network(ALL_NONE, C=4, N=1, in_channels=1).eval()
    out = net1(torch.randn(3, 1, 28, 28))
    # all-'none' cells output zeros, so every input gives the same logits
    assert (
        out.shape == (3, 10) and torch.allclose(out[0], out[1]) and torch.allclose(out[0], out[2])
    )
    with pytest.raises(HwnasError, match="malformed"):
        NB201Network("|nor_conv_3x3~0|+|none~0|")


def test_darts_param_counts_published_and_by_hand() -> None:
    # DARTS (2nd order) on CIFAR-10: 3.3 M parameters at C=36, 20 cells, without aux head
    assert count_params(DartsNetworkCIFAR(DARTS_V2)) == pytest.approx(3.3e6, rel=0.02)
    net = DartsNetworkCIFAR(TINY, C=4, layers=3, auxiliary=True)
    stem = 3 * 9 * 12 + 2 * 12
    cell0 = (12 * 4 + 8) + (12 * 4 + 8)  # normal, C=4: two 1x1 ReLUConvBN preprocessings
    cell1 = (12 * 8 + 16) + (16 * 8 + 16) + (8 * 8 + 16)  # reduction, C=8: + FactorizedReduce op
    cell2 = (2 * 16 * 8 + 32) + (32 * 16 + 32) + (16 * 16 + 32)  # FR preprocess0 after reduction
    classifier = 64 * 10 + 10
    assert count_params(net) == stem + cell0 + cell1 + cell2 + classifier
    aux = 64 * 128 + 2 * 128 + 128 * 768 * 4 + 2 * 768 + 768 * 10 + 10
    assert count_params(net, exclude_auxiliary=False) - count_params(net) == aux


def test_darts_outputs_train_tuple_eval_logits() -> None:
    net = DartsNetworkCIFAR(DARTS_V2, C=4, layers=3, auxiliary=True, drop_path_prob=0.2)
    x = torch.randn(2, 3, 32, 32)
    out = net.train()(x)
    assert isinstance(out, tuple) and [t.shape for t in out] == [(2, 10), (2, 10)]
    assert net.eval()(x).shape == (2, 10)
    plain = DartsNetworkCIFAR(DARTS_V2, C=4, layers=3)
    assert plain.train()(x).shape == (2, 10)  # no aux head: logits in training too
    with pytest.raises(HwnasError, match="8x8"):
        net.train()(torch.randn(2, 3, 16, 16))


def test_genotype_validation() -> None:
    bad = genotype_to_dict(DARTS_V2)
    bad["normal"][3] = ["sep_conv_9x9", 1]
    with pytest.raises(HwnasError, match="unknown darts op 'sep_conv_9x9'"):
        validate_genotype(bad)
    bad = genotype_to_dict(DARTS_V2)
    bad["normal"][0] = ["sep_conv_3x3", 2]  # node 2 cannot read itself
    with pytest.raises(HwnasError, match="earlier state"):
        validate_genotype(bad)
    assert resolve_arch("darts", "darts-v2") == genotype_to_dict(DARTS_V2)
    assert resolve_arch("darts", json.dumps(genotype_to_dict(DARTS_V2))) == genotype_to_dict(
        DARTS_V2
    )
    with pytest.raises(HwnasError, match="unknown genotype 'DARTS_V9'"):
        resolve_arch("darts", "DARTS_V9")
    assert resolve_arch("nb201", {"arch_str": f" {MIXED} "}) == MIXED


def test_cutout_zeroes_a_square() -> None:
    x = torch.ones(64, 3, 32, 32)
    y = cutout(x, 16, torch.Generator().manual_seed(0))
    assert torch.equal(cutout(x, 0), x)
    for img in y:
        assert torch.equal(img[0], img[1]) and torch.equal(img[0], img[2])  # same on channels
        zero = img[0] == 0
        rows = torch.nonzero(zero.any(1)).flatten()
        cols = torch.nonzero(zero.any(0)).flatten()
        # one axis-aligned block, at most 16x16, at least 8x8 (the centre is in the image)
        assert int(zero.sum()) == len(rows) * len(cols)
        assert 8 <= len(rows) <= 16 and 8 <= len(cols) <= 16
        assert rows[-1] - rows[0] + 1 == len(rows) and cols[-1] - cols[0] + 1 == len(cols)
        assert bool(zero[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].all())
    # some squares sit inside the image: exactly 16 x 16
    assert int((y[:, 0] == 0).sum(dim=(1, 2)).max()) == 256


def test_drop_path_only_in_training() -> None:
    x = torch.ones(4000, 1, 1, 1)
    torch.manual_seed(0)
    d = drop_path(x, 0.25)
    assert torch.equal(d.unique(), torch.tensor([0.0, 1 / 0.75]))
    assert float(d.mean()) == pytest.approx(1.0, abs=0.05)
    torch.manual_seed(0)
    net = DartsNetworkCIFAR(DARTS_V2, C=4, layers=3, drop_path_prob=0.5)
    xb = torch.randn(4, 3, 32, 32)
    net.eval()
    e1, e2 = net(xb), net(xb)
    net.drop_path_prob = 0.0
    assert torch.equal(e1, e2) and torch.equal(e1, net(xb))  # eval: no drop path at all
    net.train()
    assert torch.equal(net(xb), net(xb))  # train, p=0: deterministic
    net.drop_path_prob = 0.5
    assert not torch.equal(net(xb), net(xb))  # train, p>0: random paths dropped


def test_a_few_steps_reduce_the_loss(cifar: ImageData) -> None:
    torch.manual_seed(0)
    net = NB201Network(MIXED, C=8, N=1)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=3e-4)
    x, y = cifar.x_train[:64], cifar.y_train[:64]
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]


# ---- training runs ----------------------------------------------------------------------
def _cfg(**kw) -> dict:
    base = {
        "space": "darts",
        "genotype": "DARTS_V2",
        "C": 4,
        "layers": 3,
        "epochs": 2,
        "batch_size": 64,
        "drop_path_prob": 0.3,
        "cutout": 8,
        "threads": 1,
        "measure_latency": False,
    }
    base.update(kw)
    return base


def test_resume_continues_exactly(cifar: ImageData, tmp_path: Path) -> None:
    full = dtrain(_cfg(), tmp_path / "full", progress=False, data=cifar)
    part = tmp_path / "part"
    first = dtrain(_cfg(), part, progress=False, data=cifar, max_epochs=1)
    assert len(first.history) == 1 and first.summary is None
    assert not (part / "summary.json").exists()
    resumed = dtrain(_cfg(), part, resume=True, progress=False, data=cifar)
    keys = ("loss", "train_acc", "test_acc", "lr", "drop_path_prob", "steps")
    for a, b in zip(full.history, resumed.history, strict=True):
        assert {k: a[k] for k in keys} == pytest.approx({k: b[k] for k in keys}, rel=1e-6)
    assert full.history[1]["drop_path_prob"] == pytest.approx(0.15)  # 0.3 * 1 / 2
    assert full.history[1]["lr"] < full.history[0]["lr"] == pytest.approx(0.025)
    lines = (part / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(s)["epoch"] for s in lines] == [0, 1]
    assert (part / "training.png").read_bytes()[:4] == b"\x89PNG"  # curves of both calls
    assert resumed.summary is not None and (part / "summary.json").is_file()
    assert resumed.summary["test_acc"] == pytest.approx(full.summary["test_acc"])
    with pytest.raises(HwnasError, match=r"different settings \(C 4 \(now 6\)"):
        dtrain(_cfg(C=6), part, resume=True, progress=False, data=cifar)


def test_kills_around_the_metrics_line_leave_a_consistent_log(
    cifar: ImageData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held_elsewhere: Any
) -> None:
    """The epoch's line is written before its checkpoint (a resume rewrites the log to
    the checkpoint's epochs); a second run on the same directory is refused."""
    from hwnas.dnas import training as dtrain_module

    cfg = _cfg(train_subset=64, steps_per_epoch=1)
    metrics = tmp_path / "metrics.jsonl"

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(dtrain_module, "save_checkpoint", killed)
    with pytest.raises(KeyboardInterrupt):
        dtrain(cfg, tmp_path, progress=False, data=cifar)
    assert [json.loads(s)["epoch"] for s in metrics.read_text().splitlines()] == [0]
    monkeypatch.undo()
    with held_elsewhere(tmp_path), pytest.raises(HwnasError, match="in use by another"):
        dtrain(cfg, tmp_path, resume=True, progress=False, data=cifar)
    res = dtrain(cfg, tmp_path, resume=True, progress=False, data=cifar)
    assert [json.loads(s) for s in metrics.read_text().splitlines()] == res.history
    assert [r["epoch"] for r in res.history] == [0, 1]


def test_summary_onnx_matches_and_latency(cifar: ImageData, tmp_path: Path) -> None:
    import onnxruntime as ort

    cfg = _cfg(epochs=1, auxiliary=True, train_subset=128)
    cfg.update(measure_latency=True, latency_settings=FAST_LATENCY)
    res = dtrain(cfg, tmp_path, progress=False, data=cifar, return_model=True)
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["train_examples"] == 128 and s["test_examples"] == 128
    assert s["params"] == count_params(res.model) < s["params_with_aux"]
    assert s["flops"] > 0 and s["macs"] * 2 == s["flops"] and s["cost_batch_size"] == 1
    assert s["onnx_max_abs_diff"] < 1e-4
    assert s["latency_ms"] > 0
    st = s["latency"]["settings"]
    assert st["batch_size"] == 1 and st["intra_op_threads"] == 1 and st["runtime"] == "onnxruntime"
    # the exported file reproduces the reloaded trained network
    net = load_network(tmp_path)
    x = torch.randn(3, 3, 32, 32)
    sess = ort.InferenceSession(s["onnx"], providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        assert np.abs(net(x).numpy() - got).max() < 1e-4


def test_config_errors() -> None:
    with pytest.raises(HwnasError, match="unknown dtrain setting 'epoch'"):
        DTrainConfig.from_dict({"epoch": 3})
    with pytest.raises(HwnasError, match="needs an arch string"):
        DTrainConfig(space="nb201").resolved()
    with pytest.raises(HwnasError, match="no auxiliary head"):
        DTrainConfig(space="nb201", genotype=MIXED, auxiliary=True).resolved()
    r = DTrainConfig(space="nb201", genotype=MIXED).resolved()
    assert (r.C, r.layers, r.drop_path_prob, r.cutout) == (16, 5, 0.0, 16)
    r = DTrainConfig(dataset="mnist").resolved()
    assert (r.C, r.layers, r.drop_path_prob, r.cutout) == (36, 20, 0.2, 0)
    assert DTrainConfig(genotype=TINY).resolved().genotype == genotype_to_dict(TINY)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_unavailable(tmp_path: Path) -> None:
    with pytest.raises(HwnasError, match="CUDA is not available"):
        dtrain(_cfg(device="cuda"), tmp_path, progress=False)
    with pytest.raises(HwnasError, match="unknown device"):
        dtrain(_cfg(device="tpu9"), tmp_path, progress=False)


# ---- CLI ----------------------------------------------------------------------------------
def _app():
    import typer

    from hwnas.cli_dtrain import register

    app = typer.Typer()
    register(app)

    @app.callback()
    def _main() -> None:  # keep 'dtrain' a sub-command
        pass

    return app


def test_cli_from_search_end_to_end(tmp_path: Path, data_dir: Path) -> None:
    from typer.testing import CliRunner

    search = tmp_path / "search"
    search.mkdir()
    (search / "summary.json").write_text(json.dumps({"genotype": genotype_to_dict(TINY)}))
    assert genotype_from_search(search) == ("darts", genotype_to_dict(TINY))
    out = tmp_path / "run"
    r = CliRunner().invoke(
        _app(),
        ["dtrain", "--from-search", str(search), "--dataset", "cifar10", "--data-dir", str(data_dir),
         "--epochs", "1", "--C", "4", "--layers", "3", "--train-subset", "64", "--test-subset", "32",
         "--batch-size", "32", "--cutout", "16", "--drop-path", "0.2", "--threads", "1",
         "--out", str(out), "--no-progress"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    s = json.loads((out / "summary.json").read_text())
    assert s["space"] == "darts" and s["arch"] == genotype_to_dict(TINY)
    assert s["params"] == count_params(DartsNetworkCIFAR(TINY, C=4, layers=3))
    assert s["latency_ms"] > 0 and 0.0 <= s["test_acc"] <= 1.0
    assert json.loads(r.stdout.strip().splitlines()[-1])["params"] == s["params"]


def test_cli_from_an_nb201_dsearch(tmp_path: Path, data_dir: Path) -> None:
    """dsearch --space nb201 writes the cell as its genotype; dtrain --from-search reads it
    as an NB201 cell (it was taken for a DARTS genotype name)."""
    from typer.testing import CliRunner

    from hwnas.cli import app

    search = tmp_path / "search"
    r = CliRunner().invoke(
        app,
        ["dsearch", "--space", "nb201", "--constraint", "params<=6e5", "--epochs", "1",
         "--steps-per-epoch", "1", "--batch-size", "16", "--train-subset", "64",
         "--threads", "1", "--out", str(search), "--no-progress"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    arch = json.loads((search / "summary.json").read_text())["genotype"]
    assert genotype_from_search(search) == ("nb201", arch)
    out = tmp_path / "run"
    r = CliRunner().invoke(
        _app(),
        ["dtrain", "--from-search", str(search), "--dataset", "digits", "--epochs", "1",
         "--C", "4", "--layers", "1", "--train-subset", "64", "--test-subset", "64",
         "--batch-size", "32", "--no-latency", "--threads", "1", "--out", str(out),
         "--no-progress"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    s = json.loads((out / "summary.json").read_text())
    assert s["space"] == "nb201" and s["arch"] == arch


def test_cli_nb201_arch_digits(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    r = CliRunner().invoke(
        _app(),
        ["dtrain", "--arch", MIXED, "--dataset", "digits", "--epochs", "1", "--C", "4",
         "--layers", "1", "--train-subset", "64", "--test-subset", "64", "--batch-size", "32",
         "--no-latency", "--threads", "1", "--out", str(tmp_path), "--no-progress"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["arch"] == MIXED and s["input_shape"] == [1, 8, 8] and s["latency_ms"] is None
    # --resume takes the run's own settings: only what changes is given again
    r = CliRunner().invoke(_app(), ["dtrain", "--out", str(tmp_path), "--resume", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["test_acc"] == s["test_acc"]
    r = CliRunner().invoke(_app(), ["dtrain", "--out", str(tmp_path), "--resume", "--lr", "0.5"])
    assert r.exit_code == 2 and "lr 0.025 (now 0.5)" in r.output
    r = CliRunner().invoke(_app(), ["dtrain", "--out", str(tmp_path / "none"), "--resume"])
    assert r.exit_code == 2 and "holds no dtrain run to continue" in r.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--genotype", "UNKNOWN_OP"], "unknown genotype"),
        (["--arch", "|nor_conv_3x3~0|+|none~0|"], "malformed arch string"),
        (["--arch", "|conv_7x7~0|+|none~0|none~1|+|none~0|none~1|none~2|"], "bad edge"),
        (["--space", "darts", "--arch", MIXED], "NB201 arch string"),
        (["--genotype", "DARTS_V2", "--arch", MIXED], "exactly one"),
        (["--from-search", "/nonexistent/run"], "not found"),
        (["--genotype", "DARTS_V2", "--drop-path", "1.5"], "invalid value for --drop-path"),
        (["--genotype", "DARTS_V2", "--steps-per-epoch", "0"], "for --steps-per-epoch: "),
        (["--genotype", "DARTS_V2", "--auxiliary-weight", "0.7"], "it needs --auxiliary"),
    ],
)
def test_cli_bad_inputs(tmp_path: Path, args: list[str], needle: str) -> None:
    from typer.testing import CliRunner

    r = CliRunner().invoke(_app(), ["dtrain", *args, "--out", str(tmp_path)])
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and needle in err


def test_cli_negative_seed_is_refused_by_the_option(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    r = CliRunner().invoke(_app(), ["dtrain", "--arch", MIXED, "--seed", "-1", "--out", str(tmp_path)])  # fmt: skip
    assert r.exit_code == 2 and "greater than or equal to 0" in r.output


def test_cli_unknown_op_in_genotype(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    bad = genotype_to_dict(DARTS_V2)
    bad["reduce"][1] = ["conv_7x7", 1]
    path = tmp_path / "g.json"
    path.write_text(json.dumps(bad))
    for value in (json.dumps(bad), str(path)):
        r = CliRunner().invoke(_app(), ["dtrain", "--genotype", value, "--out", str(tmp_path)])
        assert r.exit_code == 2
        err = r.stderr.strip()
        assert len(err.splitlines()) == 1 and "unknown darts op 'conv_7x7'" in err


# ---- search results as input (tester's findings) --------------------------------------------
def _nb201_search_summary(path: Path, C: int = 4, layers: int = 1) -> Path:
    """A summary.json shaped as 'hwnas dsearch --space nb201' writes it (the fields read)."""
    summary = {
        "space": "nb201",
        "genotype": MIXED,
        "config": {"space": "nb201", "dataset": "digits", "eval_channels": C},
        "resource_model": {"eval_network": {"space": "nb201", "C": C, "layers": layers}},
        "nb201": {"arch_str": MIXED, "index": 1},
    }
    path.mkdir(parents=True, exist_ok=True)
    (path / "summary.json").write_text(json.dumps(summary))
    return path / "summary.json"


def test_resolve_arch_reads_nb201_search_summaries(tmp_path: Path) -> None:
    file = _nb201_search_summary(tmp_path / "r1")
    summary = json.loads(file.read_text())
    assert resolve_arch("nb201", str(file)) == MIXED
    assert resolve_arch("nb201", summary) == MIXED
    assert resolve_arch("nb201", {"nb201": {"arch_str": MIXED}}) == MIXED
    with pytest.raises(HwnasError, match="holds a cell of the nb201 space, not of darts"):
        resolve_arch("darts", str(file))
    with pytest.raises(HwnasError, match="is an NB201 arch string; use space nb201"):
        resolve_arch("darts", MIXED)
    darts = {"space": "darts", "genotype": genotype_to_dict(TINY)}
    with pytest.raises(HwnasError, match="holds a cell of the darts space, not of nb201"):
        resolve_arch("nb201", darts)


def test_cli_takes_network_and_dataset_from_the_search(tmp_path: Path) -> None:
    """The search's evaluation network (C, N) and dataset are trained unless overridden
    (they were CIFAR-10, C=16, N=5: another network than the budget was about), for
    --from-search and for a summary.json given to --arch or --genotype."""
    from typer.testing import CliRunner

    file = _nb201_search_summary(tmp_path / "r1", C=4, layers=1)
    tiny = ["--epochs", "1", "--train-subset", "32", "--test-subset", "32", "--batch-size",
            "32", "--no-latency", "--threads", "1", "--no-progress"]  # fmt: skip
    expected = count_params(NB201Network(MIXED, 4, 1, num_classes=10, in_channels=1))
    for k, given in enumerate((["--from-search", str(file.parent)], ["--arch", str(file)],
                               ["--genotype", str(file)])):  # fmt: skip
        out = tmp_path / f"run{k}"
        r = CliRunner().invoke(_app(), ["dtrain", *given, *tiny, "--out", str(out)])
        assert r.exit_code == 0, r.output
        s = json.loads((out / "summary.json").read_text())
        assert s["space"] == "nb201" and s["arch"] == MIXED and s["dataset"] == "digits"
        assert s["params"] == expected and s["network"]["C"] == 4
        report = json.loads(r.stdout.strip().splitlines()[-1])
        assert report["from_search"] == {"C": 4, "layers": 1, "dataset": "digits"}
        assert "taken from the search" in r.stderr and "C=4, layers=1, dataset=digits" in r.stderr
    # an explicit setting wins, with a warning that the budget was for another network
    out = tmp_path / "override"
    r = CliRunner().invoke(
        _app(), ["dtrain", "--from-search", str(file), "--C", "8", *tiny, "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert json.loads((out / "summary.json").read_text())["network"]["C"] == 8
    assert json.loads(r.stdout.strip().splitlines()[-1])["from_search"] == {
        "layers": 1,
        "dataset": "digits",
    }
    assert "C=8 overrides the search's C=4" in r.stderr
    # --arch is for NB201 cells: a DARTS summary is refused with one line
    darts = tmp_path / "d" / "summary.json"
    darts.parent.mkdir()
    darts.write_text(json.dumps({"space": "darts", "genotype": genotype_to_dict(TINY)}))
    r = CliRunner().invoke(_app(), ["dtrain", "--arch", str(darts), "--out", str(out)])
    assert r.exit_code == 2 and "holds a darts genotype" in r.stderr
    # training into the search's own directory would replace its summary: refused
    (file.parent / "checkpoint.pt").write_bytes(b"the search's")  # a finished search
    r = CliRunner().invoke(
        _app(), ["dtrain", "--from-search", str(file.parent), "--out", str(file.parent)]
    )
    assert r.exit_code == 2 and "the search's own directory" in r.stderr
    assert json.loads(file.read_text()).get("space") == "nb201"  # untouched


def test_cli_interrupt_says_how_to_continue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C: the command that continues (the same options and --resume), exit 130; a
    run without --resume says that it discards an unfinished training, or replaces a
    finished one."""
    from typer.testing import CliRunner

    from hwnas.dnas import training as dtrain_module

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(dtrain_module, "dtrain", interrupted)
    (tmp_path / "checkpoint.pt").write_bytes(b"unfinished")
    args = ["dtrain", "--arch", MIXED, "--epochs", "3", "--out", str(tmp_path), "--no-latency"]
    r = CliRunner().invoke(_app(), args)
    assert r.exit_code == 130, r.output
    note, hint = r.stderr.strip().splitlines()
    assert "unfinished training" in note and "--resume" in note
    assert hint == (
        f"interrupted; continue with: hwnas dtrain --arch '{MIXED}' --out {tmp_path} "
        "--epochs 3 --no-latency --resume"
    )
    monkeypatch.undo()
    (tmp_path / "summary.json").write_text("{}")  # a finished run: refused, not replaced
    r = CliRunner().invoke(_app(), args)
    assert r.exit_code == 2 and r.stderr.strip().startswith(
        f"error: {tmp_path} holds a finished training"
    )
    assert len(r.stderr.strip().splitlines()) == 1 and "--resume" in r.stderr
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"unfinished"


# ---- the library as the CLI, longer runs, logs (user report) ----------------------------------
def test_the_library_takes_network_and_dataset_from_a_search_summary(tmp_path: Path) -> None:
    """dtrain(dict(genotype='.../summary.json')) trains the search's network on its
    dataset (it trained C=36, 20 cells on CIFAR-10, silently); an explicit setting wins
    with a warning; the search's own folder is refused."""
    file = _nb201_search_summary(tmp_path / "s", C=4, layers=1)
    tiny = dict(epochs=1, train_subset=32, test_subset=32, batch_size=32, threads=1)
    tiny.update(measure_latency=False)
    lines: list[str] = []
    res = dtrain(dict(genotype=str(file), **tiny), tmp_path / "a", progress=False, log=lines.append)
    assert res.summary is not None and res.from_search == {"C": 4, "layers": 1, "dataset": "digits"}
    s = res.summary
    assert (s["space"], s["dataset"], s["network"]["C"], s["network"]["layers"]) == (
        "nb201", "digits", 4, 1,
    )  # fmt: skip
    assert s["from_search"] == str(file) and s["arch"] == MIXED
    assert lines[0] == f"note: taken from the search ({file}): C=4, layers=1, dataset=digits"
    assert lines[1].startswith("dtrain: loading digits, building the nb201 network (C=4")
    assert any(x.startswith("epoch 0: loss ") for x in lines)
    with pytest.warns(UserWarning, match="C=6 overrides the search's C=4"):
        res = dtrain(dict(genotype=str(file), C=6, **tiny), tmp_path / "b", progress=False)
    assert res.summary is not None and res.summary["network"]["C"] == 6
    assert res.from_search == {"layers": 1, "dataset": "digits"}
    with pytest.raises(HwnasError, match="space darts does not match the nb201 search"):
        dtrain(dict(genotype=str(file), space="DARTS", **tiny), tmp_path / "c", progress=False)
    with pytest.raises(HwnasError, match="the search's own directory"):
        dtrain(dict(genotype=str(file), **tiny), file.parent, progress=False)
    assert DTrainConfig(space="NB201", genotype=MIXED).space == "nb201"  # type: ignore[arg-type]


def test_resume_with_more_epochs_trains_on_and_a_finished_run_is_kept(
    cifar: ImageData, tmp_path: Path
) -> None:
    """--epochs raised on resume stretches the cosine from the step reached (as 'hwnas
    train'); fewer epochs than run, and a new run over a finished one, are refused."""
    out = tmp_path / "run"
    one = dtrain(_cfg(epochs=1), out, progress=False, data=cifar)
    assert one.summary is not None and one.summary["epochs"] == 1
    with pytest.raises(HwnasError, match="holds a finished training .*--resume"):
        dtrain(_cfg(epochs=1), out, progress=False, data=cifar)
    two = dtrain(_cfg(epochs=3), out, resume=True, progress=False, data=cifar)
    assert [r["epoch"] for r in two.history] == [0, 1, 2]
    assert two.summary is not None and two.summary["epochs"] == 3
    full = dtrain(_cfg(epochs=3), tmp_path / "full", progress=False, data=cifar)
    # epoch 1 starts at the 3-epoch schedule's rate (not the 1-epoch one's final 0)
    assert two.history[1]["lr"] == pytest.approx(full.history[1]["lr"], rel=1e-9)
    assert two.history[2]["drop_path_prob"] == pytest.approx(0.3 * 2 / 3)
    with pytest.raises(HwnasError, match="already holds 3 epochs, more than epochs 2"):
        dtrain(_cfg(epochs=2), out, resume=True, progress=False, data=cifar)


def test_cli_logs_plain_lines_and_an_interrupt_before_any_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--no-progress: a line at the start and one per epoch (unwrapped); --resume
    --epochs N trains on; Ctrl-C before anything was saved says to run it again."""
    from typer.testing import CliRunner

    out = tmp_path / "run"
    args = ["dtrain", "--arch", MIXED, "--space", "NB201", "--dataset", "digits", "--C", "4",
            "--layers", "1", "--train-subset", "64", "--test-subset", "64", "--batch-size",
            "32", "--no-latency", "--threads", "1", "--out", str(out), "--no-progress"]  # fmt: skip
    r = CliRunner().invoke(_app(), [*args, "--epochs", "1"])
    assert r.exit_code == 0, r.output
    err = r.stderr.splitlines()
    assert err[0] == "dtrain: loading digits, building the nb201 network (C=4, N=1) on cpu"
    assert err[1] == "dtrain: training to 1 epochs of 2 steps"
    assert err[2].startswith("epoch 0: loss ") and err[2].endswith(" s)") and len(err) == 3
    r = CliRunner().invoke(_app(), ["dtrain", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "training from epoch 1 to 2 epochs" in r.stderr and "epoch 1: loss" in r.stderr
    assert json.loads((out / "summary.json").read_text())["epochs"] == 2
    help_text = CliRunner().invoke(_app(), ["dtrain", "--help"], env={"COLUMNS": "200"}).output
    for text in (
        "auxiliary head's loss",
        "cap on training steps",
        "seed of the",
        "notes, warnings",
    ):
        assert text in help_text, text

    from hwnas.dnas import training as dtrain_module

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(dtrain_module, "dtrain", interrupted)
    fresh = tmp_path / "fresh"
    r = CliRunner().invoke(_app(), ["dtrain", "--arch", MIXED, "--out", str(fresh)])
    assert r.exit_code == 130
    assert r.stderr.strip() == (
        f"interrupted; nothing was saved yet; run it again: hwnas dtrain --arch '{MIXED}' "
        f"--out {fresh}"
    )
