"""Evaluation networks built from a derived cell, trained from scratch (DCA-NAS, paper 001).

* :class:`NB201Network`: NAS-Bench-201's ``TinyNetwork`` (``C=16, N=5``): stem conv3x3 + BN;
  three stages of ``N`` cells at ``C, 2C, 4C`` channels with a ``ResNetBasicBlock``
  (stride 2) between stages; BN + ReLU, global average pool, linear classifier.
* :class:`DartsNetworkCIFAR`: DARTS' ``NetworkCIFAR`` (``C=36, layers=20``): stem
  conv3x3 to ``3C`` + BN; ``layers`` cells with reduction cells at ``layers//3`` and
  ``2*layers//3`` (doubling the channels), preprocessing by ``FactorizedReduce`` after a
  reduction cell else a 1x1 ``ReLUConvBN``; drop-path on non-identity ops while training;
  optional auxiliary head after cell ``2*layers//3``; global pool + linear classifier.

Both are built from :func:`hwnas.dnas.ops.make_op`, so their modules (and parameter
counts) are exactly those of the search networks and of the reference code: NB201's
default all-'nor_conv_3x3' cell has 1,531,546 parameters, DARTS-V2 at ``C=36, layers=20``
3,349,342 (auxiliary head excluded), as published.

Deviations from the reference code, none of which changes the parameter count at the
defaults:

* ``in_channels`` (default 3) sets the stem's input channels, so 1-channel data (MNIST,
  digits) can be used.
* :class:`NB201Network` skips 'none' edges instead of adding ``0 * x`` (same function,
  less work in the exported graph); a node whose inputs are all 'none' is zeros, as in
  NB201.
* Drop-path is not in place (autograd-safe) and draws its mask from the global torch RNG.
* In training mode, :class:`DartsNetworkCIFAR` returns ``(logits, aux_logits)`` when it
  has an auxiliary head and plain ``logits`` otherwise; in eval mode always ``logits``
  (so ONNX export sees one output). The auxiliary head (as in DARTS) expects an 8x8
  feature map, i.e. 32x32 inputs; it raises a clear error on smaller ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from hwnas.dnas.genotype import Genotype, genotype_from_dict
from hwnas.dnas.ops import (
    DARTS_OPS,
    NB201_OPS,
    FactorizedReduce,
    Identity,
    ReLUConvBN,
    ResNetBasicBlock,
    make_op,
)
from hwnas.errors import HwnasError

__all__ = [
    "AuxiliaryHeadCIFAR",
    "DartsCell",
    "DartsNetworkCIFAR",
    "NB201Cell",
    "NB201Network",
    "count_params",
    "drop_path",
    "parse_nb201_arch",
    "validate_genotype",
]


# ---- helpers ---------------------------------------------------------------------------
def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples with probability ``drop_prob`` and rescale the rest (DARTS)."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x / keep * mask


def count_params(model: nn.Module, exclude_auxiliary: bool = True) -> int:
    """Number of parameters; without the auxiliary head by default (as DARTS reports)."""
    return int(
        sum(
            p.numel()
            for name, p in model.named_parameters()
            if not (exclude_auxiliary and name.startswith("auxiliary_head."))
        )
    )


def parse_nb201_arch(arch_str: str) -> list[str]:
    """The six op names of an NB201 arch string, in edge order 1<-0, 2<-0, 2<-1, 3<-0, ..."""
    from hwnas.space.nb201 import NB201Space

    return [NB201_OPS[i] for i in NB201Space().encode(arch_str)]


def validate_genotype(genotype: Genotype | dict[str, Any] | str) -> Genotype:
    """A checked DARTS genotype (from a Genotype, its dict or JSON): known ops, two inputs
    per node that refer to earlier states only, valid concat indices."""
    g = genotype if isinstance(genotype, Genotype) else genotype_from_dict(genotype)
    for kind in ("normal", "reduce"):
        pairs = list(getattr(g, kind))
        concat = list(getattr(g, f"{kind}_concat"))
        if not pairs or len(pairs) % 2:
            raise HwnasError(
                f"genotype {kind} cell needs two (op, input) pairs per node, got {len(pairs)}"
            )
        for k, (op, idx) in enumerate(pairs):
            node = k // 2 + 2
            if op not in DARTS_OPS:
                raise HwnasError(
                    f"unknown darts op '{op}' in genotype {kind} cell (use {', '.join(DARTS_OPS)})"
                )
            if not 0 <= int(idx) < node:
                raise HwnasError(
                    f"genotype {kind} cell: node {node} takes input {idx}, "
                    f"which must be an earlier state 0..{node - 1}"
                )
        n_states = len(pairs) // 2 + 2
        if not concat or any(not 0 <= int(i) < n_states for i in concat):
            raise HwnasError(
                f"genotype {kind}_concat {concat} must list states in 0..{n_states - 1}"
            )
    return g


# ---- NAS-Bench-201 -----------------------------------------------------------------------
class NB201Cell(nn.Module):
    """NB201 cell: node j = sum over i<j of op_(j<-i)(node i); output node 3."""

    EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))

    def __init__(self, ops: Sequence[str], C: int) -> None:
        super().__init__()
        if len(ops) != 6:
            raise HwnasError(f"an NB201 cell has 6 edges, got {len(ops)} ops")
        self.op_names = tuple(ops)
        pairs = list(zip(self.EDGES, ops, strict=True))
        self.edges = nn.ModuleDict(
            {f"{to}_{frm}": make_op("nb201", op, C, 1) for (to, frm), op in pairs}
        )
        # per node: the (source node, edge key) of its non-'none' inputs
        self._inputs = [
            [(frm, f"{to}_{frm}") for (dst, frm), op in pairs if dst == to and op != "none"]
            for to in (1, 2, 3)
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes: list[torch.Tensor | None] = [x]
        for inputs in self._inputs:
            acc: torch.Tensor | None = None
            for frm, key in inputs:
                src = nodes[frm]
                if src is None:  # an all-'none' node is zeros
                    src = x.mul(0.0)
                y = self.edges[key](src)
                acc = y if acc is None else acc + y
            nodes.append(acc)
        out = nodes[3]
        return x.mul(0.0) if out is None else out


class NB201Network(nn.Module):
    """NAS-Bench-201's evaluation network for one cell (``arch_str``)."""

    def __init__(
        self,
        arch_str: str,
        C: int = 16,
        N: int = 5,
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if C < 1 or N < 1:
            raise HwnasError(f"NB201Network needs C >= 1 and N >= 1, got C={C}, N={N}")
        ops = parse_nb201_arch(arch_str)
        from hwnas.space.nb201 import NB201Space

        self.arch_str = NB201Space().decode([NB201_OPS.index(o) for o in ops])
        self.C, self.N, self.num_classes = C, N, num_classes
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C)
        )
        cells: list[nn.Module] = []
        c_prev = C
        for stage, c in enumerate((C, 2 * C, 4 * C)):
            if stage > 0:
                cells.append(ResNetBasicBlock(c_prev, c, stride=2))
            cells.extend(NB201Cell(ops, c) for _ in range(N))
            c_prev = c
        self.cells = nn.ModuleList(cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=False))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        x = self.global_pooling(self.lastact(x))
        return self.classifier(torch.flatten(x, 1))


# ---- DARTS -------------------------------------------------------------------------------
class DartsCell(nn.Module):
    """A DARTS evaluation cell: each node sums its two ``(op, input)`` pairs."""

    def __init__(
        self,
        genotype: Genotype,
        c_prev_prev: int,
        c_prev: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(c_prev_prev, C)
        else:
            self.preprocess0 = ReLUConvBN(c_prev_prev, C, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(c_prev, C, 1, 1, 0)
        pairs = genotype.reduce if reduction else genotype.normal
        concat = genotype.reduce_concat if reduction else genotype.normal_concat
        self._steps = len(pairs) // 2
        self._concat = [int(i) for i in concat]
        self.multiplier = len(self._concat)
        self._indices = [int(i) for _, i in pairs]
        self._ops = nn.ModuleList(
            make_op("darts", op, C, 2 if reduction and idx < 2 else 1) for op, idx in pairs
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(self._steps):
            total: torch.Tensor | None = None
            for k in (2 * i, 2 * i + 1):
                op = self._ops[k]
                h = op(states[self._indices[k]])
                if self.training and drop_prob > 0.0 and not isinstance(op, Identity):
                    h = drop_path(h, drop_prob)
                total = h if total is None else total + h
            assert total is not None
            states.append(total)
        return torch.cat([states[i] for i in self._concat], dim=1)


class AuxiliaryHeadCIFAR(nn.Module):
    """DARTS' auxiliary classifier on the 8x8 feature map after the second reduction."""

    def __init__(self, C: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),  # 8x8 -> 2x2
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (8 <= x.shape[-2] <= 10 and 8 <= x.shape[-1] <= 10):
            raise HwnasError(
                f"the auxiliary head needs an 8x8 feature map (32x32 inputs), got "
                f"{tuple(x.shape[-2:])}; train without the auxiliary head"
            )
        x = self.features(x)
        return self.classifier(torch.flatten(x, 1))


class DartsNetworkCIFAR(nn.Module):
    """The DARTS CIFAR evaluation network for ``genotype`` (Genotype, dict or JSON)."""

    def __init__(
        self,
        genotype: Genotype | dict[str, Any] | str,
        C: int = 36,
        layers: int = 20,
        num_classes: int = 10,
        auxiliary: bool = False,
        drop_path_prob: float = 0.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if C < 1 or layers < 1:
            raise HwnasError(f"DartsNetworkCIFAR needs C >= 1 and layers >= 1, got {C}, {layers}")
        self.genotype = validate_genotype(genotype)
        self.C, self.layers, self.num_classes = C, layers, num_classes
        self._auxiliary = auxiliary
        self.drop_path_prob = float(drop_path_prob)
        c_curr = 3 * C
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr)
        )
        c_prev_prev, c_prev, c_curr = c_curr, c_curr, C
        self.reduction_layers = sorted({layers // 3, 2 * layers // 3})
        self.aux_layer = 2 * layers // 3
        cells: list[DartsCell] = []
        reduction_prev = False
        c_aux = c_prev
        for i in range(layers):
            reduction = i in self.reduction_layers
            if reduction:
                c_curr *= 2
            cell = DartsCell(self.genotype, c_prev_prev, c_prev, c_curr, reduction, reduction_prev)
            reduction_prev = reduction
            cells.append(cell)
            c_prev_prev, c_prev = c_prev, cell.multiplier * c_curr
            if i == self.aux_layer:
                c_aux = c_prev
        self.cells = nn.ModuleList(cells)
        if auxiliary:
            self.auxiliary_head = AuxiliaryHeadCIFAR(c_aux, num_classes)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    @property
    def auxiliary(self) -> bool:
        return self._auxiliary

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        aux: torch.Tensor | None = None
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_layer and self._auxiliary and self.training:
                aux = self.auxiliary_head(s1)
        out = self.global_pooling(s1)
        logits = self.classifier(torch.flatten(out, 1))
        if aux is not None:
            return logits, aux
        return logits
