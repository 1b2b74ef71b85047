"""Multi-head softmax attention (Vaswani et al. 2017).

out = softmax(q k^T / sqrt(K) + mask) v, per head. Two interchangeable paths:
- impl="math": the explicit matmul-softmax (`deepnotes.ops.attention.naive_softmax_attn`);
- impl="sdpa": `torch.nn.functional.scaled_dot_product_attention`, which picks a fused
  backend (FlashAttention / memory-efficient) when it can.
Decoding keeps a KV cache, so each new token costs O(t) instead of recomputing O(t^2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deepnotes.mixers import register
from deepnotes.mixers.common import KVCache, MultiHeadMixer
from deepnotes.ops.attention.naive import attention_mask, naive_softmax_attn


def sdpa_attn(q, k, v, *, causal: bool, key_mask: torch.Tensor | None = None):
    """SDPA with our mask convention. q, k, v: [B, H, T, K]; key_mask: [B, T] bool."""
    if key_mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal and q.shape[-2] > 1)
    allowed = attention_mask(
        q.shape[-2], k.shape[-2], causal=causal, key_mask=key_mask, device=q.device
    )
    # A padded query with no allowed key would give NaN (and NaN gradients); let it attend to
    # itself instead. Its output is zeroed by the caller.
    if q.shape[-2] == k.shape[-2]:
        eye = torch.eye(q.shape[-2], dtype=torch.bool, device=q.device)
        allowed = allowed | (eye & ~key_mask[:, None, :, None])
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


@register("softmax")
class SoftmaxAttention(MultiHeadMixer):
    """Softmax attention. kw: n_heads, impl ("sdpa" | "math"), rotary, max_len."""

    supports_step = True
    state_grows = True
    supports_rotary = True

    def __init__(self, d_model: int, *, causal: bool, impl: str = "sdpa", **kw) -> None:
        super().__init__(d_model, causal=causal, **kw)
        if impl not in ("sdpa", "math"):
            raise ValueError(f"SoftmaxAttention: impl must be 'sdpa' or 'math', got {impl!r}")
        self.impl = impl

    def attend(self, q, k, v, key_mask):
        if self.impl == "sdpa":
            return sdpa_attn(q, k, v, causal=self.causal, key_mask=key_mask)
        return naive_softmax_attn(q, k, v, causal=self.causal, key_mask=key_mask)

    def mix(self, x, mask):
        q, k, v = self.project_qkv(x)
        return self.out(self.merge_heads(self.attend(q, k, v, mask)))

    def reference(self, x, mask=None):
        q, k, v = self.project_qkv(x)
        o = naive_softmax_attn(q, k, v, causal=self.causal, key_mask=mask)
        y = self.out(self.merge_heads(o))
        return y if mask is None else y * mask[..., None]

    def init_state(self, batch, device=None, dtype=None):
        self._require_step()
        dtype = dtype or self.qkv.weight.dtype
        device = device or self.qkv.weight.device
        return KVCache(batch, self.n_heads, self.head_dim, device, dtype)

    def step(self, x_t, state: KVCache):
        self.check_step_input(x_t)
        q, k, v = self.project_qkv(x_t[:, None, :], offset=state.length)
        k_all, v_all = state.append(k, v)
        o = naive_softmax_attn(q, k_all, v_all, causal=False)
        return self.out(self.merge_heads(o))[:, 0], state
