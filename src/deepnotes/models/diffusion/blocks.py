"""Convolutional pieces shared by the latent-diffusion UNet and the VAE.

- `timestep_embedding`: the sinusoidal embedding of the diffusion step (DDPM, Ho et al. 2020,
  after the Transformer's positions).
- `ResBlock`: GroupNorm -> SiLU -> conv, twice, with the time embedding added between the
  two convolutions (as a per-channel shift), and a 1x1 shortcut when the width changes.
- `Downsample` / `Upsample`: stride-2 3x3 conv, and nearest x2 followed by a 3x3 conv.

Submodule names follow the layout of Stable Diffusion checkpoints (`norm1`, `conv1`,
`time_emb_proj`, ...) so that the loaders in `deepnotes.models.loaders.diffusers` only rename
the containers, not every leaf.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(
    t: torch.Tensor, dim: int, *, flip_sin_to_cos: bool = True, freq_shift: float = 0.0
) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) diffusion steps.

    t: [B] (any numeric dtype) -> [B, dim] float32. Frequencies are 10000^(-i / (dim/2 - shift))
    for i < dim/2; `flip_sin_to_cos` puts the cosines first (Stable Diffusion's order).
    """
    if t.ndim != 1:
        raise ValueError(f"timesteps must be 1-D [B], got shape {tuple(t.shape)}")
    if dim % 2:
        raise ValueError(f"embedding dim must be even, got {dim}")
    half = dim // 2
    i = torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(-math.log(10000.0) * i / (half - freq_shift))
    arg = t.float()[:, None] * freqs[None, :]
    sin, cos = torch.sin(arg), torch.cos(arg)
    return torch.cat([cos, sin] if flip_sin_to_cos else [sin, cos], dim=-1)


class ResBlock(nn.Module):
    """x: [B, Cin, H, W], temb: [B, Dt] | None -> [B, Cout, H, W].

    h = conv1(silu(norm1(x))) + proj(silu(temb)); h = conv2(dropout(silu(norm2(h))));
    out = shortcut(x) + h. `d_time=None` builds the time-free block the VAE uses.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        *,
        d_time: int | None,
        groups: int = 32,
        eps: float = 1e-5,
        dropout: float = 0.0,
    ):
        super().__init__()
        for c in (c_in, c_out):
            if c % groups:
                raise ValueError(f"channels {c} not divisible by norm groups {groups}")
        self.norm1 = nn.GroupNorm(groups, c_in, eps=eps)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time_emb_proj = nn.Linear(d_time, c_out) if d_time is not None else None
        self.norm2 = nn.GroupNorm(groups, c_out, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time_emb_proj is not None:
            if temb is None:
                raise ValueError("this ResBlock was built with a time embedding; pass temb")
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return skip + h


class Downsample(nn.Module):
    """x: [B, C, H, W] -> [B, C, ceil(H/2), ceil(W/2)] by a stride-2 3x3 conv.

    `asymmetric_pad=True` pads only right/bottom by one pixel and convolves without padding
    (the VAE encoder's choice); otherwise the conv pads one pixel all round (the UNet's).
    """

    def __init__(self, channels: int, *, asymmetric_pad: bool = False):
        super().__init__()
        self.asymmetric_pad = asymmetric_pad
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0 if asymmetric_pad else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.asymmetric_pad:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample(nn.Module):
    """x: [B, C, H, W] -> [B, C, 2H, 2W] (or `size`): nearest-neighbour resize, then 3x3 conv.

    `size` lets the UNet match an odd-sized skip connection.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        if size is None:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        else:
            x = F.interpolate(x, size=size, mode="nearest")
        return self.conv(x)
