"""Pieces shared by the attention-family mixers: head projections and the KV cache."""

from __future__ import annotations

import torch
from torch import nn

from deepnotes.layers.positional import RotaryEmbedding
from deepnotes.mixers.base import Mixer


def default_heads(d_model: int, head_dim: int = 64) -> int:
    """d_model // head_dim heads when that divides d_model, else a single head."""
    h = max(1, d_model // head_dim)
    return h if d_model % h == 0 else 1


class MultiHeadMixer(Mixer):
    """A mixer with q, k, v projections split into heads and an output projection.

    Shapes: q, k, v are [B, H, T, K] with K = d_model / n_heads.
    """

    supports_heads = True

    def __init__(
        self,
        d_model: int,
        *,
        causal: bool,
        n_heads: int | None = None,
        rotary: bool = False,
        max_len: int | None = None,
        bias: bool = False,
    ) -> None:
        super().__init__(d_model, causal=causal, max_len=max_len)
        n_heads = default_heads(d_model) if n_heads is None else n_heads
        if n_heads <= 0 or d_model % n_heads:
            raise ValueError(
                f"{type(self).__name__}: n_heads = {n_heads} must divide d_model = {d_model}"
            )
        if rotary and not self.supports_rotary:
            raise ValueError(f"{type(self).__name__} does not support rotary positions")
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out = nn.Linear(d_model, d_model, bias=bias)
        self.rotary = RotaryEmbedding(self.head_dim) if rotary else None

    def split_heads(self, t: torch.Tensor) -> torch.Tensor:
        """[B, T, H*K] -> [B, H, T, K]."""
        B, T, _ = t.shape
        return t.view(B, T, self.n_heads, -1).transpose(1, 2)

    @staticmethod
    def merge_heads(t: torch.Tensor) -> torch.Tensor:
        """[B, H, T, K] -> [B, T, H*K]."""
        B, H, T, K = t.shape
        return t.transpose(1, 2).reshape(B, T, H * K)

    def project_qkv(self, x: torch.Tensor, offset: int = 0):
        """x: [B, T, D] -> q, k, v: [B, H, T, K], rotary applied at positions offset.."""
        q, k, v = (self.split_heads(t) for t in self.qkv(x).chunk(3, dim=-1))
        if self.rotary is not None:
            q, k = self.rotary(q, offset), self.rotary(k, offset)
        return q, k, v


class KVCache:
    """Keys and values of past tokens, in a buffer that doubles when full.

    k, v views: [B, H, t, K]. Doubling keeps appends amortised O(1) per token.
    """

    def __init__(self, batch: int, n_heads: int, head_dim: int, device, dtype) -> None:
        self._k = torch.empty(batch, n_heads, 16, head_dim, device=device, dtype=dtype)
        self._v = torch.empty_like(self._k)
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append k, v: [B, H, n, K]; return all keys and values so far."""
        n = k.shape[-2]
        if self.length + n > self._k.shape[-2]:
            cap = max(2 * self._k.shape[-2], self.length + n)
            grow = lambda buf: torch.cat(
                [
                    buf[..., : self.length, :],
                    buf.new_empty(*buf.shape[:2], cap - self.length, buf.shape[-1]),
                ],
                dim=-2,
            )
            self._k, self._v = grow(self._k), grow(self._v)
        self._k[..., self.length : self.length + n, :] = k
        self._v[..., self.length : self.length + n, :] = v
        self.length += n
        return self.k, self.v

    @property
    def k(self) -> torch.Tensor:
        return self._k[..., : self.length, :]

    @property
    def v(self) -> torch.Tensor:
        return self._v[..., : self.length, :]
