"""Elastic (weight-sharing) layers: each holds the largest weights and runs a slice.

Every layer derives from :class:`ElasticModule` and can ``export()`` its active
configuration as plain ``torch.nn`` modules with the sliced weights copied.

* channels: first-k slicing (output channels set explicitly, input channels taken from
  the incoming tensor);
* kernel size: the centre ``k x k`` of the largest kernel, optionally passed through
  OFA's learnable kernel-transformation matrices (one ``k^2 x k^2`` matrix per smaller
  kernel, shared by all channels, initialised to the identity);
* batch norm slices its affine parameters and running statistics;
* squeeze-and-excitation slices to the active expanded width (mid = make_divisible(c/4));
* MBConv blocks have elastic expand ratio, kernel size and output width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.space.mbv3_ramnas import make_divisible
from hwnas.supernet.static import MBConv, SqueezeExcite, make_act


class ElasticModule(nn.Module):
    """Marker base class: a layer whose active shape is a slice of its full shape."""

    def export(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError


def _act(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "relu":
        return F.relu(x)
    if name == "hswish":
        return F.hardswish(x)
    return x


class ElasticConv2d(ElasticModule):
    """Conv with elastic output channels, input channels (from the input) and kernel size.

    ``depthwise=True`` makes a depthwise conv whose channel count follows the input.
    """

    def __init__(
        self,
        max_in: int,
        max_out: int,
        kernel_sizes: tuple[int, ...] | int = 1,
        stride: int = 1,
        depthwise: bool = False,
        bias: bool = False,
        kernel_transform: bool = False,
    ) -> None:
        super().__init__()
        ks = (kernel_sizes,) if isinstance(kernel_sizes, int) else tuple(kernel_sizes)
        self.kernel_sizes = tuple(sorted(ks))
        self.max_k = self.kernel_sizes[-1]
        self.max_in, self.max_out = max_in, max_out
        self.stride = stride
        self.depthwise = depthwise
        if depthwise and max_in != max_out:
            raise ValueError("depthwise conv needs max_in == max_out")
        in_per_group = 1 if depthwise else max_in
        self.weight = nn.Parameter(torch.empty(max_out, in_per_group, self.max_k, self.max_k))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.bias = nn.Parameter(torch.zeros(max_out)) if bias else None
        self.kernel_transform = kernel_transform and len(self.kernel_sizes) > 1
        if self.kernel_transform:
            # one matrix per transition k_big -> k_small (OFA: 7->5, 5->3)
            self.transforms = nn.ParameterDict(
                {
                    f"{big}to{small}": nn.Parameter(torch.eye(small * small))
                    for big, small in zip(
                        self.kernel_sizes[::-1][:-1], self.kernel_sizes[::-1][1:], strict=True
                    )
                }
            )
        self.active_out = max_out
        self.active_k = self.max_k

    def kernel_weight(self, out: int, inp: int, k: int) -> torch.Tensor:
        """The active weight tensor (out, in_per_group, k, k)."""
        w = self.weight[:out, :inp] if not self.depthwise else self.weight[:out]
        if k == self.max_k:
            return w
        if not self.kernel_transform:
            s = (self.max_k - k) // 2
            return w[:, :, s : s + k, s : s + k]
        cur_k = self.max_k
        for small in self.kernel_sizes[::-1][1:]:
            if small < k:
                break
            s = (cur_k - small) // 2
            w = w[:, :, s : s + small, s : s + small]
            shape = w.shape
            w = F.linear(w.reshape(-1, small * small), self.transforms[f"{cur_k}to{small}"])
            w = w.reshape(shape)
            cur_k = small
        return w

    def _shapes(self, in_ch: int) -> tuple[int, int]:
        out = in_ch if self.depthwise else self.active_out
        return out, in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, inp = self._shapes(x.shape[1])
        k = self.active_k
        w = self.kernel_weight(out, inp, k)
        b = None if self.bias is None else self.bias[:out]
        return F.conv2d(x, w, b, self.stride, k // 2, 1, out if self.depthwise else 1)

    def export_with_input(self, in_ch: int) -> nn.Conv2d:
        out, inp = self._shapes(in_ch)
        k = self.active_k
        conv = nn.Conv2d(
            inp,
            out,
            k,
            self.stride,
            k // 2,
            groups=out if self.depthwise else 1,
            bias=self.bias is not None,
        )
        with torch.no_grad():
            conv.weight.copy_(self.kernel_weight(out, inp, k))
            if self.bias is not None:
                conv.bias.copy_(self.bias[:out])
        return conv


class ElasticBatchNorm2d(ElasticModule):
    """BatchNorm over the first ``C`` channels (C from the input); slices running stats."""

    def __init__(self, max_c: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(max_c, momentum=momentum, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        bn = self.bn
        if c == bn.num_features:
            return bn(x)
        use_batch = self.training or not bn.track_running_stats
        momentum = 0.0
        if self.training and bn.track_running_stats:
            bn.num_batches_tracked.add_(1)
            # momentum None: cumulative moving average, as nn.BatchNorm2d does
            momentum = (
                bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
            )
        return F.batch_norm(
            x,
            bn.running_mean[:c],
            bn.running_var[:c],
            bn.weight[:c],
            bn.bias[:c],
            use_batch,
            momentum,
            bn.eps,
        )

    def export_with_input(self, c: int) -> nn.BatchNorm2d:
        src = self.bn
        bn = nn.BatchNorm2d(c, eps=src.eps, momentum=src.momentum)
        with torch.no_grad():
            bn.weight.copy_(src.weight[:c])
            bn.bias.copy_(src.bias[:c])
            bn.running_mean.copy_(src.running_mean[:c])
            bn.running_var.copy_(src.running_var[:c])
            bn.num_batches_tracked.copy_(src.num_batches_tracked)
        return bn


class ElasticLinear(ElasticModule):
    """Linear layer with elastic input features (from the input), fixed outputs."""

    def __init__(self, max_in: int, out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(max_in, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.linear.weight[:, : x.shape[1]], self.linear.bias)

    def export_with_input(self, in_f: int) -> nn.Linear:
        lin = nn.Linear(in_f, self.linear.out_features)
        with torch.no_grad():
            lin.weight.copy_(self.linear.weight[:, :in_f])
            lin.bias.copy_(self.linear.bias)
        return lin


class ElasticConvBnAct(ElasticModule):
    """Conv (elastic out/in/kernel) + optional elastic BN + activation."""

    def __init__(
        self,
        max_in: int,
        max_out: int,
        kernel_sizes: tuple[int, ...] | int = 1,
        stride: int = 1,
        act: str = "relu",
        depthwise: bool = False,
        use_bn: bool = True,
        bias: bool = False,
        kernel_transform: bool = False,
    ) -> None:
        super().__init__()
        self.conv = ElasticConv2d(
            max_in, max_out, kernel_sizes, stride, depthwise, bias, kernel_transform
        )
        self.bn = ElasticBatchNorm2d(max_out) if use_bn else None
        self.act = act

    @property
    def active_out(self) -> int:
        return self.conv.active_out

    @active_out.setter
    def active_out(self, v: int) -> None:
        self.conv.active_out = v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.bn is not None:
            y = self.bn(y)
        return _act(self.act, y)

    def export_with_input(self, in_ch: int) -> nn.Sequential:
        conv = self.conv.export_with_input(in_ch)
        layers: list[nn.Module] = [conv]
        if self.bn is not None:
            layers.append(self.bn.export_with_input(conv.out_channels))
        layers.append(make_act(self.act))
        return nn.Sequential(*layers)


class ElasticSE(ElasticModule):
    """Squeeze-and-excitation over the active channels; mid = make_divisible(c / r, 8)."""

    def __init__(self, max_c: int, reduction: int = 4) -> None:
        super().__init__()
        self.reduction = reduction
        max_mid = make_divisible(max_c / reduction, 8)
        self.reduce = nn.Conv2d(max_c, max_mid, 1, bias=True)
        self.expand = nn.Conv2d(max_mid, max_c, 1, bias=True)

    def mid(self, c: int) -> int:
        return make_divisible(c / self.reduction, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        m = self.mid(c)
        s = x.mean((2, 3), keepdim=True)
        s = F.conv2d(s, self.reduce.weight[:m, :c], self.reduce.bias[:m])
        s = F.relu(s)
        s = F.conv2d(s, self.expand.weight[:c, :m], self.expand.bias[:c])
        return x * F.hardsigmoid(s)

    def export_with_input(self, c: int) -> SqueezeExcite:
        m = self.mid(c)
        se = SqueezeExcite(c, m)
        with torch.no_grad():
            se.reduce.weight.copy_(self.reduce.weight[:m, :c])
            se.reduce.bias.copy_(self.reduce.bias[:m])
            se.expand.weight.copy_(self.expand.weight[:c, :m])
            se.expand.bias.copy_(self.expand.bias[:c])
        return se


class ElasticMBConv(ElasticModule):
    """Inverted residual block with elastic kernel, expand ratio and output width.

    ``residual`` blocks (stride 1, in == out by construction) add their input. With
    ``max(expands) == 1`` there is no expansion conv (MobileNetV3's first block).
    """

    def __init__(
        self,
        max_in: int,
        max_out: int,
        kernel_sizes: tuple[int, ...],
        expands: tuple[int, ...],
        stride: int,
        se: bool,
        act: str,
        residual: bool,
        kernel_transform: bool = False,
        se_reduction: int = 4,
    ) -> None:
        super().__init__()
        self.expands = tuple(sorted(expands))
        self.kernel_sizes = tuple(sorted(kernel_sizes))
        self.max_in, self.max_out = max_in, max_out
        self.residual = residual
        max_mid = max_in * self.expands[-1]
        self.has_expand = self.expands[-1] != 1
        self.expand = ElasticConvBnAct(max_in, max_mid, 1, 1, act) if self.has_expand else None
        self.depthwise = ElasticConvBnAct(
            max_mid,
            max_mid,
            self.kernel_sizes,
            stride,
            act,
            depthwise=True,
            kernel_transform=kernel_transform,
        )
        self.se = ElasticSE(max_mid, se_reduction) if se else None
        self.project = ElasticConvBnAct(max_mid, max_out, 1, 1, "none")
        self.active_expand = self.expands[-1]
        self.active_kernel = self.kernel_sizes[-1]
        self.active_out = max_out

    def set_active(self, out: int, kernel: int, expand: int) -> None:
        self.active_out = out
        self.active_kernel = kernel
        self.active_expand = expand

    def _prepare(self, in_ch: int) -> None:
        if self.expand is not None:
            self.expand.active_out = in_ch * self.active_expand
        self.depthwise.conv.active_k = self.active_kernel
        self.project.active_out = self.active_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._prepare(x.shape[1])
        y = x if self.expand is None else self.expand(x)
        y = self.depthwise(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.residual else y

    def export_with_input(self, in_ch: int) -> MBConv:
        self._prepare(in_ch)
        mid = in_ch * self.active_expand if self.expand is not None else in_ch
        return MBConv(
            self.expand.export_with_input(in_ch) if self.expand is not None else None,
            self.depthwise.export_with_input(mid),
            self.se.export_with_input(mid) if self.se is not None else None,
            self.project.export_with_input(mid),
            self.residual,
        )
