"""The latent-diffusion UNet (Rombach et al. 2022, sec. 3.3): eps_theta(z_t, t, c).

A UNet (Ronneberger et al. 2015) over latents z_t: [B, C, h, w]:
- the diffusion step t enters every ResBlock through a sinusoidal embedding and an MLP;
- the condition c: [B, S, Dc] (a text or class-name sequence) enters through transformer
  blocks after the ResBlocks of the chosen resolutions: self-attention over the h*w
  positions, cross-attention from positions (queries) to the condition tokens (keys and
  values), then a GEGLU feed-forward, each pre-normed and residual (the paper's eq. 3:
  Attention(Q, K, V) with Q = W_Q phi(z_t), K = W_K tau(c), V = W_V tau(c));
- the encoder path saves every intermediate map and the decoder path concatenates them back
  (skip connections) before each of its ResBlocks.

All attention goes through `deepnotes.layers.attention.MultiHeadAttention`. Module names follow
Stable Diffusion's layout so that `deepnotes.models.loaders.diffusers` maps checkpoints onto it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.layers.attention import MultiHeadAttention
from deepnotes.layers.ffn import GLUFFN
from deepnotes.models.diffusion.blocks import Downsample, ResBlock, Upsample, timestep_embedding


@dataclass
class UNetConfig:
    in_channels: int = 4  # latent channels in
    out_channels: int = 4  # predicted noise channels (= in_channels for eps-prediction)
    block_channels: tuple[int, ...] = (32, 64)  # width per resolution (SD v1: 320/640/1280/1280)
    attn_blocks: tuple[bool, ...] = (True, False)  # transformer blocks at that resolution?
    layers_per_block: int = 2  # ResBlocks per resolution on the way down (one more going up)
    n_heads: int | tuple[int, ...] = 4  # attention heads, one number or one per resolution
    d_context: int = 32  # width of the condition sequence (SD v1: CLIP's 768)
    transformer_depth: int = 1  # transformer blocks after each ResBlock where attn is on
    norm_groups: int = 8  # GroupNorm groups (SD: 32)
    norm_eps: float = 1e-5  # GroupNorm eps of ResBlocks and the output norm
    linear_proj: bool = False  # Linear instead of 1x1 conv around the transformer (SD v2)
    flip_sin_to_cos: bool = True  # cosines first in the step embedding (SD's order)
    freq_shift: float = 0.0  # frequency denominator shift of the step embedding (SD: 0)
    dropout: float = 0.0  # dropout inside ResBlocks

    def __post_init__(self):
        self.block_channels = tuple(self.block_channels)
        self.attn_blocks = tuple(self.attn_blocks)
        if len(self.attn_blocks) != len(self.block_channels):
            raise ValueError(
                f"attn_blocks ({len(self.attn_blocks)}) must give one flag per resolution "
                f"({len(self.block_channels)})"
            )
        heads = self.heads()
        for c, h in zip(self.block_channels, heads, strict=True):
            if c % h:
                raise ValueError(f"block width {c} not divisible by {h} heads")
            if c % self.norm_groups:
                raise ValueError(f"block width {c} not divisible by {self.norm_groups} groups")

    def heads(self) -> tuple[int, ...]:
        if isinstance(self.n_heads, int):
            return (self.n_heads,) * len(self.block_channels)
        if len(self.n_heads) != len(self.block_channels):
            raise ValueError("n_heads must be an int or one entry per resolution")
        return tuple(self.n_heads)


class TransformerBlock(nn.Module):
    """x: [B, N, D], context: [B, S, Dc] -> [B, N, D].

    x += SelfAttn(LN(x)); x += CrossAttn(LN(x), context); x += GEGLU(LN(x)).
    q/k/v projections carry no bias and the output projection does, as in SD.
    """

    def __init__(self, d: int, n_heads: int, d_context: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.attn1 = _attention(d, n_heads, d)
        self.norm2 = nn.LayerNorm(d)
        self.attn2 = _attention(d, n_heads, d_context)
        self.norm3 = nn.LayerNorm(d)
        self.ff = GLUFFN(d, 4 * d, "geglu", bias=True)

    def forward(self, x, context, context_mask=None):
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context, key_mask=context_mask)
        return x + self.ff(self.norm3(x))


def _attention(d: int, n_heads: int, d_context: int) -> MultiHeadAttention:
    # SD's attention has bias-free q/k/v projections but a biased output projection, while
    # MultiHeadAttention's `bias` covers all four: swap in a biased out_proj (same shape).
    # impl "sdpa": on an H200 it beats our Triton kernel inside SD's UNet (1.03x vs 0.91x of
    # diffusers for a training step, benchmarks/ldm-unet-h200.json)
    attn = MultiHeadAttention(d, n_heads, d_context=d_context, bias=False, impl="sdpa")
    attn.out_proj = nn.Linear(d, d, bias=True)
    return attn


class SpatialTransformer(nn.Module):
    """x: [B, C, H, W], context: [B, S, Dc] -> [B, C, H, W].

    GroupNorm, project in, treat the H*W positions as a sequence for `depth` TransformerBlocks,
    project out, add the input back.
    """

    def __init__(self, c: int, n_heads: int, d_context: int, cfg: UNetConfig):
        super().__init__()
        self.linear = cfg.linear_proj
        self.norm = nn.GroupNorm(cfg.norm_groups, c, eps=1e-6)
        self.proj_in = nn.Linear(c, c) if self.linear else nn.Conv2d(c, c, 1)
        self.blocks = nn.ModuleList(
            TransformerBlock(c, n_heads, d_context) for _ in range(cfg.transformer_depth)
        )
        self.proj_out = nn.Linear(c, c) if self.linear else nn.Conv2d(c, c, 1)

    def forward(self, x, context, context_mask=None):
        B, C, H, W = x.shape
        h = self.norm(x)
        if not self.linear:
            h = self.proj_in(h)
        h = h.flatten(2).transpose(1, 2)  # [B, H*W, C]
        if self.linear:
            h = self.proj_in(h)
        for blk in self.blocks:
            h = blk(h, context, context_mask)
        if self.linear:
            h = self.proj_out(h)
        h = h.transpose(1, 2).reshape(B, C, H, W)
        if not self.linear:
            h = self.proj_out(h)
        return x + h


class Level(nn.Module):
    """One resolution of the UNet: ResBlocks, each optionally followed by a SpatialTransformer,
    then an optional resampler (`down` or `up`)."""

    def __init__(self):
        super().__init__()
        self.res = nn.ModuleList()
        self.attn = nn.ModuleList()
        self.down: Downsample | None = None
        self.up: Upsample | None = None


class UNet(nn.Module):
    """eps_theta(z_t, t, c). x: [B, Cin, H, W], t: [B] or scalar, context: [B, S, Dc]
    (context_mask: [B, S] bool, True = a real token) -> [B, Cout, H, W]."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        ch, heads, n = cfg.block_channels, cfg.heads(), len(cfg.block_channels)
        d_time = 4 * ch[0]

        def res(ci, co):
            return ResBlock(
                ci, co, d_time=d_time, groups=cfg.norm_groups, eps=cfg.norm_eps, dropout=cfg.dropout
            )

        def attn(c, h):
            return SpatialTransformer(c, h, cfg.d_context, cfg)

        self.time_mlp = nn.Sequential(
            nn.Linear(ch[0], d_time), nn.SiLU(), nn.Linear(d_time, d_time)
        )
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        skips = [ch[0]]  # channels of every saved map, popped by the decoder
        self.down = nn.ModuleList()
        c = ch[0]
        for i in range(n):
            lvl = Level()
            for _ in range(cfg.layers_per_block):
                lvl.res.append(res(c, ch[i]))
                c = ch[i]
                if cfg.attn_blocks[i]:
                    lvl.attn.append(attn(c, heads[i]))
                skips.append(c)
            if i < n - 1:
                lvl.down = Downsample(c)
                skips.append(c)
            self.down.append(lvl)
        self.mid_res1 = res(c, c)
        self.mid_attn = attn(c, heads[-1])
        self.mid_res2 = res(c, c)
        self.up = nn.ModuleList()
        for i in reversed(range(n)):
            lvl = Level()
            for _ in range(cfg.layers_per_block + 1):
                lvl.res.append(res(c + skips.pop(), ch[i]))
                c = ch[i]
                if cfg.attn_blocks[i]:
                    lvl.attn.append(attn(c, heads[i]))
            if i > 0:
                lvl.up = Upsample(c)
            self.up.append(lvl)
        self.norm_out = nn.GroupNorm(cfg.norm_groups, c, eps=cfg.norm_eps)
        self.conv_out = nn.Conv2d(c, cfg.out_channels, 3, padding=1)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor | float,
        context: torch.Tensor,
        context_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        cfg = self.cfg
        if x.ndim != 4 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"x must be [B, {cfg.in_channels}, H, W], got {tuple(x.shape)}")
        if context.ndim != 3 or context.shape[0] != x.shape[0] or context.shape[2] != cfg.d_context:
            raise ValueError(
                f"context must be [B={x.shape[0]}, S, {cfg.d_context}], got {tuple(context.shape)}"
            )
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        temb = timestep_embedding(
            t, cfg.block_channels[0], flip_sin_to_cos=cfg.flip_sin_to_cos, freq_shift=cfg.freq_shift
        ).to(x.dtype)
        temb = self.time_mlp(temb)

        h = self.conv_in(x)
        saved = [h]
        for lvl in self.down:
            for j, rb in enumerate(lvl.res):
                h = rb(h, temb)
                if lvl.attn:
                    h = lvl.attn[j](h, context, context_mask)
                saved.append(h)
            if lvl.down is not None:
                h = lvl.down(h)
                saved.append(h)
        h = self.mid_res1(h, temb)
        h = self.mid_attn(h, context, context_mask)
        h = self.mid_res2(h, temb)
        for lvl in self.up:
            for j, rb in enumerate(lvl.res):
                h = rb(torch.cat([h, saved.pop()], dim=1), temb)
                if lvl.attn:
                    h = lvl.attn[j](h, context, context_mask)
            if lvl.up is not None:
                h = lvl.up(h, size=tuple(saved[-1].shape[-2:]))
        return self.conv_out(F.silu(self.norm_out(h)))
