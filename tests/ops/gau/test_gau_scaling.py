"""FLASH's two scalings of the mixed-chunk sum: every path agrees under scaling="paper"."""

from __future__ import annotations

import math

import pytest
import torch

from deepnotes.ops.gau import chunk_gau, naive_gau, recurrent_gau, torch_chunk_gau
from tests.helpers import assert_close
from tests.ops.gau.test_gau import inputs

PAPER = dict(scaling="paper")


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T", [1, 37, 64])
def test_paper_scaling_all_forms_agree(causal, T, seed):
    x = inputs(2, T, 12, 10)
    for C in (8, 16, 100):
        ref = naive_gau(*x, chunk_size=C, causal=causal, **PAPER)
        kw = dict(chunk_size=C, causal=causal, **PAPER)
        assert_close(torch_chunk_gau(*x, **kw), ref, what=f"chunk C={C}")
        assert_close(chunk_gau(*x, backend="torch", **kw), ref, what=f"dispatch C={C}")
        if causal:
            assert_close(recurrent_gau(*x, chunk_size=C, **PAPER), ref, what=f"recurrent C={C}")


def test_paper_scaling_is_the_pseudo_code(seed):
    """Written out: relu(q.k / C)^2 inside a chunk, q_lin . sum_(earlier chunks) k v / C."""
    qq, kq, ql, kl, v = inputs(1, 12, 4, 3)
    C = 4
    o = naive_gau(qq, kq, ql, kl, v, chunk_size=C, causal=True, **PAPER)
    i = 9  # chunk 2, two earlier chunks
    local = sum(torch.relu(qq[0, i] @ kq[0, j] / C) ** 2 * v[0, j] for j in range(8, i + 1))
    glob = sum((ql[0, i] @ kl[0, j]) * v[0, j] for j in range(8)) / C
    assert_close(o[0, i], local + glob, what="row 9")
    o_nc = naive_gau(qq, kq, ql, kl, v, chunk_size=C, causal=False, **PAPER)
    glob_nc = sum((ql[0, i] @ kl[0, j]) * v[0, j] for j in range(12)) / 12
    local_nc = sum(torch.relu(qq[0, i] @ kq[0, j] / C) ** 2 * v[0, j] for j in range(8, 12))
    assert_close(o_nc[0, i], local_nc + glob_nc, what="row 9 non-causal")


def test_local_term_does_not_fade_with_position(seed):
    """The same chunk content at chunk 0 and chunk 7: under "paper" its local output is
    identical; under "position" it shrinks by n_i (C / i on long sequences)."""
    C, S = 8, 6
    block = inputs(1, C, S, 5)
    z = torch.zeros(1, 8 * C, S, dtype=torch.float64)
    qq, kq, v = (b.repeat(1, 8, 1) for b in (block[0], block[1], block[4]))
    for scaling, ratio in (("paper", 1.0), ("position", None)):
        o = naive_gau(qq, kq, z, z, v, chunk_size=C, causal=True, scaling=scaling)
        first, last = o[:, :C], o[:, 7 * C :]
        if ratio is None:  # row i is divided by i + 1
            n = torch.arange(1, 8 * C + 1, dtype=torch.float64)[:, None]
            ratio_rows = n[:C] / n[7 * C :]
            assert_close(last, first * ratio_rows, what="position: fades as n_i")
            assert last.abs().max() < 0.2 * first.abs().max()
        else:
            assert_close(last, first, what="paper: no fading")


@pytest.mark.parametrize("causal", [True, False])
def test_paper_scaling_gradients(causal, seed):
    x = inputs(1, 29, 6, 5, requires_grad=True)
    g = torch.randn(1, 29, 5, dtype=torch.float64)
    kw = dict(chunk_size=8, causal=causal, **PAPER)
    ref = torch.autograd.grad(naive_gau(*x, **kw), x, g)
    got = torch.autograd.grad(torch_chunk_gau(*x, **kw), x, g)
    for name, a, b in zip(["q_quad", "k_quad", "q_lin", "k_lin", "v"], got, ref, strict=True):
        assert_close(a, b, what=f"d{name}")
    small = inputs(1, 9, 3, 2, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: torch_chunk_gau(*a, **{**kw, "chunk_size": 4}),
                                    small)  # fmt: skip


def test_bad_scaling():
    x = inputs(1, 4, 2, 2)
    with pytest.raises(ValueError, match="scaling must be one of"):
        naive_gau(*x, chunk_size=2, causal=True, scaling="paper2")
    with pytest.raises(ValueError, match="scaling must be one of"):
        chunk_gau(*x, chunk_size=2, causal=True, scaling="")
    assert math.isfinite(naive_gau(*x, chunk_size=2, causal=True).sum().item())
