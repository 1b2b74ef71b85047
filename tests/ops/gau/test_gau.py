"""FLASH mixed-chunk attention ops: parallel (T x T) == chunked == recurrent, gradients."""

from __future__ import annotations

import pytest
import torch

from deepnotes.ops.gau import chunk_gau, naive_gau, recurrent_gau, torch_chunk_gau
from tests.helpers import assert_close


def inputs(B, T, S, E, dtype=torch.float64, requires_grad=False):
    ts = [torch.randn(B, T, S, dtype=dtype) for _ in range(4)] + [torch.randn(B, T, E, dtype=dtype)]
    return [t.requires_grad_(requires_grad) for t in ts]


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T", [1, 63, 128])
@pytest.mark.parametrize("S,E", [(60, 120), (64, 128)])
def test_chunk_equals_parallel(causal, T, S, E, seed):
    x = inputs(2, T, S, E)
    for C in (16, 64, 200):
        ref = naive_gau(*x, chunk_size=C, causal=causal)
        assert_close(torch_chunk_gau(*x, chunk_size=C, causal=causal), ref, what=f"C={C}")


@pytest.mark.parametrize("T", [1, 63])
def test_recurrent_equals_parallel(T, seed):
    x = inputs(2, T, 24, 40)
    for C in (8, 32):
        ref = naive_gau(*x, chunk_size=C, causal=True)
        assert_close(recurrent_gau(*x, chunk_size=C), ref, what=f"recurrent C={C}")


def test_prefix_independent_of_length(seed):
    """Causal rows are normalised by i + 1, not T: a prefix's outputs do not depend on T."""
    x = inputs(1, 90, 16, 16)
    full = torch_chunk_gau(*x, chunk_size=16, causal=True)
    part = torch_chunk_gau(*(t[:, :50] for t in x), chunk_size=16, causal=True)
    assert_close(part, full[:, :50], what="prefix")


def test_quadratic_part_is_relu_squared(seed):
    """One chunk covering the sequence and zero linear inputs leaves the FLASH-Quad matrix."""
    qq, kq, _, _, v = inputs(1, 20, 8, 8)
    z = torch.zeros_like(qq)
    o = naive_gau(qq, kq, z, z, v, chunk_size=20, causal=False)
    A = torch.relu(qq @ kq.transpose(1, 2) / 8**0.5) ** 2
    assert_close(o, A @ v / 20, what="relu^2 / n")


@pytest.mark.parametrize("causal", [True, False])
def test_gradients_chunk_vs_naive(causal, seed):
    x = inputs(1, 37, 12, 10, requires_grad=True)
    g = torch.randn(1, 37, 10, dtype=torch.float64)
    ref = torch.autograd.grad(naive_gau(*x, chunk_size=8, causal=causal), x, g)
    got = torch.autograd.grad(torch_chunk_gau(*x, chunk_size=8, causal=causal), x, g)
    for name, a, b in zip(["q_quad", "k_quad", "q_lin", "k_lin", "v"], got, ref, strict=True):
        assert_close(a, b, what=f"d{name}")


def test_gradcheck_chunk(seed):
    x = inputs(1, 10, 4, 3, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: torch_chunk_gau(*a, chunk_size=4, causal=True), x)


def test_dispatcher_and_bad_inputs(seed):
    x = inputs(1, 20, 8, 8)
    assert_close(
        chunk_gau(*x, chunk_size=8, causal=True, backend="torch"),
        naive_gau(*x, chunk_size=8, causal=True),
        what="dispatcher",
    )
    with pytest.raises(ValueError, match="backend must be one of"):
        chunk_gau(*x, chunk_size=8, causal=True, backend="gpu")
    with pytest.raises(ValueError, match="chunk_size must be positive"):
        torch_chunk_gau(*x, chunk_size=0, causal=True)
    with pytest.raises(ValueError, match="one shape"):
        naive_gau(x[0], x[1][:, :, :4], *x[2:], chunk_size=8, causal=True)
    with pytest.raises(ValueError, match="expected v"):
        naive_gau(*x[:4], x[4][:, :5], chunk_size=8, causal=True)
