"""Kimi-VL's projector: a k x k pixel-shuffle token merge, then an MLP into the LM width
(Kimi-VL report, sec. 2.1: "pixel shuffle ... 2x2 downsampling ... then a two-layer MLP").

Pixel shuffle (here a space-to-depth merge, the inverse of Shi et al. 2016's upsampler): the
features of each k x k block of neighbouring patches are concatenated into one token, so an
h x w grid of D-dim patch features becomes (h/k) x (w/k) tokens of k^2 D dims. Order: merged
tokens in raster order over the merged grid; inside a token the k^2 patches in raster order
((row mod k) k + (col mod k)).

MLP: each patch feature is LayerNorm-ed over its D dims, the k^2 of a block concatenated,
then Linear(k^2 D -> k^2 D) -> GELU -> Linear(k^2 D -> D_lm).
"""

from __future__ import annotations

import torch
from torch import nn


def pixel_shuffle_merge(x: torch.Tensor, grids: torch.Tensor, k: int = 2) -> torch.Tensor:
    """x: [N, D] packed patch features, grids: [n, 2] (h_i, w_i) -> [N / k^2, k^2, D]."""
    out, start = [], 0
    for h, w in grids.tolist():
        if h % k or w % k:
            raise ValueError(f"pixel shuffle: grid {h}x{w} is not a multiple of k = {k}")
        g = x[start : start + h * w].reshape(h // k, k, w // k, k, -1)
        out.append(g.permute(0, 2, 1, 3, 4).reshape((h // k) * (w // k), k * k, -1))
        start += h * w
    if start != x.shape[0]:
        raise ValueError(f"pixel shuffle: grids cover {start} patches, x has {x.shape[0]}")
    return torch.cat(out)


class Projector(nn.Module):
    """features [N, D] + grids -> LM tokens [N / k^2, d_lm]."""

    def __init__(self, d_vision: int, d_lm: int, merge: int = 2, eps: float = 1e-5) -> None:
        super().__init__()
        self.merge = merge
        d_in = d_vision * merge * merge
        self.pre_norm = nn.LayerNorm(d_vision, eps=eps)
        self.in_proj = nn.Linear(d_in, d_in)
        self.act = nn.GELU()
        self.out_proj = nn.Linear(d_in, d_lm)

    def forward(self, x: torch.Tensor, grids: torch.Tensor) -> torch.Tensor:
        merged = self.pre_norm(pixel_shuffle_merge(x, grids, self.merge))  # [M, k^2, D]
        return self.out_proj(self.act(self.in_proj(merged.flatten(1))))

    @staticmethod
    def tokens_per_image(grids: torch.Tensor, merge: int = 2) -> list[int]:
        """LM tokens each image becomes: h w / k^2."""
        return [int(h * w) // (merge * merge) for h, w in grids.tolist()]
