"""Fixed-shape building blocks of extracted subnets (torch only, nothing elastic).

Extracted subnets are ``nn.Sequential`` models made of ``torch.nn`` layers plus the two
small classes below (MobileNetV3 needs an elementwise product for SE and a residual add,
which ``torch.nn`` has no module for). They hold no search-space logic.
"""

from __future__ import annotations

import torch
from torch import nn


class SqueezeExcite(nn.Module):
    """MobileNetV3 SE: avg-pool, 1x1 conv, ReLU, 1x1 conv, hard-sigmoid, rescale."""

    def __init__(self, channels: int, mid: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, mid, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(mid, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.gate(self.expand(self.act(self.reduce(s))))
        return x * s


class MBConv(nn.Module):
    """Inverted residual block: [1x1 expand-BN-act] dw-BN-act [SE] 1x1 project-BN [+x]."""

    def __init__(
        self,
        expand: nn.Module | None,
        depthwise: nn.Module,
        se: nn.Module | None,
        project: nn.Module,
        residual: bool,
    ) -> None:
        super().__init__()
        self.expand = expand
        self.depthwise = depthwise
        self.se = se
        self.project = project
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.depthwise(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.residual else y


def make_act(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "hswish":
        return nn.Hardswish(inplace=True)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown activation '{name}'")
