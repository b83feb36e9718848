"""Supernet training (sandwich rule, in-place distillation, SMD, DKD), evaluation, export.

Main entry points: :func:`train_supernet` with a :class:`TrainConfig`,
:func:`evaluate_subnet` and :func:`export_subnet` on a checkpoint.
"""

from hwnas.train.evaluate import evaluate_subnet, export_subnet, subnet_from_checkpoint
from hwnas.train.losses import dkd_loss, kl_loss, make_kd_loss, smd_loss, soft_cross_entropy
from hwnas.train.supernet import (
    TrainConfig,
    TrainResult,
    load_checkpoint,
    model_from_checkpoint,
    sandwich_configs,
    sandwich_step,
    train_supernet,
)
from hwnas.train.utils import recalibrate_bn

__all__ = [
    "TrainConfig",
    "TrainResult",
    "dkd_loss",
    "evaluate_subnet",
    "export_subnet",
    "kl_loss",
    "load_checkpoint",
    "make_kd_loss",
    "model_from_checkpoint",
    "recalibrate_bn",
    "sandwich_configs",
    "sandwich_step",
    "smd_loss",
    "soft_cross_entropy",
    "subnet_from_checkpoint",
    "train_supernet",
]
