"""`flash_attn`: softmax attention through the FlashAttention-2 Triton kernels when they apply,
through PyTorch otherwise (see `deepnotes.ops.backend` for the selection rules)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from deepnotes.ops.attention.naive import naive_softmax_attn
from deepnotes.ops.backend import cast_inputs, use_triton

TRITON_DTYPES = (torch.float16, torch.bfloat16)


def _check_shapes(q, k, v) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            "flash_attn: q, k, v must be [B, H, T, D]; got shapes "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape[:2] != k.shape[:2] or k.shape[:3] != v.shape[:3]:
        raise ValueError(
            "flash_attn: batch/head/length mismatch between "
            f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"flash_attn: q and k head dims differ: {q.shape[-1]} vs {k.shape[-1]}")
    if q.shape[2] == 0 or k.shape[2] == 0:
        raise ValueError("flash_attn: empty sequence (T = 0)")


def triton_problem(q, k, v, *, forced: bool) -> str | None:
    """Why the kernel cannot take these inputs (None when it can)."""
    from deepnotes.ops.attention.triton_flash import MAX_HEAD_DIM

    D = q.shape[-1]
    if v.shape[-1] != D:
        return f"the kernel needs equal q/k and v head dims, got {D} and {v.shape[-1]}"
    if D > MAX_HEAD_DIM:
        return f"head dim {D} > {MAX_HEAD_DIM}"
    if q.dtype not in TRITON_DTYPES and not (forced and q.dtype == torch.float32):
        return f"dtype {q.dtype}; the kernel runs fp16/bf16 (fp32 only when forced)"
    return None


def torch_flash_attn(q, k, v, *, causal: bool, scale: float | None = None) -> torch.Tensor:
    """The PyTorch path: SDPA where its causal convention matches ours, else the reference.
    (Scales <= 0 go to the reference too: SDPA's CPU flash kernel returned NaN for them with
    a causal mask, torch 2.13.)"""
    positive = scale is None or scale > 0
    if positive and (not causal or q.shape[2] == k.shape[2]):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)
    # SDPA aligns causal masks to the top-left for T_q != T_k; ours aligns to the end.
    return naive_softmax_attn(q, k, v, causal=causal, scale=scale)


def flash_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool,
    scale: float | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """softmax(q k^T * scale + mask) v, without materialising the T x T scores on CUDA.

    q: [B, H, T_q, D], k: [B, H, T_k, D], v: [B, H, T_k, Dv] -> [B, H, T_q, Dv].
    q, k and v are first cast to one dtype, which is the output's: the autocast dtype under
    `torch.autocast`, else their promoted dtype (`deepnotes.ops.backend.cast_inputs`).
    scale defaults to 1/sqrt(D). Causal masks align queries to the end of the keys (query i
    sits at position i + T_k - T_q), as in decoding with a KV cache; a query that sees no
    key returns zeros. backend: "auto" | "triton" | "torch" (see deepnotes.ops.backend).
    The kernel takes fp16/bf16 (fp32 when forced), D <= 128 with Dv = D, scale > 0, any T;
    it runs as
    the custom op `torch.ops.deepnotes.flash_attn_fwd` (opaque to `torch.compile`).
    """
    _check_shapes(q, k, v)
    q, k, v = cast_inputs(q, k, v)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)

    def problem(forced: bool) -> str | None:
        if scale <= 0:  # the kernel takes each row's maximum before scaling
            return f"scale {scale} <= 0; the kernel needs scale > 0"
        return triton_problem(q, k, v, forced=forced)

    if use_triton("flash_attn", backend, (q, k, v), problem):
        from deepnotes.ops.attention.triton_flash import triton_flash_attn

        return triton_flash_attn(q, k, v, causal=causal, scale=scale)
    return torch_flash_attn(q, k, v, causal=causal, scale=scale)
