"""Single-token decoding attention against a KV cache: flash-decoding (split-KV) on CUDA,
SDPA elsewhere, and the split algorithm in PyTorch for the tests.

Layout: q [B, H, 1, D]; k_cache, v_cache [B, H_kv, S, D]; valid length per row.
"""

from __future__ import annotations

from deepnotes.ops.decode.flash_decode import flash_decode, sdpa_decode, torch_split_decode

__all__ = ["flash_decode", "sdpa_decode", "torch_split_decode"]
