"""Multi-head softmax attention (Vaswani et al. 2017).

out = softmax(q k^T * scale + mask) v, per head, scale = 1/sqrt(K) by default (`scale=1.0`
gives T5's unscaled attention, which relies on a compensating init of W_q; see
`deepnotes.layers.init`). The attention itself is `deepnotes.layers.attention.attention`,
the one attention of every model, with its interchangeable paths:
- impl="auto" (default): `deepnotes.ops.attention.flash_attn`, our FlashAttention-2 Triton
  kernel on CUDA (fp16/bf16, head dim <= 128) and SDPA elsewhere; with a padding mask, SDPA.
  DEEPNOTES_KERNELS=torch|triton forces either path (see `deepnotes.ops.backend`);
- impl="math": the explicit matmul-softmax;
- impl="sdpa": `torch.nn.functional.scaled_dot_product_attention`, which picks a fused
  backend (FlashAttention / memory-efficient) when it can.
The mixer keeps its packed `qkv` projection (and so its state-dict keys and init).
Decoding keeps a KV cache, so each new token costs O(t) instead of recomputing O(t^2). With
DEEPNOTES_KERNELS=triton the step's one query attends to the cache through
`deepnotes.ops.decode.flash_decode` (the flash-decoding split-KV Triton kernel; on CPU under
Triton's interpreter); otherwise through the explicit matmul-softmax. The kernel stays
opt-in until it has been measured against SDPA on a GPU (`deepnotes bench decode`).
"""

from __future__ import annotations

from deepnotes.layers.attention import attention
from deepnotes.mixers import register
from deepnotes.mixers.common import KVCache, MultiHeadMixer
from deepnotes.ops.attention import naive_softmax_attn
from deepnotes.ops.backend import requested_backend
from deepnotes.ops.decode import flash_decode

IMPLS = ("auto", "sdpa", "math")


@register("softmax")
class SoftmaxAttention(MultiHeadMixer):
    """Softmax attention. kw: n_heads, impl ("auto" | "sdpa" | "math"), scale, rotary, max_len.

    scale: the factor on q k^T; None = 1/sqrt(head_dim) (Vaswani et al. 2017), 1.0 = T5.
    """

    supports_step = True
    state_grows = True
    supports_rotary = True
    supports_scale = True

    def __init__(
        self,
        d_model: int,
        *,
        causal: bool,
        impl: str = "auto",
        scale: float | None = None,
        **kw,
    ) -> None:
        super().__init__(d_model, causal=causal, **kw)
        if impl not in IMPLS:
            raise ValueError(f"SoftmaxAttention: impl must be one of {IMPLS}, got {impl!r}")
        if scale is not None and not scale > 0:
            raise ValueError(f"SoftmaxAttention: scale must be positive, got {scale!r}")
        self.impl = impl
        self.scale = scale

    def attend(self, q, k, v, key_mask):
        """q, k, v: [B, H, T, K]; key_mask: [B, T] bool or None -> [B, H, T, K].

        Padded queries with no allowed key give zeros (their rows are zeroed by `forward`)."""
        return attention(
            q, k, v, causal=self.causal, key_mask=key_mask, scale=self.scale, impl=self.impl
        )

    def mix(self, x, mask):
        q, k, v = self.project_qkv(x)
        return self.out(self.merge_heads(self.attend(q, k, v, mask)))

    def reference(self, x, mask=None):
        q, k, v = self.project_qkv(x)
        o = naive_softmax_attn(q, k, v, causal=self.causal, key_mask=mask, scale=self.scale)
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
        if requested_backend() == "triton":  # opt-in until the kernel is measured on a GPU
            o = flash_decode(q, k_all, v_all, state.length, scale=self.scale)
        else:
            o = attention(q, k_all, v_all, scale=self.scale, impl="math")
        return self.out(self.merge_heads(o))[:, 0], state
