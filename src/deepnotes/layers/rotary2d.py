"""2-D axial rotary positions (RoPE on image grids; Su et al. 2021, extended to two axes as in
MoonViT, Kimi-VL report sec. 2.1, and Qwen2-VL's M-RoPE).

A patch at grid position (r, c) rotates the channel pairs of q and k. With head dim K, the
K/2 channel pairs split evenly between the axes: pair 2j turns by c * f_j, pair 2j + 1 by
r * f_j, with f_j = base^(-4j / K) for j = 0 .. K/4 - 1 (the 1-D frequencies of a K/2-dim
RoPE, shared by both axes). Pairs use the "rotate half" layout: channel i goes with i + K/2.

Because each pair is a plain 1-D RoPE on one coordinate, q_(r,c) . k_(r',c') depends on the
positions only through (r - r', c - c').
"""

from __future__ import annotations

import torch
from torch import nn


def grid_positions(h: int, w: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column index of each cell of an h x w grid in raster order: two [h w] longs."""
    rows = torch.arange(h, device=device).repeat_interleave(w)
    cols = torch.arange(w, device=device).repeat(h)
    return rows, cols


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the last dim: pairs channel i with i + K/2."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


class Rotary2D(nn.Module):
    """Axial 2-D RoPE for head dim K (a multiple of 4).

    `cos_sin(rows, cols)` builds the tables once per packed sequence; `apply(x, cos, sin)`
    rotates x: [..., N, K] with cos, sin: [N, K].
    """

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"2-D rotary needs a head dim divisible by 4, got {head_dim}")
        self.head_dim = head_dim
        half = head_dim // 2  # channels per axis
        inv_freq = base ** (-torch.arange(0, half, 2, dtype=torch.float64) / half)  # [K/4]
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # fp64; cast on use

    def angles(
        self, rows: torch.Tensor, cols: torch.Tensor, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """rows, cols: [N] -> angles [N, K/2]; pair 2j uses the column, 2j + 1 the row."""
        if rows.shape != cols.shape or rows.dim() != 1:
            raise ValueError(
                f"Rotary2D: rows and cols must be equal 1-D tensors, got {tuple(rows.shape)} "
                f"and {tuple(cols.shape)}"
            )
        f = self.inv_freq.to(rows.device, dtype)
        ang_c = cols.to(dtype)[:, None] * f  # [N, K/4]
        ang_r = rows.to(dtype)[:, None] * f
        return torch.stack([ang_c, ang_r], dim=-1).flatten(1)  # interleave: c0 r0 c1 r1 ...

    def cos_sin(
        self, rows: torch.Tensor, cols: torch.Tensor, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """rows, cols: [N] -> cos, sin: [N, K] in dtype (fp32 default, fp64 for tests)."""
        a = self.angles(rows, cols, dtype)
        a = torch.cat([a, a], dim=-1)
        return a.cos(), a.sin()

    @staticmethod
    def apply(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x: [..., N, K] -> rotated, same shape and dtype (computed in at least fp32)."""
        ct = torch.promote_types(x.dtype, torch.float32)
        xf = x.to(ct)
        out = xf * cos.to(ct) + rotate_half(xf) * sin.to(ct)
        return out.to(x.dtype)

    def forward(self, x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """x: [..., N, K], rows, cols: [N] -> x rotated by its grid positions."""
        cos, sin = self.cos_sin(rows, cols, torch.promote_types(x.dtype, torch.float32))
        return self.apply(x, cos, sin)
