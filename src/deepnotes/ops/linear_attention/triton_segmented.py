"""Sequence-parallel causal linear attention: the chunk kernel run on segments at once.

The chunk kernel (`triton_chunk.py`) gives each (batch, head, value block) one program that
walks the whole sequence, so at long T and small batch the grid is smaller than the GPU
(B*H*NV = 64 programs at T = 32k, D = 64 against 132 multiprocessors on an H100). Here the
sequence is cut into n segments of L positions (whole chunks of the kernel), and:

1. each segment's state sum, S_j = sum_{t in j} k_t v_t^T and z_j = sum_{t in j} k_t, is one
   batched matrix product (k already feature-mapped);
2. an exclusive prefix over segments gives the state before each segment,
   S_<j = S_0 + sum_{i<j} S_i (likewise z), in fp32;
3. the chunk kernel runs on the n segments as n times more (batch, head) rows, each from its
   own initial state.

The result equals the one-walk kernel's up to rounding (the same sums, grouped differently).
The backward is the kernel's, which also returns the gradient of each segment's initial
state; autograd carries it through steps 2 and 1 into k (and the feature map) and v.
Padding to n*L positions appends zero rows after the sequence: causal outputs before them do
not see them, and step 1 sums the feature-mapped keys with the padding masked out.

The grid is n times larger, for the price of reading k and v once more and writing n state
tiles, so it can only pay off where the one-walk grid leaves the GPU idle. The kernel path
(`triton_chunk_linear_attn`) takes it where `triton_chunk.segments_for` says so, a rule
measured by `deepnotes bench kernels`, which times it beside the one-walk kernel (`seg-<n>`
and `walk` rows).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from deepnotes.ops.linear_attention.naive import apply_feature_map


def segment_length(T: int, segments: int, multiple: int) -> int:
    """L: the smallest multiple of `multiple` (the kernel's chunk BT) with segments * L >= T."""
    if segments < 1:
        raise ValueError(f"segments must be >= 1, got {segments}")
    return math.ceil(math.ceil(T / segments) / multiple) * multiple


def _pad_time(t: torch.Tensor, length: int) -> torch.Tensor:
    pad = length - t.shape[2]
    return F.pad(t, (0, 0, 0, pad)) if pad else t


def segmented_chunk_linear_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    segments: int,
    normalize: bool = True,
    initial_state: tuple[torch.Tensor, torch.Tensor] | None = None,
    output_final_state: bool = False,
    eps: float = 1e-6,
    feature_map: str | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
    """`triton_chunk_linear_attn` over `segments` segments at once (see the module docstring).

    q, k: [B, H, T, K], v: [B, H, T, V]; initial_state: (S [B, H, K, V], z [B, H, K]) or None.
    Returns (o [B, H, T, V], (S, z) after the last token if output_final_state else None).
    """
    from deepnotes.ops.linear_attention.triton_chunk import ChunkLinearAttnFunction, config

    B, H, T, K = q.shape
    V = v.shape[-1]
    L = segment_length(T, segments, config(K, V)["BT"])  # whole chunks per segment
    n = math.ceil(T / L)  # segments actually used (fewer when T is short)
    Tp = n * L
    # 1. per-segment state sums, from the feature-mapped keys (padding rows are zero here)
    _, kf = apply_feature_map(q, k, feature_map)
    kf_seg = _pad_time(kf, Tp).view(B, H, n, L, K)
    v_seg = _pad_time(v, Tp).view(B, H, n, L, V)
    # the product accumulates in fp32 inside the GEMM; summed across segments in fp32
    S_seg = (kf_seg.transpose(-1, -2) @ v_seg).float()  # [B, H, n, K, V]
    z_seg = kf_seg.float().sum(3)  # [B, H, n, K]
    # 2. exclusive prefix over segments, plus the caller's initial state
    S_before = S_seg.cumsum(2) - S_seg
    z_before = z_seg.cumsum(2) - z_seg
    if initial_state is not None:
        S_before = S_before + initial_state[0].float()[:, :, None]
        z_before = z_before + initial_state[1].float()[:, :, None]
    # 3. the chunk kernel on B x (H n) rows of L positions, each from its own state
    rows = [_pad_time(t, Tp).reshape(B, H * n, L, t.shape[-1]) for t in (q, k, v)]
    o, _, _ = ChunkLinearAttnFunction.apply(
        *rows,
        S_before.reshape(B, H * n, K, V),
        z_before.reshape(B, H * n, K),
        normalize,
        eps,
        feature_map,
        False,
    )
    o = o.reshape(B, H, Tp, V)[:, :, :T]
    if not output_final_state:
        return o, None
    S_end = S_before[:, :, -1] + S_seg[:, :, -1]
    z_end = z_before[:, :, -1] + z_seg[:, :, -1]
    return o, (S_end.to(q.dtype), z_end.to(q.dtype))
