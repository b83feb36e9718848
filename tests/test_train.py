"""Distillation losses, sandwich steps, the training loop, checkpoints, eval and CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hwnas.errors import HwnasError
from hwnas.supernet import MBv3Supernet
from hwnas.train.losses import dkd_loss, kl_loss, make_kd_loss, smd_loss, smd_student_loss
from hwnas.train.supernet import (
    TrainConfig,
    load_checkpoint,
    sandwich_configs,
    sandwich_step,
    train_supernet,
)

# One thread: the test machine is shared (see tests/test_supernet.py).
torch.set_num_threads(1)

S = np.array([[1.0, 2.0, 0.5], [0.2, -1.0, 0.3]])
T = np.array([[0.5, 1.5, -0.5], [1.0, 0.0, 0.2]])
Y = np.array([1, 2])


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row-wise KL(p || q)."""
    return (p * (np.log(p) - np.log(q))).sum(1)


def _tensors():
    return (
        torch.tensor(S, dtype=torch.float64, requires_grad=True),
        torch.tensor(T, dtype=torch.float64, requires_grad=True),
        torch.tensor(Y),
    )


# ---- losses ----------------------------------------------------------------------------
@pytest.mark.parametrize("temp", [1.0, 2.0])
def test_kl_loss_hand_computed(temp: float) -> None:
    s, t, y = _tensors()
    expect = _kl(_softmax(T / temp), _softmax(S / temp)).mean() * temp**2
    assert kl_loss(s, t, y, temp).item() == pytest.approx(expect, rel=1e-10)


@pytest.mark.parametrize(("alpha", "beta", "temp"), [(1.0, 0.5, 1.0), (1.0, 8.0, 4.0)])
def test_dkd_loss_hand_computed(alpha: float, beta: float, temp: float) -> None:
    s, t, y = _tensors()
    ps, pt = _softmax(S / temp), _softmax(T / temp)
    tckd, nckd = [], []
    for n in range(2):
        g = Y[n]
        bs = np.array([ps[n, g], 1 - ps[n, g]])
        bt = np.array([pt[n, g], 1 - pt[n, g]])
        tckd.append((bt * np.log(bt / bs)).sum())
        other = [c for c in range(3) if c != g]
        qs = np.exp(S[n, other] / temp) / np.exp(S[n, other] / temp).sum()
        qt = np.exp(T[n, other] / temp) / np.exp(T[n, other] / temp).sum()
        nckd.append((qt * np.log(qt / qs)).sum())
    expect = temp**2 * (alpha * np.mean(tckd) + beta * np.mean(nckd))
    got = dkd_loss(s, t, y, alpha, beta, temp)
    assert got.item() == pytest.approx(expect, rel=1e-10)
    # the paper's defaults
    assert make_kd_loss("dkd")(s, t, y).item() == pytest.approx(
        dkd_loss(s, t, y, 1.0, 0.5, 1.0).item()
    )
    # gradients reach the student only
    got.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_dkd_is_zero_when_student_equals_teacher() -> None:
    s, _, y = _tensors()
    assert dkd_loss(s, s.detach().clone(), y).item() == pytest.approx(0.0, abs=1e-12)


def test_smd_loss_hand_computed_and_gradients_flow_only_into_students() -> None:
    rng = np.random.default_rng(0)
    k = 4
    raw = [rng.normal(size=(3, 5)) for _ in range(k)]
    y = torch.tensor([0, 3, 4])
    logits = [torch.tensor(r, requires_grad=True) for r in raw]
    kd = make_kd_loss("kl")
    total = smd_loss(logits, y, kd, label_smoothing=0.1)
    # eq. 3: L_sum = L_max + sum_i 1/(k-i) sum_{j>i} KL(p_i || p_j), i 1-based
    p = [_softmax(r) for r in raw]
    expect = F.cross_entropy(
        torch.tensor(raw[0]), y, label_smoothing=0.1
    ).item()  # L_max (labels, with label smoothing)
    for i in range(1, k + 1):
        for j in range(i + 1, k + 1):
            expect += _kl(p[i - 1], p[j - 1]).mean() / (k - i)
    assert total.item() == pytest.approx(expect, rel=1e-10)
    total.backward()
    # subnet 0 (the largest) only gets its label loss's gradient: teachers are detached
    x0 = torch.tensor(raw[0], requires_grad=True)
    F.cross_entropy(x0, y, label_smoothing=0.1).backward()
    assert torch.allclose(logits[0].grad, x0.grad)
    # subnet 1 only gets gradients as a student of subnet 0 (weight 1/(k-1))
    x1 = torch.tensor(raw[1], requires_grad=True)
    (kd(x1, torch.tensor(raw[0]), y) / (k - 1)).backward()
    assert torch.allclose(logits[1].grad, x1.grad)
    # the student loss of the last subnet has every earlier subnet as teacher
    last = smd_student_loss(3, logits, logits[3], y, k, kd)
    manual = sum(_kl(p[i], p[3]).mean() / (k - (i + 1)) for i in range(3))
    assert last.item() == pytest.approx(manual, rel=1e-10)


# ---- sandwich steps ---------------------------------------------------------------------
def _tiny_batch(n: int = 16, channels: int = 1, size: int = 8):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, channels, size, size, generator=g)
    y = torch.arange(n) % 4
    x[torch.arange(n), 0, y, y] += 3.0  # learnable signal
    return x, y


def test_sandwich_step_accumulates_gradients_of_all_subnets() -> None:
    torch.manual_seed(0)
    net = MBv3Supernet("mbv3-cifar", num_classes=4, in_channels=1)
    net.train()
    x, y = _tiny_batch(8)
    configs = sandwich_configs(net, 2, np.random.default_rng(0))
    assert configs[0] == net.canonical("max") and configs[-1] == net.canonical("min")
    info = sandwich_step(net, x, y, configs, "none")
    assert len(info["subnet_losses"]) == 4
    g_total = net.stem.conv.weight.grad.clone()
    # the same gradient from the 4 subnets one by one (BN batch stats: same batch)
    net.zero_grad()
    for c in configs:
        net.set_active(c)
        F.cross_entropy(net(x), y).backward()
    assert torch.allclose(net.stem.conv.weight.grad, g_total, atol=1e-6)


def test_inplace_distillation_students_learn_from_max() -> None:
    torch.manual_seed(0)
    net = MBv3Supernet("mbv3-cifar", num_classes=4, in_channels=1)
    x, y = _tiny_batch(8)
    configs = [net.canonical("max"), net.canonical("min")]
    info = sandwich_step(net, x, y, configs, "inplace", make_kd_loss("kl"), 0.1)
    net.set_active("max")
    with torch.no_grad():
        t = net(x)
    net.set_active("min")
    s = net(x)
    assert info["subnet_losses"][1] == pytest.approx(kl_loss(s, t).item(), rel=1e-4)


def test_training_steps_reduce_the_loss() -> None:
    torch.manual_seed(0)
    net = MBv3Supernet("mbv3-cifar", num_classes=4, in_channels=1)
    net.train()
    x, y = _tiny_batch(16)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(0)
    kd = make_kd_loss("dkd")
    ce = []
    for _ in range(8):
        opt.zero_grad()
        info = sandwich_step(net, x, y, sandwich_configs(net, 1, rng), "smd", kd, 0.0)
        opt.step()
        ce.append(info["ce_max"])
    assert ce[-1] < 0.7 * ce[0], ce


# ---- the training loop ------------------------------------------------------------------
def _cfg(tmp_path: Path, **kw) -> TrainConfig:
    base = dict(
        dataset="digits",
        out_dir=str(tmp_path / "run"),
        epochs=2,
        batch_size=16,
        steps_per_epoch=2,
        limit=64,
        num_random=1,
        bn_calib_batches=1,
        eval_batch_size=64,
        num_threads=1,
        progress=False,
        warmup_epochs=0.5,
        lr=0.05,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_train_supernet_writes_metrics_and_checkpoint(tmp_path) -> None:
    res = train_supernet(_cfg(tmp_path, grad_clip=5.0, steps_per_epoch=1))
    lines = [json.loads(s) for s in res.metrics_file.read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1]
    for r in lines:
        assert {"loss", "lr", "max_acc", "min_acc", "ce_max"} <= set(r)
        assert 0.0 <= r["max_acc"] <= 1.0 and np.isfinite(r["loss"])
    ckpt = load_checkpoint(res.out_dir)
    assert {"model", "optimizer", "scheduler", "rng", "epoch", "hparams"} <= set(ckpt)
    assert ckpt["epoch"] == 1
    assert ckpt["train_config"]["dataset"] == "digits"
    assert (res.out_dir / "training.png").read_bytes()[:4] == b"\x89PNG"


def test_resume_reproduces_the_next_step_loss(tmp_path) -> None:
    full = train_supernet(_cfg(tmp_path / "a", eval_every=0))
    part = train_supernet(_cfg(tmp_path / "b", eval_every=0), max_epochs=1)
    assert len(part.step_losses) == 2
    resumed = train_supernet(_cfg(tmp_path / "b", eval_every=0))
    assert len(resumed.step_losses) == 2  # only epoch 1 ran
    np.testing.assert_allclose(part.step_losses, full.step_losses[:2], rtol=1e-6)
    np.testing.assert_allclose(resumed.step_losses, full.step_losses[2:], rtol=1e-6)
    # a finished run resumes to nothing; a different supernet in the same dir is refused
    assert train_supernet(_cfg(tmp_path / "b", eval_every=0)).step_losses == []
    with pytest.raises(HwnasError, match="different supernet"):
        train_supernet(_cfg(tmp_path / "b", eval_every=0, kernel_transform=True))


def test_a_resume_with_more_epochs_goes_on_at_the_new_schedule_s_rate() -> None:
    """The loaded optimizer holds the old schedule's last rate (0 at its end): the first
    step of a run resumed with more epochs took it."""
    from hwnas.train.supernet import resume_schedule
    from hwnas.train.utils import warmup_cosine

    def made(total: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, 2, 0.1))

    opt, sched = made(10)
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] < 1e-6  # the old schedule's end
    opt2, sched2 = made(20)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    resume_schedule(opt2, sched2)
    expected = 0.1 * warmup_cosine(20, 2, 0.1)(10)
    assert opt2.param_groups[0]["lr"] == pytest.approx(expected) and expected > 0.04
    sched2.step()  # and on from there as a 20-step schedule
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.1 * warmup_cosine(20, 2, 0.1)(11))


def test_resume_keeps_the_run_s_settings(tmp_path) -> None:
    """A resume with other training settings would mix two runs in one checkpoint (e.g.
    digits, then MNIST): refused, naming them. The CLI resumes with the stored settings
    for those not given again; a weights-only checkpoint cannot be resumed."""
    import typer
    from typer.testing import CliRunner

    from hwnas.cli_train import register

    train_supernet(_cfg(tmp_path, eval_every=0), max_epochs=1)
    with pytest.raises(HwnasError, match=r"other settings \(lr 0.05 \(now 0.1\)\): resume"):
        train_supernet(_cfg(tmp_path, eval_every=0, lr=0.1))
    app = typer.Typer()
    register(app)
    run = str(tmp_path / "run")
    r = CliRunner().invoke(app, ["train", "--out", run, "--epochs", "3", "--no-progress"])
    assert r.exit_code == 0, r.output
    ckpt = load_checkpoint(run)
    assert ckpt["epoch"] == 2 and ckpt["train_config"]["lr"] == 0.05  # not the default 0.1
    assert ckpt["train_config"]["limit"] == 64 and ckpt["train_config"]["epochs"] == 3
    r = CliRunner().invoke(app, ["train", "--out", run, "--epochs", "2", "--no-progress"])
    assert r.exit_code == 0 and "already holds 3 epochs of --epochs 2" in r.stderr
    r = CliRunner().invoke(app, ["train", "--out", run, "--epochs", "4", "--batch-size", "8"])
    assert r.exit_code == 2 and "(batch_size 16 (now 8))" in r.stderr
    torch.save({k: ckpt[k] for k in ("model", "hparams", "train_config")}, tmp_path / "w.pt")
    (tmp_path / "weights").mkdir()
    (tmp_path / "w.pt").rename(tmp_path / "weights" / "checkpoint.pt")
    with pytest.raises(HwnasError, match="holds no training state .* weights only"):
        train_supernet(_cfg(tmp_path, out_dir=str(tmp_path / "weights"), epochs=4))


def test_a_diverged_training_stops_with_an_error(tmp_path) -> None:
    with pytest.raises(HwnasError, match=r"loss is nan at epoch \d, step \d+: training diverged"):
        train_supernet(_cfg(tmp_path, lr=1e12, warmup_epochs=0))


def test_a_second_run_on_a_locked_out_dir_is_refused(tmp_path, held_elsewhere) -> None:
    cfg = _cfg(tmp_path)
    with held_elsewhere(cfg.out_dir), pytest.raises(HwnasError, match="in use by another"):
        train_supernet(cfg)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_starting_over_removes_the_old_checkpoint_with_the_metrics(tmp_path, monkeypatch) -> None:
    from hwnas.train import supernet

    train_supernet(_cfg(tmp_path, eval_every=0), max_epochs=1)
    run = tmp_path / "run"
    assert (run / "checkpoint.pt").is_file() and (run / "metrics.jsonl").is_file()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(supernet, "sandwich_step", killed)  # a kill in the first epoch
    with pytest.raises(KeyboardInterrupt):
        train_supernet(_cfg(tmp_path, eval_every=0, resume=False))
    # nothing of the old run is left to be resumed with a history that is gone
    assert not (run / "checkpoint.pt").exists() and not (run / "metrics.jsonl").exists()


def test_kills_around_the_metrics_line_leave_a_consistent_log(tmp_path, monkeypatch) -> None:
    """The epoch's line is written before its checkpoint; a resume rewrites metrics.jsonl
    to the checkpoint's epochs: no line lost, none repeated, a torn one dropped."""
    from hwnas.train import supernet

    def epochs(path: Path) -> list[int]:
        return [json.loads(x)["epoch"] for x in path.read_text().splitlines()]

    cfg = _cfg(tmp_path, eval_every=0, epochs=3)
    metrics = tmp_path / "run" / "metrics.jsonl"
    train_supernet(cfg, max_epochs=1)
    save = supernet.save_checkpoint

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(supernet, "save_checkpoint", killed)  # killed before epoch 1's save
    with pytest.raises(KeyboardInterrupt):
        train_supernet(cfg)
    assert epochs(metrics) == [0, 1]  # the line was already written
    monkeypatch.setattr(supernet, "save_checkpoint", save)
    train_supernet(cfg, max_epochs=1)  # epoch 1 again, from the checkpoint of epoch 0
    assert epochs(metrics) == [0, 1]
    with metrics.open("a") as f:
        f.write('{"epoch": 2, "loss": 1.')  # a line torn by a kill
    res = train_supernet(cfg)
    assert epochs(metrics) == [0, 1, 2] and res.epochs_trained == 1
    assert load_checkpoint(res.out_dir)["history"] == [
        json.loads(x) for x in metrics.read_text().splitlines()
    ]
    # an older checkpoint without a history: the readable lines up to its epoch are kept
    ckpt = load_checkpoint(res.out_dir)
    del ckpt["history"]
    supernet.save_checkpoint(res.checkpoint, ckpt)
    metrics.write_text(metrics.read_text() + '{"epoch": 3, "lo')
    train_supernet(cfg)
    assert epochs(metrics) == [0, 1, 2]


def test_plot_training_skips_a_torn_line(tmp_path) -> None:
    from hwnas.report.plots import plot_training

    log = tmp_path / "metrics.jsonl"
    log.write_text('{"epoch": 0, "loss": 2.0}\n{"epoch": 1, "loss": 1.5}{"epo\n[1]\n')
    png = plot_training(log, [("loss", ["loss"])], tmp_path / "t.png")
    assert png is not None and png.read_bytes()[:4] == b"\x89PNG"


def test_bad_train_config_is_a_clear_error() -> None:
    with pytest.raises(HwnasError, match="distill"):
        TrainConfig.from_dict({"distill": "everything"})
    with pytest.raises(HwnasError, match="unknown"):
        TrainConfig.from_dict({"epochs": 1, "no_such_field": 3})
    with pytest.raises(HwnasError, match="unknown dataset"):
        train_supernet({"dataset": "imagenet", "progress": False, "num_threads": 1})


# ---- eval / export / CLI ------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("trained")
    res = train_supernet(_cfg(tmp, epochs=1, eval_every=0))
    return res.checkpoint


def test_evaluate_subnet(trained) -> None:
    from hwnas.train.evaluate import evaluate_subnet

    r = evaluate_subnet(trained, "min", split="val", calib_batches=1, num_threads=1)
    assert 0.0 <= r["top1"] <= 1.0 and r["n"] > 0 and r["split"] == "val"
    assert r["subnet"]["resolution"] == 24 and r["macs"] > 0
    with pytest.raises(HwnasError, match="subnet must be"):
        evaluate_subnet(trained, "medium", num_threads=1)
    with pytest.raises(HwnasError, match="not found"):
        evaluate_subnet(trained.parent / "nope.pt", "min", num_threads=1)


def test_cli_train_eval_export(tmp_path, trained) -> None:
    import typer
    from typer.testing import CliRunner

    from hwnas.cli_train import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()
    r = runner.invoke(
        app,
        [
            "eval",
            "--checkpoint",
            str(trained),
            "--subnet",
            "max",
            "--calib-batches",
            "1",
            "--split",
            "val",
            "--threads",
            "1",
            "--json",  # accepted, as by every command: the output is JSON anyway
        ],
    )
    assert r.exit_code == 0, r.output
    assert 0.0 <= json.loads(r.stdout.strip().splitlines()[-1])["top1"] <= 1.0
    cfg = MBv3Supernet("mbv3-cifar").canonical("min")
    out = tmp_path / "m.onnx"
    r = runner.invoke(
        app,
        [
            "export",
            "--checkpoint",
            str(trained),
            "--subnet",
            json.dumps(cfg),
            "--format",
            "onnx",
            "--out",
            str(out),
            "--threads",
            "1",
        ],
    )
    assert r.exit_code == 0, r.output
    assert out.stat().st_size > 1000
    # the file says what it is and what its input needs: raw pixels / scale, then
    # (x - mean) / std per channel, as the training data was normalised
    import onnxruntime as ort

    from hwnas.train.evaluate import checkpoint_data, load_supernet

    meta = ort.InferenceSession(str(out)).get_modelmeta().custom_metadata_map
    assert json.loads(meta["hwnas.subnet"]) == json.loads(json.dumps(cfg))
    prep = json.loads(meta["hwnas.preprocess"])
    digits = checkpoint_data(*load_supernet(trained))
    assert prep["scale"] == 16.0 and prep["mean"] == list(digits.mean)
    assert prep["std"] == list(digits.std) and prep["layout"] == "NCHW"
    assert json.loads(meta["hwnas.input_shape"])[0] == 1 and meta["hwnas.dataset"] == "digits"
    # user errors: one line on stderr, exit code 2
    r = runner.invoke(app, ["eval", "--checkpoint", str(tmp_path / "missing.pt")])
    assert r.exit_code == 2
    assert r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1
    bad = dict(cfg, resolution=99)
    r = runner.invoke(
        app,
        ["export", "--checkpoint", str(trained), "--subnet", json.dumps(bad), "--out", str(out)],
    )
    assert r.exit_code == 2 and "resolution=99" in r.stderr
    r = runner.invoke(
        app,
        [
            "train",
            "--dataset",
            "digits",
            "--distill",
            "bogus",
            "--out",
            str(tmp_path / "t"),
            "--threads",
            "1",
        ],
    )
    assert r.exit_code == 2 and "distill" in r.stderr


@pytest.mark.slow
def test_ddp_two_processes(tmp_path) -> None:
    """torchrun, 2 processes, gloo: ranks end with identical weights; rank 0 checkpoints."""
    import subprocess
    import sys

    script = tmp_path / "ddp.py"
    script.write_text(
        "import os, torch\n"
        "from hwnas.train.supernet import TrainConfig, train_supernet\n"
        f"cfg = TrainConfig(dataset='digits', out_dir={str(tmp_path / 'run')!r}, epochs=1,\n"
        "    batch_size=8, steps_per_epoch=2, limit=64, num_random=1, bn_calib_batches=1,\n"
        "    num_threads=1, progress=False)\n"
        "res = train_supernet(cfg, return_model=True)\n"
        "w = torch.cat([p.detach().reshape(-1) for p in res.model.parameters()])\n"
        f"torch.save(w, {str(tmp_path)!r} + f'/w{{os.environ[\"RANK\"]}}.pt')\n"
    )
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29533",
        str(script),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    w0, w1 = torch.load(tmp_path / "w0.pt"), torch.load(tmp_path / "w1.pt")
    assert torch.equal(w0, w1)


def test_export_computes_what_eval_reported(tmp_path, trained) -> None:
    """`hwnas export` recalibrates BN as `hwnas eval` does and puts the resize from the
    data's 8x8 digits inside: the ONNX file's test accuracy is eval's (with the
    supernet's own BN statistics it was at chance after a short training)."""
    import onnxruntime as ort
    import typer
    from typer.testing import CliRunner

    from hwnas.cli_train import register
    from hwnas.train.evaluate import checkpoint_data, evaluate_subnet, load_supernet

    app = typer.Typer()
    register(app)
    out = tmp_path / "m.onnx"
    args = ["export", "--checkpoint", str(trained), "--subnet", "max", "--threads", "1"]
    r = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(out) and "(BN recalibrated on 16 batches)" in r.stderr
    ckpt, model = load_supernet(trained)
    x, y = checkpoint_data(ckpt, model).split("test")
    assert x.shape[-1] == 8
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"input": x.numpy().astype(np.float32)})[0]
    top1 = float((logits.argmax(1) == y.numpy()).mean())
    evaluated = evaluate_subnet(trained, "max", calib_batches=16, num_threads=1)["top1"]
    assert abs(top1 - evaluated) <= 1.0 / len(y)
    # a random subnet is drawn with --seed and said, so it can be exported again
    said = []
    for _ in range(2):
        r = CliRunner().invoke(app, [*args[:4], "random", "--seed", "3", "--out", str(out)])
        assert r.exit_code == 0, r.output
        said.append(r.stderr.split("subnet ", 1)[1].split(" (")[0])
    assert said[0] == said[1] and json.loads(said[0])["resolution"] in (24, 28, 32)


def test_export_and_eval_refuse_what_would_go_silently_wrong(tmp_path, trained) -> None:
    """include_resize without calibration still takes the data's images (it traced at the
    subnet's own size: the resize did nothing); an opset whose file cannot be loaded,
    batch size 0 and negative calibration batches are refused; the caller's torch
    thread count is what it was after an evaluation."""
    import onnxruntime as ort

    from hwnas.train.evaluate import evaluate_subnet, export_subnet

    p = export_subnet(trained, "min", "onnx", tmp_path / "r.onnx", include_resize=True)
    (inp,) = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).get_inputs()
    assert inp.shape[-2:] == [8, 8]  # digits
    for kw, msg in (
        ({"opset": 5}, "opset must be an integer in 9.."),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"calib_batches": -1}, "calib_batches must be an integer >= 0"),
    ):
        with pytest.raises(HwnasError, match=msg):
            export_subnet(trained, "min", "onnx", tmp_path / "x.onnx", **kw)
    # an export that dies half-way leaves the previous file whole (it wrote over it)
    good = p.read_bytes()

    def dies(module, args, f, **kw):
        Path(f).write_bytes(b"half a model")
        raise RuntimeError("killed")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.onnx, "export", dies)
        with pytest.raises(RuntimeError, match="killed"):
            export_subnet(trained, "max", "onnx", p)
    assert p.read_bytes() == good and sorted(x.name for x in tmp_path.iterdir()) == ["r.onnx"]
    before = torch.get_num_threads()
    torch.set_num_threads(3 if before != 3 else 2)
    mine = torch.get_num_threads()
    evaluate_subnet(trained, "min", calib_batches=1, num_threads=1)
    assert torch.get_num_threads() == mine
    torch.set_num_threads(before)
    with pytest.raises(HwnasError, match="batch_size must be an integer >= 1"):
        evaluate_subnet(trained, "min", batch_size=0)


def test_a_warm_up_as_long_as_the_run_is_warned_of(tmp_path) -> None:
    import warnings

    cfg = _cfg(tmp_path, epochs=1, warmup_epochs=1.0, eval_every=0)
    with pytest.warns(UserWarning, match="warmup_epochs 1 >= epochs 1: the learning rate"):
        train_supernet(cfg)
    with pytest.warns(UserWarning, match="kd_loss set, but distill is none"):
        train_supernet(_cfg(tmp_path / "kd", epochs=1, distill="none", kd_loss="kl"))
    # the finished run again (a pipeline reusing the supernet): nothing trains, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert train_supernet(cfg).epochs_trained == 0


def test_a_checkpoint_trained_on_data_in_memory_asks_for_that_data(tmp_path) -> None:
    """Trained on data handed over (data=), not its config's dataset: evaluating it on
    the config's dataset would silently score other data; it asks for the data."""
    from hwnas.data import load_dataset
    from hwnas.train.evaluate import evaluate_subnet

    mine = load_dataset("digits", limit=64)
    mine.name = "my-digits"
    res = train_supernet(_cfg(tmp_path, epochs=1, eval_every=0), data=mine)
    with pytest.raises(HwnasError, match="trained on data 'my-digits' given in memory"):
        evaluate_subnet(res.checkpoint, "min", calib_batches=1, num_threads=1)
    r = evaluate_subnet(res.checkpoint, "min", data=mine, calib_batches=1, num_threads=1)
    assert r["n"] == len(mine.y_test)


def test_evaluating_an_empty_split_is_an_error(tmp_path) -> None:
    from hwnas.train.evaluate import evaluate_subnet

    res = train_supernet(_cfg(tmp_path, epochs=1, eval_every=0, val_fraction=0.0))
    with pytest.raises(HwnasError, match="the val split of the checkpoint's dataset is empty"):
        evaluate_subnet(res.checkpoint, "min", split="val", calib_batches=1, num_threads=1)
    assert evaluate_subnet(res.checkpoint, "min", calib_batches=1, num_threads=1)["n"] > 0


def test_train_help_gives_each_options_default_as_training_uses_it() -> None:
    """``hwnas train --help`` says each default, and says the one TrainConfig uses."""
    import re

    from typer.testing import CliRunner

    from hwnas.cli import app

    out = CliRunner().invoke(app, ["train", "--help"], terminal_width=400).output
    text = " ".join(re.sub("[│╭╮╰╯─]", " ", out).split())
    fields = {
        "--space": "space",
        "--epochs": "epochs",
        "--batch-size": "batch_size",
        "--lr": "lr",
        "--num-random": "num_random",
        "--seed": "seed",
        "--threads": "num_threads",
        "--out": "out_dir",
        "--kd-loss": "kd_loss",
    }
    for flag, field in fields.items():
        default = TrainConfig.model_fields[field].default
        own = text.split(f" {flag} ", 1)[1].split(" --", 1)[0]  # the option's own help
        said = re.search(r"\(default ([^)]+)\)", own) or re.search(r"(\S+) \(default\)", own)
        assert said and said.group(1).split(": ")[-1] == str(default), (flag, own)
    assert "digits (default)" in text and TrainConfig.model_fields["dataset"].default == "digits"


def test_train_killed_says_how_to_continue(tmp_path, kill_when) -> None:
    """SIGTERM (and Ctrl-C) in a training: exit 143 with the command that continues it
    (the README promises it; train said nothing)."""
    import signal
    import subprocess
    import sys

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "hwnas.cli", "train", "--out", str(out), "--epochs", "50"]
    cmd += ["--steps-per-epoch", "2", "--batch-size", "8", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    kill_when(proc, (out / "checkpoint.pt").exists, "the training", signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert f"terminated; run the same command again to continue ({out})" in err
    assert "Traceback" not in err


def test_an_unreadable_checkpoint_to_resume_says_how_to_start_over(tmp_path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"half a checkpoint")
    with pytest.raises(HwnasError, match="cannot read checkpoint .*to start over: --no-resume"):
        train_supernet(_cfg(tmp_path))


def test_export_metadata_says_how_to_resize_the_data_s_images() -> None:
    """A subnet exported without its resize inside takes its own resolution: the file
    says from which size and how (it said only the size it takes)."""
    from types import SimpleNamespace

    from hwnas.train.evaluate import subnet_metadata

    prep = {"layout": "NCHW", "scale": 16.0, "mean": [0.3], "std": [0.3], "image_size": 8}
    model = SimpleNamespace(space=SimpleNamespace(name="mbv3-cifar"), num_classes=10)
    model.in_channels = 1
    data = SimpleNamespace(preprocess=lambda: prep, name="digits")
    meta = subnet_metadata(model, {"resolution": 32}, {}, data, 32)
    assert meta["input_shape"] == [1, 32, 32] and meta["preprocess"]["image_size"] == 32
    assert meta["preprocess"]["resize"].startswith("the data's 8x8 images to 32x32: bilinear")
    assert "resize" not in subnet_metadata(model, {"resolution": 32}, {}, data, 8)["preprocess"]


def test_a_folder_dataset_stored_relative_by_an_earlier_version_still_resumes(
    tmp_path, monkeypatch
) -> None:
    """folder:RELPATH is now stored absolute; a checkpoint of an earlier version holds
    the relative path, which must not read as another dataset."""
    from hwnas.train.supernet import _check_resumable

    monkeypatch.chdir(tmp_path)
    cfg = TrainConfig(dataset="folder:imgs", out_dir=str(tmp_path / "run"))
    assert cfg.dataset == f"folder:{tmp_path / 'imgs'}"
    old = {"optimizer": {}, "scheduler": {}, "rng": {}, "epoch": 0}
    old["train_config"] = {**cfg.model_dump(), "dataset": "folder:imgs"}
    _check_resumable(old, tmp_path / "run" / "checkpoint.pt", cfg)  # no refusal
    old["train_config"]["dataset"] = "folder:other"
    with pytest.raises(HwnasError, match="other settings"):
        _check_resumable(old, tmp_path / "run" / "checkpoint.pt", cfg)


# ---- image folders (folder:PATH) ----------------------------------------------------------
def _png_folder(root: Path, counts: dict[str, int], sizes: tuple[int, ...] = (6,)) -> Path:
    """``root/<class>/<i>.png``: ``counts[class]`` tiny random images, their sizes taken
    in turn from ``sizes`` (an empty class folder for a count of 0)."""
    image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for c, n in counts.items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            s = sizes[i % len(sizes)]
            image.fromarray(rng.integers(0, 255, (s, s, 3), np.uint8)).save(root / c / f"{i}.png")
    return root


def _train_app():
    import typer
    from typer.testing import CliRunner

    from hwnas.cli_train import register

    app = typer.Typer()
    register(app)
    return app, CliRunner()


@pytest.mark.filterwarnings("ignore:image folder .* skipping 1 class folder")
def test_a_folder_dataset_trains_evaluates_and_exports_with_its_class_names(
    tmp_path, monkeypatch
) -> None:
    """folder:RELPATH of mixed sizes with --image-size: trained, then evaluated and
    exported from another directory (the checkpoint keeps the absolute path and the
    size); the ONNX file names the classes in output order (the empty one skipped)."""
    import onnxruntime as ort

    app, runner = _train_app()
    work = tmp_path / "work"
    _png_folder(work / "imgs", {"bird": 0, "cat": 3, "dog": 3}, sizes=(6, 7))
    monkeypatch.chdir(work)
    argv = ["train", "--dataset", "folder:imgs/", "--image-size", "8", "--out", "run"]
    argv += ["--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "4", "--num-random", "0"]
    argv += ["--threads", "1", "--no-progress"]
    r = runner.invoke(app, argv)
    assert r.exit_code == 0, r.output
    ckpt = load_checkpoint(work / "run")
    assert ckpt["train_config"]["dataset"] == f"folder:{work / 'imgs'}"
    assert ckpt["train_config"]["image_size"] == 8 and ckpt["data"]["classes"] == ["cat", "dog"]
    r = runner.invoke(app, argv)  # again: nothing to train, said in good English
    assert r.exit_code == 0 and "already holds 1 epoch of --epochs 1" in r.stderr
    monkeypatch.chdir(tmp_path)
    common = ["--checkpoint", str(work / "run"), "--subnet", "min", "--calib-batches", "1"]
    r = runner.invoke(app, ["eval", *common, "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["n"] == 2  # one of each class
    out = tmp_path / "m.onnx"
    r = runner.invoke(app, ["export", *common, "--out", str(out), "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert "(BN recalibrated on 1 batch)" in r.stderr
    meta = ort.InferenceSession(str(out)).get_modelmeta().custom_metadata_map
    assert json.loads(meta["hwnas.classes"]) == ["cat", "dog"]
    prep = json.loads(meta["hwnas.preprocess"])
    assert prep["channel_order"] == "RGB" and prep["image_size"] == 8
    # without the data (no recalibration) the names come from the checkpoint
    from hwnas.train.evaluate import load_supernet, subnet_metadata

    _, model = load_supernet(ckpt)
    assert subnet_metadata(model, model.canonical("min"), ckpt, None, 8)["classes"] == [
        "cat",
        "dog",
    ]


def test_a_train_refused_for_its_data_leaves_no_output_folder(tmp_path) -> None:
    """A corrupt image, one class, a file, an empty path: one error line, exit 2, and no
    output folder holding only a lock file."""
    app, runner = _train_app()
    (tmp_path / "bad" / "a").mkdir(parents=True)
    (tmp_path / "bad" / "a" / "x.png").write_text("not an image")
    _png_folder(tmp_path / "one", {"cat": 3})
    (tmp_path / "file.png").write_text("")
    cases = {
        "bad": "not a readable image",
        "one": "at least 2 classes",
        "file.png": "is a file, not a folder",
        "": "folder: needs a path",
    }
    for name, said in cases.items():
        out = tmp_path / f"out-{name or 'empty'}"
        argv = ["train", "--dataset", f"folder:{tmp_path / name if name else ''}", "--out"]
        r = runner.invoke(app, [*argv, str(out), "--no-progress", "--threads", "1"])
        assert r.exit_code == 2 and said in r.stderr, (name, r.output)
        assert not out.exists(), name


def test_the_pipeline_stores_and_compares_a_folder_dataset_absolute(tmp_path, monkeypatch) -> None:
    """pipeline.json keeps folder:PATH absolute (its config works from any directory),
    another spelling of the folder is the same run, and a relative one stored by an
    earlier version still resumes from its directory."""
    from hwnas.pipeline import CONFIG_NAME, PipelineConfig, _check_same_config, load_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "ds").mkdir()
    cfg = PipelineConfig(train={"dataset": "folder:ds/", "epochs": 1})
    assert cfg.train["dataset"] == f"folder:{tmp_path / 'ds'}"
    run = tmp_path / "run"
    run.mkdir()
    old = {**cfg.model_dump(), "train": {"dataset": "folder:ds", "epochs": 1}}
    (run / CONFIG_NAME).write_text(json.dumps(old))
    for spelling in ("folder:ds", f"folder:{tmp_path}/ds/"):
        _check_same_config(run, PipelineConfig(train={"dataset": spelling, "epochs": 1}))
    with pytest.raises(HwnasError, match="another config"):
        _check_same_config(run, PipelineConfig(train={"dataset": "folder:other", "epochs": 1}))
    with pytest.raises(HwnasError, match="train: folder: needs a path"):
        load_config({"train": {"dataset": "folder:"}})
