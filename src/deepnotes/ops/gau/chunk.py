"""FLASH mixed-chunk attention by chunks: O(T C S + T C E + T S E) time, no T x T matrix.

Same definition and constants as `naive_gau` (see `deepnotes.ops.gau.naive`): per chunk,
the masked C x C relu^2 matrix; across chunks, the state sum k_lin^T v, as an exclusive
prefix sum over chunks when causal (the paper's cumulative sum) or one global sum otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deepnotes.ops.gau.naive import check_gau_inputs, relu2_scores, row_normaliser


def _chunks(t: torch.Tensor, C: int) -> torch.Tensor:
    """[B, T, X] -> [B, G, C, X], zero-padding T to a multiple of C (zeros add nothing)."""
    B, T, X = t.shape
    pad = (-T) % C
    if pad:
        t = F.pad(t, (0, 0, 0, pad))
    return t.view(B, -1, C, X)


def torch_chunk_gau(
    q_quad: torch.Tensor,
    k_quad: torch.Tensor,
    q_lin: torch.Tensor,
    k_lin: torch.Tensor,
    v: torch.Tensor,
    *,
    chunk_size: int,
    causal: bool,
) -> torch.Tensor:
    """Mixed-chunk attention. q_*, k_*: [B, T, S]; v: [B, T, E] -> o [B, T, E]."""
    check_gau_inputs(q_quad, k_quad, q_lin, k_lin, v, chunk_size)
    B, T, _ = q_quad.shape
    C = chunk_size
    qq, kq, ql, kl, vc = (_chunks(t, C) for t in (q_quad, k_quad, q_lin, k_lin, v))
    A = relu2_scores(qq, kq)  # [B, G, C, C]
    if causal:
        A = A.tril()
    o = A @ vc  # local, quadratic within each chunk
    if causal:
        dS = kl.transpose(-1, -2) @ vc  # [B, G, S, E]
        S_before = torch.cat([torch.zeros_like(dS[:, :1]), dS.cumsum(1)[:, :-1]], 1)
        o = o + ql @ S_before
    else:
        S_all = k_lin.transpose(-1, -2) @ v  # [B, S, E]
        o = o + ql @ S_all[:, None]
    o = o.reshape(B, -1, v.shape[-1])[:, :T]
    return o / row_normaliser(T, causal, device=v.device, dtype=v.dtype)
