"""Multi-head attention for every model: self or cross, masks, additive bias, causal, dropout.

out = softmax(q k^T * scale + bias + mask) v per head (Vaswani et al. 2017, eq. 1), with
scale = 1/sqrt(K) by default. Two pieces:
- `attention(q, k, v, ...)`: the functional form on [B, H, T, K] heads. It dispatches
  between three interchangeable paths (`impl`):
  - "auto" (default): our `flash_attn` (the FlashAttention-2 Triton kernel on CUDA, SDPA or
    the reference elsewhere) when there is no key mask, bias or dropout; otherwise SDPA;
  - "sdpa": `torch.nn.functional.scaled_dot_product_attention`;
  - "math": the explicit matmul-softmax (`math_attention`, which can also return weights);
  - "flash": always `flash_attn` (`DEEPNOTES_KERNELS=triton` then forces the kernel); it
    takes no key mask, bias or dropout.
- `MultiHeadAttention`: separate q/k/v/out projections around it, so that the weights of
  transformers' DETR/Swin/ViT attention, diffusers' `Attention` and (through
  `load_from_torch_mha`) `torch.nn.MultiheadAttention` map onto ours one to one.

Conventions shared with the rest of the project:
- key_mask: [B, S] bool, True = a real key that may be attended (torch's `key_padding_mask`
  is its negation);
- causal with T != S aligns the queries to the end of the keys (query i sits at position
  i + S - T), as in decoding with a KV cache;
- a query with no allowed key (all keys masked, or a bias row of -inf) returns zeros, with
  finite (zero) gradients, on every path. A caller whose bias has no -inf (and that passes
  no key_mask or causal) can say so with `finite_bias=True`, which skips that guard and its
  pass over the output (Swin's windows: the shift mask is -100, not -inf).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.ops.attention import flash_attn

IMPLS = ("auto", "sdpa", "math", "flash")

RopeFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _check_inputs(q, k, v, key_mask, attn_bias, dropout_p, scale, impl) -> None:
    """Raise ValueError naming the first problem with attention's inputs."""
    if impl not in IMPLS:
        raise ValueError(f"attention: impl must be one of {IMPLS}, got {impl!r}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"attention: {name} must be a 4-D tensor [B, H, T, K], got {shape}")
        if not t.is_floating_point():
            raise ValueError(f"attention: {name} must be floating point, got {t.dtype}")
    if not q.dtype == k.dtype == v.dtype:
        raise ValueError(f"attention: q, k, v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")
    shapes = f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
    if not q.shape[:2] == k.shape[:2] == v.shape[:2]:
        raise ValueError(f"attention: batch or head counts differ: {shapes}")
    if k.shape[2] != v.shape[2]:
        raise ValueError(f"attention: k and v lengths differ: {shapes}")
    if q.shape[3] != k.shape[3]:
        raise ValueError(f"attention: q and k head dims differ: {shapes}")
    if q.shape[2] == 0 or k.shape[2] == 0:
        raise ValueError(f"attention: empty sequence: {shapes}")
    B, H, T, _ = q.shape
    S = k.shape[2]
    if key_mask is not None:
        if not isinstance(key_mask, torch.Tensor) or key_mask.dtype != torch.bool:
            got = key_mask.dtype if isinstance(key_mask, torch.Tensor) else type(key_mask)
            raise ValueError(f"attention: key_mask must be bool (True = real key), got {got}")
        if tuple(key_mask.shape) != (B, S):
            raise ValueError(
                f"attention: key_mask must have shape [B, S] = {(B, S)}, "
                f"got {tuple(key_mask.shape)}"
            )
    if attn_bias is not None:
        if not isinstance(attn_bias, torch.Tensor) or not attn_bias.is_floating_point():
            got = attn_bias.dtype if isinstance(attn_bias, torch.Tensor) else type(attn_bias)
            raise ValueError(f"attention: attn_bias must be a float tensor, got {got}")
        try:
            ok = torch.broadcast_shapes(attn_bias.shape, (B, H, T, S)) == (B, H, T, S)
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(
                f"attention: attn_bias of shape {tuple(attn_bias.shape)} does not broadcast "
                f"to [B, H, T, S] = {(B, H, T, S)}"
            )
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"attention: dropout_p must be in [0, 1), got {dropout_p!r}")
    if scale is not None and not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"attention: scale must be positive and finite, got {scale!r}")
    if impl == "flash" and (key_mask is not None or attn_bias is not None or dropout_p > 0):
        raise ValueError(
            "attention: impl='flash' takes no key_mask, attn_bias or dropout "
            "(use 'auto', 'sdpa' or 'math')"
        )


def allowed_pairs(
    T: int, S: int, *, causal: bool, key_mask: torch.Tensor | None, device
) -> torch.Tensor | None:
    """Boolean [B or 1, 1, T, S] of the (query, key) pairs that may attend, or None for all.

    Causal queries are aligned to the end of the keys: query i sits at position i + S - T.
    """
    allowed = None
    if causal:
        i = torch.arange(T, device=device)[:, None] + (S - T)
        j = torch.arange(S, device=device)[None, :]
        allowed = (j <= i)[None, None]
    if key_mask is not None:
        km = key_mask[:, None, None, :]
        allowed = km if allowed is None else allowed & km
    return allowed


def math_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    key_mask: torch.Tensor | None = None,
    attn_bias: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The explicit path: returns (out [B, H, T, Dv], weights [B, H, T, S]).

    Same arguments as `attention`. The weights are the softmax before dropout: each row sums
    to 1, or is all zeros for a query with no allowed key.
    """
    _check_inputs(q, k, v, key_mask, attn_bias, dropout_p, scale, "math")
    return _math(q, k, v, causal, key_mask, attn_bias, dropout_p, scale)


def _math(q, k, v, causal, key_mask, attn_bias, dropout_p, scale, finite_bias=False):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = torch.einsum("bhik,bhjk->bhij", q, k) * scale
    if attn_bias is not None:
        s = s + attn_bias.to(s.dtype)
    allowed = allowed_pairs(
        q.shape[-2], k.shape[-2], causal=causal, key_mask=key_mask, device=q.device
    )
    if allowed is None and (attn_bias is None or finite_bias):
        p = torch.softmax(s, dim=-1)
    else:
        if allowed is not None:
            s = s.masked_fill(~allowed, float("-inf"))
        # A row with no finite score would give NaN; give it zeros (and zero gradients).
        any_key = (s > float("-inf")).any(dim=-1, keepdim=True)
        p = torch.softmax(s.masked_fill(~any_key, 0.0), dim=-1) * any_key
    weights = p
    if dropout_p > 0:
        p = F.dropout(p, p=dropout_p)
    return p @ v, weights


def _sdpa(q, k, v, causal, key_mask, attn_bias, dropout_p, scale, finite_bias=False):
    T, S = q.shape[-2], k.shape[-2]
    if key_mask is None and attn_bias is None and (not causal or T == S):
        return F.scaled_dot_product_attention(
            q, k, v, dropout_p=dropout_p, is_causal=causal and T > 1, scale=scale
        )
    if finite_bias and key_mask is None and not causal:  # every row has an allowed key
        bias = attn_bias.to(q.dtype)
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=dropout_p, scale=scale
        )
    allowed = allowed_pairs(T, S, causal=causal, key_mask=key_mask, device=q.device)
    if attn_bias is None:
        any_key = allowed.any(dim=-1, keepdim=True)
        # A query with no allowed key would give NaN (and NaN gradients): let it attend to
        # every key, then zero its output below.
        mask = allowed | ~any_key
    else:
        bias = attn_bias.to(q.dtype)
        if allowed is not None:
            bias = torch.where(allowed, bias, float("-inf"))
        any_key = (bias > float("-inf")).any(dim=-1, keepdim=True)
        mask = torch.where(any_key, bias, 0.0)
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)
    return torch.where(any_key, o, torch.zeros((), dtype=o.dtype, device=o.device))


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    key_mask: torch.Tensor | None = None,
    attn_bias: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
    impl: str = "auto",
    finite_bias: bool = False,
) -> torch.Tensor:
    """softmax(q k^T * scale + attn_bias, restricted to allowed pairs) v.

    q: [B, H, T, K], k: [B, H, S, K], v: [B, H, S, Dv] (one floating dtype) -> [B, H, T, Dv].
    causal: query i sees keys j <= i + S - T. key_mask: [B, S] bool, True = real key.
    attn_bias: additive float, broadcastable to [B, H, T, S] (relative-position bias; -inf
    forbids a pair); it combines with key_mask and causal. dropout_p: dropout on the
    attention weights (the caller sets 0 outside training). scale: factor on q k^T, None =
    1/sqrt(K). impl: "auto" | "sdpa" | "math" | "flash" (see the module docstring).
    A query with no allowed key returns zeros. finite_bias: the caller promises attn_bias
    holds no -inf, so that without key_mask and causal every query has an allowed key and
    the guard for rows without one (an extra pass over the output) is skipped.
    """
    _check_inputs(q, k, v, key_mask, attn_bias, dropout_p, scale, impl)
    plain = key_mask is None and attn_bias is None and dropout_p == 0
    if impl == "flash" or (impl == "auto" and plain):
        return flash_attn(q, k, v, causal=causal, scale=scale)
    args = (q, k, v, causal, key_mask, attn_bias, dropout_p, scale, finite_bias)
    if impl == "math":
        return _math(*args)[0]
    return _sdpa(*args)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate q/k/v/out projections.

    d_model: width of the queries' input x and of the output; n_heads divides it. d_context:
    width of the context (keys and values) in cross-attention, None = d_model. bias: biases
    on the four projections. dropout: attention-weight dropout, active only in training.
    scale: factor on q k^T, None = 1/sqrt(d_model / n_heads). impl: see `attention`.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        d_context: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        scale: float | None = None,
        impl: str = "auto",
    ) -> None:
        super().__init__()
        if d_model <= 0 or n_heads <= 0 or d_model % n_heads:
            raise ValueError(
                f"MultiHeadAttention: n_heads = {n_heads} must divide d_model = {d_model}"
            )
        d_context = d_model if d_context is None else d_context
        if d_context <= 0:
            raise ValueError(f"MultiHeadAttention: d_context must be positive, got {d_context}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MultiHeadAttention: dropout must be in [0, 1), got {dropout!r}")
        if impl not in IMPLS:
            raise ValueError(f"MultiHeadAttention: impl must be one of {IMPLS}, got {impl!r}")
        if scale is not None and not scale > 0:
            raise ValueError(f"MultiHeadAttention: scale must be positive, got {scale!r}")
        self.d_model, self.n_heads, self.d_context = d_model, n_heads, d_context
        self.head_dim = d_model // n_heads
        self.dropout, self.scale, self.impl = dropout, scale, impl
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_context, d_model, bias=bias)
        self.v_proj = nn.Linear(d_context, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        """[B, T, H*K] -> [B, H, T, K]."""
        B, T, _ = t.shape
        return t.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)

    def _check(self, x, context, value) -> None:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(
                f"MultiHeadAttention: x must be [B, T, {self.d_model}], got {tuple(x.shape)}"
            )
        if context is not None and (
            context.dim() != 3
            or context.shape[0] != x.shape[0]
            or context.shape[-1] != self.d_context
        ):
            raise ValueError(
                f"MultiHeadAttention: context must be [B={x.shape[0]}, S, {self.d_context}], "
                f"got {tuple(context.shape)}"
            )
        if context is None and self.d_context != self.d_model:
            raise ValueError(
                f"MultiHeadAttention: d_context = {self.d_context} != d_model = "
                f"{self.d_model}, so a context is required"
            )
        if value is not None:
            keys = x if context is None else context
            if value.shape != keys.shape:
                raise ValueError(
                    f"MultiHeadAttention: value must have the keys' shape {tuple(keys.shape)}, "
                    f"got {tuple(value.shape)}"
                )

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        value: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
        attn_bias: torch.Tensor | None = None,
        causal: bool = False,
        rope: RopeFn | None = None,
        need_weights: bool = False,
    ):
        """x: [B, T, d_model]; context: [B, S, d_context] or None (self-attention).

        value: [B, S, d_context] fed to v_proj instead of the context (DETR adds positions
        to queries and keys only); default the context, or x. key_mask: [B, S] bool, True =
        real key. attn_bias: additive, broadcastable to [B, H, T, S]. rope: (q, k) -> (q, k)
        on [B, H, T, K] heads, applied after the projections. Returns out [B, T, d_model],
        or (out, weights [B, H, T, S]) with need_weights (computed by the math path).
        """
        self._check(x, context, value)
        keys = x if context is None else context
        value = keys if value is None else value
        q = self._heads(self.q_proj(x))
        k = self._heads(self.k_proj(keys))
        v = self._heads(self.v_proj(value))
        if rope is not None:
            q, k = rope(q, k)
        p = self.dropout if self.training else 0.0
        kw = dict(causal=causal, key_mask=key_mask, attn_bias=attn_bias, dropout_p=p)
        if need_weights:
            o, weights = math_attention(q, k, v, scale=self.scale, **kw)
        else:
            o = attention(q, k, v, scale=self.scale, impl=self.impl, **kw)
        B, H, T, K = o.shape
        out = self.out_proj(o.transpose(1, 2).reshape(B, T, H * K))
        return (out, weights) if need_weights else out

    @torch.no_grad()
    def load_from_torch_mha(self, mha: nn.MultiheadAttention) -> MultiHeadAttention:
        """Copy the weights of a `torch.nn.MultiheadAttention` into this module; returns self.

        torch packs q/k/v into `in_proj_weight` [3E, E] when kdim = vdim = embed_dim, else
        keeps `q_proj_weight`, `k_proj_weight`, `v_proj_weight`; `in_proj_bias` [3E] is
        packed either way. Its `key_padding_mask` is the negation of our key_mask, and its
        float `attn_mask` is our attn_bias.
        """
        E = mha.embed_dim
        if mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError("load_from_torch_mha: add_bias_kv / add_zero_attn have no equivalent")
        if (E, mha.num_heads) != (self.d_model, self.n_heads):
            raise ValueError(
                f"load_from_torch_mha: torch module has embed_dim {E}, {mha.num_heads} heads; "
                f"ours has d_model {self.d_model}, {self.n_heads} heads"
            )
        if mha.kdim != mha.vdim or mha.kdim != self.d_context:
            raise ValueError(
                f"load_from_torch_mha: torch kdim {mha.kdim}, vdim {mha.vdim}; ours takes "
                f"one context width d_context = {self.d_context}"
            )
        has_bias, ours_bias = mha.in_proj_bias is not None, self.q_proj.bias is not None
        if has_bias != ours_bias:
            raise ValueError(f"load_from_torch_mha: torch bias={has_bias}, ours bias={ours_bias}")
        if mha._qkv_same_embed_dim:
            wq, wk, wv = mha.in_proj_weight.chunk(3, dim=0)
        else:
            wq, wk, wv = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
        for lin, w in ((self.q_proj, wq), (self.k_proj, wk), (self.v_proj, wv)):
            lin.weight.copy_(w)
        self.out_proj.weight.copy_(mha.out_proj.weight)
        if has_bias:
            for lin, b in zip(
                (self.q_proj, self.k_proj, self.v_proj), mha.in_proj_bias.chunk(3), strict=True
            ):
                lin.bias.copy_(b)
            self.out_proj.bias.copy_(mha.out_proj.bias)
        return self

    @classmethod
    def from_torch_mha(cls, mha: nn.MultiheadAttention, **kw) -> MultiHeadAttention:
        """A new module (same dtype and device) with the weights of a torch MHA.

        The dropout probability is taken over; kw go to the constructor (scale, impl).
        """
        ours = cls(
            mha.embed_dim,
            mha.num_heads,
            d_context=mha.kdim,
            bias=mha.in_proj_bias is not None,
            dropout=mha.dropout,
            **kw,
        )
        ref = mha.out_proj.weight
        return ours.to(device=ref.device, dtype=ref.dtype).load_from_torch_mha(mha)
