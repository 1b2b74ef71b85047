"""Two-stream networks (Simonyan & Zisserman 2014): appearance and motion, fused late.

- spatial stream: a 2D CNN on one RGB frame [B, 3, H, W];
- temporal stream: a 2D CNN on L stacked optical-flow fields, x and y interleaved as
  2L input channels [B, 2L, H, W] (the paper's "optical flow stacking", L = 10);
- fusion: the average of the two streams' softmax scores (the paper's simplest fusion), or a
  learned linear layer on the concatenated scores (the paper used a linear SVM on them).
Both streams reuse the small `VideoResNet` at one frame (T = 1).
"""

from __future__ import annotations

import torch
from torch import nn

from deepnotes.models.video.resnet import VideoResNet, small


def stream(in_channels: int, n_classes: int, width: int = 16) -> VideoResNet:
    """A single-image 2D CNN: x [B, in_channels, H, W] via `image_logits`."""
    return VideoResNet(small("tsn", n_classes, width, in_channels=in_channels), n_segments=1)


def image_logits(net: VideoResNet, x: torch.Tensor) -> torch.Tensor:
    """x: [B, C, H, W] -> logits [B, K]."""
    return net(x[:, None])


def stack_flow(flow: torch.Tensor) -> torch.Tensor:
    """flow: [B, L, 2, H, W] -> [B, 2L, H, W] as (x_1, y_1, x_2, y_2, ...)."""
    if flow.dim() != 5 or flow.shape[2] != 2:
        raise ValueError(f"flow must be [B, L, 2, H, W], got {tuple(flow.shape)}")
    return flow.flatten(1, 2)


class LateFusion(nn.Module):
    """Learned fusion: p_spatial, p_temporal [B, K] (softmax scores) -> logits [B, K]."""

    def __init__(self, n_classes: int):
        super().__init__()
        self.fc = nn.Linear(2 * n_classes, n_classes)

    def forward(self, p_spatial: torch.Tensor, p_temporal: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([p_spatial, p_temporal], -1))


def average_fusion(p_spatial: torch.Tensor, p_temporal: torch.Tensor) -> torch.Tensor:
    """The paper's averaging of class scores: [B, K] x 2 -> [B, K]."""
    return (p_spatial + p_temporal) / 2
