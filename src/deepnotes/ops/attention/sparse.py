"""Sparse Transformer attention patterns (Child et al. 2019), computed block-sparse.

Two patterns, both as one softmax over the allowed keys of each query i:
- sliding window of width w: causal keys j with 0 <= i - j < w; non-causal |i - j| < w.
- strided, stride l (the paper's "strided" pattern, both of its heads merged into one):
  the local band above (w = l) plus every key with i - j a non-zero multiple of l (causal:
  j < i only).

Neither builds a T x T matrix. The sequence is cut into blocks of w (or l) positions:
- the local band of a query block lies within that block and its neighbours, so scores are
  [T, 2w] (causal) or [T, 3w], linear in T for a fixed w;
- for the strided part, position i = r l + c sits at row r, column c of an [R, l] grid, and
  its strided keys are the column c: R = T / l keys per query. That is O(T^2 / l) work (the
  paper's O(T sqrt T) at l = sqrt T). Memory stays linear in T: queries are processed in
  blocks of about `query_block` positions, and during training each block is recomputed in
  the backward pass (activation checkpointing) instead of keeping its scores.

Shapes: q, k: [B, H, T, K], v: [B, H, T, V]; key_mask: [B, T] bool (True = real token).
The explicit references are `*_pattern` + `masked_softmax_attn`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from deepnotes.ops.attention.masked import masked_softmax


# --------------------------------------------------------------------------- patterns
def sliding_window_pattern(T: int, window: int, *, causal: bool, device=None) -> torch.Tensor:
    """Allowed (query, key) pairs [T, T] of the sliding window, for references and tests."""
    d = torch.arange(T, device=device)[:, None] - torch.arange(T, device=device)[None, :]
    return (d >= 0) & (d < window) if causal else d.abs() < window


def strided_pattern(T: int, stride: int, *, causal: bool, device=None) -> torch.Tensor:
    """Allowed pairs [T, T] of the strided pattern: local band of width `stride` plus every
    key at a multiple of `stride` away (before i if causal)."""
    d = torch.arange(T, device=device)[:, None] - torch.arange(T, device=device)[None, :]
    hit = d.remainder(stride) == 0
    return ((d >= 0) & ((d < stride) | hit)) if causal else ((d.abs() < stride) | hit)


# --------------------------------------------------------------------------- helpers
def _blocks(t: torch.Tensor, n: int) -> torch.Tensor:
    """[B, H, T, X] -> [B, H, R, n, X] with T zero-padded to R n."""
    B, H, T, X = t.shape
    return F.pad(t, (0, 0, 0, (-T) % n)).view(B, H, -1, n, X)


def _with_neighbours(t: torch.Tensor, causal: bool) -> torch.Tensor:
    """[.., R, n, X] -> [.., R, 2n or 3n, X]: each block with its previous (and next) one."""
    pad = (0, 0, 0, 0, 1, 0 if causal else 1)
    tp = F.pad(t, pad)
    R = t.shape[-3]
    parts = [tp[..., :R, :, :], tp[..., 1 : R + 1, :, :]]
    if not causal:
        parts.append(tp[..., 2 : R + 2, :, :])
    return torch.cat(parts, dim=-2)


def _local_allowed(R: int, n: int, T: int, causal: bool, key_valid, device) -> torch.Tensor:
    """[B or 1, 1, R, n, 2n or 3n] allowed local pairs for blocks of n with band width n.

    key_valid: [B, R, n] bool (real key, not padding) or None.
    """
    ii = torch.arange(n, device=device)[:, None]
    jj = torch.arange((2 if causal else 3) * n, device=device)[None, :]
    d = n + ii - jj  # i - j
    band = ((d >= 0) & (d < n)) if causal else (d.abs() < n)
    j_abs = torch.arange(R, device=device)[:, None] * n - n + jj  # [R, nk]
    inside = (j_abs >= 0) & (j_abs < T)
    allowed = band[None] & inside[:, None, :]  # [R, n, nk]
    allowed = allowed[None, None]
    if key_valid is not None:
        kv = _with_neighbours(key_valid[:, None, :, :, None], causal)[..., 0]  # [B, 1, R, nk]
        allowed = allowed & kv[:, :, :, None, :]
    return allowed


def _key_valid(key_mask, B, T, n, device):
    """[B, R, n] bool: position < T and (key_mask or True)."""
    valid = torch.ones(B, T, dtype=torch.bool, device=device)
    if key_mask is not None:
        valid = valid & key_mask
    return F.pad(valid, (0, (-T) % n), value=False).view(B, -1, n)


# --------------------------------------------------------------------------- sliding window
def sliding_window_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    window: int,
    causal: bool,
    key_mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Sliding-window softmax attention in O(T w) time and memory -> o [B, H, T, V]."""
    if window <= 0:
        raise ValueError(f"window must be positive, got {window}")
    B, H, T, K = q.shape
    scale = 1.0 / math.sqrt(K) if scale is None else scale
    w = min(window, T)  # a window wider than the sequence is the full (causal) attention
    qb, kb, vb = (_blocks(t, w) for t in (q, k, v))  # [B, H, R, w, *]
    kk, vv = _with_neighbours(kb, causal), _with_neighbours(vb, causal)
    valid = _key_valid(key_mask, B, T, w, q.device)
    allowed = _local_allowed(qb.shape[2], w, T, causal, valid, q.device)
    p = masked_softmax(qb @ kk.transpose(-1, -2) * scale, allowed)
    return (p @ vv).reshape(B, H, -1, v.shape[-1])[:, :, :T]


# --------------------------------------------------------------------------- strided
def _strided_rows(qr, kk, vv, loc_allowed, kg, vg, str_allowed, scale):
    """Output of one block of grid rows.

    qr: [B, H, Rc, l, K] queries; kk, vv: [B, H, Rc, nk, *] local keys/values;
    kg, vg: [B, H, R, l, *] the whole key/value grid; allowed masks broadcastable to the
    score shapes [B, H, Rc, l, nk] and [B, H, l, Rc, R].
    """
    s_loc = qr @ kk.transpose(-1, -2) * scale  # [B, H, Rc, l, nk]
    # strided: query (r, c) against column c of the grid
    s_str = qr.transpose(2, 3) @ kg.permute(0, 1, 3, 4, 2) * scale  # [B, H, l, Rc, R]
    s = torch.cat([s_loc, s_str.transpose(2, 3)], dim=-1)
    allowed = torch.cat(
        [
            loc_allowed.expand(*s_loc.shape),
            str_allowed.transpose(2, 3).expand(*s_loc.shape[:-1], -1),
        ],
        dim=-1,
    )
    p = masked_softmax(s, allowed)
    nk = s_loc.shape[-1]
    o = p[..., :nk] @ vv
    o_str = p[..., nk:].transpose(2, 3) @ vg.transpose(2, 3)  # [B, H, l, Rc, V]
    return o + o_str.transpose(2, 3)


def strided_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    stride: int,
    causal: bool,
    key_mask: torch.Tensor | None = None,
    scale: float | None = None,
    query_block: int = 512,
) -> torch.Tensor:
    """Strided sparse attention (local band + every `stride`-th key) -> o [B, H, T, V].

    O(T (l + T/l)) time; memory O(T) for a fixed stride (see the module docstring).
    """
    if stride <= 0:
        raise ValueError(f"stride must be positive, got {stride}")
    B, H, T, K = q.shape
    scale = 1.0 / math.sqrt(K) if scale is None else scale
    l = stride
    qg, kg, vg = (_blocks(t, l) for t in (q, k, v))  # [B, H, R, l, *]
    R = qg.shape[2]
    kk, vv = _with_neighbours(kg, causal), _with_neighbours(vg, causal)
    valid = _key_valid(key_mask, B, T, l, q.device)  # [B, R, l]
    loc_allowed = _local_allowed(R, l, T, causal, valid, q.device)  # [B|1, 1, R, l, nk]
    rows = torch.arange(R, device=q.device)
    # strided pairs: (row r, column c) -> (row s, column c), s < r (causal) or s != r
    pair = rows[None, :] < rows[:, None] if causal else rows[None, :] != rows[:, None]  # [r, s]
    str_allowed = pair[None, None, None] & valid.transpose(1, 2)[:, None, :, None, :]
    # [B, 1, l, R, R]: query rows r, key rows s, per column c
    Rc = max(1, query_block // l)
    outs = []
    for r0 in range(0, R, Rc):
        r1 = min(R, r0 + Rc)
        args = (
            qg[:, :, r0:r1],
            kk[:, :, r0:r1],
            vv[:, :, r0:r1],
            loc_allowed[:, :, r0:r1],
            kg,
            vg,
            str_allowed[:, :, :, r0:r1],
        )
        if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
            o = checkpoint(_strided_rows, *args, scale, use_reentrant=False)
        else:
            o = _strided_rows(*args, scale)
        outs.append(o)
    return torch.cat(outs, 2).reshape(B, H, -1, v.shape[-1])[:, :, :T]
