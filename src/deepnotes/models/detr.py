"""DETR (Carion et al. 2020): detection as direct set prediction.

A CNN turns the image into a feature map (stride 32), a 1×1 conv projects it to d_model, and
the H·W tokens go through a post-norm Transformer encoder. A decoder then lets N learned
*object queries* attend to each other and to the encoder's memory; each output slot predicts
a class (C classes + "no object") and a box (cx, cy, w, h in 0..1 via a sigmoid) with a
3-layer MLP. Training matches the N predictions to the ground truth one to one (Hungarian
matching, `deepnotes.vision.matcher`) so no NMS is needed.

Positions (sec. 3.2 and appendix A.3): a fixed 2-D sine encoding of each feature-map cell is
added to the queries and keys of every encoder attention and to the keys of every decoder
cross-attention, and the learned query embeddings are added to the decoder's queries (and to
the keys of its self-attention); values never carry positions. In the shared attention this
is `attn(x + pos, value=x)`. The decoder starts from zeros, so the query embeddings are
the only thing that distinguishes the slots.

With `aux_loss` the decoder's shared final LayerNorm is applied to every layer's output and
the heads predict from each, so the set loss can be applied after every decoder layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepnotes.layers.attention import MultiHeadAttention
from deepnotes.models.resnet import ResNet, ResNetConfig, resnet50


@dataclass
class DetrConfig:
    num_classes: int = 91  # object classes (COCO ids run to 90); the head adds "no object"
    num_queries: int = 100  # N object queries = the most objects one image can get
    d_model: int = 256  # Transformer width
    n_heads: int = 8  # attention heads in every attention
    enc_layers: int = 6  # encoder layers
    dec_layers: int = 6  # decoder layers
    ffn_dim: int = 2048  # hidden width of the feed-forward blocks
    dropout: float = 0.1  # dropout on attention outputs and feed-forward blocks
    aux_loss: bool = True  # predict after every decoder layer (auxiliary decoding losses)
    backbone: ResNetConfig = field(default_factory=resnet50)  # the CNN (ResNet-50 in the paper)
    attn_impl: str = "auto"  # kernel for the shared attention: auto | sdpa | math | flash

    def __post_init__(self):
        if self.d_model % self.n_heads or self.d_model % 2:
            raise ValueError(
                f"d_model {self.d_model} must be even and divisible by n_heads {self.n_heads}"
            )
        if self.num_queries < 1 or self.num_classes < 1:
            raise ValueError("num_queries and num_classes must be >= 1")


def detr_r50(**kw) -> DetrConfig:
    """DETR with a ResNet-50 backbone, as in the paper (41M parameters)."""
    return DetrConfig(**kw)


def sine_position_encoding(mask: Tensor, d_model: int, temperature: float = 10000.0) -> Tensor:
    """2-D sine encoding. mask: [B, H, W] bool (True = real pixel) -> [B, H*W, d_model].

    Row and column coordinates (counted over real cells, normalised to (0, 2π]) each get
    d_model/2 channels: sin/cos pairs at frequencies T^(-2i/(d/2)); y first, then x.
    """
    F_ = d_model // 2
    m = mask.float()
    y = m.cumsum(1)
    x = m.cumsum(2)
    eps, scale = 1e-6, 2 * math.pi
    y = y / (y[:, -1:, :] + eps) * scale
    x = x / (x[:, :, -1:] + eps) * scale
    i = torch.arange(F_, device=mask.device, dtype=torch.float32)
    dim_t = temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / F_)

    def enc(p):  # [B, H, W] -> [B, H, W, F_], channels sin, cos, sin, cos, ...
        a = p[..., None] / dim_t
        return torch.stack([a[..., 0::2].sin(), a[..., 1::2].cos()], dim=-1).flatten(-2)

    return torch.cat([enc(y), enc(x)], dim=-1).flatten(1, 2)


class FFN(nn.Module):
    def __init__(self, d: int, hidden: int, dropout: float):
        super().__init__()
        self.fc1, self.fc2, self.drop = (
            nn.Linear(d, hidden),
            nn.Linear(hidden, d),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(F.relu(self.fc1(x))))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: DetrConfig):
        super().__init__()
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.n_heads, impl=cfg.attn_impl)
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.ffn = FFN(cfg.d_model, cfg.ffn_dim, cfg.dropout)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, pos: Tensor, key_mask: Tensor | None) -> Tensor:
        x = self.norm1(x + self.drop(self.self_attn(x + pos, value=x, key_mask=key_mask)))
        return self.norm2(x + self.ffn(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: DetrConfig):
        super().__init__()
        d = cfg.d_model
        self.self_attn = MultiHeadAttention(d, cfg.n_heads, impl=cfg.attn_impl)
        self.cross_attn = MultiHeadAttention(d, cfg.n_heads, impl=cfg.attn_impl)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.ffn = FFN(d, cfg.ffn_dim, cfg.dropout)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, memory, pos, query_pos, key_mask, need_weights=False):
        x = self.norm1(x + self.drop(self.self_attn(x + query_pos, value=x)))
        out = self.cross_attn(
            x + query_pos, memory + pos, value=memory, key_mask=key_mask, need_weights=need_weights
        )
        out, weights = out if need_weights else (out, None)
        x = self.norm2(x + self.drop(out))
        return self.norm3(x + self.ffn(x)), weights


class BoxHead(nn.Module):
    """3-layer MLP with ReLU: [.., d] -> [.., 4] (pre-sigmoid)."""

    def __init__(self, d: int):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, 4)])

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


class Detr(nn.Module):
    """images [B, 3, H, W] (+ pixel_mask [B, H, W], True = real) -> predictions dict.

    Returns {"logits": [B, N, C+1], "pred_boxes": [B, N, 4] cxcywh in 0..1,
             "aux_outputs": [{"logits", "pred_boxes"}] * (dec_layers-1) when aux_loss,
             "cross_attn": [B, heads, N, h*w] of the last decoder layer and "feature_size":
             (h, w) when return_attn}.
    """

    def __init__(self, cfg: DetrConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = ResNet(cfg.backbone)
        self.input_proj = nn.Conv2d(self.backbone.out_channels, cfg.d_model, 1)
        self.query_embed = nn.Embedding(cfg.num_queries, cfg.d_model)
        self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.enc_layers))
        self.decoder = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.dec_layers))
        self.decoder_norm = nn.LayerNorm(cfg.d_model)
        self.class_head = nn.Linear(cfg.d_model, cfg.num_classes + 1)
        self.box_head = BoxHead(cfg.d_model)

    def forward(
        self, images: Tensor, pixel_mask: Tensor | None = None, return_attn: bool = False
    ) -> dict:
        if images.ndim != 4 or images.shape[1] != self.cfg.backbone.in_chans:
            raise ValueError(
                f"expected images [B, {self.cfg.backbone.in_chans}, H, W], "
                f"got {tuple(images.shape)}"
            )
        B = images.shape[0]
        if pixel_mask is None:
            pixel_mask = torch.ones(B, *images.shape[-2:], dtype=torch.bool, device=images.device)
        feat = self.backbone(images)
        h, w = feat.shape[-2:]
        # nearest-neighbour downsampling of the padding mask to the feature grid
        mask = F.interpolate(pixel_mask[None].float(), size=(h, w))[0].bool()
        src = self.input_proj(feat).flatten(2).transpose(1, 2)  # [B, h*w, d]
        pos = sine_position_encoding(mask, self.cfg.d_model).to(src.dtype)
        key_mask = mask.flatten(1)
        memory = src
        for layer in self.encoder:
            memory = layer(memory, pos, key_mask)
        query_pos = self.query_embed.weight[None].expand(B, -1, -1)
        x = torch.zeros_like(query_pos)
        hidden, weights = [], None
        for i, layer in enumerate(self.decoder):
            last = i == len(self.decoder) - 1
            x, weights = layer(
                x, memory, pos, query_pos, key_mask, need_weights=return_attn and last
            )
            if self.cfg.aux_loss or last:
                hidden.append(self.decoder_norm(x))
        hs = torch.stack(hidden)  # [L', B, N, d]
        logits, boxes = self.class_head(hs), self.box_head(hs).sigmoid()
        out = {"logits": logits[-1], "pred_boxes": boxes[-1]}
        if self.cfg.aux_loss:
            out["aux_outputs"] = [
                {"logits": a, "pred_boxes": b} for a, b in zip(logits[:-1], boxes[:-1], strict=True)
            ]
        if return_attn:
            out["cross_attn"], out["feature_size"] = weights, (h, w)
        return out
