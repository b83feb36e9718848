"""Once-for-all MobileNetV3 space: 20 block slots x kernel x expand, 5 stage depths,
input resolution."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hwnas.registry import SPACES
from hwnas.space.base import Dimension, SearchSpace, choice_indices, config_values

OFA_KS = (3, 5, 7)
OFA_E = (3, 4, 6)
OFA_D = (2, 3, 4)
OFA_R = (160, 176, 192, 208, 224)
N_BLOCKS = 20
N_STAGES = 5
MAX_DEPTH = 4
# OFA MobileNetV3 w1.2 as OFA builds it: stem width, per stage (width, stride, SE,
# hardswish), then the head's final expand, feature mix and classes
OFA_STEM = 24
OFA_STAGES = ((32, 2, 0, 0), (48, 2, 1, 0), (96, 2, 0, 1), (136, 1, 1, 1), (192, 2, 1, 1))
OFA_FINAL_EXPAND, OFA_FEATURE_MIX, OFA_CLASSES = 1152, 1536, 1000


@SPACES.register("ofa-mbv3")
class OFAMobileNetV3Space(SearchSpace):
    """OFA MobileNetV3: per block kernel {3,5,7} and expand {3,4,6}; per stage depth
    {2,3,4} (blocks beyond it are skipped); resolution 160..224 step 16."""

    name = "ofa-mbv3"

    def __init__(self) -> None:
        self._dims = (
            tuple(Dimension(f"ks_{i}", OFA_KS) for i in range(N_BLOCKS))
            + tuple(Dimension(f"e_{i}", OFA_E) for i in range(N_BLOCKS))
            + tuple(Dimension(f"d_{s}", OFA_D) for s in range(N_STAGES))
            + (Dimension("r", OFA_R),)
        )

    @property
    def dims(self) -> Sequence[Dimension]:
        return self._dims

    @staticmethod
    def active_mask(vectors: np.ndarray) -> np.ndarray:
        """(n, 20) boolean: which block slots are used under each vector's stage depths."""
        x = np.atleast_2d(vectors)
        depth = np.asarray(OFA_D)[x[:, 2 * N_BLOCKS : 2 * N_BLOCKS + N_STAGES]]  # (n, 5)
        pos = np.tile(np.arange(MAX_DEPTH), N_STAGES)[None, :]  # (1, 20)
        return pos < np.repeat(depth, MAX_DEPTH, axis=1)

    def canonicalize(self, vectors: np.ndarray) -> np.ndarray:
        x = np.array(np.atleast_2d(vectors), dtype=np.int64)
        inactive = ~self.active_mask(x)
        x[:, :N_BLOCKS][inactive] = 0
        x[:, N_BLOCKS : 2 * N_BLOCKS][inactive] = 0
        return x

    def decode(self, vector: Sequence[int] | np.ndarray) -> dict[str, Any]:
        v = self.canonicalize(self.validate(vector)[None, :])[0]
        return {
            "ks": [OFA_KS[i] for i in v[:N_BLOCKS]],
            "e": [OFA_E[i] for i in v[N_BLOCKS : 2 * N_BLOCKS]],
            "d": [OFA_D[i] for i in v[2 * N_BLOCKS : 2 * N_BLOCKS + N_STAGES]],
            "r": OFA_R[v[-1]],
        }

    def encode(self, config: dict[str, Any]) -> np.ndarray:
        lists = {"ks": N_BLOCKS, "e": N_BLOCKS, "d": N_STAGES}
        ks, e, d, r = config_values("ofa-mbv3", config, ("ks", "e", "d", "r"), lists)

        def idx(values: Sequence[Any], choices: tuple[int, ...], what: str) -> list[int]:
            return choice_indices("ofa-mbv3", values, choices, what)

        vec = idx(ks, OFA_KS, "ks") + idx(e, OFA_E, "e") + idx(d, OFA_D, "d") + idx([r], OFA_R, "r")
        return self.canonicalize(np.array(vec, dtype=np.int64)[None, :])[0]

    def features(self, vectors: np.ndarray) -> np.ndarray:
        """OFA's 128-d encoding: kernel and expand one-hots of active blocks, resolution."""
        x = self.canonicalize(self.check_vectors(vectors))
        n = x.shape[0]
        active = self.active_mask(x).astype(np.float64)
        out = np.zeros((n, 128))
        rows = np.arange(n)[:, None]
        blocks = np.arange(N_BLOCKS)[None, :]
        out[rows, 3 * blocks + x[:, :N_BLOCKS]] = active
        out[rows, 60 + 3 * blocks + x[:, N_BLOCKS : 2 * N_BLOCKS]] = active
        res = np.asarray(OFA_R)[x[:, -1]]
        out[np.arange(n), 120 + (res - 112) // 16] = 1.0
        return out

    def macs_terms(self, vectors: np.ndarray) -> np.ndarray:
        """Multiply-adds of the subnet :func:`build_module` builds, in parts: the fixed
        layers (stem, first block, head), then each stage's 1x1 convolutions (expand,
        SE, project) and each stage's depthwise convolutions; shape (n, 11). What
        ``torch.utils.flop_counter`` counts (convolutions and the classifier), halved."""
        from hwnas.space.ofa_resnet50 import make_divisible

        x = self.canonicalize(self.check_vectors(vectors))
        n = x.shape[0]
        out = np.zeros((n, 1 + 2 * N_STAGES), dtype=np.int64)
        r = np.asarray(OFA_R, dtype=np.int64)[x[:, -1]]
        h = (r - 1) // 2 + 1
        stem = OFA_STEM
        out[:, 0] = h * h * (3 * stem * 9 + stem * 9 + stem * stem)  # stem, first block
        active = self.active_mask(x)
        ks = np.asarray(OFA_KS, dtype=np.int64)[x[:, :N_BLOCKS]]
        es = np.asarray(OFA_E, dtype=np.int64)[x[:, N_BLOCKS : 2 * N_BLOCKS]]
        cin = np.full(n, stem, dtype=np.int64)
        se_mid = np.vectorize(lambda m: make_divisible(m // 4), otypes=[np.int64])
        for s, (width, stride, se, _) in enumerate(OFA_STAGES):
            for b in range(MAX_DEPTH):
                slot = s * MAX_DEPTH + b
                on = active[:, slot]
                st = stride if b == 0 else 1
                ho = (h - 1) // st + 1
                mid = cin * es[:, slot]  # multiples of 8 already, as build_module rounds
                pw = h * h * cin * mid + ho * ho * mid * width
                if se:
                    pw = pw + 2 * mid * se_mid(mid)
                out[:, 1 + s] += np.where(on, pw, 0)
                out[:, 1 + N_STAGES + s] += np.where(on, ho * ho * mid * ks[:, slot] ** 2, 0)
                # a slot past its stage's depth leaves the shape as it is
                h, cin = np.where(on, ho, h), np.where(on, width, cin)
        head = h * h * cin * OFA_FINAL_EXPAND + OFA_FINAL_EXPAND * OFA_FEATURE_MIX
        out[:, 0] += head + OFA_FEATURE_MIX * OFA_CLASSES
        return out

    def macs_batch(self, vectors: np.ndarray) -> np.ndarray:
        """Multiply-adds of each subnet (its stem, blocks and head)."""
        return self.macs_terms(vectors).sum(axis=1)

    def cost_features(self, vectors: np.ndarray) -> np.ndarray:
        """MACs in millions per part (fixed layers, each stage's 1x1 and depthwise
        convolutions, which run at different speeds), the resolution, and OFA's
        encoding: what a latency predictor adds up."""
        terms = self.macs_terms(vectors) / 1e6
        res = np.asarray(OFA_R, dtype=np.float64)[self.canonicalize(vectors)[:, -1]]
        return np.concatenate([terms, res[:, None], self.features(vectors)], axis=1)

    def cost_feature_views(self) -> list[np.ndarray | None]:
        """The MACs per part and resolution alone, or everything."""
        return [np.arange(2 * N_STAGES + 2), None]

    def cost_feature_view_names(self) -> list[str]:
        return ["MACs per part + resolution", "all features"]


def build_module(
    arch: Sequence[int] | np.ndarray | dict[str, Any], num_classes: int = OFA_CLASSES
) -> Any:
    """The subnet (a vector or a config as :meth:`OFAMobileNetV3Space.decode` gives it)
    as a plain ``torch.nn.Module`` with random weights, shaped as OFA's
    ``get_active_subnet`` extracts it (for measuring latency; pretrained weights are
    OFA's, not shipped here). Input: (n, 3, r, r)."""
    from torch import nn

    from hwnas.space.ofa_resnet50 import make_divisible
    from hwnas.supernet.static import MBConv, SqueezeExcite

    space = OFAMobileNetV3Space()
    vector = space.encode(arch) if isinstance(arch, dict) else arch
    v = space.canonicalize(space.validate(vector)[None, :])[0]

    def conv_bn(cin: int, cout: int, k: int, stride: int, act: str, groups: int = 1) -> Any:
        acts = {"relu": [nn.ReLU(inplace=True)], "hswish": [nn.Hardswish(inplace=True)]}
        conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)
        return nn.Sequential(conv, nn.BatchNorm2d(cout), *acts.get(act, []))

    first = MBConv(
        None, conv_bn(OFA_STEM, OFA_STEM, 3, 1, "relu", OFA_STEM), None,
        conv_bn(OFA_STEM, OFA_STEM, 1, 1, "none"), residual=True,
    )  # fmt: skip
    layers: list[Any] = [conv_bn(3, OFA_STEM, 3, 2, "hswish"), first]
    cin = OFA_STEM
    for s, (width, stride, se, hs) in enumerate(OFA_STAGES):
        act = "hswish" if hs else "relu"
        for b in range(OFA_D[v[2 * N_BLOCKS + s]]):
            slot = s * MAX_DEPTH + b
            k, e = OFA_KS[v[slot]], OFA_E[v[N_BLOCKS + slot]]
            st = stride if b == 0 else 1
            mid = make_divisible(round(cin * e))
            layers.append(
                MBConv(
                    conv_bn(cin, mid, 1, 1, act),
                    conv_bn(mid, mid, k, st, act, groups=mid),
                    SqueezeExcite(mid, make_divisible(mid // 4)) if se else None,
                    conv_bn(mid, width, 1, 1, "none"),
                    residual=st == 1 and cin == width,
                )
            )
            cin = width
    layers += [
        conv_bn(cin, OFA_FINAL_EXPAND, 1, 1, "hswish"),
        nn.AdaptiveAvgPool2d(1),
        nn.Conv2d(OFA_FINAL_EXPAND, OFA_FEATURE_MIX, 1, bias=False),
        nn.Hardswish(inplace=True),
        nn.Flatten(),
        nn.Linear(OFA_FEATURE_MIX, num_classes),
    ]
    return nn.Sequential(*layers)
