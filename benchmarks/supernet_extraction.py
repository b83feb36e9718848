"""Supernet subnet extraction and ONNX export fidelity (issue 3).

For ``--configs`` random subnets plus the smallest and the largest of each space:

* max |supernet(x) - extracted subnet(x)| with the supernet set to that config, both in
  eval mode (target < 1e-5);
* max |onnxruntime(exported ONNX)(x) - extracted subnet(x)| (target < 1e-4), the ONNX file
  written by :func:`hwnas.train.export_subnet` from an in-memory checkpoint.

Weights are random and every BatchNorm gets random affine parameters and running
statistics, and the classifier a larger random init, so that logits are O(1-10) (the table reports their size) (a fresh
supernet has BN mean 0 / var 1, zero-initialised residual BNs and logits ~0.03, which
would make the comparison too easy). Prints a Markdown table (worst and median per space).

    python benchmarks/supernet_extraction.py --configs 20 --ramnas-configs 5
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hwnas.supernet import MBv3Supernet
from hwnas.train import export_subnet

TARGET_EXTRACT = 1e-5
TARGET_ONNX = 1e-4


def randomize(model: nn.Module, gen: torch.Generator) -> None:
    """Random BN affine parameters and running statistics; a larger classifier init."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=gen) * 1.0 + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)
            elif isinstance(m, nn.Linear):
                # the default N(0, 0.01) classifier gives logits ~0.03; this gives ~1-10
                m.weight.normal_(0.0, 30.0 / m.in_features**0.5, generator=gen)


def check_space(
    space: str, n_random: int, batch: int, seed: int, tmp: Path, onnx: bool = True
) -> list[dict]:
    import onnxruntime as ort

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = MBv3Supernet(space, num_classes=10)
    randomize(net, gen)
    net.eval()
    ckpt = {"model": net.state_dict(), "hparams": net.hparams()}
    rng = np.random.default_rng(seed)
    configs = [("min", net.canonical("min")), ("max", net.canonical("max"))]
    configs += [(f"random{i}", net.sample_config(rng)) for i in range(n_random)]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    rows = []
    for name, cfg in configs:
        r = cfg["resolution"]
        x = torch.randn(batch, 3, r, r, generator=gen)
        t0 = time.perf_counter()
        with torch.no_grad():
            net.set_active(cfg)
            y_super = net(x)
            sub = net.get_subnet(cfg).eval()
            y_sub = sub(x)
        d_extract = float((y_super - y_sub).abs().max())
        row = {
            "space": space,
            "config": name,
            "resolution": r,
            "params": sum(p.numel() for p in sub.parameters()),
            "out_scale": float(y_sub.abs().max()),
            "extract": d_extract,
        }
        if onnx:
            path = export_subnet(ckpt, cfg, "onnx", tmp / f"{space}-{name}.onnx")
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            y_onnx = sess.run(None, {"input": x.numpy()})[0]
            row["onnx"] = float(np.abs(y_onnx - y_sub.numpy()).max())
            path.unlink()
        row["time_s"] = time.perf_counter() - t0
        rows.append(row)
        print(
            f"{space} {name:9s} r={r} params={row['params']:,} |y|max={row['out_scale']:.3g} "
            f"extract={d_extract:.2e} onnx={row.get('onnx', float('nan')):.2e} "
            f"({row['time_s']:.1f}s)",
            flush=True,
        )
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| space | subnets | max abs diff supernet vs extracted: worst / median (target < 1e-5) "
        "| max abs diff ONNX Runtime vs PyTorch: worst / median (target < 1e-4) "
        "| output magnitude (max abs logit, median) |",
        "|---|---|---|---|---|",
    ]
    for space in dict.fromkeys(r["space"] for r in rows):
        rs = [r for r in rows if r["space"] == space]
        ex = np.array([r["extract"] for r in rs])
        ox = np.array([r["onnx"] for r in rs])
        ok_e = "ok" if ex.max() < TARGET_EXTRACT else "MISSED"
        ok_o = "ok" if ox.max() < TARGET_ONNX else "MISSED"
        lines.append(
            f"| {space} | {len(rs)} (min, max, {len(rs) - 2} random) | {ex.max():.2e} / "
            f"{np.median(ex):.2e} ({ok_e}) | {ox.max():.2e} / {np.median(ox):.2e} ({ok_o}) | "
            f"{np.median([r['out_scale'] for r in rs]):.3g} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", type=int, default=20, help="random configs of mbv3-cifar")
    ap.add_argument("--ramnas-configs", type=int, default=5, help="random configs of mbv3-ramnas")
    ap.add_argument("--batch", type=int, default=8, help="mbv3-cifar batch (mbv3-ramnas: 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as d:
        rows = check_space("mbv3-cifar", args.configs, args.batch, args.seed, Path(d))
        if args.ramnas_configs >= 0:
            rows += check_space("mbv3-ramnas", args.ramnas_configs, 2, args.seed, Path(d))
    print()
    print(table(rows))
    print(f"\n({time.time() - t0:.0f} s, torch {torch.__version__}, {args.threads} thread(s))")


if __name__ == "__main__":
    main()
