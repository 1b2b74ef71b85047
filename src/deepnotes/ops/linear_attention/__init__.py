"""Linear attention (Katharopoulos et al. 2020): references, the chunked PyTorch form and the
public dispatcher `chunk_linear_attn`.

Layout: q, k: [B, H, T, K], v: [B, H, T, V]. q and k are feature-mapped (non-negative)
by the caller, or by the op when `feature_map="elu1"` is passed.
"""

from __future__ import annotations

from deepnotes.ops.linear_attention.chunk import (
    chunk_linear_attn,
    global_linear_attn,
    torch_chunk_linear_attn,
)
from deepnotes.ops.linear_attention.naive import (
    feature_map_elu1,
    naive_linear_attn,
    recurrent_linear_attn,
)

__all__ = [
    "chunk_linear_attn",
    "feature_map_elu1",
    "global_linear_attn",
    "naive_linear_attn",
    "recurrent_linear_attn",
    "torch_chunk_linear_attn",
]
