"""Linformer (Wang et al. 2020): low-rank attention by projecting the length dimension.

Keys and values [T, K] are projected to [k, K] by learned matrices E, F: [k, max_len]
(their first T columns for a shorter sequence), then per head

    o = softmax(q (E k)^T / sqrt(K)) (F v),

O(T k K) time and memory instead of O(T^2 K). E and F are shared by all heads (the paper's
headwise sharing). Every output mixes the whole sequence, so Linformer cannot be causal, and
E, F fix a maximum length: `max_len` is required. `reference()` forms the T x T matrix
q k^T first and projects it, (q k^T) E^T, which is the same product associated the other way.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from deepnotes.mixers import register
from deepnotes.mixers.common import MultiHeadMixer


@register("linformer")
class LinformerAttention(MultiHeadMixer):
    """Linformer. kw: max_len (required), k, n_heads."""

    supports_causal = False

    def __init__(
        self, d_model: int, *, causal: bool, max_len: int | None = None, k: int = 256, **kw
    ) -> None:
        super().__init__(d_model, causal=causal, max_len=max_len, **kw)
        if max_len is None:
            raise ValueError("LinformerAttention needs max_len: E and F project max_len -> k")
        if k <= 0:
            raise ValueError(f"LinformerAttention: projected length k must be positive, got {k}")
        self.k = k  # projected length; the paper's k = 256 keeps quality close to softmax
        # E, F ~ N(0, 1/k): the random-projection initialisation of the paper (Theorem 1).
        self.E = nn.Parameter(torch.randn(k, max_len) / math.sqrt(k))
        self.F = nn.Parameter(torch.randn(k, max_len) / math.sqrt(k))

    def _qkv(self, x, mask):
        q, k, v = self.project_qkv(x)
        if mask is not None:  # padded keys and values are zeroed before projection
            m = mask[:, None, :, None]
            k, v = k * m, v * m
        T = x.shape[1]
        return q, k, v, self.E[:, :T], self.F[:, :T]

    def mix(self, x, mask):
        q, k, v, E, F = self._qkv(x, mask)
        k_proj, v_proj = E @ k, F @ v  # [B, H, k, K]
        s = q @ k_proj.transpose(-1, -2) / math.sqrt(self.head_dim)
        o = torch.softmax(s, -1) @ v_proj
        return self.out(self.merge_heads(o))

    def reference(self, x, mask=None):
        q, k, v, E, F = self._qkv(x, mask)
        s = (q @ k.transpose(-1, -2)) @ E.T / math.sqrt(self.head_dim)  # [B, H, T, k]
        o = torch.softmax(s, -1) @ (F @ v)
        y = self.out(self.merge_heads(o))
        return y if mask is None else y * mask[..., None]
