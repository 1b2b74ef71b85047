"""Performer attention (Choromanski et al. 2021): FAVOR+ positive orthogonal random features.

softmax(q k^T / sqrt(K)) v is estimated by phi(q) (phi(k)^T v) / phi(q) (phi(k)^T 1), with
phi(x) = exp(W x' - |x'|^2 / 2) / sqrt(m), x' = x K^(-1/4), and W: [m, K] orthogonal random
features (`deepnotes.ops.linear_attention.favor`). Linear in T: O(T m K) per head.

- Causal: prefix sums of phi(k) v^T, computed by chunks; the overflow stabiliser is a running
  (prefix) max over keys, with the accumulated state rescaled when it grows, so no position
  looks ahead. `step` carries (S, running max): O(m K) per token.
- Non-causal: one global sum (and a global max as stabiliser).
- Features: one W shared by all heads, a buffer (saved with the model). `redraw_interval=N`
  draws fresh features every N training-mode forward calls (the paper's feature redrawing);
  `redraw_features()` does it by hand. Eval mode never redraws.
- `reference()`: the explicit T x T matrix phi(q_i) . phi(k_j) with the same features.
"""

from __future__ import annotations

import math

import torch

from deepnotes.mixers import register
from deepnotes.mixers.common import MultiHeadMixer
from deepnotes.ops.linear_attention.favor import (
    favor_attn,
    favor_logits,
    finite_neg_inf,
    naive_favor_attn,
    orthogonal_random_features,
    safe_div,
)


@register("performer")
class PerformerAttention(MultiHeadMixer):
    """FAVOR+ attention. kw: n_heads, n_features, redraw_interval, chunk_size, max_len."""

    supports_step = True

    def __init__(
        self,
        d_model: int,
        *,
        causal: bool,
        n_features: int | None = None,
        redraw_interval: int | None = None,
        chunk_size: int = 64,
        **kw,
    ) -> None:
        super().__init__(d_model, causal=causal, **kw)
        K = self.head_dim
        # m = K ln K random features: the paper's m = Theta(d log d) (Theorem 4).
        self.n_features = n_features or max(1, round(K * math.log(max(K, 2))))
        if self.n_features <= 0:
            raise ValueError(f"Performer: n_features must be positive, got {n_features}")
        if redraw_interval is not None and redraw_interval <= 0:
            raise ValueError(f"Performer: redraw_interval must be positive, got {redraw_interval}")
        self.redraw_interval = redraw_interval  # None: fixed features
        self.chunk_size = chunk_size  # chunk length of the causal prefix-sum form
        self.register_buffer("W", orthogonal_random_features(self.n_features, K))
        self._calls = 0

    @torch.no_grad()
    def redraw_features(self, generator: torch.Generator | None = None) -> None:
        """Draw a fresh W (same shape, device and dtype)."""
        W = orthogonal_random_features(self.n_features, self.head_dim, generator=generator)
        self.W.copy_(W.to(self.W))

    def _maybe_redraw(self) -> None:
        if self.training and self.redraw_interval is not None:
            if self._calls % self.redraw_interval == 0 and self._calls > 0:
                self.redraw_features()
            self._calls += 1

    def mix(self, x, mask):
        self._maybe_redraw()
        q, k, v = self.project_qkv(x)
        o = favor_attn(
            q, k, v, self.W, causal=self.causal, key_mask=mask, chunk_size=self.chunk_size
        )
        return self.out(self.merge_heads(o))

    def reference(self, x, mask=None):
        q, k, v = self.project_qkv(x)
        o = naive_favor_attn(q, k, v, self.W, causal=self.causal, key_mask=mask)
        y = self.out(self.merge_heads(o))
        return y if mask is None else y * mask[..., None]

    def init_state(self, batch, device=None, dtype=None):
        """(S [B, H, m, K+1] normalised at c, running max c [B, H])."""
        self._require_step()
        device, dtype = device or self.W.device, dtype or self.W.dtype
        S = torch.zeros(
            batch, self.n_heads, self.n_features, self.head_dim + 1, device=device, dtype=dtype
        )
        c = torch.full((batch, self.n_heads), finite_neg_inf(dtype), device=device, dtype=dtype)
        return S, c

    def step(self, x_t, state):
        self.check_step_input(x_t)
        S, c = state
        q, k, v = (t[:, :, 0] for t in self.project_qkv(x_t[:, None, :]))  # [B, H, K]
        aq, ak = favor_logits(q, self.W), favor_logits(k, self.W)  # [B, H, m]
        c_new = torch.maximum(c, ak.detach().amax(-1))
        v1 = torch.cat([v, torch.ones_like(v[..., :1])], -1)
        phi_k = torch.exp(ak - c_new[..., None])
        S = S * torch.exp(c - c_new)[..., None, None] + phi_k[..., :, None] * v1[..., None, :]
        phi_q = torch.exp(aq - aq.detach().amax(-1, keepdim=True))
        num = (phi_q[..., None, :] @ S)[..., 0, :]  # [B, H, K+1]
        o = safe_div(num[..., :-1], num[..., -1:])
        return self.out(o.reshape(o.shape[0], -1)), (S, c_new)
