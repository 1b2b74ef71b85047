"""A tiny decoder LM built from registered mixers, for the trainer and decoding tests.

Same interface as `deepnotes.models.lm.LM`: forward(tokens [B, T]) -> logits [B, T, V],
`blocks` (ModuleList), `aux_loss`, `supports_step`, `init_state`, `step`.
"""

from __future__ import annotations

import torch
from torch import nn

import deepnotes.mixers as M


class TinyBlock(nn.Module):
    def __init__(self, mixer: str, d: int, dropout: float, **kw) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.mixer = M.build(mixer, d, causal=True, **kw)
        self.norm2 = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        x = x + self.drop(self.mixer(self.norm1(x)))
        return x + self.drop(self.ffn(self.norm2(x)))

    def step(self, x, state):
        y, state = self.mixer.step(self.norm1(x), state)
        x = x + y
        return x + self.ffn(self.norm2(x)), state


class TinyLM(nn.Module):
    def __init__(
        self, vocab=32, d=32, layers=2, mixer="softmax", dropout=0.0, max_len=256, **mixer_kw
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(max_len, d)
        self.blocks = nn.ModuleList(TinyBlock(mixer, d, dropout, **mixer_kw) for _ in range(layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.embed.weight
        self.aux_loss = torch.zeros(())

    def forward(self, tokens):
        T = tokens.shape[1]
        x = self.embed(tokens) + self.pos.weight[:T]
        for b in self.blocks:
            x = b(x)
        return self.head(self.norm(x))

    @property
    def supports_step(self):
        return all(type(b.mixer).supports_step for b in self.blocks)

    def init_state(self, batch, device=None, dtype=None):
        return [0, [b.mixer.init_state(batch, device=device, dtype=dtype) for b in self.blocks]]

    def step(self, tokens, state):
        t, states = state
        x = self.embed(tokens) + self.pos.weight[t]
        new = []
        for b, s in zip(self.blocks, states, strict=True):
            x, s = b.step(x, s)
            new.append(s)
        return self.head(self.norm(x)), [t + 1, new]
