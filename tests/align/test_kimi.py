"""Kimi k1.5: surrogate and gradient form, tabular optimum, length penalty, partial rollouts."""

from __future__ import annotations

import pytest
import torch

from deepnotes.align.kimi import kimi_pg_loss, kimi_surrogate_loss, length_penalty, rloo_loss
from deepnotes.align.rollouts import Rollout, pad_rollouts, partial_rollouts
from deepnotes.models.lm import LM, LMConfig
from tests.helpers import assert_close


def test_length_penalty_by_hand():
    lengths = torch.tensor([[10, 20, 30, 40], [5, 5, 5, 5], [7, 3, 3, 11]])
    correct = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 1]], dtype=torch.bool)
    # row 0: λ = 0.5 - (l - 10)/30 = [0.5, 1/6, -1/6, -0.5]; wrong ones get min(0, λ)
    # row 1: all equal -> 0
    # row 2: min 3, max 11: λ = [0, 0.5, 0.5, -0.5]; wrong: [0, ., 0, .]
    want = torch.tensor([[0.5, 1 / 6, -1 / 6, -0.5], [0.0, 0.0, 0.0, 0.0], [0.0, 0.5, 0.0, -0.5]])
    assert torch.allclose(length_penalty(lengths, correct), want)
    assert torch.allclose(
        length_penalty(torch.tensor([4, 8]), torch.tensor([0, 0]).bool()), torch.tensor([0.0, -0.5])
    )


def test_pg_form_is_the_surrogate_gradient():
    torch.manual_seed(0)
    logp = (torch.randn(3, 5, dtype=torch.float64) - 4).requires_grad_(True)
    old = logp.detach() + 0.1 * torch.randn(3, 5, dtype=torch.float64)
    r = torch.rand(3, 5, dtype=torch.float64)
    tau = 0.7
    (g1,) = torch.autograd.grad(kimi_surrogate_loss(logp, old, r, tau), logp)
    (g2,) = torch.autograd.grad(kimi_pg_loss(logp, old, r, tau), logp)
    assert_close(g1 / (2 * tau), g2)


def _fit(pi_i, r, tau, tau_log_z):
    theta = torch.log(pi_i).clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [theta],
        lr=1,
        max_iter=500,
        tolerance_grad=1e-13,
        tolerance_change=1e-16,
        line_search_fn="strong_wolfe",
    )
    w = pi_i  # exact expectation over y ~ πi

    def closure():
        opt.zero_grad()
        lp = torch.log_softmax(theta, 0)
        resid = r - tau_log_z - tau * (lp - torch.log(pi_i))
        loss = (w * resid**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return torch.softmax(theta.detach(), 0)


@pytest.mark.parametrize("tau", [0.5, 2.0])
def test_tabular_optimum(tau):
    torch.manual_seed(1)
    K = 7
    r = torch.rand(K, dtype=torch.float64)
    pi_i = torch.softmax(torch.randn(K, dtype=torch.float64), 0)
    target = pi_i * torch.exp(r / tau)
    target = target / target.sum()
    tau_log_z = tau * torch.log((pi_i * torch.exp(r / tau)).sum())
    assert_close(_fit(pi_i, r, tau, tau_log_z), target, tol=1e-6)
    # the report's estimate τ log Z ≈ E_πi[r] is first-order exact: close when r/τ is small
    approx = _fit(pi_i, r, tau, (pi_i * r).sum())
    assert (approx - target).abs().sum() < 0.02 * (r.max() - r.min()) / tau
    # and the loss itself with k samples uses their mean: zero residual at the optimum
    y = torch.multinomial(pi_i, 8, replacement=True)
    loss = kimi_surrogate_loss(
        torch.log(target[y]), torch.log(pi_i[y]), r[y], tau, tau_log_z=tau_log_z.expand(())
    )
    assert loss.item() < 1e-20


def test_rloo_and_errors():
    logp = torch.randn(2, 4, requires_grad=True)
    r = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    (g,) = torch.autograd.grad(rloo_loss(logp, r), logp)
    # row 0: advantages [1, -1/3, -1/3, -1/3]; row 1: all 0; loss is a mean over 8
    want = -torch.tensor([[1.0, -1 / 3, -1 / 3, -1 / 3], [0, 0, 0, 0]]) / 8
    assert torch.allclose(g, want)
    with pytest.raises(ValueError, match="k >= 2"):
        kimi_surrogate_loss(torch.zeros(3, 1), torch.zeros(3, 1), torch.zeros(3, 1), 1.0)
    with pytest.raises(ValueError, match="tau"):
        kimi_pg_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3), 0.0)


def test_partial_rollouts_carry_over():
    torch.manual_seed(0)
    model = LM(LMConfig(vocab_size=11, d_model=16, n_layers=1, max_len=64))
    rs = [Rollout([1, 2, 3], group=i // 2) for i in range(4)] + [Rollout([4, 5])]
    g = torch.Generator().manual_seed(0)
    made = partial_rollouts(model, rs, 3, eos=10, max_response=7, generator=g)
    assert made == sum(len(r.response) for r in rs)
    for r in rs:
        assert len(r.response) <= 3 and r.seg_start == 0
        assert r.done == (r.response[-1] == 10 or len(r.response) >= 7)
    before = [list(r.response) for r in rs]
    for _ in range(3):
        partial_rollouts(model, rs, 3, eos=10, max_response=7, generator=g)
    for r, b in zip(rs, before, strict=True):
        assert r.response[: len(b)] == b  # earlier segments are kept, not resampled
        assert r.done and len(r.response) <= 7
    tokens, resp, seg = pad_rollouts(rs)
    for i, r in enumerate(rs):
        assert resp[i].sum() == len(r.response)
        assert seg[i].sum() == len(r.response) - r.seg_start
        assert tokens[i, : len(r.tokens)].tolist() == r.tokens
