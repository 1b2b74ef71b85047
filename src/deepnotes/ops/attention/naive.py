"""Reference softmax attention: the explicit O(T^2) definition."""

from __future__ import annotations

import math

import torch


def attention_mask(
    T_q: int,
    T_k: int,
    *,
    causal: bool,
    key_mask: torch.Tensor | None = None,
    device: torch.device | None = None,
    q_offset: int | None = None,
) -> torch.Tensor | None:
    """Boolean mask [B or 1, 1, T_q, T_k] of allowed (query, key) pairs, or None for all.

    Causal queries are aligned to the end of the keys (query i sits at position
    q_offset + i, q_offset = T_k - T_q by default), as in KV-cache decoding.
    key_mask: [B, T_k] bool, True = real token.
    """
    allowed = None
    if causal:
        off = T_k - T_q if q_offset is None else q_offset
        i = torch.arange(T_q, device=device)[:, None] + off
        j = torch.arange(T_k, device=device)[None, :]
        allowed = (j <= i)[None, None]
    if key_mask is not None:
        km = key_mask[:, None, None, :].bool()
        allowed = km if allowed is None else allowed & km
    return allowed


def naive_softmax_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    key_mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """softmax(q k^T * scale + mask) v.

    q: [B, H, T_q, K], k: [B, H, T_k, K], v: [B, H, T_k, V] -> [B, H, T_q, V].
    scale defaults to 1/sqrt(K) (Vaswani et al. 2017, eq. 1). A query with no allowed key
    returns zeros instead of NaN.
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = torch.einsum("bhik,bhjk->bhij", q, k) * scale
    allowed = attention_mask(
        q.shape[-2], k.shape[-2], causal=causal, key_mask=key_mask, device=q.device
    )
    if allowed is None:
        return torch.softmax(s, dim=-1) @ v
    s = s.masked_fill(~allowed, float("-inf"))
    any_key = allowed.any(dim=-1, keepdim=True)
    p = torch.softmax(s.masked_fill(~any_key, 0.0), dim=-1) * any_key
    return p @ v
