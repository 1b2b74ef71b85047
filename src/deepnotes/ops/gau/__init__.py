"""FLASH / GAU mixed-chunk attention (Hua et al. 2022): the explicit reference, the chunked
PyTorch form and the public dispatcher `chunk_gau`.

Shapes: q_quad, k_quad, q_lin, k_lin: [B, T, S] (one head), v: [B, T, E].
"""

from __future__ import annotations

from deepnotes.ops.gau.chunk import chunk_gau, torch_chunk_gau
from deepnotes.ops.gau.naive import SCALINGS, naive_gau, relu2_scores, row_normaliser
from deepnotes.ops.gau.recurrent import GAUState, gau_step, init_gau_state, recurrent_gau

__all__ = [
    "GAUState",
    "SCALINGS",
    "chunk_gau",
    "gau_step",
    "init_gau_state",
    "naive_gau",
    "recurrent_gau",
    "relu2_scores",
    "row_normaliser",
    "torch_chunk_gau",
]
