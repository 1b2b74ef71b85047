"""A small ResNet (He et al. 2016) for DETR's backbone, weight-compatible with transformers'.

The stem is a 7×7/2 conv + BN + ReLU and a 3×3/2 max-pool; then stages of basic (two 3×3)
or bottleneck (1×1 → 3×3 → 1×1, width/4 inside) blocks, each stage after the first halving
the grid. A 1×1 conv + BN projects the shortcut when the shape changes. The layout follows
transformers' `ResNetBackbone` (stride in the 3×3 conv, as in torchvision's "ResNet v1.5"), so
`loaders.detr` maps its keys one to one.

DETR freezes the backbone's batch-norm statistics and affine parameters (`frozen_bn`); to
train from scratch use ordinary BatchNorm (`frozen_bn=False`). In eval mode both compute
x · γ/√(σ² + 1e-5) + (β - μ γ/√(σ² + 1e-5)).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class ResNetConfig:
    in_chans: int = 3  # input channels
    stem_width: int = 64  # channels of the 7×7 stem
    widths: tuple[int, ...] = (256, 512, 1024, 2048)  # output channels of each stage
    depths: tuple[int, ...] = (3, 4, 6, 3)  # blocks per stage (ResNet-50)
    bottleneck: bool = True  # bottleneck (1×1-3×3-1×1) blocks, else basic (3×3-3×3)
    frozen_bn: bool = True  # DETR's frozen batch norm (statistics and affine fixed)
    train_from_stage: int = 1  # stem and stages before this get no gradient (DETR: 1; 0 = all)

    def __post_init__(self):
        if len(self.widths) != len(self.depths) or not self.depths:
            raise ValueError(f"widths {self.widths} and depths {self.depths} must match, non-empty")


def resnet50(**kw) -> ResNetConfig:
    return ResNetConfig(**kw)


def resnet18(**kw) -> ResNetConfig:
    base = dict(widths=(64, 128, 256, 512), depths=(2, 2, 2, 2), bottleneck=False)
    return ResNetConfig(**{**base, **kw})


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters (all buffers)."""

    def __init__(self, n: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        for name, init in (
            ("weight", 1.0),
            ("bias", 0.0),
            ("running_mean", 0.0),
            ("running_var", 1.0),
        ):
            self.register_buffer(name, torch.full((n,), init))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kw):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kw)

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale[:, None, None] + shift[:, None, None]


def _norm(n: int, frozen: bool) -> nn.Module:
    return FrozenBatchNorm2d(n) if frozen else nn.BatchNorm2d(n)


class ConvBN(nn.Module):
    """conv(k, stride, padding k//2, no bias) -> BN -> optional ReLU."""

    def __init__(self, cin, cout, k, stride=1, relu=True, frozen=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
        self.bn = _norm(cout, frozen)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class Block(nn.Module):
    """Residual block: relu(convs(x) + shortcut(x))."""

    def __init__(self, cin: int, cout: int, stride: int, bottleneck: bool, frozen: bool):
        super().__init__()
        if bottleneck:
            mid = cout // 4
            self.convs = nn.Sequential(
                ConvBN(cin, mid, 1, frozen=frozen),
                ConvBN(mid, mid, 3, stride, frozen=frozen),
                ConvBN(mid, cout, 1, relu=False, frozen=frozen),
            )
        else:
            self.convs = nn.Sequential(
                ConvBN(cin, cout, 3, stride, frozen=frozen),
                ConvBN(cout, cout, 3, relu=False, frozen=frozen),
            )
        need = cin != cout or stride != 1
        self.shortcut = ConvBN(cin, cout, 1, stride, relu=False, frozen=frozen) if need else None

    def forward(self, x: Tensor) -> Tensor:
        res = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.convs(x) + res)


class ResNet(nn.Module):
    """images [B, C, H, W] -> last stage's features [B, widths[-1], H/32, W/32] (4 stages)."""

    def __init__(self, cfg: ResNetConfig):
        super().__init__()
        self.cfg = cfg
        self.stem = ConvBN(cfg.in_chans, cfg.stem_width, 7, 2, frozen=cfg.frozen_bn)
        stages, cin = [], cfg.stem_width
        for i, (w, d) in enumerate(zip(cfg.widths, cfg.depths, strict=True)):
            stride = 1 if i == 0 else 2
            blocks = [
                Block(
                    cin if j == 0 else w, w, stride if j == 0 else 1, cfg.bottleneck, cfg.frozen_bn
                )
                for j in range(d)
            ]
            stages.append(nn.Sequential(*blocks))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.out_channels = cfg.widths[-1]
        self.stride = 4 * 2 ** (len(cfg.widths) - 1)
        # DETR trains only layer2-4 of its ImageNet backbone: the stem and layer1 stay fixed.
        if cfg.train_from_stage > 0:
            for m in [self.stem, *self.stages[: cfg.train_from_stage]]:
                m.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(self.stem(x), 3, 2, 1)
        for s in self.stages:
            x = s(x)
        return x
