"""Once-for-all ResNet50 space (the second image-classification supernet of DyNAS-T's
paper): elastic depth per stage, expand ratio per bottleneck block, width multiplier per
stem layer and stage, input resolution.

The network is OFA's ``OFAResNets`` (``ofa_resnet50``): a three-convolution stem whose
middle residual block may be skipped, a 3x3 max pool, four stages of ResNet bottleneck
blocks (base depths 2, 2, 4, 2 plus 0-2 elastic blocks; strides 1, 2, 2, 2; the first
block of a stage has an average-pool + 1x1 convolution shortcut) and a linear classifier.
Its cost (MACs, parameters) follows from the config in closed form, computed here for
whole batches; :func:`build_module` builds the same network in PyTorch (random weights),
for measuring it or checking the formula.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from hwnas.registry import SPACES
from hwnas.space.base import Dimension, SizedSearchSpace, choice_indices, config_values

R50_D_STEM = (0, 2)  # OFA's depth[0]: 2 keeps the stem's residual block, 0 skips it
R50_D = (0, 1, 2)  # blocks added to each stage's base depth
R50_E = (0.2, 0.25, 0.35)
R50_W = (0.65, 0.8, 1.0)
R50_R = (128, 144, 160, 176, 192, 224, 240, 256)  # the accuracy predictor's resolutions
BASE_DEPTH = (2, 2, 4, 2)
STAGE_WIDTH = (256, 512, 1024, 2048)
STRIDES = (1, 2, 2, 2)
N_STAGES = 4
MAX_EXTRA = max(R50_D)
SLOTS = tuple(b + MAX_EXTRA for b in BASE_DEPTH)  # block slots per stage: 4, 4, 6, 4
N_BLOCKS = sum(SLOTS)  # 18
N_WIDTHS = N_STAGES + 2  # stem conv 1 (and its residual block), stem conv 3, stages
N_CLASSES = 1000
# vector layout: depths (stem + 4 stages), 18 expand ratios, 6 width indices, resolution
_D0, _E0, _W0 = 0, 1 + N_STAGES, 1 + N_STAGES + N_BLOCKS
_R = _W0 + N_WIDTHS


def make_divisible(v: float, divisor: int = 8) -> int:
    """OFA's channel rounding: to the nearest multiple of ``divisor``, never below 90 %."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


STEM_WIDTH = tuple(make_divisible(64 * w) for w in R50_W)  # 40, 48, 64
STEM_MID = tuple(make_divisible(c // 2) for c in STEM_WIDTH)  # 24, 24, 32
WIDTHS = tuple(tuple(make_divisible(s * w) for w in R50_W) for s in STAGE_WIDTH)
# middle channels of a bottleneck block, [stage][width index][expand index], as OFA's
# ``active_middle_channels`` computes them (Python's round, then make_divisible)
MID = tuple(
    tuple(tuple(make_divisible(round(c * e)) for e in R50_E) for c in row) for row in WIDTHS
)
_STAGE_OF_SLOT = np.repeat(np.arange(N_STAGES), SLOTS)
_POS_IN_STAGE = np.concatenate([np.arange(s) for s in SLOTS])


def _down(h: np.ndarray | int, stride: int) -> np.ndarray | int:
    """Output size of a padded 3x3 convolution, the 3x3/1 max pool or the ceil-mode
    average pool with this stride (all give ceil(h / stride))."""
    return -(-h // stride)


@SPACES.register("ofa-resnet50")
class OFAResNet50Space(SizedSearchSpace):
    """OFA ResNet50: stem residual block kept or skipped, per stage depth +{0,1,2}, per
    block expand {0.2,0.25,0.35}, six width multipliers {0.65,0.8,1.0}, resolution
    128..256."""

    name = "ofa-resnet50"

    def __init__(self) -> None:
        self._dims = (
            Dimension("d_stem", R50_D_STEM),
            *(Dimension(f"d_{s}", R50_D) for s in range(N_STAGES)),
            *(Dimension(f"e_{i}", R50_E) for i in range(N_BLOCKS)),
            *(Dimension(f"w_{i}", R50_W) for i in range(N_WIDTHS)),
            Dimension("r", R50_R),
        )

    @property
    def dims(self) -> Sequence[Dimension]:
        return self._dims

    @staticmethod
    def active_mask(vectors: np.ndarray) -> np.ndarray:
        """(n, 18) boolean: which block slots run under each vector's stage depths."""
        x = np.atleast_2d(vectors)
        depth = np.asarray(BASE_DEPTH)[None, :] + x[:, _D0 + 1 : _E0]  # (n, 4)
        return _POS_IN_STAGE[None, :] < depth[:, _STAGE_OF_SLOT]

    def canonicalize(self, vectors: np.ndarray) -> np.ndarray:
        x = np.array(np.atleast_2d(vectors), dtype=np.int64)
        x[:, _E0:_W0][~self.active_mask(x)] = 0
        return x

    def decode(self, vector: Sequence[int] | np.ndarray) -> dict[str, Any]:
        """OFA's ``set_active_subnet`` arguments: ``d`` (stem 0/2, then +0..2 per stage),
        ``e`` (18 ratios; skipped blocks show the first choice), ``w`` (6 indices into
        0.65/0.8/1.0, as OFA takes them), plus the resolution ``r``."""
        v = self.canonicalize(self.validate(vector)[None, :])[0]
        return {
            "d": [R50_D_STEM[v[_D0]]] + [R50_D[i] for i in v[_D0 + 1 : _E0]],
            "e": [R50_E[i] for i in v[_E0:_W0]],
            "w": [int(i) for i in v[_W0:_R]],
            "r": R50_R[v[_R]],
        }

    def encode(self, config: dict[str, Any]) -> np.ndarray:
        lists = {"d": 1 + N_STAGES, "e": N_BLOCKS, "w": N_WIDTHS}
        d, e, w, r = config_values("ofa-resnet50", config, ("d", "e", "w", "r"), lists)

        def idx(values: Sequence[Any], choices: Sequence[Any], what: str) -> list[int]:
            return choice_indices("ofa-resnet50", values, choices, what)

        vec = (
            idx(d[:1], R50_D_STEM, "d[0]")
            + idx(d[1:], R50_D, "d")
            + idx(e, R50_E, "e")
            + idx(w, range(len(R50_W)), "w (an index)")
            + idx([r], R50_R, "r")
        )
        return self.canonicalize(np.array(vec, dtype=np.int64)[None, :])[0]

    def features(self, vectors: np.ndarray) -> np.ndarray:
        """OFA's 82-d ResNet encoding (``ResNetArchEncoder``): resolution one-hot (8),
        stem residual kept (2), width index one-hots (6 x 3), expand one-hots of the
        running blocks (18 x 3, zero for skipped blocks)."""
        x = self.canonicalize(self.check_vectors(vectors))
        n = x.shape[0]
        rows = np.arange(n)
        out = np.zeros((n, 82))
        out[rows, x[:, _R]] = 1.0
        out[rows, 8 + x[:, _D0]] = 1.0
        for i in range(N_WIDTHS):
            out[rows, 10 + 3 * i + x[:, _W0 + i]] = 1.0
        blocks = np.arange(N_BLOCKS)[None, :]
        out[rows[:, None], 28 + 3 * blocks + x[:, _E0:_W0]] = self.active_mask(x)
        return out

    def cost_features(self, vectors: np.ndarray) -> np.ndarray:
        """Per-part MACs (stem, each stage, classifier) in millions, the resolution and
        the one-hot features: what a latency predictor adds up."""
        parts = self.cost_terms_batch(vectors)[0] / 1e6
        res = np.asarray(R50_R, dtype=np.float64)[self.canonicalize(vectors)[:, _R]]
        return np.concatenate([parts, res[:, None], self.features(vectors)], axis=1)

    def cost_feature_views(self) -> list[np.ndarray | None]:
        """The per-part MACs and resolution alone, or everything."""
        return [np.arange(N_STAGES + 3), None]

    def cost_feature_view_names(self) -> list[str]:
        return ["MACs per part + resolution", "all features"]

    # ---- cost in closed form -----------------------------------------------------------
    def cost_terms_batch(
        self, vectors: np.ndarray, num_classes: int = N_CLASSES
    ) -> tuple[np.ndarray, np.ndarray]:
        """(MACs, parameters) per part: stem, the four stages, classifier; shape (n, 6)
        each. MACs count convolutions and the classifier (what ``torch.utils.
        flop_counter`` counts, as multiply-adds); parameters count convolution weights
        (no biases), batch-norm weights and biases, and the classifier."""
        x = self.canonicalize(self.check_vectors(vectors))
        n = x.shape[0]
        macs = np.zeros((n, N_STAGES + 2), dtype=np.int64)
        params = np.zeros_like(macs)
        r = np.asarray(R50_R, dtype=np.int64)[x[:, _R]]
        h = _down(r, 2)
        hw = h * h
        mid = np.asarray(STEM_MID)[x[:, _W0]]
        stem = np.asarray(STEM_WIDTH)[x[:, _W0 + 1]]
        keep = (x[:, _D0] == len(R50_D_STEM) - 1).astype(np.int64)
        macs[:, 0] = 9 * hw * (3 * mid + keep * mid * mid + mid * stem)
        params[:, 0] = 9 * (3 * mid + keep * mid * mid + mid * stem) + 2 * (mid + keep * mid + stem)
        h = _down(h, 2)  # max pool
        active = self.active_mask(x)
        cin = stem
        mids = np.asarray(MID, dtype=np.int64)  # (stage, w, e)
        slot = 0
        for s in range(N_STAGES):
            width = np.asarray(WIDTHS[s], dtype=np.int64)[x[:, _W0 + 2 + s]]
            for j in range(SLOTS[s]):
                on = active[:, slot].astype(np.int64)
                m = mids[s, x[:, _W0 + 2 + s], x[:, _E0 + slot]]
                stride = STRIDES[s] if j == 0 else 1
                ho = _down(h, stride)
                block_macs = cin * m * h * h + 9 * m * m * ho * ho + m * width * ho * ho
                block_params = cin * m + 9 * m * m + m * width + 2 * (2 * m + width)
                if j == 0:  # average pool + 1x1 convolution + BN shortcut
                    block_macs = block_macs + cin * width * ho * ho
                    block_params = block_params + cin * width + 2 * width
                    cin, h = width, ho  # the first block of a stage always runs
                macs[:, 1 + s] += on * block_macs
                params[:, 1 + s] += on * block_params
                slot += 1
        macs[:, -1] = cin * num_classes
        params[:, -1] = cin * num_classes + num_classes
        return macs, params

    def macs_batch(self, vectors: np.ndarray, num_classes: int = N_CLASSES) -> np.ndarray:
        """Multiply-accumulates of each subnet at its resolution (int64)."""
        return self.cost_terms_batch(vectors, num_classes)[0].sum(axis=1)

    def mflops_batch(self, vectors: np.ndarray, num_classes: int = N_CLASSES) -> np.ndarray:
        """MFLOPs (2 x MACs / 1e6) of each subnet at its resolution."""
        return 2.0 * self.macs_batch(vectors, num_classes) / 1e6

    def params_batch(self, vectors: np.ndarray, num_classes: int = N_CLASSES) -> np.ndarray:
        """Parameters of each subnet (int64): its model size."""
        return self.cost_terms_batch(vectors, num_classes)[1].sum(axis=1)


@functools.lru_cache(maxsize=1)
def _torch() -> Any:
    import torch

    return torch


def build_module(
    arch: Sequence[int] | np.ndarray | dict[str, Any], num_classes: int = N_CLASSES
) -> Any:
    """The subnet (a vector or a config as :meth:`OFAResNet50Space.decode` gives it) as
    a plain ``torch.nn.Module`` with random weights, shaped as OFA's
    ``get_active_subnet`` extracts it (for measuring latency or checking the cost
    formula; pretrained weights are OFA's, not shipped here). Input: (n, 3, r, r)."""
    nn = _torch().nn
    space = OFAResNet50Space()
    vector = space.encode(arch) if isinstance(arch, dict) else arch
    v = space.canonicalize(space.validate(vector)[None, :])[0]

    def conv_bn(cin: int, cout: int, k: int, stride: int = 1, act: bool = True) -> Any:
        layers = [
            nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
            nn.BatchNorm2d(cout),
        ]
        return nn.Sequential(*layers, *([nn.ReLU(inplace=True)] if act else []))

    class Residual(nn.Module):  # type: ignore[misc]
        def __init__(self, body: Any, shortcut: Any) -> None:
            super().__init__()
            self.body, self.shortcut = body, shortcut

        def forward(self, t: Any) -> Any:
            return self.body(t) + self.shortcut(t)

    class Bottleneck(nn.Module):  # type: ignore[misc]
        def __init__(self, cin: int, mid: int, cout: int, stride: int, first: bool) -> None:
            super().__init__()
            self.body = nn.Sequential(
                conv_bn(cin, mid, 1),
                conv_bn(mid, mid, 3, stride),
                conv_bn(mid, cout, 1, act=False),
            )
            self.shortcut = (
                nn.Sequential(
                    nn.AvgPool2d(stride, stride, 0, ceil_mode=True),
                    conv_bn(cin, cout, 1, act=False),
                )
                if first
                else nn.Identity()
            )
            self.act = nn.ReLU(inplace=True)

        def forward(self, t: Any) -> Any:
            return self.act(self.body(t) + self.shortcut(t))

    mid, stem = STEM_MID[v[_W0]], STEM_WIDTH[v[_W0 + 1]]
    layers: list[Any] = [conv_bn(3, mid, 3, 2)]
    if v[_D0] == len(R50_D_STEM) - 1:
        layers.append(Residual(conv_bn(mid, mid, 3), nn.Identity()))
    layers += [conv_bn(mid, stem, 3), nn.MaxPool2d(3, 2, 1)]
    cin, slot = stem, 0
    active = space.active_mask(v[None, :])[0]
    for s in range(N_STAGES):
        w = int(v[_W0 + 2 + s])
        for j in range(SLOTS[s]):
            if active[slot]:
                m = MID[s][w][int(v[_E0 + slot])]
                stride = STRIDES[s] if j == 0 else 1
                layers.append(Bottleneck(cin, m, WIDTHS[s][w], stride, j == 0))
                cin = WIDTHS[s][w]
            slot += 1
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)
