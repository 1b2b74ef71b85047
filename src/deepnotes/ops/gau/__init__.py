"""FLASH / GAU mixed-chunk attention (Hua et al. 2022): the explicit reference, the chunked
PyTorch form and the public dispatcher `chunk_gau`.

Shapes: q_quad, k_quad, q_lin, k_lin: [B, T, S] (one head), v: [B, T, E].
"""

from __future__ import annotations

import torch

from deepnotes.ops.gau.chunk import torch_chunk_gau
from deepnotes.ops.gau.naive import naive_gau, relu2_scores, row_normaliser
from deepnotes.ops.gau.recurrent import GAUState, gau_step, init_gau_state, recurrent_gau

BACKENDS = ("auto", "triton", "torch")


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

    backend: "auto" | "triton" | "torch". Until a Triton kernel is registered every backend
    runs the PyTorch form, and "triton" raises ValueError.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "triton":
        raise ValueError("chunk_gau: no Triton kernel is available in this build")
    return torch_chunk_gau(q_quad, k_quad, q_lin, k_lin, v, chunk_size=chunk_size, causal=causal)


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
