"""Distillation losses for supernet training: KL, DKD (paper 000 eq. 5) and SMD (eq. 3-4).

All take *logits*; teachers are detached inside, so gradients only reach students.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

LogitLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def kl_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    target: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """KL(p_teacher || p_student) at temperature T, times T^2, averaged over the batch.

    ``target`` is unused (same signature as :func:`dkd_loss`).
    """
    t = temperature
    log_s = F.log_softmax(student / t, dim=1)
    p_t = F.softmax(teacher.detach() / t, dim=1)
    return F.kl_div(log_s, p_t, reduction="batchmean") * (t * t)


def soft_cross_entropy(
    student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor | None = None
) -> torch.Tensor:
    """BigNAS in-place distillation loss: cross-entropy with the teacher's soft labels."""
    p_t = F.softmax(teacher.detach(), dim=1)
    return -(p_t * F.log_softmax(student, dim=1)).sum(1).mean()


def dkd_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 1.0,
    beta: float = 0.5,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Decoupled KD (Zhao et al. 2022; paper 000 eq. 5): ``alpha * TCKD + beta * NCKD``.

    TCKD is the KL divergence between the teacher's and student's binary distributions
    (target class vs all others); NCKD the KL divergence between their distributions over
    the non-target classes only (softmax renormalised without the target). Both are
    computed at temperature ``T``, multiplied by ``T^2`` and averaged over the batch.
    """
    t = temperature
    teacher = teacher.detach()
    n, c = student.shape
    gt = F.one_hot(target.long(), c).bool()
    p_s = F.softmax(student / t, dim=1)
    p_t = F.softmax(teacher / t, dim=1)
    ps_tgt = (p_s * gt).sum(1)
    pt_tgt = (p_t * gt).sum(1)
    bs = torch.stack([ps_tgt, 1.0 - ps_tgt], dim=1).clamp_min(1e-12)
    bt = torch.stack([pt_tgt, 1.0 - pt_tgt], dim=1).clamp_min(1e-12)
    tckd = (bt * (bt.log() - bs.log())).sum(1).mean() * (t * t)
    s_nt = student[~gt].view(n, c - 1) / t
    t_nt = teacher[~gt].view(n, c - 1) / t
    nckd = F.kl_div(F.log_softmax(s_nt, dim=1), F.softmax(t_nt, dim=1), reduction="batchmean") * (
        t * t
    )
    return alpha * tckd + beta * nckd


def make_kd_loss(
    kind: str = "kl", temperature: float = 1.0, alpha: float = 1.0, beta: float = 0.5
) -> LogitLoss:
    """A ``(student, teacher, target) -> loss`` function: 'kl', 'dkd' or 'soft_ce'."""
    if kind == "kl":
        return lambda s, te, y: kl_loss(s, te, y, temperature)
    if kind == "dkd":
        return lambda s, te, y: dkd_loss(s, te, y, alpha, beta, temperature)
    if kind == "soft_ce":
        return soft_cross_entropy
    raise ValueError(f"unknown distillation loss '{kind}' (use kl, dkd, soft_ce)")


def smd_student_loss(
    j: int,
    teachers: Sequence[torch.Tensor],
    student: torch.Tensor,
    target: torch.Tensor,
    k: int,
    kd: LogitLoss,
) -> torch.Tensor:
    """Loss of student ``j`` (0-based) under subnet mutual distillation.

    Every earlier subnet ``i < j`` is a teacher with weight ``1/(k-i)`` (paper eq. 3 with
    1-based i: ``L_sub_i = 1/(k-i) sum_{j>i} D(p_i || p_j)``); ``teachers[i]`` holds the
    detached logits of subnet ``i``.
    """
    total = student.new_zeros(())
    for i in range(j):
        total = total + kd(student, teachers[i].detach(), target) / (k - (i + 1))
    return total


def smd_loss(
    logits: Sequence[torch.Tensor],
    target: torch.Tensor,
    kd: LogitLoss,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Total SMD loss ``L_sum = L_max + sum_i L_sub_i`` (paper eq. 3) for ``k`` subnets.

    ``logits[0]`` is the largest subnet (trained on labels); each subnet ``i`` teaches
    every later subnet ``j`` with weight ``1/(k-i)`` (1-based i), and only the student of
    each pair receives gradients (eq. 4).
    """
    k = len(logits)
    loss = F.cross_entropy(logits[0], target, label_smoothing=label_smoothing)
    for j in range(1, k):
        loss = loss + smd_student_loss(j, logits, logits[j], target, k, kd)
    return loss
