"""Weight-sharing overhead of one sandwich step (issue 3).

Times one real :func:`hwnas.train.sandwich_step` on ``mbv3-cifar`` (4 subnets: max, 2
random, min; forward + backward, gradients accumulated into the supernet) against the
same 4 subnets extracted as static ``nn.Sequential`` models doing the same forward +
backward with the same losses on the same batch. The two are measured side by side in one
process, interleaved (their order alternates every repeat), after warm-up; the figure is
the ratio of the medians. Default: 1 thread, channels_last, batch 64 at 32x32, SMD + DKD.

The static subnets include the bilinear resize to their resolution (``include_resize``),
as the supernet resizes its 32x32 input to the active resolution; both run in train mode
(batch-statistics BN), and no optimiser step is timed.

    python benchmarks/supernet_overhead.py --repeats 9
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from hwnas.supernet import MBv3Supernet
from hwnas.train import make_kd_loss, sandwich_configs, sandwich_step
from hwnas.train.losses import smd_student_loss

TARGET = 1.3


def static_step(subnets, x, y, distill, kd, label_smoothing) -> float:
    """The computation of ``sandwich_step`` on separate static models."""
    k = len(subnets)
    teachers: list[torch.Tensor] = []
    total = 0.0
    for j, sub in enumerate(subnets):
        logits = sub(x)
        if j == 0 or distill == "none":
            loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        elif distill == "inplace":
            loss = kd(logits, teachers[0], y)
        else:
            loss = smd_student_loss(j, teachers, logits, y, k, kd)
        loss.backward()
        teachers.append(logits.detach())
        total += float(loss.detach())
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--space", default="mbv3-cifar")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=32, help="input size (the max resolution)")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--distill", default="smd", choices=["smd", "inplace", "none"])
    ap.add_argument("--kd", default="dkd", choices=["dkd", "kl", "soft_ce"])
    ap.add_argument("--no-channels-last", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1 or args.batch < 1:
        ap.error("--repeats, --threads and --batch must be >= 1, --warmup >= 0")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cl = not args.no_channels_last
    mf = torch.channels_last if cl else torch.contiguous_format

    net = MBv3Supernet(args.space, num_classes=10).to(memory_format=mf)
    net.train()
    configs = sandwich_configs(net, 2, np.random.default_rng(args.seed))
    subnets = []
    for cfg in configs:
        sub = net.get_subnet(cfg, include_resize=cfg["resolution"] != args.size)
        subnets.append(sub.to(memory_format=mf).train())
    net.set_active(configs[0])
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=gen).contiguous(memory_format=mf)
    y = torch.randint(0, 10, (args.batch,), generator=gen)
    kd = make_kd_loss(args.kd)

    def run_super() -> float:
        net.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        sandwich_step(net, x, y, configs, args.distill, kd, 0.1)
        return time.perf_counter() - t0

    def run_static() -> float:
        for s in subnets:
            s.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        static_step(subnets, x, y, args.distill, kd, 0.1)
        return time.perf_counter() - t0

    sup, sta = [], []
    for i in range(args.warmup + args.repeats):
        order = (run_super, run_static) if i % 2 == 0 else (run_static, run_super)
        times = {f: f() for f in order}
        if i >= args.warmup:
            sup.append(times[run_super])
            sta.append(times[run_static])
            print(
                f"repeat {i - args.warmup}: sandwich_step {times[run_super]:.3f} s, "
                f"static sum {times[run_static]:.3f} s, ratio "
                f"{times[run_super] / times[run_static]:.3f}",
                flush=True,
            )
    m_sup, m_sta = statistics.median(sup), statistics.median(sta)
    ratio = m_sup / m_sta
    per_rep = sorted(a / b for a, b in zip(sup, sta, strict=True))
    print()
    print(
        "| space | batch | threads | channels_last | distill/kd | repeats | sandwich_step "
        "median (s) | 4 static subnets, summed, median (s) | ratio of medians (target <= 1.3) "
        "| per-repeat ratio min / median / max |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.space} | {args.batch} @ {args.size}x{args.size} | {args.threads} | {cl} | "
        f"{args.distill}/{args.kd} | {args.repeats} | {m_sup:.3f} | {m_sta:.3f} | "
        f"{ratio:.3f} ({'ok' if ratio <= TARGET else 'MISSED'}) | {per_rep[0]:.3f} / "
        f"{statistics.median(per_rep):.3f} / {per_rep[-1]:.3f} |"
    )
    print(f"\nresolutions of the 4 subnets: {[c['resolution'] for c in configs]}")


if __name__ == "__main__":
    main()
