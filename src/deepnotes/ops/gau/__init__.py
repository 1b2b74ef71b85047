"""FLASH / GAU mixed-chunk attention (Hua et al. 2022): the explicit reference, the chunked
PyTorch form and the public dispatcher `chunk_gau`.

Shapes: q_quad, k_quad, q_lin, k_lin: [B, T, S] (one head), v: [B, T, E].
"""

from __future__ import annotations

import torch

from deepnotes.ops.backend import cast_inputs, use_triton
from deepnotes.ops.gau.chunk import torch_chunk_gau
from deepnotes.ops.gau.naive import check_gau_inputs, naive_gau, relu2_scores, row_normaliser
from deepnotes.ops.gau.recurrent import GAUState, gau_step, init_gau_state, recurrent_gau


def _triton_problem(xs, chunk_size: int, forced: bool) -> str | None:
    """Why the Triton kernels cannot take these inputs (None when it can)."""
    from deepnotes.ops.gau.triton_chunk import MAX_S

    dtypes = {t.dtype for t in xs}
    if len(dtypes) > 1:
        return f"inputs have different dtypes: {sorted(map(str, dtypes))}"
    (dtype,) = dtypes
    if dtype not in (torch.float16, torch.bfloat16) and not (forced and dtype == torch.float32):
        return f"dtype {dtype}; the kernels run fp16/bf16 (fp32 only when forced)"
    if xs[0].shape[-1] > MAX_S:
        return f"shared width S = {xs[0].shape[-1]} > {MAX_S}"
    if chunk_size < 16 or chunk_size & (chunk_size - 1):
        return f"chunk_size {chunk_size} is not a power of two >= 16"
    return None


def chunk_gau(
    q_quad: torch.Tensor,
    k_quad: torch.Tensor,
    q_lin: torch.Tensor,
    k_lin: torch.Tensor,
    v: torch.Tensor,
    *,
    chunk_size: int,
    causal: bool,
    backend: str = "auto",
) -> torch.Tensor:
    """Mixed-chunk attention; see `torch_chunk_gau`.

    backend: "auto" | "triton" | "torch" (see `deepnotes.ops.backend`). The Triton kernels
    (`triton_chunk.py`) run on CUDA for fp16/bf16 inputs with S <= 128 and a power-of-two
    chunk_size >= 16; elsewhere the chunked PyTorch form runs. The five inputs are first cast
    to one dtype, the output's: the autocast dtype under `torch.autocast`, else their promoted
    dtype (`deepnotes.ops.backend.cast_inputs`). (The GAU mixer's roles are fp32 under bf16
    autocast, z * gamma + beta with fp32 parameters, while v is bf16.)
    """
    check_gau_inputs(q_quad, k_quad, q_lin, k_lin, v, chunk_size)
    xs = cast_inputs(q_quad, k_quad, q_lin, k_lin, v)
    if use_triton("chunk_gau", backend, xs, lambda forced: _triton_problem(xs, chunk_size, forced)):
        from deepnotes.ops.gau.triton_chunk import triton_chunk_gau

        return triton_chunk_gau(*xs, chunk_size=chunk_size, causal=causal)
    return torch_chunk_gau(*xs, chunk_size=chunk_size, causal=causal)


__all__ = [
    "GAUState",
    "chunk_gau",
    "gau_step",
    "init_gau_state",
    "naive_gau",
    "recurrent_gau",
    "relu2_scores",
    "row_normaliser",
    "torch_chunk_gau",
]
