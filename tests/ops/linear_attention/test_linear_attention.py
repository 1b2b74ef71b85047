"""Linear attention ops: parallel == chunked == recurrent, states, gradients, dispatcher."""

from __future__ import annotations

import pytest
import torch

from deepnotes.ops.linear_attention import (
    chunk_linear_attn,
    feature_map_elu1,
    global_linear_attn,
    naive_linear_attn,
    recurrent_linear_attn,
    torch_chunk_linear_attn,
)
from tests.helpers import assert_close


def qkv(B, H, T, K, V, dtype=torch.float64, requires_grad=False):
    q = feature_map_elu1(torch.randn(B, H, T, K, dtype=dtype))
    k = feature_map_elu1(torch.randn(B, H, T, K, dtype=dtype))
    v = torch.randn(B, H, T, V, dtype=dtype)
    return [t.detach().requires_grad_(requires_grad) for t in (q, k, v)]


@pytest.mark.parametrize("T", [1, 63, 128])
@pytest.mark.parametrize("K,V", [(60, 60), (64, 64), (16, 24)])
@pytest.mark.parametrize("normalize", [True, False])
def test_three_forms_agree(T, K, V, normalize, seed):
    q, k, v = qkv(2, 3, T, K, V)
    ref = naive_linear_attn(q, k, v, causal=True, normalize=normalize)
    rec, (S, z) = recurrent_linear_attn(q, k, v, normalize=normalize)
    assert_close(rec, ref, what="recurrent vs parallel")
    for C in (16, 64):
        o, (S_c, z_c) = torch_chunk_linear_attn(
            q, k, v, normalize=normalize, chunk_size=C, output_final_state=True
        )
        assert_close(o, ref, what=f"chunk C={C} vs parallel")
        assert_close(S_c, S, what="final S")
        assert_close(z_c, z, what="final z")


def test_initial_state_continues_sequence(seed):
    """Running two halves with the state carried over equals running the whole."""
    q, k, v = qkv(2, 2, 77, 32, 16)
    full, final = torch_chunk_linear_attn(q, k, v, chunk_size=16, output_final_state=True)
    a, st = torch_chunk_linear_attn(
        q[:, :, :40], k[:, :, :40], v[:, :, :40], chunk_size=16, output_final_state=True
    )
    b, st2 = torch_chunk_linear_attn(
        q[:, :, 40:],
        k[:, :, 40:],
        v[:, :, 40:],
        chunk_size=16,
        initial_state=st,
        output_final_state=True,
    )
    assert_close(torch.cat([a, b], 2), full, what="two halves vs whole")
    assert_close(st2[0], final[0], what="final S")
    r, _ = recurrent_linear_attn(q[:, :, 40:], k[:, :, 40:], v[:, :, 40:], initial_state=st)
    assert_close(r, full[:, :, 40:], what="recurrent from carried state")


def test_noncausal_global_form(seed):
    q, k, v = qkv(2, 2, 63, 60, 20)
    assert_close(
        global_linear_attn(q, k, v), naive_linear_attn(q, k, v, causal=False), what="global"
    )


def test_feature_map_argument(seed):
    x_q = torch.randn(2, 2, 50, 16, dtype=torch.float64)
    x_k = torch.randn(2, 2, 50, 16, dtype=torch.float64)
    v = torch.randn(2, 2, 50, 8, dtype=torch.float64)
    ref = naive_linear_attn(feature_map_elu1(x_q), feature_map_elu1(x_k), v)
    o, _ = chunk_linear_attn(x_q, x_k, v, chunk_size=16, feature_map="elu1")
    assert_close(o, ref, what="fused feature map")
    with pytest.raises(ValueError, match="unknown feature_map"):
        chunk_linear_attn(x_q, x_k, v, feature_map="relu9")


def test_gradients_chunk_vs_naive(seed):
    q, k, v = qkv(1, 2, 45, 12, 10, requires_grad=True)
    g = torch.randn(1, 2, 45, 10, dtype=torch.float64)
    o_ref = naive_linear_attn(q, k, v)
    grads_ref = torch.autograd.grad(o_ref, (q, k, v), g)
    o, _ = torch_chunk_linear_attn(q, k, v, chunk_size=8)
    grads = torch.autograd.grad(o, (q, k, v), g)
    for name, a, b in zip("qkv", grads, grads_ref, strict=True):
        assert_close(a, b, what=f"d{name}")


def test_gradcheck_chunk(seed):
    q, k, v = qkv(1, 1, 11, 4, 3, requires_grad=True)
    fn = lambda q, k, v: torch_chunk_linear_attn(q, k, v, chunk_size=4)[0]
    assert torch.autograd.gradcheck(fn, (q, k, v))


def test_dispatcher_backends(seed):
    q, k, v = qkv(1, 1, 20, 8, 8, dtype=torch.float32)
    o, _ = chunk_linear_attn(q, k, v, backend="torch")
    assert_close(o, naive_linear_attn(q, k, v), what="torch backend")
    with pytest.raises(ValueError, match="backend must be one of"):
        chunk_linear_attn(q, k, v, backend="cuda")


def test_bad_shapes():
    q = torch.rand(1, 2, 5, 4)
    with pytest.raises(ValueError, match="expected q, k"):
        naive_linear_attn(q, q[..., :3], q)
    with pytest.raises(ValueError, match="chunk_size must be positive"):
        torch_chunk_linear_attn(q, q, q, chunk_size=0)
