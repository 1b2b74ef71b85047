"""Linear attention (Katharopoulos et al. 2020, "Transformers are RNNs").

Replace exp(q . k) by phi(q) . phi(k) with phi = elu + 1; then, per head,

    o_t = phi(q_t) S_t / (phi(q_t) . z_t + eps),  S_t = sum_{s<=t} phi(k_s) v_s^T,
                                                   z_t = sum_{s<=t} phi(k_s),

computed three ways that agree: the explicit masked T x T matrix (`reference`), the chunked
form O(T C K + T K V) (`forward`, causal), and the recurrence (`step`, O(K V) per token).
Non-causal: the sums run over the whole sequence (one global S and z), O(T K V).
"""

from __future__ import annotations

import torch

from deepnotes.mixers import register
from deepnotes.mixers.common import MultiHeadMixer
from deepnotes.ops.linear_attention import (
    chunk_linear_attn,
    feature_map_elu1,
    global_linear_attn,
    naive_linear_attn,
    recurrent_linear_attn,
)


@register("linear")
class LinearAttention(MultiHeadMixer):
    """Linear attention with phi = elu + 1. kw: n_heads, chunk_size, eps, max_len."""

    supports_step = True

    def __init__(
        self, d_model: int, *, causal: bool, chunk_size: int = 64, eps: float = 1e-6, **kw
    ) -> None:
        super().__init__(d_model, causal=causal, **kw)
        if chunk_size <= 0:
            raise ValueError(f"LinearAttention: chunk_size must be positive, got {chunk_size}")
        self.chunk_size = chunk_size  # C: 64 balances the C x C and K x V work for K = 64
        self.eps = eps  # keeps the normaliser away from 0 (phi > 0, so only for tiny sums)

    def _features(self, x, mask, offset: int = 0):
        q, k, v = self.project_qkv(x, offset)
        q, k = feature_map_elu1(q), feature_map_elu1(k)
        if mask is not None:  # a padded key has phi(k) = 0: it adds nothing to S or z
            k = k * mask[:, None, :, None]
        return q, k, v

    def mix(self, x, mask):
        q, k, v = self._features(x, mask)
        if self.causal:
            o, _ = chunk_linear_attn(q, k, v, chunk_size=self.chunk_size, eps=self.eps)
        else:
            o = global_linear_attn(q, k, v, eps=self.eps)
        return self.out(self.merge_heads(o))

    def reference(self, x, mask=None):
        q, k, v = self._features(x, mask)
        o = naive_linear_attn(q, k, v, causal=self.causal, eps=self.eps)
        y = self.out(self.merge_heads(o))
        return y if mask is None else y * mask[..., None]

    def init_state(self, batch, device=None, dtype=None):
        self._require_step()
        w = self.qkv.weight
        device, dtype = device or w.device, dtype or w.dtype
        S = torch.zeros(
            batch, self.n_heads, self.head_dim, self.head_dim, device=device, dtype=dtype
        )
        z = torch.zeros(batch, self.n_heads, self.head_dim, device=device, dtype=dtype)
        return S, z

    def step(self, x_t, state):
        self.check_step_input(x_t)
        q, k, v = self._features(x_t[:, None, :], None)
        o, state = recurrent_linear_attn(q, k, v, initial_state=state, eps=self.eps)
        return self.out(self.merge_heads(o))[:, 0], state
