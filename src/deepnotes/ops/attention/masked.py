"""Softmax attention over an arbitrary boolean pattern, with rows that allow no key set to 0."""

from __future__ import annotations

import torch


def masked_softmax(s: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """softmax of scores s over the last dim, restricted to `allowed` (broadcastable bool).

    A row with no allowed entry gives zeros, not NaN, so its (discarded) output has finite,
    zero gradients.
    """
    s = s.masked_fill(~allowed, float("-inf"))
    any_key = allowed.any(dim=-1, keepdim=True)
    return torch.softmax(s.masked_fill(~any_key, 0.0), dim=-1) * any_key


def masked_softmax_attn(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor, scale: float
) -> torch.Tensor:
    """softmax(q k^T * scale restricted to `allowed`) v, the explicit T_q x T_k form.

    q: [B, H, T_q, K], k: [B, H, T_k, K], v: [B, H, T_k, V], allowed: bool broadcastable to
    [B, H, T_q, T_k] -> [B, H, T_q, V].
    """
    return masked_softmax(q @ k.transpose(-1, -2) * scale, allowed) @ v
