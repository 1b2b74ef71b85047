"""Position encodings: sinusoidal, learned, and rotary (RoPE, Su et al. 2021)."""

from __future__ import annotations

import torch
from torch import nn


def sinusoidal_table(n_pos: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """[n_pos, dim] table of Vaswani et al. 2017, eq. in sec. 3.5: sin on even, cos on odd dims."""
    pos = torch.arange(n_pos, dtype=torch.float64)[:, None]
    i = torch.arange(0, dim, 2, dtype=torch.float64)
    angle = pos / base ** (i / dim)
    table = torch.zeros(n_pos, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle[:, : dim // 2])
    return table.float()


class RotaryEmbedding(nn.Module):
    """Rotate pairs of channels of q and k by position-dependent angles.

    For channel pair i at position t the angle is t * base^(-2i/K), so q_t . k_s depends on
    t - s only. Uses the "rotate half" pairing (i, i + K/2).
    """

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embedding needs an even head dim, got {head_dim}")
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        self.register_buffer("inv_freq", inv_freq.float(), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """x: [B, H, T, K] -> same shape, positions offset .. offset + T - 1."""
        T = x.shape[-2]
        t = torch.arange(offset, offset + T, device=x.device, dtype=torch.float32)
        freqs = torch.outer(t, self.inv_freq.to(x.device))  # [T, K/2]
        cos = torch.cat([freqs.cos(), freqs.cos()], -1).to(x.dtype)
        sin = torch.cat([freqs.sin(), freqs.sin()], -1).to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        rotated = torch.cat([-x2, x1], dim=-1)
        return x * cos + rotated * sin
