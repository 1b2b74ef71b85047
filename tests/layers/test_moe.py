"""Mixture of Experts: dense equivalence, balancing loss, capacity drops, top-2 routing."""

from __future__ import annotations

import math

import pytest
import torch

from deepnotes.layers.ffn import build_ffn
from deepnotes.layers.moe import MoE
from tests.helpers import assert_close


@pytest.mark.parametrize("ffn", ["gelu", "swiglu"])
@pytest.mark.parametrize("shape", [(2, 63, 60), (4, 32, 64)])
def test_one_expert_equals_dense_ffn(ffn, shape, seed):
    """E = 1, k = 1: p = softmax of one logit = 1 exactly, so MoE(x) == FFN(x) bit for bit."""
    D = shape[-1]
    moe = MoE(D, 1, top_k=1, capacity_factor=1.0, ffn=ffn)
    dense = build_ffn(ffn, D)
    dense.load_state_dict(moe.experts[0].state_dict())
    x = torch.randn(*shape)
    assert torch.equal(moe(x), dense(x))
    assert int(moe.stats["dropped"]) == 0


@pytest.mark.parametrize("E,k", [(4, 1), (8, 2), (5, 2)])
def test_balance_loss_is_one_under_uniform_routing(E, k, seed):
    D, N = 32, 40 * E
    moe = MoE(D, E, top_k=k, balance_coef=1.0, z_coef=0.0)
    # (a) uniform router probabilities: P_e = 1/E, whatever f is
    with torch.no_grad():
        moe.router.weight.zero_()
    moe(torch.randn(N, D))
    assert abs(float(moe.stats["balance_loss"]) - 1.0) < 1e-6
    # (b) uniform assignments f_e = 1/E with non-uniform probabilities P
    with torch.no_grad():
        moe.router.weight.copy_(torch.eye(E, D) * 3)
    x = torch.randn(N, D) * 0.02
    conf = 1.0 + torch.arange(E)  # experts preferred with different confidence: P not uniform
    x[:, :E] += 2 * (torch.eye(E) * conf).repeat(N // E, 1)  # token n prefers expert n mod E
    if k == 2:  # second choice n+1 mod E, so the second choices are uniform too
        x[:, :E] += 1.5 * torch.eye(E).roll(1, dims=1).repeat(N // E, 1)
    moe(x)
    assert torch.equal(moe.stats["routed"], torch.full((E,), N * k // E))
    assert abs(float(moe.stats["balance_loss"]) - 1.0) < 1e-5
    P = moe.stats["importance"]
    assert P.max() - P.min() > 1e-3  # probabilities themselves are not uniform


def test_balance_loss_is_E_when_collapsed(seed):
    E, D = 4, 16
    moe = MoE(D, E, balance_coef=1.0, z_coef=0.0)
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[0, 0] = 100.0
    x = torch.randn(64, D).abs() + 1  # x[:, 0] > 0: everything goes to expert 0 with p ~ 1
    moe(x)
    assert abs(float(moe.stats["balance_loss"]) - E) < 1e-3


def test_capacity_drops_counted_by_hand(seed):
    """N = 8, E = 2, k = 1, capacity factor 0.5 -> C = ceil(0.5 * 8 / 2) = 2.

    Tokens 0-5 prefer expert 0 and tokens 6-7 expert 1: expert 0 serves tokens 0, 1 and
    drops 2-5 (4 drops); expert 1 serves 6, 7. Dropped tokens output exactly zero.
    """
    D = 6
    moe = MoE(D, 2, top_k=1, capacity_factor=0.5)
    with torch.no_grad():
        moe.router.weight.copy_(torch.tensor([[1.0] + [0] * 5, [-1.0] + [0] * 5]))
    x = torch.randn(8, D)
    x[:, 0] = torch.tensor([2.0, 2, 2, 2, 2, 2, -2, -2])
    y = moe(x)
    assert moe.capacity(8) == 2
    assert int(moe.stats["dropped"]) == 4
    assert int(moe.stats["tokens_unserved"]) == 4
    assert moe.stats["served"].tolist() == [2, 2]
    assert moe.stats["routed"].tolist() == [6, 2]
    assert torch.count_nonzero(y[2:6]) == 0
    p = torch.softmax(x @ moe.router.weight.T, -1)
    for n, e in [(0, 0), (1, 0), (6, 1), (7, 1)]:
        assert_close(y[n], p[n, e] * moe.experts[e](x[n]), what=f"token {n}")
    # dropless serves everything
    moe.capacity_factor = None
    moe(x)
    assert int(moe.stats["dropped"]) == 0 and moe.stats["served"].tolist() == [6, 2]


def test_top2_first_choices_have_priority(seed):
    """With C = 2 per expert, every first choice fits before any second choice."""
    E, D, N = 4, 8, 8
    moe = MoE(D, E, top_k=2, capacity_factor=0.5)  # C = ceil(0.5 * 2 * 8 / 4) = 2
    moe(torch.randn(N, D))
    served = moe.stats["served"]
    assert int(served.sum()) + int(moe.stats["dropped"]) == N * 2
    assert int(served.max()) <= 2


def reference_moe(moe: MoE, x: torch.Tensor) -> torch.Tensor:
    """Dropless top-k MoE by a loop over tokens: y_n = sum_e gate_ne FFN_e(x_n)."""
    p = torch.softmax(x.double() @ moe.router.weight.double().T, -1)
    out = torch.zeros_like(x)
    for n in range(x.shape[0]):
        g, idx = p[n].topk(moe.top_k)
        if moe.top_k > 1:
            g = g / g.sum()
        for gi, e in zip(g, idx, strict=True):
            out[n] += gi.to(x.dtype) * moe.experts[int(e)](x[n])
    return out


@pytest.mark.parametrize("k", [1, 2])
def test_dropless_matches_token_loop(k, seed):
    moe = MoE(20, 4, top_k=k, capacity_factor=None, ffn="swiglu").double()
    x = torch.randn(37, 20, dtype=torch.float64)
    assert_close(moe(x), reference_moe(moe, x), what=f"top-{k} MoE")


def test_z_loss_and_router_gradient(seed):
    moe = MoE(16, 4, top_k=1, balance_coef=0.0, z_coef=1.0)
    x = torch.randn(2, 9, 16)
    y = moe(x)
    logits = x.reshape(-1, 16) @ moe.router.weight.T
    z = torch.logsumexp(logits, -1).square().mean()
    assert_close(moe.aux_loss.detach(), z.detach(), tol=1e-5)
    (y.square().sum() + moe.aux_loss).backward()
    assert moe.router.weight.grad is not None and moe.router.weight.grad.abs().sum() > 0


def test_router_runs_in_fp32_under_autocast(seed):
    moe = MoE(16, 4)
    x = torch.randn(8, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, probs, _, _ = moe.route(x)
    assert logits.dtype == torch.float32 and probs.dtype == torch.float32


def test_bad_moe_args():
    with pytest.raises(ValueError, match="top_k"):
        MoE(8, 2, top_k=3)
    with pytest.raises(ValueError, match="capacity_factor"):
        MoE(8, 2, capacity_factor=0.0)
    assert math.isfinite(MoE(8, 2).capacity(10))
