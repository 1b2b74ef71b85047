"""A small text encoder tau(c) for the condition sequence of latent diffusion.

Stable Diffusion feeds the UNet's cross-attention with CLIP's 77 token states. Here a class
name ("seven") or any short prompt is split into characters, embedded with learned positions
and passed through a few pre-norm Transformer encoder layers; the output sequence
[B, L, D] is the condition. The empty prompt "" gives the unconditional sequence that
classifier-free guidance contrasts against, as SD uses the encoding of "".

Unlike CLIP in SD, this encoder is trained jointly with the UNet (there is no pretrained text
model offline).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deepnotes.layers.attention import MultiHeadAttention
from deepnotes.layers.ffn import MLP


@dataclass
class CondEncoderConfig:
    d_model: int = 32  # width of the condition tokens (the UNet's d_context)
    n_layers: int = 1  # Transformer encoder layers
    n_heads: int = 4  # attention heads
    max_len: int = 8  # tokens per prompt incl. BOS/EOS; longer prompts are an error
    alphabet: str = "abcdefghijklmnopqrstuvwxyz -"  # characters the tokenizer knows


PAD, BOS, EOS = 0, 1, 2


class CharTokenizer:
    """Prompts -> (ids [B, L] long, mask [B, L] bool, True = BOS, a character or EOS)."""

    def __init__(self, alphabet: str, max_len: int):
        self.vocab = {ch: i + 3 for i, ch in enumerate(alphabet)}
        self.max_len = max_len

    @property
    def vocab_size(self) -> int:
        return len(self.vocab) + 3

    def __call__(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.full((len(prompts), self.max_len), PAD, dtype=torch.long)
        for b, p in enumerate(prompts):
            p = p.lower()
            if len(p) + 2 > self.max_len:
                raise ValueError(f"prompt {p!r} longer than max_len - 2 = {self.max_len - 2}")
            unknown = sorted(set(p) - set(self.vocab))
            if unknown:
                raise ValueError(f"prompt {p!r} has characters outside the alphabet: {unknown}")
            seq = [BOS, *(self.vocab[ch] for ch in p), EOS]
            ids[b, : len(seq)] = torch.tensor(seq)
        return ids, ids != PAD


class EncoderLayer(nn.Module):
    """x: [B, L, D] -> x + Attn(LN(x)), then + MLP(LN(x)) (pre-norm)."""

    def __init__(self, d: int, n_heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.attn = MultiHeadAttention(d, n_heads)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = MLP(d, 4 * d, "gelu", bias=True)

    def forward(self, x, mask):
        x = x + self.attn(self.norm1(x), key_mask=mask)
        return x + self.mlp(self.norm2(x))


class ConditionEncoder(nn.Module):
    """tau(c): prompts or token ids [B, L] -> condition sequence [B, L, D]."""

    def __init__(self, cfg: CondEncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.tokenizer = CharTokenizer(cfg.alphabet, cfg.max_len)
        self.tok = nn.Embedding(self.tokenizer.vocab_size, cfg.d_model)
        self.pos = nn.Parameter(torch.randn(cfg.max_len, cfg.d_model) * 0.02)
        self.layers = nn.ModuleList(
            EncoderLayer(cfg.d_model, cfg.n_heads) for _ in range(cfg.n_layers)
        )
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if ids.ndim != 2 or ids.shape[1] != self.cfg.max_len:
            raise ValueError(f"ids must be [B, {self.cfg.max_len}], got {tuple(ids.shape)}")
        mask = ids != PAD if mask is None else mask
        x = self.tok(ids) + self.pos
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(x)

    def encode(self, prompts: list[str]) -> torch.Tensor:
        """prompts (B strings) -> [B, L, D] on this module's device."""
        ids, mask = self.tokenizer(prompts)
        dev = self.pos.device
        return self(ids.to(dev), mask.to(dev))
