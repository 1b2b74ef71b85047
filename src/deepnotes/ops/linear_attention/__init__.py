"""Linear attention (Katharopoulos et al. 2020): references, the chunked PyTorch form and the
public dispatcher `chunk_linear_attn`.

Layout: q, k: [B, H, T, K], v: [B, H, T, V]. q and k are feature-mapped (non-negative)
by the caller, or by the op when `feature_map="elu1"` is passed.
"""

from __future__ import annotations

import torch

from deepnotes.ops.backend import cast_inputs, use_triton
from deepnotes.ops.linear_attention.chunk import global_linear_attn, torch_chunk_linear_attn
from deepnotes.ops.linear_attention.naive import (
    check_qkv,
    feature_map_elu1,
    naive_linear_attn,
    recurrent_linear_attn,
)


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


__all__ = [
    "chunk_linear_attn",
    "feature_map_elu1",
    "global_linear_attn",
    "naive_linear_attn",
    "recurrent_linear_attn",
    "torch_chunk_linear_attn",
]
