"""Sparse Transformer attention patterns (Child et al. 2019): sliding window and strided.

Both are multi-head softmax attention restricted to a fixed pattern of (query, key) pairs,
computed block-sparse by `deepnotes.ops.attention.sparse` (no T x T matrix):
- `sliding_window`: keys within `window` positions (causal: the last `window` tokens,
  itself included). O(T w) time and memory. Decoding keeps a ring buffer of the last
  `window` keys and values: bounded state.
- `strided_sparse`: the local band of width `stride` plus every key a multiple of `stride`
  away (the paper's strided pattern, its two heads merged into one). O(T (l + T / l)) time,
  O(T) memory for a fixed stride l. Decoding needs all past keys (any of them is a strided
  key of some later token), so its cache grows with T (`state_grows = True`).
`reference()` is the explicit T x T masked softmax over the same pattern.
"""

from __future__ import annotations

import math

import torch

from deepnotes.mixers import register
from deepnotes.mixers.common import KVCache, MultiHeadMixer
from deepnotes.ops.attention.masked import masked_softmax, masked_softmax_attn
from deepnotes.ops.attention.sparse import (
    sliding_window_attn,
    sliding_window_pattern,
    strided_attn,
    strided_pattern,
)


class _PatternAttention(MultiHeadMixer):
    """Shared parts: reference over a [T, T] pattern, output projection."""

    supports_step = True
    supports_rotary = True

    def pattern(self, T: int, device) -> torch.Tensor:
        raise NotImplementedError

    def reference(self, x, mask=None):
        q, k, v = self.project_qkv(x)
        allowed = self.pattern(x.shape[1], x.device)[None, None]
        if mask is not None:
            allowed = allowed & mask[:, None, None, :]
        o = masked_softmax_attn(q, k, v, allowed, 1.0 / math.sqrt(self.head_dim))
        y = self.out(self.merge_heads(o))
        return y if mask is None else y * mask[..., None]


@register("sliding_window")
class SlidingWindowAttention(_PatternAttention):
    """Sliding-window attention. kw: window, n_heads, rotary, max_len."""

    def __init__(self, d_model: int, *, causal: bool, window: int = 128, **kw) -> None:
        super().__init__(d_model, causal=causal, **kw)
        if window <= 0:
            raise ValueError(f"SlidingWindowAttention: window must be positive, got {window}")
        self.window = window  # w keys per query (causal); 128 keeps T = 16k cheap on CPU

    def pattern(self, T, device):
        return sliding_window_pattern(T, self.window, causal=self.causal, device=device)

    def mix(self, x, mask):
        q, k, v = self.project_qkv(x)
        o = sliding_window_attn(q, k, v, window=self.window, causal=self.causal, key_mask=mask)
        return self.out(self.merge_heads(o))

    def init_state(self, batch, device=None, dtype=None):
        """Ring buffer: (k, v [B, H, w, K], number of tokens seen)."""
        self._require_step()
        w = self.qkv.weight
        device, dtype = device or w.device, dtype or w.dtype
        shape = (batch, self.n_heads, self.window, self.head_dim)
        return (
            torch.zeros(shape, device=device, dtype=dtype),
            torch.zeros(shape, device=device, dtype=dtype),
            0,
        )

    def step(self, x_t, state):
        self.check_step_input(x_t)
        kbuf, vbuf, t = state
        q, k, v = self.project_qkv(x_t[:, None, :], offset=t)
        slot = t % self.window
        kbuf, vbuf = kbuf.clone(), vbuf.clone()
        kbuf[:, :, slot], vbuf[:, :, slot] = k[:, :, 0], v[:, :, 0]
        filled = torch.arange(self.window, device=x_t.device) <= t  # slots holding a token
        s = q @ kbuf.transpose(-1, -2) / math.sqrt(self.head_dim)
        o = masked_softmax(s, filled) @ vbuf
        return self.out(self.merge_heads(o))[:, 0], (kbuf, vbuf, t + 1)


@register("strided_sparse")
class StridedSparseAttention(_PatternAttention):
    """Strided sparse attention. kw: stride, query_block, n_heads, rotary, max_len."""

    state_grows = True

    def __init__(
        self, d_model: int, *, causal: bool, stride: int = 128, query_block: int = 512, **kw
    ) -> None:
        super().__init__(d_model, causal=causal, **kw)
        if stride <= 0:
            raise ValueError(f"StridedSparseAttention: stride must be positive, got {stride}")
        self.stride = stride  # l: local band width and stride; the paper uses l ~ sqrt(T)
        self.query_block = query_block  # queries per recomputed block (bounds the memory)

    def pattern(self, T, device):
        return strided_pattern(T, self.stride, causal=self.causal, device=device)

    def mix(self, x, mask):
        q, k, v = self.project_qkv(x)
        o = strided_attn(
            q,
            k,
            v,
            stride=self.stride,
            causal=self.causal,
            key_mask=mask,
            query_block=self.query_block,
        )
        return self.out(self.merge_heads(o))

    def init_state(self, batch, device=None, dtype=None):
        self._require_step()
        w = self.qkv.weight
        return KVCache(batch, self.n_heads, self.head_dim, device or w.device, dtype or w.dtype)

    def step(self, x_t, state: KVCache):
        self.check_step_input(x_t)
        t = state.length
        q, k, v = self.project_qkv(x_t[:, None, :], offset=t)
        k_all, v_all = state.append(k, v)
        d = t - torch.arange(t + 1, device=x_t.device)  # distance to each past key
        idx = torch.nonzero((d < self.stride) | (d % self.stride == 0))[:, 0]
        o = masked_softmax_attn(
            q,
            k_all[:, :, idx],
            v_all[:, :, idx],
            torch.ones((), dtype=torch.bool, device=x_t.device),
            1.0 / math.sqrt(self.head_dim),
        )
        return self.out(self.merge_heads(o))[:, 0], state
