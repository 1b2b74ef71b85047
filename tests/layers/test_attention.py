"""layers.attention: against torch.nn.MultiheadAttention (fp64), impls against math, edge cases."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from deepnotes.layers.attention import (
    MultiHeadAttention,
    attention,
    math_attention,
)
from tests.helpers import assert_close

f64 = torch.float64
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


def _end_aligned_causal(T: int, S: int) -> torch.Tensor:
    """[T, S] bool, True = allowed: query i sees keys j <= i + S - T."""
    return torch.arange(S)[None, :] <= torch.arange(T)[:, None] + (S - T)


def _grads(out, cot, tensors):
    return torch.autograd.grad((out * cot).sum(), tensors)


# d_model, heads, d_context (None = self-attention), T, S
SHAPES = {
    "self": (24, 4, None, 8, 8),
    "self-odd": (30, 3, None, 7, 7),
    "cross": (24, 2, None, 5, 9),
    "cross-kdim": (30, 5, 14, 6, 11),
}
MASKS = ["none", "key", "bias", "bias4d", "causal", "key+bias+causal"]


@pytest.mark.parametrize("impl", ["math", "sdpa", "auto"])
@pytest.mark.parametrize("masks", MASKS)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_matches_torch_mha(shape, masks, impl):
    """Outputs and gradients (inputs and every weight) equal torch's MHA with copied weights."""
    D, H, Dc, T, S = SHAPES[shape]
    cross = shape.startswith("cross")
    B = 2
    torch.manual_seed(torch.seed() % 2**31)
    mha = nn.MultiheadAttention(D, H, batch_first=True, kdim=Dc, vdim=Dc, dtype=f64)
    nn.init.normal_(mha.in_proj_bias)  # torch zeroes the biases; make them count
    nn.init.normal_(mha.out_proj.bias)
    ours = MultiHeadAttention.from_torch_mha(mha, impl=impl)
    assert ours.d_context == (Dc or D)
    x = torch.randn(B, T, D, dtype=f64, requires_grad=True)
    ctx = torch.randn(B, S, Dc or D, dtype=f64, requires_grad=True) if cross else None

    key_mask = bias = None
    causal = "causal" in masks
    if "key" in masks:
        key_mask = torch.rand(B, S) > 0.3
        key_mask[:, -1] = True  # torch gives NaN for a query with no key; keep one
    if "bias" in masks:
        bias = torch.randn(B, H, T, S, dtype=f64) if masks == "bias4d" else torch.randn(T, S)
        bias = bias.to(f64)
        bias[..., 0, 1] = float("-inf")  # a forbidden pair
    # torch's form: key_padding_mask = ~key_mask; one float attn_mask holds bias and causal.
    t_mask = None
    if bias is not None or causal:
        t_mask = torch.zeros(T, S, dtype=f64) if bias is None else bias
        if causal:
            t_mask = t_mask.masked_fill(~_end_aligned_causal(T, S), float("-inf"))
        if t_mask.dim() == 4:
            t_mask = t_mask.reshape(B * H, T, S)
    t_pad = None  # torch wants the padding mask in the attn_mask's type (bool or float)
    if key_mask is not None:
        t_pad = ~key_mask if t_mask is None else torch.zeros(B, S, dtype=f64)
        if t_mask is not None:
            t_pad = t_pad.masked_fill(~key_mask, float("-inf"))
    keys = x if ctx is None else ctx
    ref, _ = mha(
        x,
        keys,
        keys,
        key_padding_mask=t_pad,
        attn_mask=t_mask,
        need_weights=False,
    )
    out = ours(x, ctx, key_mask=key_mask, attn_bias=bias, causal=causal)
    assert_close(out, ref, what="output")

    cot = torch.randn_like(ref)
    inputs = [x] if ctx is None else [x, ctx]
    w_ref = [mha.out_proj.weight, mha.out_proj.bias, mha.in_proj_bias]
    w_ref += [mha.in_proj_weight] if Dc is None else [mha.q_proj_weight, mha.k_proj_weight]
    g_ref = _grads(ref, cot, inputs + w_ref)
    w_ours = [ours.out_proj.weight, ours.out_proj.bias]
    w_ours += [ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]
    w_ours += [ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]
    g = _grads(out, cot, inputs + w_ours)
    n = len(inputs)
    for i in range(n):
        assert_close(g[i], g_ref[i], what=f"grad input {i}")
    assert_close(g[n], g_ref[n], what="grad out_proj.weight")
    assert_close(g[n + 1], g_ref[n + 1], what="grad out_proj.bias")
    assert_close(torch.cat(g[n + 2 : n + 5]), g_ref[n + 2], what="grad in-proj biases")
    if Dc is None:
        assert_close(torch.cat(g[n + 5 :]), g_ref[n + 3], what="grad in_proj_weight")
    else:
        assert_close(g[n + 5], g_ref[n + 3], what="grad q_proj_weight")
        assert_close(g[n + 6], g_ref[n + 4], what="grad k_proj_weight")


def test_separate_value_input_matches_torch():
    """value= feeds v_proj (DETR: positions on queries and keys only)."""
    mha = nn.MultiheadAttention(16, 2, batch_first=True, dtype=f64)
    ours = MultiHeadAttention.from_torch_mha(mha)
    x, ctx, val = (torch.randn(2, n, 16, dtype=f64) for n in (5, 7, 7))
    ref, _ = mha(x, ctx, val, need_weights=False)
    assert_close(ours(x, ctx, value=val), ref)


def _qkv(B, H, T, S, K, Dv, dtype=f64):
    return [torch.randn(B, H, n, d, dtype=dtype) for n, d in ((T, K), (S, K), (S, Dv))]


# B, H, T, S, K, Dv, causal, key mask, bias
IMPL_CASES = [
    pytest.param(2, 3, 9, 9, 8, 8, True, False, False, id="self-causal"),
    pytest.param(2, 2, 5, 12, 6, 10, False, False, False, id="cross-Dv"),
    pytest.param(1, 2, 5, 12, 8, 8, True, False, False, id="causal-T<S"),
    pytest.param(1, 2, 12, 5, 8, 8, True, False, False, id="causal-T>S"),
    pytest.param(3, 2, 7, 7, 8, 8, True, True, False, id="causal-keymask"),
    pytest.param(2, 2, 6, 11, 4, 4, False, True, True, id="keymask-bias"),
    pytest.param(2, 2, 11, 6, 4, 4, True, True, True, id="all-T>S"),
]


# impl='flash' takes no mask or bias (test_bad_inputs checks the error).
IMPL_PAIRS = [
    pytest.param(impl, *case.values, id=f"{case.id}-{impl}")
    for case in IMPL_CASES
    for impl in ("sdpa", "auto", "flash")
    if impl != "flash" or not (case.values[-2] or case.values[-1])
]


@pytest.mark.parametrize("impl,B,H,T,S,K,Dv,causal,masked,biased", IMPL_PAIRS)
def test_impls_agree_with_math(impl, B, H, T, S, K, Dv, causal, masked, biased):
    """Every path gives the math path's outputs and gradients (q, k, v and the bias)."""
    q, k, v = _qkv(B, H, T, S, K, Dv)
    key_mask = None
    if masked:
        key_mask = torch.rand(B, S) > 0.4
        key_mask[0] = False  # a batch element with no key at all
    bias = torch.randn(1, H, T, S, dtype=f64) if biased else None
    if biased:
        bias[..., -1, :] = float("-inf")  # a query whose bias forbids every key
    tensors = [t.requires_grad_(True) for t in [q, k, v] + ([bias] if biased else [])]
    kw = dict(causal=causal, key_mask=key_mask, attn_bias=bias)
    ref = attention(q, k, v, impl="math", **kw)
    out = attention(q, k, v, impl=impl, **kw)
    assert torch.isfinite(out).all()
    assert_close(out, ref, what="output")
    cot = torch.randn_like(ref)
    names = "qkvb"[: len(tensors)]
    for name, a, b in zip(names, _grads(out, cot, tensors), _grads(ref, cot, tensors), strict=True):
        assert torch.isfinite(a).all(), f"grad {name} not finite"
        assert_close(a, b, what=f"grad {name}")


@pytest.mark.skipif(not INTERPRET, reason="the Triton kernel on CPU needs TRITON_INTERPRET=1")
@pytest.mark.parametrize("causal", [True, False])
def test_flash_impl_runs_the_triton_kernel(monkeypatch, causal):
    """DEEPNOTES_KERNELS=triton forces our FlashAttention kernel; fp32 at a tiny size."""
    monkeypatch.setenv("DEEPNOTES_KERNELS", "triton")
    q, k, v = (t.float() for t in _qkv(1, 2, 17, 17, 16, 16))
    out = attention(q, k, v, causal=causal, impl="flash")
    ref = math_attention(q.double(), k.double(), v.double(), causal=causal)[0]
    assert_close(out, ref, dtype=torch.float32)
    monkeypatch.setenv("DEEPNOTES_KERNELS", "torch")  # and the switch is really a switch
    with pytest.raises(ValueError, match="cannot run"):
        from deepnotes.ops.attention import flash_attn

        flash_attn(q.double(), k.double(), v.double(), causal=causal, backend="triton")


@pytest.mark.parametrize("impl", ["math", "sdpa", "auto"])
def test_fully_masked_queries_give_zeros_not_nan(impl):
    """A query with no allowed key returns 0 with finite gradients, on every path."""
    q, k, v = (t.requires_grad_(True) for t in _qkv(2, 2, 6, 4, 8, 8, dtype=torch.float32))
    key_mask = torch.tensor([[False] * 4, [True, False, True, False]])
    for kw in (
        dict(key_mask=key_mask),
        dict(causal=True, key_mask=torch.ones(2, 4, dtype=torch.bool)),  # T > S: first 2 rows
        dict(attn_bias=torch.full((6, 4), float("-inf"))),
    ):
        out = attention(q, k, v, impl=impl, **kw)
        assert torch.isfinite(out).all(), kw
        grads = torch.autograd.grad(out.square().sum(), (q, k, v))
        assert all(torch.isfinite(g).all() for g in grads), kw
    assert (attention(q, k, v, key_mask=key_mask, impl=impl)[0] == 0).all()
    causal_out = attention(q, k, v, causal=True, key_mask=torch.ones(2, 4, dtype=torch.bool))
    assert (causal_out[:, :, :2] == 0).all() and (causal_out[:, :, 2:] != 0).any()


@pytest.mark.parametrize("impl", ["math", "sdpa", "auto"])
def test_finite_bias_skips_only_the_empty_row_guard(impl):
    """finite_bias=True: same outputs and gradients for a finite bias (-100 entries as in
    Swin's shift mask); with a key mask the guard still gives zeros for an empty row."""
    q, k, v = _qkv(2, 3, 6, 6, 8, 8)
    bias = torch.randn(1, 3, 6, 6, dtype=f64).masked_fill(torch.rand(1, 3, 6, 6) > 0.5, -100.0)
    tensors = [t.requires_grad_(True) for t in (q, k, v, bias)]
    ref = attention(q, k, v, attn_bias=bias, impl="math")
    out = attention(q, k, v, attn_bias=bias, impl=impl, finite_bias=True)
    assert_close(out, ref, what="output")
    cot = torch.randn_like(ref)
    for name, a, b in zip(
        "qkvb", _grads(out, cot, tensors), _grads(ref, cot, tensors), strict=True
    ):
        assert_close(a, b, what=f"grad {name}")
    key_mask = torch.tensor([[False] * 6, [True] * 6])
    out = attention(q, k, v, attn_bias=bias, key_mask=key_mask, impl=impl, finite_bias=True)
    assert (out[0] == 0).all() and torch.isfinite(out).all()


def _good():
    return _qkv(2, 2, 5, 7, 4, 4, dtype=torch.float32)


BAD = {
    "impl": (lambda q, k, v: attention(q, k, v, impl="fast"), "impl must be one of"),
    "rank": (lambda q, k, v: attention(q[0], k, v), "q must be a 4-D tensor"),
    "int dtype": (lambda q, k, v: attention(q.long(), k, v), "floating point"),
    "mixed dtype": (lambda q, k, v: attention(q.double(), k, v), "dtypes differ"),
    "heads": (lambda q, k, v: attention(q[:, :1], k, v), "batch or head counts differ"),
    "kv length": (lambda q, k, v: attention(q, k, v[:, :, :3]), "k and v lengths differ"),
    "head dim": (lambda q, k, v: attention(q[..., :3], k, v), "head dims differ"),
    "empty": (lambda q, k, v: attention(q[:, :, :0], k, v), "empty sequence"),
    "mask dtype": (
        lambda q, k, v: attention(q, k, v, key_mask=torch.ones(2, 7)),
        "key_mask must be bool",
    ),
    "mask shape": (
        lambda q, k, v: attention(q, k, v, key_mask=torch.ones(2, 5, dtype=torch.bool)),
        r"key_mask must have shape \[B, S\]",
    ),
    "bias shape": (
        lambda q, k, v: attention(q, k, v, attn_bias=torch.zeros(7, 5)),
        "does not broadcast",
    ),
    "bias dtype": (
        lambda q, k, v: attention(q, k, v, attn_bias=torch.zeros(5, 7, dtype=torch.bool)),
        "attn_bias must be a float tensor",
    ),
    "dropout": (lambda q, k, v: attention(q, k, v, dropout_p=1.0), "dropout_p must be in"),
    "scale": (lambda q, k, v: attention(q, k, v, scale=-1.0), "scale must be positive"),
    "flash+mask": (
        lambda q, k, v: attention(q, k, v, impl="flash", key_mask=torch.ones(2, 7).bool()),
        "impl='flash' takes no key_mask",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_inputs_raise(case):
    fn, match = BAD[case]
    with pytest.raises(ValueError, match=match):
        fn(*_good())


MODULE_BAD = {
    "heads": (lambda: MultiHeadAttention(10, 3), "must divide d_model"),
    "dropout": (lambda: MultiHeadAttention(8, 2, dropout=1.5), "dropout must be in"),
    "impl": (lambda: MultiHeadAttention(8, 2, impl="x"), "impl must be one of"),
    "x width": (lambda: MultiHeadAttention(8, 2)(torch.randn(1, 3, 6)), r"x must be \[B, T, 8\]"),
    "context width": (
        lambda: MultiHeadAttention(8, 2, d_context=5)(torch.randn(1, 3, 8), torch.randn(1, 4, 6)),
        r"context must be \[B=1, S, 5\]",
    ),
    "missing context": (
        lambda: MultiHeadAttention(8, 2, d_context=5)(torch.randn(1, 3, 8)),
        "a context is required",
    ),
    "value shape": (
        lambda: MultiHeadAttention(8, 2)(torch.randn(1, 3, 8), value=torch.randn(1, 4, 8)),
        "value must have the keys' shape",
    ),
    "torch bias_kv": (
        lambda: MultiHeadAttention.from_torch_mha(nn.MultiheadAttention(8, 2, add_bias_kv=True)),
        "add_bias_kv",
    ),
    "torch kdim != vdim": (
        lambda: MultiHeadAttention.from_torch_mha(nn.MultiheadAttention(8, 2, kdim=4, vdim=6)),
        "one context width",
    ),
}


@pytest.mark.parametrize("case", list(MODULE_BAD))
def test_module_bad_inputs_raise(case):
    fn, match = MODULE_BAD[case]
    with pytest.raises(ValueError, match=match):
        fn()


def test_need_weights_rows_sum_to_one():
    """need_weights returns softmax rows (sum 1) and the same output as the fast path."""
    m = MultiHeadAttention(12, 3, d_context=7).double()
    x, ctx = torch.randn(2, 5, 12, dtype=f64), torch.randn(2, 9, 7, dtype=f64)
    key_mask = torch.rand(2, 9) > 0.3
    key_mask[:, 0] = True
    out, w = m(x, ctx, key_mask=key_mask, need_weights=True)
    assert w.shape == (2, 3, 5, 9)
    assert_close(w.sum(-1), torch.ones(2, 3, 5, dtype=f64))
    assert (w.masked_select(~key_mask[:, None, None, :]) == 0).all()
    assert_close(out, m(x, ctx, key_mask=key_mask))


@pytest.mark.parametrize("impl", ["math", "sdpa", "auto"])
def test_dropout_off_in_eval_and_seeded_in_training(impl):
    m = MultiHeadAttention(16, 2, dropout=0.3, impl=impl)
    x = torch.randn(2, 9, 16)
    plain = MultiHeadAttention(16, 2, impl=impl)
    plain.load_state_dict(m.state_dict())
    m.eval()
    assert torch.equal(m(x), plain(x))
    m.train()
    torch.manual_seed(3)
    a = m(x)
    torch.manual_seed(3)
    b = m(x)
    torch.manual_seed(4)
    c = m(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, c) and not torch.allclose(a, plain(x))


def test_rope_hook_acts_on_projected_heads():
    """rope sees [B, H, T, K] heads after the projections: doubling q = doubling the scale."""
    m = MultiHeadAttention(16, 4).double()
    x = torch.randn(2, 6, 16, dtype=f64)
    seen = []

    def rope(q, k):
        seen.append(q.shape)
        return 2 * q, k

    doubled = MultiHeadAttention(16, 4, scale=2 / 2.0).double()  # 2 / sqrt(K=4)
    doubled.load_state_dict(m.state_dict())
    assert_close(m(x, rope=rope), doubled(x))
    assert seen == [torch.Size([2, 4, 6, 4])]
