"""Linear attention (Katharopoulos et al. 2020): references, the chunked PyTorch form and the
public dispatcher `chunk_linear_attn`.

Layout: q, k: [B, H, T, K], v: [B, H, T, V]. q and k are feature-mapped (non-negative)
by the caller, or by the op when `feature_map="elu1"` is passed.
"""

from __future__ import annotations

import torch

from deepnotes.ops.linear_attention.chunk import global_linear_attn, torch_chunk_linear_attn
from deepnotes.ops.linear_attention.naive import (
    feature_map_elu1,
    naive_linear_attn,
    recurrent_linear_attn,
)

BACKENDS = ("auto", "triton", "torch")


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

    backend: "auto" | "triton" | "torch". Until a Triton kernel is registered every backend
    runs the PyTorch form, and "triton" raises ValueError.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "triton":
        raise ValueError("chunk_linear_attn: no Triton kernel is available in this build")
    return torch_chunk_linear_attn(
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


__all__ = [
    "chunk_linear_attn",
    "feature_map_elu1",
    "global_linear_attn",
    "naive_linear_attn",
    "recurrent_linear_attn",
    "torch_chunk_linear_attn",
]
