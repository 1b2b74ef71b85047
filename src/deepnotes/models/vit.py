"""A plain Vision Transformer (Dosovitskiy et al. 2021), the baseline of the Swin ablation.

Patches (a strided conv) plus learned absolute position embeddings go through pre-norm
blocks of global self-attention and a GELU MLP; the mean of the final normed tokens feeds a
linear classifier (mean pooling instead of a class token, as Swin's head does, so the two
differ only in their token mixing). Global attention costs O((HW)²) per layer, against
Swin's O(HW·M²).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepnotes.layers.attention import MultiHeadAttention


@dataclass
class ViTConfig:
    image_size: int = 224  # input side (position embeddings are fixed to its grid)
    patch_size: int = 16  # patch side
    in_chans: int = 3  # input channels
    dim: int = 384  # token width
    depth: int = 12  # blocks
    heads: int = 6  # attention heads
    mlp_ratio: float = 4.0  # MLP hidden width / dim
    num_classes: int = 1000  # classifier outputs
    drop_path: float = 0.0  # stochastic depth at the last block, linear from 0
    attn_impl: str = "auto"  # kernel for the shared attention: auto | sdpa | math | flash

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by {self.heads} heads")


class Block(nn.Module):
    def __init__(self, cfg: ViTConfig, drop_path: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(cfg.dim), nn.LayerNorm(cfg.dim)
        self.attn = MultiHeadAttention(cfg.dim, cfg.heads, impl=cfg.attn_impl)
        hidden = int(cfg.dim * cfg.mlp_ratio)
        self.fc1, self.fc2 = nn.Linear(cfg.dim, hidden), nn.Linear(hidden, cfg.dim)
        self.p = drop_path

    def _drop(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty(x.shape[0], 1, 1).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self._drop(self.attn(self.norm1(x)))
        return x + self._drop(self.fc2(F.gelu(self.fc1(self.norm2(x)))))


class ViT(nn.Module):
    """images [B, C, H, W] -> logits [B, num_classes]."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = nn.Conv2d(cfg.in_chans, cfg.dim, cfg.patch_size, stride=cfg.patch_size)
        n = (cfg.image_size // cfg.patch_size) ** 2
        self.pos_embed = nn.Parameter(torch.zeros(1, n, cfg.dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        dpr = [cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(Block(cfg, p) for p in dpr)
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        s = self.cfg.image_size
        if x.ndim != 4 or x.shape[1:] != (self.cfg.in_chans, s, s):
            raise ValueError(
                f"expected images [B, {self.cfg.in_chans}, {s}, {s}], got {tuple(x.shape)}"
            )
        x = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x).mean(1))
