"""Chunked causal linear attention in PyTorch: O(T C d + T d^2) time, O(T d + (T/C) d^2) memory.

The sequence is cut into chunks of C positions. Within a chunk the masked C x C matrix
(q k^T) is used directly; across chunks each query reads the running state
S = sum k v^T, z = sum k of all earlier chunks (an exclusive prefix sum over chunk states).
This is the form fla's `chunk_linear_attn` uses; the Triton kernel mirrors it.

`chunk_linear_attn`, the public op, dispatches between this PyTorch form and the Triton
kernel (`triton_chunk.py`); `naive.py` holds the references.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deepnotes.ops.backend import cast_inputs, use_triton
from deepnotes.ops.linear_attention.naive import apply_feature_map, check_qkv


def _pad_to_chunks(t: torch.Tensor, C: int) -> torch.Tensor:
    """[B, H, T, X] -> [B, H, G, C, X], zero-padding T up to a multiple of C."""
    B, H, T, X = t.shape
    pad = (-T) % C
    if pad:
        t = F.pad(t, (0, 0, 0, pad))
    return t.view(B, H, -1, C, X)


def torch_chunk_linear_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    normalize: bool = True,
    chunk_size: int = 64,
    initial_state: tuple[torch.Tensor, torch.Tensor] | None = None,
    output_final_state: bool = False,
    eps: float = 1e-6,
    feature_map: str | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
    """Causal linear attention by chunks.

    q, k: [B, H, T, K] (feature-mapped unless `feature_map` names one), v: [B, H, T, V];
    initial_state: (S [B, H, K, V], z [B, H, K]) or None.
    Returns (o [B, H, T, V], (S, z) after the last token if output_final_state else None).
    Zero padding to a multiple of chunk_size is exact: a zero key adds nothing to S or z.
    """
    check_qkv(q, k, v)
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    q, k = apply_feature_map(q, k, feature_map)
    B, H, T, K = q.shape
    C = chunk_size
    qc, kc, vc = (_pad_to_chunks(t, C) for t in (q, k, v))  # [B, H, G, C, *]
    # Intra-chunk: the masked C x C matrix.
    A = (qc @ kc.transpose(-1, -2)).tril()  # [B, H, G, C, C]
    o = A @ vc
    # Inter-chunk: exclusive prefix sums of the chunk states.
    dS = kc.transpose(-1, -2) @ vc  # [B, H, G, K, V]
    dS_cum = dS.cumsum(2)
    S_before = torch.cat([torch.zeros_like(dS[:, :, :1]), dS_cum[:, :, :-1]], 2)
    if initial_state is not None:
        S_before = S_before + initial_state[0][:, :, None]
    o = o + qc @ S_before
    if normalize or output_final_state:
        dz = kc.sum(3)  # [B, H, G, K]
        dz_cum = dz.cumsum(2)
        z_before = torch.cat([torch.zeros_like(dz[:, :, :1]), dz_cum[:, :, :-1]], 2)
        if initial_state is not None:
            z_before = z_before + initial_state[1][:, :, None]
    if normalize:
        den = (qc @ z_before[..., None])[..., 0] + A.sum(-1)  # [B, H, G, C]
        o = o / (den[..., None] + eps)
    o = o.reshape(B, H, -1, v.shape[-1])[:, :, :T]
    final = None
    if output_final_state:
        final = (S_before[:, :, -1] + dS[:, :, -1], z_before[:, :, -1] + dz[:, :, -1])
    return o, final


def global_linear_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    normalize: bool = True,
    eps: float = 1e-6,
    feature_map: str | None = None,
) -> torch.Tensor:
    """Non-causal linear attention: o_t = q_t S / (q_t . z + eps).

    S = sum_s k_s v_s^T and z = sum_s k_s run over the whole sequence.

    q, k: [B, H, T, K], v: [B, H, T, V] -> [B, H, T, V]; O(T K V) time, no T x T matrix.
    """
    check_qkv(q, k, v)
    q, k = apply_feature_map(q, k, feature_map)
    S = k.transpose(-1, -2) @ v  # [B, H, K, V]
    o = q @ S
    if normalize:
        z = k.sum(-2)  # [B, H, K]
        o = o / ((q @ z[..., None]) + eps)
    return o


def _triton_problem(q, k, v, initial_state, feature_map, forced: bool) -> str | None:
    """Why the Triton kernel cannot take these inputs (None when it can)."""
    from deepnotes.ops.linear_attention.triton_chunk import MAX_K, MAX_V

    check_qkv(q, k, v)
    if q.dtype not in (torch.float16, torch.bfloat16) and not (forced and q.dtype == torch.float32):
        return f"dtype {q.dtype}; the kernel runs fp16/bf16 (fp32 only when forced)"
    if not (q.dtype == k.dtype == v.dtype):
        return f"q, k, v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}"
    if q.shape[-1] > MAX_K or v.shape[-1] > MAX_V:
        return f"head dims K={q.shape[-1]}, V={v.shape[-1]} exceed {MAX_K}/{MAX_V}"
    if feature_map not in (None, "elu1"):
        return f"feature_map {feature_map!r} is not fused in the kernel"
    if q.shape[2] == 0:
        return "empty sequence (T = 0)"
    if initial_state is not None and (
        tuple(initial_state[0].shape) != (*q.shape[:2], q.shape[-1], v.shape[-1])
        or tuple(initial_state[1].shape) != (*q.shape[:2], q.shape[-1])
    ):
        return "initial_state must be (S [B, H, K, V], z [B, H, K])"
    return None


def chunk_linear_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    normalize: bool = True,
    chunk_size: int = 64,
    initial_state: tuple[torch.Tensor, torch.Tensor] | None = None,
    output_final_state: bool = False,
    eps: float = 1e-6,
    feature_map: str | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
    """Causal chunked linear attention; see `torch_chunk_linear_attn` for the arguments.

    backend: "auto" | "triton" | "torch" (see `deepnotes.ops.backend`). The Triton kernel
    (`triton_chunk.py`) runs on CUDA for fp16/bf16 inputs with K, V <= 256; it picks its own
    chunk length (the result does not depend on it). q, k, v are first cast to one dtype, the
    output's: the autocast dtype under `torch.autocast`, else their promoted dtype
    (`deepnotes.ops.backend.cast_inputs`). The kernel reads bf16/fp16 but keeps S, z and the
    normaliser in fp32 registers.
    """
    q, k, v = cast_inputs(q, k, v)
    if use_triton(
        "chunk_linear_attn",
        backend,
        (q, k, v),
        lambda forced: _triton_problem(q, k, v, initial_state, feature_map, forced),
    ):
        from deepnotes.ops.linear_attention.triton_chunk import triton_chunk_linear_attn

        return triton_chunk_linear_attn(
            q,
            k,
            v,
            normalize=normalize,
            initial_state=initial_state,
            output_final_state=output_final_state,
            eps=eps,
            feature_map=feature_map,
        )
    # Under CUDA autocast the torch form's cumsum and division run in fp32 (autocast's fp32
    # list); return the dtype both paths promise.
    o, final_state = torch_chunk_linear_attn(
        q,
        k,
        v,
        normalize=normalize,
        chunk_size=chunk_size,
        initial_state=initial_state,
        output_final_state=output_final_state,
        eps=eps,
        feature_map=feature_map,
    )
    return o.to(q.dtype), final_state
