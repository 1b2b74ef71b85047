"""OadTR: online action detection with a Transformer (Wang et al. 2021), and a GRU baseline.

At time t the model sees the features of the last T frames f_{t-T+1..t} (never later ones):
- encoder: tokens [task; f_{t-T+1}; ...; f_t] + learned positions through self-attention
  layers; the task token's output e_task summarises the history for the current frame;
- decoder: l_d learnable queries attend to each other and to the encoder output; their
  outputs d_1..d_{l_d} predict the actions of the next l_d frames (anticipation);
- classifier: the current frame's class from [e_task ; mean_i d_i];
- loss: CE(current) + lambda * mean_i CE(future_i)  (the paper's eq. 9, lambda = 1).
Without the task token (the ablation) e_task is replaced by the mean of the encoder outputs.

The GRU baseline (TRN-style recurrence, without TRN's future decoder) reads the same frame
features one at a time and classifies the current frame from its hidden state.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.layers.attention import MultiHeadAttention
from deepnotes.layers.ffn import build_ffn
from deepnotes.models.video.frames import FrameEncoder


@dataclass
class OadTRConfig:
    in_channels: int = 3  # frame channels (RGB)
    size: int = 24  # frame side in pixels
    d_model: int = 64  # token width
    n_heads: int = 4  # attention heads
    enc_layers: int = 2  # encoder layers (the paper: 3)
    dec_layers: int = 1  # decoder layers (the paper: 5)
    window: int = 16  # T: frames of history the encoder reads (the paper: 64 chunks)
    future: int = 4  # l_d: frames the decoder anticipates (the paper: 8)
    n_classes: int = 7  # including background (class 0)
    task_token: bool = True  # False: the ablation (mean-pooled encoder output instead)
    dropout: float = 0.1  # on attention weights and FFN
    future_weight: float = 1.0  # lambda on the anticipation loss


class EncoderLayer(nn.Module):
    """Pre-norm self-attention + FFN. x: [B, S, D] -> [B, S, D]."""

    def __init__(self, d, h, p):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = MultiHeadAttention(d, h, dropout=p)
        self.ffn = build_ffn("gelu", d, mult=2.0, bias=True, dropout=p)

    def forward(self, x):
        x = x + self.attn(self.n1(x))
        return x + self.ffn(self.n2(x))


class DecoderLayer(nn.Module):
    """Query self-attention, cross-attention to the encoder, FFN. q: [B, l_d, D]."""

    def __init__(self, d, h, p):
        super().__init__()
        self.n1, self.n2, self.n3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn = MultiHeadAttention(d, h, dropout=p)
        self.cross = MultiHeadAttention(d, h, dropout=p)
        self.ffn = build_ffn("gelu", d, mult=2.0, bias=True, dropout=p)

    def forward(self, q, mem):
        q = q + self.self_attn(self.n1(q))
        q = q + self.cross(self.n2(q), mem)
        return q + self.ffn(self.n3(q))


class OadTR(nn.Module):
    def __init__(self, cfg: OadTRConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.frames = FrameEncoder(cfg.in_channels, cfg.size, d)
        self.task = nn.Parameter(torch.randn(1, 1, d) * 0.02) if cfg.task_token else None
        self.pos = nn.Parameter(torch.randn(1, cfg.window + 1, d) * 0.02)
        self.encoder = nn.ModuleList(
            EncoderLayer(d, cfg.n_heads, cfg.dropout) for _ in range(cfg.enc_layers)
        )
        self.enc_norm = nn.LayerNorm(d)
        self.queries = nn.Parameter(torch.randn(1, cfg.future, d) * 0.02)
        self.decoder = nn.ModuleList(
            DecoderLayer(d, cfg.n_heads, cfg.dropout) for _ in range(cfg.dec_layers)
        )
        self.dec_norm = nn.LayerNorm(d)
        self.future_head = nn.Linear(d, cfg.n_classes)
        self.head = nn.Linear(2 * d, cfg.n_classes)

    def forward_features(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats: [B, T, D], oldest first, the last = the current frame.

        Returns (current logits [B, K], future logits [B, l_d, K]).
        """
        B, T, D = feats.shape
        if T != self.cfg.window or D != self.cfg.d_model:
            raise ValueError(f"feats must be [B, {self.cfg.window}, {self.cfg.d_model}]")
        if self.task is not None:
            x = torch.cat([self.task.expand(B, 1, D), feats], 1) + self.pos
        else:
            x = feats + self.pos[:, 1:]
        for layer in self.encoder:
            x = layer(x)
        mem = self.enc_norm(x)
        summary = mem[:, 0] if self.task is not None else mem.mean(1)
        q = self.queries.expand(B, -1, -1)
        for layer in self.decoder:
            q = layer(q, mem)
        q = self.dec_norm(q)
        cur = self.head(torch.cat([summary, q.mean(1)], -1))
        return cur, self.future_head(q)

    def windows(self, feats: torch.Tensor, history: int = 0) -> torch.Tensor:
        """feats: [history + L, D] of a stream -> the L labelled frames' windows [L, T, D].

        The first `history` features only serve as context; missing history before the
        stream's start is zero features (as in the streaming form).
        """
        T = self.cfg.window
        if history > T - 1:
            feats, history = feats[history - (T - 1) :], T - 1
        pad = feats.new_zeros(T - 1 - history, feats.shape[-1])
        return torch.cat([pad, feats]).unfold(0, T, 1).transpose(1, 2)

    def sequence_logits(
        self, frames: torch.Tensor, history: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The windowed batch form. frames: [history + L, C, H, W] -> (current [L, K],
        future [L, l_d, K]); frame i's output reads frames <= i only."""
        if not 0 <= history < frames.shape[0]:
            raise ValueError(f"history must be in [0, {frames.shape[0]}), got {history}")
        return self.forward_features(self.windows(self.frames(frames), history))

    def loss(self, frames: torch.Tensor, labels: torch.Tensor, history: int = 0) -> torch.Tensor:
        """frames: [history + L, C, H, W], labels: [L + l_d] (the labelled frames' labels,
        then the next l_d frames' for anticipation; -100 = unknown, ignored)."""
        cur, fut = self.sequence_logits(frames, history)
        L, ld = cur.shape[0], self.cfg.future
        if labels.shape[0] == L:  # no labels after the stretch: ignore those targets
            labels = torch.cat([labels, labels.new_full((ld,), -100)])
        if labels.shape[0] != L + ld:
            raise ValueError(f"labels must have {L} or {L + ld} entries, got {labels.shape[0]}")
        targets = labels.unfold(0, ld, 1)[1 : L + 1]  # [L, l_d]: labels of t+1..t+l_d
        fl = F.cross_entropy(fut.reshape(-1, fut.shape[-1]), targets.reshape(-1), ignore_index=-100)
        return F.cross_entropy(cur, labels[:L]) + self.cfg.future_weight * fl


class OadTRStream:
    """One frame at a time: a cache of the last T frame features (the feature cache), so
    each step encodes only the new frame, then runs the transformer on the window."""

    def __init__(self, model: OadTR):
        self.model = model
        self.reset()

    def reset(self) -> None:
        self.cache: deque[torch.Tensor] = deque(maxlen=self.model.cfg.window)

    @torch.no_grad()
    def step(self, frame: torch.Tensor) -> torch.Tensor:
        """frame: [C, H, W] -> current-frame logits [K]."""
        f = self.model.frames(frame[None])[0]
        if not self.cache:
            self.cache.extend([torch.zeros_like(f)] * (self.model.cfg.window - 1))
        self.cache.append(f)
        return self.model.forward_features(torch.stack(list(self.cache))[None])[0][0]


@dataclass
class GRUDetectorConfig:
    in_channels: int = 3  # frame channels
    size: int = 24  # frame side
    d_model: int = 64  # frame feature width
    hidden: int = 128  # GRU state width
    n_classes: int = 7  # including background


class GRUDetector(nn.Module):
    """frames: [B, L, C, H, W] -> per-frame logits [B, L, K], causal by construction."""

    def __init__(self, cfg: GRUDetectorConfig):
        super().__init__()
        self.cfg = cfg
        self.frames = FrameEncoder(cfg.in_channels, cfg.size, cfg.d_model)
        self.gru = nn.GRU(cfg.d_model, cfg.hidden, batch_first=True)
        self.head = nn.Linear(cfg.hidden, cfg.n_classes)

    def forward(self, frames, h=None):
        y, h = self.gru(self.frames(frames), h)
        return self.head(y), h

    @torch.no_grad()
    def step(self, frame: torch.Tensor, h=None):
        """frame: [C, H, W] -> (logits [K], state)."""
        y, h = self(frame[None, None], h)
        return y[0, 0], h
