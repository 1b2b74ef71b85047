"""Probability-flow ODE likelihood against closed-form log-densities."""

from __future__ import annotations

import math

import pytest
import torch

from deepnotes.diffusion.likelihood import divergence_exact, divergence_hutchinson, ode_likelihood
from deepnotes.diffusion.sde import VESDE, VPSDE, subVPSDE
from deepnotes.diffusion.toy import GaussianMixture
from tests.helpers import assert_close

F64 = torch.float64
SDES = {
    "ve": lambda: VESDE(sigma_min=0.01, sigma_max=10.0),
    "vp": lambda: VPSDE(),
    "subvp": lambda: subVPSDE(),
}


def _gaussian(dim, g, diagonal=False):
    mu = torch.randn(1, dim, generator=g, dtype=F64)
    if diagonal:
        cov = torch.diag(0.2 + torch.rand(dim, generator=g, dtype=F64))
    else:
        A = torch.randn(dim, dim, generator=g, dtype=F64) / math.sqrt(dim)
        cov = A @ A.T + 0.3 * torch.eye(dim, dtype=F64)
    return GaussianMixture([1.0], mu, cov[None])


@pytest.mark.parametrize("name", sorted(SDES))
def test_ode_likelihood_gaussian_equals_closed_form(name):
    """With the analytic score and the exact p_T, log p_0(x) is the Gaussian's to 1e-4."""
    sde, g = SDES[name](), torch.Generator().manual_seed(0)
    gm = _gaussian(2, g)
    x = gm.sample(7, g)
    # t = 0 is regular here: p_0 is a full-rank Gaussian (VE: convolved with sigma_min^2).
    logp, z, nfe = ode_likelihood(
        sde,
        gm.sde_score_fn(sde),
        x,
        eps=0.0,
        prior_logp=lambda z: gm.sde_log_prob_fn(sde)(z, 1.0),
    )
    ref = gm.sde_log_prob_fn(sde)(x, 0.0)
    assert (logp - ref).abs().max() < 1e-4, (logp, ref)
    assert nfe > 10


def test_ode_likelihood_mixture_and_default_prior():
    """A 2-D mixture with the exact score: 1e-4 with the exact p_T; with score_sde's N(0, I)
    prior the only error left is the prior mismatch at T (VP keeps a(1) = 0.0066 of the mean)."""
    sde = VPSDE()
    gm = GaussianMixture([0.3, 0.7], [[-2.0, 0.0], [2.0, 1.0]], [0.25, 0.5])
    x = gm.sample(9, torch.Generator().manual_seed(1))
    ref = gm.sde_log_prob_fn(sde)(x, 1e-5)
    exact_prior = lambda z: gm.sde_log_prob_fn(sde)(z, 1.0)  # noqa: E731
    # The mixture's field bends more than a Gaussian's: RK45 needs 1e-7 here for 1e-4.
    logp, _, _ = ode_likelihood(
        sde, gm.sde_score_fn(sde), x, eps=1e-5, prior_logp=exact_prior, rtol=1e-7, atol=1e-7
    )
    assert (logp - ref).abs().max() < 1e-4, (logp, ref)
    logp_n, z, _ = ode_likelihood(sde, gm.sde_score_fn(sde), x, eps=1e-5)
    mismatch = sde.prior_logp(z) - exact_prior(z)
    assert_close(logp_n - ref, mismatch, tol=0.05)


def test_hutchinson_on_diagonal_gaussian_is_exact_with_rademacher():
    """A diagonal covariance gives a diagonal drift Jacobian: v^T J v = tr J for v in {+-1}^D."""
    sde, g = VPSDE(), torch.Generator().manual_seed(2)
    gm = _gaussian(24, g, diagonal=True)
    x = gm.sample(3, g)
    kw = dict(eps=0.0, prior_logp=lambda z: gm.sde_log_prob_fn(sde)(z, 1.0))
    logp, _, _ = ode_likelihood(
        sde, gm.sde_score_fn(sde), x, estimator="hutchinson", generator=g, **kw
    )
    ref = gm.log_prob(x)
    assert (logp - ref).abs().max() < 1e-4


def test_hutchinson_unbiased_on_full_covariance():
    """Averaged over many probes the estimate matches the exact log-density within 4.5 SE."""
    sde, g = VPSDE(), torch.Generator().manual_seed(3)
    gm = _gaussian(16, g)
    x = gm.sample(1, g).expand(400, 16).contiguous()
    logp, _, _ = ode_likelihood(
        sde,
        gm.sde_score_fn(sde),
        x,
        estimator="hutchinson",
        noise="gaussian",
        eps=0.0,
        rtol=1e-4,
        atol=1e-4,
        prior_logp=lambda z: gm.sde_log_prob_fn(sde)(z, 1.0),
        generator=g,
    )
    ref = float(gm.log_prob(x[:1]))
    se = float(logp.std()) / math.sqrt(len(logp))
    assert float(logp.std()) > 1e-3  # the probes do vary
    assert abs(float(logp.mean()) - ref) < 4.5 * se + 1e-3, (float(logp.mean()), ref, se)


def test_divergences():
    W = torch.randn(5, 5, dtype=F64)
    fn = lambda x: torch.tanh(x @ W.T)  # noqa: E731
    x = torch.randn(4, 5, dtype=F64)
    J = (1 - torch.tanh(x @ W.T) ** 2)[:, :, None] * W  # d tanh(Wx) / dx
    tr = torch.diagonal(J, dim1=1, dim2=2).sum(1)
    assert torch.allclose(divergence_exact(fn, x), tr)
    v = torch.randn(4, 5, dtype=F64)
    assert torch.allclose(divergence_hutchinson(fn, x, v), torch.einsum("bi,bij,bj->b", v, J, v))


def test_bad_inputs():
    with pytest.raises(ValueError, match="estimator"):
        ode_likelihood(VPSDE(), lambda x, t: x, torch.zeros(2, 2), estimator="skilling")
    with pytest.raises(ValueError, match="exact trace"):
        ode_likelihood(VPSDE(), lambda x, t: x, torch.zeros(2, 2, 2))
