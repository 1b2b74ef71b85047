"""One video ResNet for the 2D-vs-3D comparison: TSN, TSM, R3D and R(2+1)D.

- TSN (Wang et al. 2016): a 2D CNN applied to every frame, class scores averaged over frames
  (the "segmental consensus"). Averaging is order-blind: a clip and its time-reverse score
  the same.
- TSM (Lin et al. 2019): the same 2D CNN with a temporal shift in every block.
- R3D (Tran et al. 2018; C3D-style 3x3x3 kernels in a ResNet): every conv spans time.
- R(2+1)D: each 3x3x3 conv factorised into a 1x3x3 spatial conv and a 3x1x1 temporal conv.

Clips are `[B, T, C, H, W]` everywhere; logits are `[B, n_classes]`.
The reference configurations `r3d_18()` and `tsm_resnet50()` follow torchvision's
`r3d_18` and mit-han-lab's TSM ResNet-50 (400 Kinetics classes) layer for layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deepnotes.video.shift import temporal_shift, uni_temporal_shift


@dataclass
class VideoResNetConfig:
    dims: int = 2  # 2: per-frame 2D convs (TSN/TSM); 3: convs across time (R3D / (2+1)D)
    block: str = "basic"  # "basic" (two 3x3 convs) or "bottleneck" (1x1-3x3-1x1, x4 width)
    layers: tuple[int, ...] = (1, 1, 1)  # blocks per stage
    widths: tuple[int, ...] = (16, 32, 64)  # channels per stage (bottleneck: inner width)
    stem_width: int = 16  # channels after the stem
    stem_kernel: int = 3  # spatial stem kernel (7 in the ImageNet/Kinetics ResNets)
    stem_stride: int = 1  # spatial stem stride (2 in the big ResNets; 1 for 32x32 clips)
    stem_pool: bool = False  # 3x3/2 max-pool after the stem (2D ResNet-50 has one)
    temporal_stride: bool = True  # 3D: stages after the first also halve time (R3D-18 does)
    conv3d: str = "3d"  # 3D only: "3d" (3x3x3) or "2plus1d" (1x3x3 then 3x1x1)
    shift: str = "none"  # 2D only: "none" (TSN), "residual" / "inplace" placement, "online"
    fold_div: int = 8  # 1/fold_div of the channels shift each way (the paper's 1/8)
    in_channels: int = 3  # RGB
    n_classes: int = 12  # output classes
    consensus: str = "avg"  # 2D: how frame scores make a clip score (TSN's average)


def _conv(cfg, cin, cout, k, stride=1, t_stride=1):
    if cfg.dims == 2:
        return nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)
    if k == 1:
        return nn.Conv3d(cin, cout, 1, (t_stride, stride, stride), bias=False)
    if cfg.conv3d == "2plus1d":
        # R(2+1)D: mid width chosen so the pair has the 3x3x3 conv's parameters (Tran 2018)
        mid = (27 * cin * cout) // (9 * cin + 3 * cout)
        return nn.Sequential(
            nn.Conv3d(cin, mid, (1, k, k), (1, stride, stride), (0, k // 2, k // 2), bias=False),
            nn.BatchNorm3d(mid),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid, cout, (3, 1, 1), (t_stride, 1, 1), (1, 0, 0), bias=False),
        )
    return nn.Conv3d(cin, cout, k, (t_stride, stride, stride), k // 2, bias=False)


def _bn(cfg, c):
    return nn.BatchNorm2d(c) if cfg.dims == 2 else nn.BatchNorm3d(c)


class Block(nn.Module):
    """Residual block; with a 2D shift, the shift sits at the start of the branch."""

    def __init__(self, cfg, cin, width, stride, t_stride, n_segments):
        super().__init__()
        self.cfg, self.n_segments = cfg, n_segments
        exp = 4 if cfg.block == "bottleneck" else 1
        cout = width * exp
        if cfg.block == "bottleneck":
            self.branch = nn.Sequential(
                _conv(cfg, cin, width, 1), _bn(cfg, width), nn.ReLU(inplace=True),
                _conv(cfg, width, width, 3, stride, t_stride), _bn(cfg, width),
                nn.ReLU(inplace=True), _conv(cfg, width, cout, 1), _bn(cfg, cout),
            )  # fmt: skip
        else:
            self.branch = nn.Sequential(
                _conv(cfg, cin, width, 3, stride, t_stride), _bn(cfg, width),
                nn.ReLU(inplace=True), _conv(cfg, width, cout, 3), _bn(cfg, cout),
            )  # fmt: skip
        self.short = None
        if stride != 1 or t_stride != 1 or cin != cout:
            self.short = nn.Sequential(_conv(cfg, cin, cout, 1, stride, t_stride), _bn(cfg, cout))
        self.relu = nn.ReLU(inplace=True)

    def _shift(self, x):
        fn = uni_temporal_shift if self.cfg.shift == "online" else temporal_shift
        return fn(x, self.n_segments, self.cfg.fold_div)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        place = self.cfg.shift
        if place == "inplace":  # shift the block input: the identity path is shifted too
            x = self._shift(x)
        y = self.branch(self._shift(x) if place in ("residual", "online") else x)
        return self.relu(y + (x if self.short is None else self.short(x)))


class VideoResNet(nn.Module):
    """clip: [B, T, C, H, W] -> logits [B, n_classes]."""

    def __init__(self, cfg: VideoResNetConfig, n_segments: int):
        super().__init__()
        if cfg.dims not in (2, 3) or cfg.block not in ("basic", "bottleneck"):
            raise ValueError(f"bad dims/block: {cfg.dims}, {cfg.block!r}")
        if cfg.shift not in ("none", "residual", "inplace", "online"):
            raise ValueError(f"shift must be none|residual|inplace|online, got {cfg.shift!r}")
        if cfg.shift != "none" and cfg.dims != 2:
            raise ValueError("the temporal shift belongs to 2D networks (dims=2)")
        if len(cfg.layers) != len(cfg.widths):
            raise ValueError("layers and widths need one entry per stage")
        self.cfg, self.n_segments = cfg, n_segments
        k, s = cfg.stem_kernel, cfg.stem_stride
        if cfg.dims == 2:
            stem = [nn.Conv2d(cfg.in_channels, cfg.stem_width, k, s, k // 2, bias=False)]
        else:  # R3D-18's stem: 3 x k x k, stride 1 in time
            stem = [
                nn.Conv3d(cfg.in_channels, cfg.stem_width, (3, k, k), (1, s, s),
                          (1, k // 2, k // 2), bias=False)
            ]  # fmt: skip
        stem += [_bn(cfg, cfg.stem_width), nn.ReLU(inplace=True)]
        if cfg.stem_pool:
            stem.append(nn.MaxPool2d(3, 2, 1) if cfg.dims == 2 else nn.MaxPool3d((1, 3, 3),
                        (1, 2, 2), (0, 1, 1)))  # fmt: skip
        self.stem = nn.Sequential(*stem)
        blocks, cin = [], cfg.stem_width
        exp = 4 if cfg.block == "bottleneck" else 1
        for i, (n, w) in enumerate(zip(cfg.layers, cfg.widths, strict=True)):
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                t_stride = stride if (cfg.dims == 3 and cfg.temporal_stride) else 1
                blocks.append(Block(cfg, cin, w, stride, t_stride, n_segments))
                cin = w * exp
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, cfg.n_classes)

    def features(self, clip: torch.Tensor) -> torch.Tensor:
        """clip: [B, T, C, H, W] -> pooled features [B, T, D] (2D) or [B, D] (3D)."""
        if clip.dim() != 5 or clip.shape[1] != self.n_segments:
            raise ValueError(f"clip must be [B, T={self.n_segments}, C, H, W], got {clip.shape}")
        b, t = clip.shape[:2]
        if self.cfg.dims == 2:
            h = self.blocks(self.stem(clip.flatten(0, 1)))
            return h.mean((-2, -1)).view(b, t, -1)
        h = self.blocks(self.stem(clip.transpose(1, 2)))
        return h.mean((-3, -2, -1))

    def frame_logits(self, clip: torch.Tensor) -> torch.Tensor:
        """2D only: per-frame logits [B, T, K] (before the consensus)."""
        if self.cfg.dims != 2:
            raise ValueError("frame logits exist only for 2D networks")
        return self.fc(self.features(clip))

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        if self.cfg.dims == 2:
            return self.frame_logits(clip).mean(1)  # TSN/TSM segmental consensus
        return self.fc(self.features(clip))


def small(kind: str, n_classes: int = 12, width: int = 16, **kw) -> VideoResNetConfig:
    """The matched-width CPU models: kind in tsn | tsm | r3d | r2plus1d."""
    base = dict(widths=(width, 2 * width, 4 * width), stem_width=width, n_classes=n_classes)
    kinds = {
        "tsn": dict(dims=2, shift="none"),
        "tsm": dict(dims=2, shift="residual"),
        "r3d": dict(dims=3, conv3d="3d"),
        "r2plus1d": dict(dims=3, conv3d="2plus1d"),
    }
    if kind not in kinds:
        raise ValueError(f"unknown video model {kind!r}; valid: {', '.join(kinds)}")
    return VideoResNetConfig(**{**base, **kinds[kind], **kw})


def r3d_18(n_classes: int = 400) -> VideoResNetConfig:
    """torchvision's r3d_18 (Kinetics-400): 33.4M params, 40.7 GMACs at 16x112x112."""
    return VideoResNetConfig(
        dims=3, block="basic", layers=(2, 2, 2, 2), widths=(64, 128, 256, 512), stem_width=64,
        stem_kernel=7, stem_stride=2, temporal_stride=True, n_classes=n_classes,
    )  # fmt: skip


def tsm_resnet50(n_classes: int = 400) -> VideoResNetConfig:
    """TSM ResNet-50 (Kinetics-400): 24.3M params, 33 GMACs for 8 frames at 224x224."""
    return VideoResNetConfig(
        dims=2, block="bottleneck", layers=(3, 4, 6, 3), widths=(64, 128, 256, 512),
        stem_width=64, stem_kernel=7, stem_stride=2, stem_pool=True, shift="residual",
        n_classes=n_classes,
    )  # fmt: skip
