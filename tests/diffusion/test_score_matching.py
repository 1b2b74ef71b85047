"""Score-matching losses: values at the exact score and minimisers for a linear score model."""

from __future__ import annotations

import math

import pytest
import torch

from deepnotes.diffusion.score_matching import dsm_loss, sde_dsm_loss, sliced_score_matching_loss
from deepnotes.diffusion.sde import VPSDE

F64 = torch.float64


def test_dsm_loss_at_exact_score():
    """For N(0, v I) in D dims and the exact perturbed score -x / (v + sigma^2),
    E 1/2 ||sigma s + z||^2 = D v / (2 (v + sigma^2)), averaged over the levels."""
    g, D, v, n = torch.Generator().manual_seed(0), 3, 2.0, 20000
    x = math.sqrt(v) * torch.randn(n, D, generator=g, dtype=F64)
    sigmas = torch.tensor([0.1, 1.0, 5.0], dtype=F64)
    loss = dsm_loss(lambda xt, s: -xt / (v + s[:, None] ** 2), x, sigmas, generator=g)
    ref = float((D * v / (2 * (v + sigmas**2))).mean())
    # per-sample loss is a bounded quadratic form: SE below 0.02 at n = 20000
    assert abs(float(loss) - ref) < 0.03, (float(loss), ref)
    worse = dsm_loss(lambda xt, s: -1.2 * xt / (v + s[:, None] ** 2), x, sigmas, generator=g)
    assert float(worse) > float(loss)


def _fit(loss_fn, D, steps=60):
    """Minimise a loss over a linear score s(x) = -P (x - m) with LBFGS."""
    P = torch.eye(D, dtype=F64).requires_grad_(True)
    m = torch.zeros(D, dtype=F64, requires_grad=True)
    opt = torch.optim.LBFGS([P, m], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_fn(lambda x: -(x - m) @ P.T)
        loss.backward()
        return loss

    opt.step(closure)
    return P.detach(), m.detach()


def _data(g, n=6000):
    mu = torch.tensor([1.0, -2.0], dtype=F64)
    cov = torch.tensor([[1.0, 0.6], [0.6, 2.0]], dtype=F64)
    x = mu + torch.randn(n, 2, generator=g, dtype=F64) @ torch.linalg.cholesky(cov).T
    return x, mu, cov


def test_dsm_recovers_perturbed_gaussian_score():
    """The DSM minimiser at noise sigma is the score of N(mu, Sigma + sigma^2 I)."""
    g = torch.Generator().manual_seed(1)
    x, mu, cov = _data(g)
    sigma = 0.7
    z = torch.randn(x.shape, generator=g, dtype=F64)

    def loss_fn(s):  # the same noise at every LBFGS step: a fixed quadratic objective
        return 0.5 * (sigma * s(x + sigma * z) + z).pow(2).sum(1).mean()

    P, m = _fit(loss_fn, 2)
    target = torch.linalg.inv(cov + sigma**2 * torch.eye(2, dtype=F64))
    assert (P - target).abs().max() < 0.05, (P, target)
    assert (m - mu).abs().max() < 0.1


@pytest.mark.parametrize(
    "vr,noise", [(True, "gaussian"), (False, "gaussian"), (False, "rademacher")]
)
def test_sliced_score_matching(vr, noise):
    """Its expectation at the true score is -1/2 E||s||^2 = -tr(Sigma^-1) / 2, and its
    minimiser over linear scores is the data's precision matrix and mean."""
    g = torch.Generator().manual_seed(2)
    x, mu, cov = _data(g)
    prec = torch.linalg.inv(cov)
    loss = sliced_score_matching_loss(
        lambda y: -(y - mu) @ prec.T,
        x,
        n_particles=4,
        variance_reduction=vr,
        noise=noise,
        generator=g,
    )
    assert abs(loss.item() + 0.5 * float(torch.trace(prec))) < 0.05
    torch.manual_seed(3)
    gen = torch.Generator().manual_seed(4)
    state = gen.get_state()

    def loss_fn(s):
        gen.set_state(state)  # fixed projections: a deterministic objective for LBFGS
        return sliced_score_matching_loss(
            s, x, 2, variance_reduction=vr, noise=noise, generator=gen
        )

    P, m = _fit(loss_fn, 2)
    assert (P - prec).abs().max() < 0.1, (P, prec)
    assert (m - mu).abs().max() < 0.1


def test_sde_dsm_loss_at_exact_score():
    """VP marginals of N(0, I) data stay N(0, I): the exact score is -x and the loss is
    E 1/2 ||z - std x_t||^2 = D (1 - std^2) / 2 averaged over t (Monte Carlo, 20000 draws)."""
    g, sde = torch.Generator().manual_seed(5), VPSDE()
    x = torch.randn(20000, 2, generator=g, dtype=F64)
    loss = sde_dsm_loss(lambda xt, t: -xt, x, sde, generator=g)
    t = torch.linspace(1e-5, 1, 2001, dtype=F64)
    _, std = sde.marginal_prob(torch.zeros(2001, 1, dtype=F64), t)
    ref = float((2 * (1 - std**2) / 2).mean())
    assert abs(float(loss) - ref) < 0.03, (float(loss), ref)


def test_bad_inputs():
    with pytest.raises(ValueError, match="sigmas"):
        dsm_loss(lambda x, s: x, torch.zeros(2, 2), [])
    with pytest.raises(ValueError, match="n_particles"):
        sliced_score_matching_loss(lambda x: x, torch.zeros(2, 2), n_particles=0)
