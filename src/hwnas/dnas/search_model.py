"""Search networks with softmax-mixed operations for the DARTS and NB201 cell spaces.

:class:`SearchNetwork` is the DARTS / NAS-Bench-201 search supernet, with the three
search-time reductions of DCA-NAS (paper 001, section 3.3), each switchable:

* ``weight_sharing``: one op module per (source node, op) in a cell, computed once and
  reused by every target node the source feeds (paper eq. 5); off: one per (edge, op).
* ``bottleneck``: factor ``r`` of a 1x1 channel bottleneck: each source state is
  projected to ``C // r`` channels (1x1 conv + BN) before the candidate ops and each
  intermediate node back to ``C`` channels (1x1 conv + BN) after mixing; ``1`` is off.
* ``derived_cells``: only the first normal and first reduction cell (NB201: the first
  cell) mix ops with alpha; every other cell is a discrete cell that runs only the ops of
  the genotype derived from the current alpha, re-derived at every forward pass (so every
  step), as in the paper and its ref. [46]. The discrete cells hold a full op bank so a
  newly chosen op keeps its weights; they pass no gradient to alpha.

All three off is plain (first-order) DARTS. 'none' ops are never run: their output is
zero, so leaving them out of the mixed sum changes nothing, and alpha for 'none' still
gets its gradient through the softmax normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.dnas.derivation import darts_cell_edges, derive, nb201_ops_of
from hwnas.dnas.genotype import Genotype
from hwnas.dnas.ops import (
    DARTS_OPS,
    NB201_OPS,
    FactorizedReduce,
    ReLUConvBN,
    ResNetBasicBlock,
    make_op,
)
from hwnas.errors import HwnasError

__all__ = ["SearchCell", "SearchNetwork"]

# (source state, op index) pairs feeding each intermediate node of a discrete cell
Selection = list[list[tuple[int, int]]]


class SearchCell(nn.Module):
    """One cell: ``n_inputs`` input states, ``n_nodes`` intermediate nodes, every
    intermediate node fed by every earlier state (DARTS: 2 inputs, 4 nodes, 14 edges;
    NB201: 1 input, 3 nodes, 6 edges). Runs mixed (softmax weights) or discrete."""

    def __init__(
        self,
        space: str,
        channels: int,
        n_inputs: int,
        n_nodes: int,
        reduction: bool = False,
        weight_sharing: bool = False,
        bottleneck: int = 1,
    ) -> None:
        super().__init__()
        self.space = space
        self.ops = DARTS_OPS if space == "darts" else NB201_OPS
        self.none = self.ops.index("none")
        self.n_inputs, self.n_nodes = n_inputs, n_nodes
        self.reduction = reduction
        self.weight_sharing = weight_sharing
        self.bottleneck = bottleneck
        self.channels = channels
        if bottleneck < 1 or channels % bottleneck:
            raise HwnasError(
                f"bottleneck factor {bottleneck} must be >= 1 and divide the channels {channels}"
            )
        cb = channels // bottleneck
        if reduction and cb % 2:
            raise HwnasError(
                f"reduction cell needs an even op width, got {channels} channels / {bottleneck}"
            )
        self.op_channels = cb
        self.n_edges = sum(n_inputs + i for i in range(n_nodes))
        n_sources = n_inputs + n_nodes - 1
        bank: dict[str, nn.Module] = {}
        for i in range(n_nodes):
            for j in range(n_inputs + i):
                key_src = f"s{j}" if weight_sharing else f"e{self.edge(i, j)}"
                for k, name in enumerate(self.ops):
                    key = f"{key_src}_{k}"
                    if k == self.none or key in bank:
                        continue
                    op = make_op(space, name, cb, self.stride(j), affine=False)
                    if space == "darts" and "pool" in name:
                        op = nn.Sequential(op, nn.BatchNorm2d(cb, affine=False))
                    bank[key] = op
        self.bank = nn.ModuleDict(bank)
        if bottleneck > 1:
            self.down = nn.ModuleList(
                nn.Sequential(
                    nn.Conv2d(channels, cb, 1, bias=False), nn.BatchNorm2d(cb, affine=False)
                )
                for _ in range(n_sources)
            )
            self.up = nn.ModuleList(
                nn.Sequential(
                    nn.Conv2d(cb, channels, 1, bias=False),
                    nn.BatchNorm2d(channels, affine=False),
                )
                for _ in range(n_nodes)
            )

    def edge(self, node: int, source: int) -> int:
        """Edge row (in alpha) of intermediate ``node`` (0-based) <- state ``source``."""
        return sum(self.n_inputs + i for i in range(node)) + source

    def stride(self, source: int) -> int:
        return 2 if self.reduction and source < self.n_inputs else 1

    def forward(
        self,
        inputs: Sequence[torch.Tensor],
        weights: torch.Tensor | None = None,
        selection: Selection | None = None,
    ) -> torch.Tensor:
        """Mixed with ``weights`` (n_edges, n_ops), or discrete with ``selection``."""
        states = list(inputs)
        projected: dict[int, torch.Tensor] = {}
        cache: dict[str, torch.Tensor] = {}

        def source(j: int) -> torch.Tensor:
            if self.bottleneck == 1:
                return states[j]
            if j not in projected:
                projected[j] = self.down[j](states[j])
            return projected[j]

        for i in range(self.n_nodes):
            if weights is not None:
                terms: list[tuple[int, int, Any]] = [
                    (j, k, weights[self.edge(i, j), k])
                    for j in range(self.n_inputs + i)
                    for k in range(len(self.ops))
                    if k != self.none
                ]
            elif selection is not None:
                terms = [(j, k, None) for j, k in selection[i] if k != self.none]
            else:
                raise HwnasError("a cell needs mixing weights or a discrete selection")
            acc: torch.Tensor | None = None
            for j, k, w in terms:
                key = f"s{j}_{k}" if self.weight_sharing else f"e{self.edge(i, j)}_{k}"
                out = cache.get(key)
                if out is None:
                    out = self.bank[key](source(j))
                    if self.weight_sharing:
                        cache[key] = out
                term = out if w is None else out * w
                acc = term if acc is None else acc + term
            if acc is None:
                ref = states[self.n_inputs - 1]
                s = 2 if self.reduction else 1
                h, wd = (ref.shape[2] + s - 1) // s, (ref.shape[3] + s - 1) // s
                node = ref.new_zeros(ref.shape[0], self.channels, h, wd)
            else:
                node = self.up[i](acc) if self.bottleneck > 1 else acc
            states.append(node)
        if self.space == "darts":
            return torch.cat(states[self.n_inputs :], dim=1)
        return states[-1]


class _DartsCell(nn.Module):
    """DARTS search cell: preprocessing of the two previous outputs, then the cell."""

    def __init__(
        self,
        c_pp: int,
        c_p: int,
        channels: int,
        reduction: bool,
        reduction_prev: bool,
        weight_sharing: bool,
        bottleneck: int,
        steps: int,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.preprocess0: nn.Module = (
            FactorizedReduce(c_pp, channels, affine=False)
            if reduction_prev
            else ReLUConvBN(c_pp, channels, 1, 1, 0, affine=False)
        )
        self.preprocess1 = ReLUConvBN(c_p, channels, 1, 1, 0, affine=False)
        self.cell = SearchCell("darts", channels, 2, steps, reduction, weight_sharing, bottleneck)

    def forward(
        self,
        s0: torch.Tensor,
        s1: torch.Tensor,
        weights: torch.Tensor | None,
        selection: Selection | None,
    ) -> torch.Tensor:
        return self.cell([self.preprocess0(s0), self.preprocess1(s1)], weights, selection)


class SearchNetwork(nn.Module):
    """DARTS or NB201 search supernet with alpha-mixed cells (see the module docstring).

    ``space='darts'``: stem 3x3 conv with ``3 * C`` channels, ``layers`` cells with
    reduction cells at ``layers // 3`` and ``2 * layers // 3`` (channels doubled there),
    global pooling, linear classifier. ``space='nb201'``: stem 3x3 conv + BN, three
    stages of ``layers`` (= N) cells at C, 2C, 4C with a ResNet basic block between
    stages, BN + ReLU, global pooling, linear classifier.
    """

    def __init__(
        self,
        space: str = "nb201",
        C: int = 16,
        layers: int = 5,
        num_classes: int = 10,
        in_channels: int = 3,
        *,
        weight_sharing: bool = False,
        bottleneck: int = 1,
        derived_cells: bool = False,
        steps: int = 4,
        stem_multiplier: int = 3,
    ) -> None:
        super().__init__()
        if space not in ("darts", "nb201"):
            raise HwnasError(f"unknown cell space '{space}' (use darts or nb201)")
        if C < 1 or layers < 1 or num_classes < 1:
            raise HwnasError("C, layers and num_classes must be >= 1")
        self._hparams = {
            "space": space,
            "C": C,
            "layers": layers,
            "num_classes": num_classes,
            "in_channels": in_channels,
            "weight_sharing": weight_sharing,
            "bottleneck": bottleneck,
            "derived_cells": derived_cells,
            "steps": steps,
            "stem_multiplier": stem_multiplier,
        }
        self.space = space
        self.derived_cells = derived_cells
        self.ops = DARTS_OPS if space == "darts" else NB201_OPS
        if space == "darts":
            self._build_darts(C, layers, num_classes, in_channels, steps, stem_multiplier)
        else:
            self._build_nb201(C, layers, num_classes, in_channels)
        n_edges = sum(self._n_inputs + i for i in range(self._n_nodes))
        names = ("alpha_normal", "alpha_reduce") if space == "darts" else ("alpha",)
        self._alpha_names = names
        for name in names:
            a = 1e-3 * torch.randn(n_edges, len(self.ops))
            self.register_parameter(name, nn.Parameter(a))

    # ---- construction -----------------------------------------------------------------
    def _build_darts(
        self, C: int, layers: int, num_classes: int, in_channels: int, steps: int, stem: int
    ) -> None:
        if layers < 3:
            raise HwnasError(f"a DARTS search network needs >= 3 cells, got {layers}")
        hp = self._hparams
        self._n_inputs, self._n_nodes = 2, steps
        c_curr = stem * C
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr)
        )
        c_pp, c_p, c_curr = c_curr, c_curr, C
        self.cells = nn.ModuleList()
        self.cell_types: list[str] = []
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            cell = _DartsCell(
                c_pp,
                c_p,
                c_curr,
                reduction,
                reduction_prev,
                hp["weight_sharing"],
                hp["bottleneck"],
                steps,
            )
            self.cells.append(cell)
            self.cell_types.append("reduce" if reduction else "normal")
            reduction_prev = reduction
            c_pp, c_p = c_p, steps * c_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)
        self.searchable = {self.cell_types.index(t) for t in set(self.cell_types)}

    def _build_nb201(self, C: int, N: int, num_classes: int, in_channels: int) -> None:
        hp = self._hparams
        self._n_inputs, self._n_nodes = 1, 3
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C)
        )
        channels = [C] * N + [2 * C] + [2 * C] * N + [4 * C] + [4 * C] * N
        reductions = [False] * N + [True] + [False] * N + [True] + [False] * N
        self.cells = nn.ModuleList()
        self.cell_types = []
        c_prev = C
        for c_curr, red in zip(channels, reductions, strict=True):
            if red:
                self.cells.append(ResNetBasicBlock(c_prev, c_curr, 2))
                self.cell_types.append("resblock")
            else:
                self.cells.append(
                    SearchCell("nb201", c_curr, 1, 3, False, hp["weight_sharing"], hp["bottleneck"])
                )
                self.cell_types.append("normal")
            c_prev = c_curr
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)
        self.searchable = {self.cell_types.index("normal")}

    # ---- parameters -------------------------------------------------------------------
    def hparams(self) -> dict[str, Any]:
        """Constructor arguments (to rebuild the network from a checkpoint)."""
        return dict(self._hparams)

    def arch_parameters(self) -> list[nn.Parameter]:
        """Alpha tensors: darts [alpha_normal (14, 8), alpha_reduce (14, 8)]; nb201
        [alpha (6, 5)]."""
        return [getattr(self, n) for n in self._alpha_names]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter except alpha (what the SGD weight optimiser updates)."""
        return [p for n, p in self.named_parameters() if n not in self._alpha_names]

    def named_weight_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if n not in self._alpha_names]

    # ---- architecture -----------------------------------------------------------------
    def genotype(self) -> Genotype | str:
        """The derived discrete cell (DARTS ``Genotype`` or NB201 arch string)."""
        return derive(self.space, self.arch_parameters())

    def alpha_entropy(self) -> float:
        """Mean entropy (nats) of the per-edge op distributions; log(n_ops) is uniform."""
        with torch.no_grad():
            ents = []
            for a in self.arch_parameters():
                p = torch.softmax(a, -1)
                ents.append(-(p * torch.log(p.clamp_min(1e-12))).sum(-1))
            return float(torch.cat(ents).mean())

    def _selections(self) -> dict[str, Selection]:
        """The discrete cells' ops derived from the current alpha, per cell type."""
        alphas = self.arch_parameters()
        if self.space == "nb201":
            ops = nb201_ops_of(alphas[0])
            cell = next(c for c in self.cells if isinstance(c, SearchCell))
            return {"normal": [[(j, ops[cell.edge(i, j)]) for j in range(i + 1)] for i in range(3)]}
        out: dict[str, Selection] = {}
        for t, a in zip(("normal", "reduce"), alphas, strict=True):
            gene = darts_cell_edges(torch.softmax(a.detach().double(), -1).numpy())
            sel: Selection = [[] for _ in range(self._n_nodes)]
            for idx, (name, j) in enumerate(gene):
                sel[idx // 2].append((j, DARTS_OPS.index(name)))
            out[t] = sel
        return out

    # ---- forward ----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alphas = self.arch_parameters()
        if self.space == "darts":
            weights = {
                "normal": F.softmax(alphas[0], dim=-1),
                "reduce": F.softmax(alphas[1], dim=-1),
            }
        else:
            weights = {"normal": F.softmax(alphas[0], dim=-1)}
        selections = self._selections() if self.derived_cells else {}
        s = self.stem(x)
        if self.space == "darts":
            s0 = s1 = s
            for i, cell in enumerate(self.cells):
                t = self.cell_types[i]
                if self.derived_cells and i not in self.searchable:
                    out = cell(s0, s1, None, selections[t])
                else:
                    out = cell(s0, s1, weights[t], None)
                s0, s1 = s1, out
            feat = s1
        else:
            for i, cell in enumerate(self.cells):
                t = self.cell_types[i]
                if t == "resblock":
                    s = cell(s)
                elif self.derived_cells and i not in self.searchable:
                    s = cell([s], None, selections[t])
                else:
                    s = cell([s], weights[t], None)
            feat = self.lastact(s)
        out = self.global_pooling(feat).flatten(1)
        return self.classifier(out)
