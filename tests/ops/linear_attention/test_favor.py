"""FAVOR+ (Performer): chunked == explicit form, stabiliser safety, and the approximation of
softmax attention improving with the number of random features."""

from __future__ import annotations

import pytest
import torch

from deepnotes.ops.attention.naive import naive_softmax_attn
from deepnotes.ops.linear_attention.favor import (
    favor_attn,
    favor_logits,
    naive_favor_attn,
    orthogonal_random_features,
)
from tests.helpers import assert_close


def test_orthogonal_blocks(seed):
    W = orthogonal_random_features(40, 16, dtype=torch.float64)
    assert W.shape == (40, 16)
    for b in range(2):  # rows of a full block are mutually orthogonal
        blk = W[16 * b : 16 * (b + 1)]
        gram = blk @ blk.T
        off = gram - torch.diag(torch.diagonal(gram))
        assert off.abs().max() < 1e-10 * gram.diagonal().max()
    # norms follow a chi distribution with 16 degrees of freedom: mean about 3.9
    assert 3.0 < W.norm(dim=1).mean() < 4.8


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T,K", [(1, 64), (63, 60), (128, 64)])
def test_chunked_equals_explicit(causal, T, K, seed):
    q, k, v = (torch.randn(2, 2, T, K, dtype=torch.float64) for _ in range(3))
    W = orthogonal_random_features(48, K, dtype=torch.float64)
    ref = naive_favor_attn(q, k, v, W, causal=causal)
    for C in (16, 64):
        out = favor_attn(q, k, v, W, causal=causal, chunk_size=C)
        assert_close(out, ref, what=f"favor C={C}")


@pytest.mark.parametrize("causal", [True, False])
def test_key_mask_and_large_logits(causal, seed):
    """Left and right padding, and keys large enough that exp() without a stabiliser
    overflows even in float64: the result stays finite and equal to the log-space form."""
    T, K = 50, 16
    q, k, v = (torch.randn(2, 2, T, K, dtype=torch.float64) for _ in range(3))
    k = k * 40.0  # |w . k'| reaches several hundred, beyond float32's exp range
    W = orthogonal_random_features(32, K, dtype=torch.float64)
    assert favor_logits(k, W).abs().max() > 89  # exp(89) overflows float32
    mask = torch.ones(2, T, dtype=torch.bool)
    mask[0, :7] = False
    mask[1, 33:] = False
    ref = naive_favor_attn(q, k, v, W, causal=causal, key_mask=mask)
    out = favor_attn(q, k, v, W, causal=causal, key_mask=mask, chunk_size=16)
    assert torch.isfinite(out).all()
    assert_close(out, ref, what="masked, large logits")
    out32 = favor_attn(q.float(), k.float(), v.float(), W.float(), causal=causal, chunk_size=16)
    assert torch.isfinite(out32).all()


def test_blocks_carry_the_state(seed, monkeypatch):
    """Causal FAVOR+ over several token blocks (state and running max carried between them),
    with large logits and padding on both sides so the max changes across blocks: equal to
    the explicit form, values and gradients."""
    import deepnotes.ops.linear_attention.favor as favor

    monkeypatch.setattr(favor, "BLOCK_TOKENS", 24)  # 24 // 16 * 16 = one chunk per block
    T, K = 77, 8
    q, k, v = (torch.randn(2, 2, T, K, dtype=torch.float64, requires_grad=True) for _ in range(3))
    W = orthogonal_random_features(12, K, dtype=torch.float64)
    scale = torch.linspace(1, 30, T, dtype=torch.float64)[:, None]  # later keys dominate
    mask = torch.ones(2, T, dtype=torch.bool)
    mask[0, :20] = False
    mask[1, 60:] = False
    g = torch.randn(2, 2, T, K, dtype=torch.float64)
    ref = naive_favor_attn(q, k * scale, v, W, causal=True, key_mask=mask)
    out = favor_attn(q, k * scale, v, W, causal=True, key_mask=mask, chunk_size=16)
    assert_close(out, ref, what="blocked favor")
    got = torch.autograd.grad(out, (q, k, v), g)
    want = torch.autograd.grad(ref, (q, k, v), g)
    for name, a, b in zip("qkv", got, want, strict=True):
        assert_close(a, b, what=f"blocked d{name}")


def test_gradients_vs_explicit(seed):
    q, k, v = (torch.randn(1, 2, 30, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    W = orthogonal_random_features(12, 8, dtype=torch.float64)
    g = torch.randn(1, 2, 30, 8, dtype=torch.float64)
    ref = torch.autograd.grad(naive_favor_attn(q, k, v, W, causal=True), (q, k, v), g)
    got = torch.autograd.grad(favor_attn(q, k, v, W, causal=True, chunk_size=8), (q, k, v), g)
    for name, a, b in zip("qkv", got, ref, strict=True):
        assert_close(a, b, what=f"d{name}")


@pytest.mark.parametrize("causal", [True, False])
def test_error_falls_with_feature_count(causal, seed):
    """Relative error against exact softmax attention, averaged over 8 draws of inputs and
    features, for m = 16, 64, 256. The estimator's error scales like 1/sqrt(m), so each 4x
    step should roughly halve it; we require a factor <= 0.75 per step and <= 0.35 at m = 256
    (measured: about 0.52 -> 0.29 -> 0.18 causal, 0.73 -> 0.40 -> 0.24 non-causal)."""
    K, T, scale = 32, 128, 0.5  # logits q.k/sqrt(K) of std 0.25: the paper's regime
    errs = []
    for m in (16, 64, 256):
        e = []
        for _ in range(8):
            q, k, v = (torch.randn(1, 4, T, K, dtype=torch.float64) for _ in range(3))
            q, k = q * scale, k * scale
            W = orthogonal_random_features(m, K, dtype=torch.float64)
            approx = favor_attn(q, k, v, W, causal=causal)
            exact = naive_softmax_attn(q, k, v, causal=causal)
            e.append(((approx - exact).norm() / exact.norm()).item())
        errs.append(sum(e) / len(e))
    assert errs[1] <= 0.75 * errs[0], errs
    assert errs[2] <= 0.75 * errs[1], errs
    assert errs[2] <= 0.35, errs
