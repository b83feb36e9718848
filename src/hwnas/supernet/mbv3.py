"""The MobileNetV3 weight-sharing supernet of the RAM-NAS space (and its CIFAR variant).

``MBv3Supernet(space)`` holds the largest network; ``set_active(config)`` selects a
subnet (elastic resolution, stem width, per-stage width and depth, per-block kernel and
expand ratio, MBPool width); ``get_subnet(config)`` returns that subnet as a standalone
``nn.Sequential`` with the sliced weights copied.

Layout: stem conv-BN-hswish; 7 MBConv stages (block 0 of a stage strides and changes
width, later blocks are residual); MBPool = 1x1 expand (6x the last stage width)-BN-
hswish, global average pool, 1x1 conv to ``last`` channels (bias, no BN)-hswish; dropout;
linear classifier.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwnas.errors import HwnasError
from hwnas.space.mbv3_ramnas import MBv3SupernetSpace, space_for
from hwnas.supernet.elastic import (
    ElasticConv2d,
    ElasticConvBnAct,
    ElasticLinear,
    ElasticMBConv,
    ElasticModule,
)
from hwnas.supernet.static import make_act


class MBv3Supernet(ElasticModule):
    """Weight-sharing MobileNetV3 supernet over a :class:`MBv3SupernetSpace`.

    ``resize_input``: inputs whose spatial size differs from the active resolution are
    resized bilinearly (elastic resolution); with ``False`` such inputs are an error.
    """

    def __init__(
        self,
        space: MBv3SupernetSpace | str = "mbv3-cifar",
        num_classes: int = 10,
        in_channels: int = 3,
        dropout: float = 0.0,
        kernel_transform: bool = False,
        resize_input: bool = True,
    ) -> None:
        super().__init__()
        self.space = space_for(space) if isinstance(space, str) else space
        sp = self.space.spec
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.dropout_p = dropout
        self.kernel_transform = kernel_transform
        self.resize_input = resize_input
        self.stem = ElasticConvBnAct(
            in_channels, max(sp.stem_widths), 3, sp.stem_stride, sp.stem_act
        )
        stages = []
        c_in = max(sp.stem_widths)
        for st in sp.stages:
            blocks = []
            for p in range(st.max_depth):
                blocks.append(
                    ElasticMBConv(
                        c_in if p == 0 else max(st.widths),
                        max(st.widths),
                        st.kernels,
                        st.expands,
                        st.stride if p == 0 else 1,
                        st.se,
                        st.act,
                        residual=p > 0,
                        kernel_transform=kernel_transform,
                        se_reduction=sp.se_reduction,
                    )
                )
            stages.append(nn.ModuleList(blocks))
            c_in = max(st.widths)
        self.stages = nn.ModuleList(stages)
        self.final_expand = ElasticConvBnAct(c_in, c_in * sp.final_expand, 1, 1, sp.head_act)
        self.feature_mix = ElasticConv2d(c_in * sp.final_expand, max(sp.last_widths), 1, bias=True)
        self.classifier = ElasticLinear(max(sp.last_widths), num_classes)
        self._init_weights()
        self.config: dict[str, Any] = {}
        self.set_active("max")

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
        # zero-init the last BN of residual blocks (BigNAS): residual blocks start as identity
        for stage in self.stages:
            for block in stage:
                if block.residual and block.project.bn is not None:
                    nn.init.zeros_(block.project.bn.bn.weight)

    # ---- configuration ----------------------------------------------------------------
    def canonical(self, arch: Any) -> dict[str, Any]:
        """Config dict / vector / 'min' / 'max' -> validated canonical config dict."""
        if isinstance(arch, np.ndarray | list | tuple) and not isinstance(arch, dict):
            return self.space.decode(arch)
        return self.space.config(arch)

    def set_active(self, arch: Any) -> dict[str, Any]:
        """Activate a subnet; returns (a copy of) the canonical config. Bad configs ->
        HwnasError."""
        cfg = self.canonical(arch)
        self.stem.active_out = cfg["stem"]
        for stage, sc in zip(self.stages, cfg["stages"], strict=True):
            for p, block in enumerate(stage):
                if p < sc["depth"]:
                    block.set_active(sc["width"], sc["kernel"][p], sc["expand"][p])
        # MBPool: the 1x1 expansion is 6x the *active* last-stage width (Table I), not
        # 6x its largest width
        self.final_expand.active_out = cfg["stages"][-1]["width"] * self.space.spec.final_expand
        self.feature_mix.active_out = cfg["last"]
        self.config = cfg
        return copy.deepcopy(cfg)  # editing it must not change the active subnet

    def sample_config(self, rng: np.random.Generator) -> dict[str, Any]:
        return self.space.decode(self.space.sample(1, rng)[0])

    # ---- forward ------------------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise HwnasError(
                f"{self.space.name}: expected input of shape (N, {self.in_channels}, H, W), "
                f"got {tuple(x.shape)}"
            )
        r = self.config["resolution"]
        if x.shape[2] != x.shape[3]:
            raise HwnasError(f"{self.space.name}: expected square inputs, got {tuple(x.shape)}")
        if x.shape[-1] != r and not self.resize_input:
            raise HwnasError(
                f"{self.space.name}: input is {x.shape[-1]}x{x.shape[-1]} but the active "
                f"resolution is {r} (resize_input=False)"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        r = self.config["resolution"]
        if x.shape[-1] != r:
            x = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False)
        x = self.stem(x)
        for stage, sc in zip(self.stages, self.config["stages"], strict=True):
            for block in stage[: sc["depth"]]:
                x = block(x)
        x = self.final_expand(x)
        x = x.mean((2, 3), keepdim=True)
        x = F.hardswish(self.feature_mix(x))
        x = torch.flatten(x, 1)
        if self.dropout_p > 0:
            x = F.dropout(x, self.dropout_p, self.training)
        return self.classifier(x)

    # ---- extraction ---------------------------------------------------------------------
    def get_subnet(self, arch: Any = None, include_resize: bool = False) -> nn.Sequential:
        """The subnet ``arch`` (default: the active one) as a standalone ``nn.Sequential``.

        Contains only ``torch.nn`` layers and the fixed-shape blocks of
        :mod:`hwnas.supernet.static`; weights (and BN statistics) are copies. With
        ``include_resize`` an ``nn.Upsample`` to the subnet's resolution comes first.
        """
        previous = self.config
        cfg = self.set_active(arch) if arch is not None else self.config
        try:
            layers: list[nn.Module] = []
            if include_resize:
                r = cfg["resolution"]
                layers.append(nn.Upsample(size=(r, r), mode="bilinear", align_corners=False))
            layers.append(self.stem.export_with_input(self.in_channels))
            c = cfg["stem"]
            for stage, sc in zip(self.stages, cfg["stages"], strict=True):
                for block in stage[: sc["depth"]]:
                    layers.append(block.export_with_input(c))
                    c = sc["width"]
            layers.append(self.final_expand.export_with_input(c))
            layers.append(nn.AdaptiveAvgPool2d(1))
            c = self.final_expand.active_out
            layers.append(self.feature_mix.export_with_input(c))
            layers.append(make_act("hswish"))
            layers.append(nn.Flatten(1))
            if self.dropout_p > 0:
                layers.append(nn.Dropout(self.dropout_p))
            layers.append(self.classifier.export_with_input(cfg["last"]))
            sub = nn.Sequential(*layers)
            sub.train(self.training)
            ref = next(self.parameters())
            return sub.to(device=ref.device, dtype=ref.dtype)
        finally:
            if previous:
                self.set_active(previous)

    def export(self) -> nn.Sequential:
        return self.get_subnet()

    def hparams(self) -> dict[str, Any]:
        """Constructor arguments (to rebuild the supernet from a checkpoint)."""
        return {
            "space": self.space.name,
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "dropout": self.dropout_p,
            "kernel_transform": self.kernel_transform,
            "resize_input": self.resize_input,
        }


def build_supernet(space: str = "mbv3-cifar", **kwargs: Any) -> MBv3Supernet:
    """Construct the supernet of a registered MBv3 space (``mbv3-ramnas``/``mbv3-cifar``)."""
    return MBv3Supernet(space, **kwargs)
