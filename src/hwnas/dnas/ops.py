"""Candidate operations of the DARTS and NAS-Bench-201 cell spaces.

One constructor per op name, ``make_op(name, C, stride, affine)``, shared by the search
networks (mixed ops) and the evaluation networks built from a derived genotype, so the
two always hold the same modules. Definitions follow the DARTS and NAS-Bench-201 code.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.errors import HwnasError
from hwnas.space.nb201 import NB201_OPS

DARTS_OPS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)

__all__ = [
    "DARTS_OPS",
    "NB201_OPS",
    "OPS",
    "DilConv",
    "FactorizedReduce",
    "Identity",
    "ReLUConvBN",
    "ResNetBasicBlock",
    "SepConv",
    "Zero",
    "make_op",
]


class ReLUConvBN(nn.Sequential):
    """ReLU -> conv (no bias) -> BN: the DARTS preprocessing and NB201 'nor_conv' ops."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int,
        padding: int,
        affine: bool = True,
        dilation: int = 1,
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU -> dilated depthwise conv -> pointwise conv -> BN."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int,
        padding: int,
        dilation: int,
        affine: bool = True,
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                c_in, c_in, kernel, stride, padding, dilation=dilation, groups=c_in, bias=False
            ),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked dilation-1 DilConvs, the first carrying the stride (DARTS sep_conv)."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True
    ) -> None:
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, 1, affine),
            DilConv(c_in, c_out, kernel, 1, padding, 1, affine),
        )


class Identity(nn.Module):
    """skip_connect at stride 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """The 'none' op: zeros of the output shape (kept so mixed ops can weight it)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


def _odd_side(x: torch.Tensor) -> bool:
    """Whether the spatial size of ``x`` is odd. Exported graphs have a fixed spatial
    size, so under tracing the answer is rightly a constant (its warning is muted)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return bool(x.shape[-1] % 2 or x.shape[-2] % 2)


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset stride-2 1x1 convs concatenated (DARTS).

    The output is ``ceil(H / 2)`` like every other stride-2 op: on an odd side the
    offset branch gets one zero row/column of padding at the end (DARTS' plain slicing
    gives it ``floor(H / 2)`` there and the concatenation fails); even sides run DARTS'
    code unchanged (same result and exported graph).
    """

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        if c_out % 2:
            raise HwnasError(f"FactorizedReduce needs an even channel count, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = x[:, :, 1:, 1:]
        if _odd_side(x):  # one zero row/column at the end: ceil(H / 2) outputs
            shifted = F.pad(shifted, (0, 1, 0, 1))
        y = torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1)
        return self.bn(y)


class ResNetBasicBlock(nn.Module):
    """NB201's reduction block between stages: two 3x3 ReLUConvBN, avg-pool + 1x1 shortcut.

    The shortcut's 2x2 average pool uses ``ceil_mode`` so that an odd side halves to
    ``ceil(H / 2)`` as the conv path does (NB201's floor pool fails there); even sides
    give the same result as NB201.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 2, affine: bool = True) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride, 1, affine)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1, affine)
        if stride == 2:
            self.downsample: nn.Module = nn.Sequential(
                nn.AvgPool2d(2, stride=2, padding=0, ceil_mode=True),
                nn.Conv2d(c_in, c_out, 1, bias=False),
            )
        elif c_in != c_out:
            self.downsample = ReLUConvBN(c_in, c_out, 1, 1, 0, affine)
        else:
            self.downsample = Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


OpFactory = Callable[[int, int, bool], nn.Module]

OPS: dict[str, dict[str, OpFactory]] = {
    "darts": {
        "none": lambda c, s, a: Zero(s),
        "max_pool_3x3": lambda c, s, a: nn.MaxPool2d(3, stride=s, padding=1),
        "avg_pool_3x3": lambda c, s, a: nn.AvgPool2d(
            3, stride=s, padding=1, count_include_pad=False
        ),
        "skip_connect": lambda c, s, a: Identity() if s == 1 else FactorizedReduce(c, c, a),
        "sep_conv_3x3": lambda c, s, a: SepConv(c, c, 3, s, 1, a),
        "sep_conv_5x5": lambda c, s, a: SepConv(c, c, 5, s, 2, a),
        "dil_conv_3x3": lambda c, s, a: DilConv(c, c, 3, s, 2, 2, a),
        "dil_conv_5x5": lambda c, s, a: DilConv(c, c, 5, s, 4, 2, a),
    },
    "nb201": {
        "none": lambda c, s, a: Zero(s),
        "skip_connect": lambda c, s, a: Identity() if s == 1 else FactorizedReduce(c, c, a),
        "nor_conv_1x1": lambda c, s, a: ReLUConvBN(c, c, 1, s, 0, a),
        "nor_conv_3x3": lambda c, s, a: ReLUConvBN(c, c, 3, s, 1, a),
        "avg_pool_3x3": lambda c, s, a: nn.AvgPool2d(
            3, stride=s, padding=1, count_include_pad=False
        ),
    },
}
assert tuple(OPS["darts"]) == DARTS_OPS and tuple(OPS["nb201"]) == NB201_OPS


def make_op(space: str, name: str, channels: int, stride: int, affine: bool = True) -> nn.Module:
    """Build op ``name`` of ``space`` ('darts' or 'nb201') on ``channels`` channels."""
    try:
        table = OPS[space]
    except KeyError:
        raise HwnasError(f"unknown cell space '{space}' (use {', '.join(OPS)})") from None
    try:
        factory = table[name]
    except KeyError:
        raise HwnasError(f"unknown {space} op '{name}' (use {', '.join(table)})") from None
    return factory(channels, stride, affine)
