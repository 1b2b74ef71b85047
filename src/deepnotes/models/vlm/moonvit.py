"""MoonViT: a ViT that reads images at their native resolution (Kimi-VL report, sec. 2.1).

Each image keeps its own size: it is zero-padded on the right and bottom to a multiple of
patch * merge pixels (so the projector's 2x2 merge tiles its grid), then cut into
p x p patches in raster order. An image of h x w patches gives h w tokens.

Positions, two kinds added together (as in the report):
- absolute: a learned table P of pos_h x pos_w x D, resized bicubically (align_corners=False)
  to each image's h x w grid and added to the patch embeddings. Resizing to pos_h x pos_w
  is the identity, so images of the training grid see the table itself;
- relative: 2-D axial RoPE (`deepnotes.layers.rotary2d`) on q and k in every layer.

Packing (NaViT, Dehghani et al. 2023): the patches of several images are concatenated into
one sequence of N = sum h_i w_i tokens. cu_seqlens = [0, n_1, n_1 + n_2, ...] marks the
images; attention is block-diagonal (an additive bias of 0 inside an image's block and -inf
elsewhere), so no image attends to another and a packed batch equals each image alone.

Blocks are pre-norm: x += Attn(LN(x)); x += MLP(LN(x)); MLP = fc2(gelu_tanh(fc1(x))); a final
LayerNorm follows the last block.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.layers.attention import MultiHeadAttention
from deepnotes.layers.rotary2d import Rotary2D, grid_positions


@dataclass
class MoonViTConfig:
    patch_size: int = 14  # p: pixels per patch side (MoonViT, SigLIP-so400m: 14)
    in_channels: int = 3  # RGB
    d_model: int = 64  # token width (1152 in Kimi-VL; small for CPU runs)
    n_layers: int = 2  # encoder blocks (27 in Kimi-VL)
    n_heads: int = 4  # attention heads; head dim d_model / n_heads must be divisible by 4
    mlp_hidden: int = 256  # MLP width (4304 in Kimi-VL)
    pos_h: int = 64  # rows of the learned position table (64 in Kimi-VL)
    pos_w: int = 64  # columns of the learned position table
    rope_base: float = 10000.0  # RoPE base of the 2-D rotary frequencies
    norm_eps: float = 1e-5  # LayerNorm epsilon
    merge: int = 2  # grids are padded to a multiple of this (the projector's k x k merge)
    pack_tokens: int = 0  # 0 = all images in one packed sequence; > 0 = packs of at most
    # this many patches (an image larger than that gets a pack of its own): a dense
    # block-diagonal bias costs N^2, so bounded packs keep long batches cheap without FA varlen


def pad_image(img: torch.Tensor, multiple: int) -> torch.Tensor:
    """img: [C, H, W] -> [C, H', W'], zero-padded right/bottom to multiples of `multiple`."""
    if img.dim() != 3:
        raise ValueError(f"expected an image [C, H, W], got shape {tuple(img.shape)}")
    H, W = img.shape[-2:]
    ph, pw = (-H) % multiple, (-W) % multiple
    return F.pad(img, (0, pw, 0, ph)) if ph or pw else img


def patchify(img: torch.Tensor, p: int) -> torch.Tensor:
    """img: [C, h p, w p] -> patches [h w, C, p, p] in raster order."""
    C, H, W = img.shape
    if H % p or W % p:
        raise ValueError(f"image {H}x{W} is not a multiple of the patch size {p}; pad it first")
    h, w = H // p, W // p
    return img.reshape(C, h, p, w, p).permute(1, 3, 0, 2, 4).reshape(h * w, C, p, p)


def interpolate_pos_table(table: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """table: [H0, W0, D] -> [h w, D], bicubic (align_corners=False), raster order."""
    if h < 1 or w < 1:
        raise ValueError(f"grid must be at least 1x1, got {h}x{w}")
    x = table.permute(2, 0, 1)[None]  # [1, D, H0, W0]
    # at scale 1 every output sample lands on an input one (offset 0): the cubic kernel's
    # weights are (0, 1, 0, 0), so the table comes back unchanged
    grid = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)[0]
    return grid.permute(1, 2, 0).reshape(h * w, -1)


def cu_seqlens_from_grids(grids: torch.Tensor) -> torch.Tensor:
    """grids: [n, 2] (h, w) per image -> cu_seqlens [n + 1] int32: 0, n_1, n_1 + n_2, ..."""
    lens = grids[:, 0] * grids[:, 1]
    return F.pad(lens.cumsum(0), (1, 0)).to(torch.int32)


def block_diagonal_bias(cu_seqlens: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """cu_seqlens: [n + 1] -> additive bias [N, N]: 0 within an image's block, -inf across."""
    N = int(cu_seqlens[-1])
    pos = torch.arange(N, device=cu_seqlens.device)
    seg = torch.searchsorted(cu_seqlens[1:].long(), pos, right=True)  # image index per token
    same = seg[:, None] == seg[None, :]
    bias = torch.zeros(N, N, dtype=dtype, device=cu_seqlens.device)
    return bias.masked_fill_(~same, float("-inf"))


def packed_positions(grids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """grids: [n, 2] -> rows, cols: [N] grid coordinates of every packed token."""
    cache: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}  # one per grid size
    pairs = []
    for h, w in grids.tolist():
        if (h, w) not in cache:
            cache[(h, w)] = grid_positions(h, w, grids.device)
        pairs.append(cache[(h, w)])
    return torch.cat([r for r, _ in pairs]), torch.cat([c for _, c in pairs])


class MoonViTBlock(nn.Module):
    """Pre-norm encoder block. x: [1, N, D] packed tokens."""

    def __init__(self, cfg: MoonViTConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.norm1 = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.attn = MultiHeadAttention(d, cfg.n_heads, bias=True)
        self.norm2 = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.fc1 = nn.Linear(d, cfg.mlp_hidden)
        self.fc2 = nn.Linear(cfg.mlp_hidden, d)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor, rope) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), attn_bias=attn_bias, rope=rope)
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x)), approximate="tanh"))


class MoonViT(nn.Module):
    """Native-resolution ViT.

    forward(images: list of [C, H_i, W_i]) -> (features [N, D], grids [n, 2] long (h_i, w_i)),
    with the features of image i at rows cu_seqlens[i] : cu_seqlens[i + 1].
    """

    def __init__(self, cfg: MoonViTConfig) -> None:
        super().__init__()
        if cfg.d_model % cfg.n_heads:
            raise ValueError(f"d_model {cfg.d_model} is not divisible by n_heads {cfg.n_heads}")
        head_dim = cfg.d_model // cfg.n_heads
        if head_dim % 4:
            raise ValueError(f"MoonViT: head dim {head_dim} must be divisible by 4 (2-D RoPE)")
        self.cfg = cfg
        p = cfg.patch_size
        self.patch_embed = nn.Conv2d(cfg.in_channels, cfg.d_model, kernel_size=p, stride=p)
        self.pos_table = nn.Parameter(torch.randn(cfg.pos_h, cfg.pos_w, cfg.d_model) * 0.02)
        self.rope = Rotary2D(head_dim, cfg.rope_base)
        self.blocks = nn.ModuleList(MoonViTBlock(cfg) for _ in range(cfg.n_layers))
        self.final_norm = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)

    def prepare(self, images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """images: list of [C, H_i, W_i] -> packed patches [N, C, p, p], grids [n, 2] long."""
        if len(images) == 0:
            raise ValueError("MoonViT: no images given")
        p, m = self.cfg.patch_size, self.cfg.merge
        patches, grids = [], []
        for img in images:
            if img.dim() != 3 or img.shape[0] != self.cfg.in_channels:
                raise ValueError(
                    f"MoonViT: expected images [{self.cfg.in_channels}, H, W], got "
                    f"{tuple(img.shape)}"
                )
            img = pad_image(img, p * m)
            patches.append(patchify(img, p))
            grids.append((img.shape[1] // p, img.shape[2] // p))
        device = images[0].device
        return torch.cat(patches), torch.tensor(grids, dtype=torch.long, device=device)

    def forward_patches(self, patches: torch.Tensor, grids: torch.Tensor) -> torch.Tensor:
        """patches: [N, C, p, p] packed in raster order per image, grids: [n, 2] -> [N, D]."""
        p = self.cfg.patch_size
        if patches.dim() != 4 or patches.shape[1:] != (self.cfg.in_channels, p, p):
            raise ValueError(f"MoonViT: expected patches [N, C, {p}, {p}], got {patches.shape}")
        cu = cu_seqlens_from_grids(grids)
        if int(cu[-1]) != patches.shape[0]:
            raise ValueError(f"MoonViT: grids cover {int(cu[-1])} patches, got {len(patches)}")
        x = self.patch_embed(patches).flatten(1)  # [N, D]
        tables: dict[tuple[int, int], torch.Tensor] = {}  # one resize per distinct grid size
        pos = []
        for h, w in grids.tolist():
            if (h, w) not in tables:
                tables[(h, w)] = interpolate_pos_table(self.pos_table, h, w)
            pos.append(tables[(h, w)])
        x = x + torch.cat(pos).to(x.dtype)
        outs, start, lens = [], 0, (grids[:, 0] * grids[:, 1]).tolist()
        for lo, hi in self._packs(lens):
            n = sum(lens[lo:hi])
            outs.append(self._encode_pack(x[start : start + n], grids[lo:hi]))
            start += n
        return torch.cat(outs)

    def _packs(self, lens: list[int]) -> list[tuple[int, int]]:
        """Consecutive image ranges [lo, hi) with at most cfg.pack_tokens patches each."""
        limit = self.cfg.pack_tokens
        if limit <= 0:
            return [(0, len(lens))]
        packs, lo, total = [], 0, 0
        for i, n in enumerate(lens):
            if i > lo and total + n > limit:
                packs.append((lo, i))
                lo, total = i, 0
            total += n
        packs.append((lo, len(lens)))
        return packs

    def _encode_pack(self, x: torch.Tensor, grids: torch.Tensor) -> torch.Tensor:
        """x: [N, D] embedded patches of the images in grids -> encoded [N, D]."""
        cu = cu_seqlens_from_grids(grids)
        x = x[None]  # [1, N, D]
        rows, cols = packed_positions(grids)
        cos, sin = self.rope.cos_sin(rows, cols, torch.promote_types(x.dtype, torch.float32))

        def rope(q, k):
            return Rotary2D.apply(q, cos, sin), Rotary2D.apply(k, cos, sin)

        bias = block_diagonal_bias(cu, x.dtype) if len(grids) > 1 else None
        for block in self.blocks:
            x = block(x, bias, rope)
        return self.final_norm(x)[0]

    def forward(self, images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        patches, grids = self.prepare(images)
        return self.forward_patches(patches, grids), grids
