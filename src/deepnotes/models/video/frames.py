"""A small per-frame feature extractor shared by the online detectors (OadTR, GRU).

OadTR and TRN read features of a frozen two-stream TSN per chunk; at our scale a tiny conv
net trained with the detector plays that part. It sees one frame at a time, so a frame's
feature never depends on any other frame.
"""

from __future__ import annotations

import torch
from torch import nn


class FrameEncoder(nn.Module):
    """frames: [..., C, H, W] -> features [..., d_out]."""

    def __init__(self, in_channels: int, size: int, d_out: int, width: int = 16):
        super().__init__()
        if size % 4:
            raise ValueError(f"FrameEncoder needs a frame side divisible by 4, got {size}")
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, 2, 1), nn.ReLU(), nn.Flatten(),
            nn.Linear(2 * width * (size // 4) ** 2, d_out), nn.ReLU(),
        )  # fmt: skip
        self.in_shape = (in_channels, size, size)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if tuple(frames.shape[-3:]) != self.in_shape:
            raise ValueError(f"frames must end in {self.in_shape}, got {tuple(frames.shape)}")
        lead = frames.shape[:-3]
        return self.net(frames.reshape(-1, *self.in_shape)).view(*lead, -1)
