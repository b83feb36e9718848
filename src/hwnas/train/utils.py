"""Optimiser parameter groups, warm-up + cosine schedule, BN recalibration, accuracy."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: conv/linear weights get ``weight_decay``; BN, biases, kernel
    transformation matrices and other <=1-d or non-conv parameters get none."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or ".transforms." in name or name.endswith(".bias"):
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def warmup_cosine(
    total_steps: int, warmup_steps: int, warmup_start: float = 0.0, final: float = 0.0
):
    """LR multiplier: linear warm-up from ``warmup_start`` to 1, then cosine to ``final``."""

    def f(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return warmup_start + (1.0 - warmup_start) * step / warmup_steps
        rest = max(1, total_steps - warmup_steps)
        t = min(1.0, (step - warmup_steps) / rest)
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * t))

    return f


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], max_batches: int
) -> int:
    """Re-estimate BN running statistics of ``model`` (a subnet) on training batches.

    Resets running stats, switches BN to a cumulative average (momentum None), runs the
    batches in train mode and restores eval mode. Returns the number of batches used.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or max_batches <= 0:
        model.eval()
        return 0
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    n = 0
    for x, _ in batches:
        if n >= max_batches:
            break
        model(x)
        n += 1
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
    model.eval()
    return n


@torch.no_grad()
def accuracy(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[float, int]:
    """Top-1 accuracy (fraction) and number of examples, in eval mode."""
    model.eval()
    correct = total = 0
    for x, y in batches:
        pred = model(x).argmax(1)
        correct += int((pred == y).sum())
        total += len(y)
    return (correct / total if total else float("nan")), total


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch threads (None or 0: as they are), then give the caller back
    its own count: a library call must not change the process's for good."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n:
            torch.set_num_threads(before)
