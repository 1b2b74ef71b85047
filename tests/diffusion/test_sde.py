"""SDEs: marginals against Monte-Carlo Euler-Maruyama, discretize against DDPM/SMLD chains."""

from __future__ import annotations

import math

import pytest
import torch

from deepnotes.diffusion.sde import VESDE, VPSDE, subVPSDE
from tests.helpers import assert_close

SDES = {
    "ve": lambda: VESDE(sigma_min=0.01, sigma_max=50.0, N=1000),
    "vp": lambda: VPSDE(beta_min=0.1, beta_max=20.0, N=1000),
    "subvp": lambda: subVPSDE(beta_min=0.1, beta_max=20.0, N=1000),
}


def _simulate(sde, x0, t_end, n_steps, g):
    """Forward Euler-Maruyama paths of dx = f dt + g dw from x0: [P, D] to t_end."""
    x, dt = x0.clone(), t_end / n_steps
    for k in range(n_steps):
        t = torch.full((x.shape[0],), k * dt, dtype=x.dtype)
        drift, diff = sde.sde(x, t)
        x = (
            x
            + drift * dt
            + diff[:, None] * math.sqrt(dt) * torch.randn(x.shape, generator=g, dtype=x.dtype)
        )
    return x


@pytest.mark.parametrize("name", sorted(SDES))
@pytest.mark.parametrize("t_end", [0.3, 1.0])
def test_marginal_matches_monte_carlo(name, t_end):
    sde = SDES[name]()
    g = torch.Generator().manual_seed(1234)
    P = 2000
    x0 = torch.tensor([3.0, -2.0], dtype=torch.float64).expand(P, 2)
    xt = _simulate(sde, x0, t_end, 500, g)
    mean, std = sde.marginal_prob(x0[:1], torch.tensor([t_end], dtype=torch.float64))
    mean, var = mean[0], std[0] ** 2
    emp_mean, emp_var = xt.mean(0), xt.var(0)
    se_mean = (var / P).sqrt()
    se_var = var * math.sqrt(2.0 / (P - 1))
    # 4.5 standard errors, plus 2% of the variance for the Euler-Maruyama time-step bias.
    assert ((emp_mean - mean).abs() <= 4.5 * se_mean + 0.01 * var.sqrt()).all(), (emp_mean, mean)
    assert ((emp_var - var).abs() <= 4.5 * se_var + 0.02 * var).all(), (emp_var, var)


def test_vp_discretize_is_the_ddpm_chain():
    sde = VPSDE(N=1000)
    betas = torch.linspace(0.1 / 1000, 20.0 / 1000, 1000, dtype=torch.float64)
    x = torch.randn(5, 3, dtype=torch.float64)
    for i in [0, 1, 417, 999]:
        t = torch.full((5,), (i + 1e-6) / 999, dtype=torch.float64)
        f, G = sde.discretize(x, t)
        # x_{i+1} = sqrt(1 - beta_i) x_i + sqrt(beta_i) z  <=>  x + f + G z
        assert_close(x + f, (1 - betas[i]).sqrt() * x)
        assert_close(G, betas[i].sqrt().expand(5))
    # Propagated moments of the chain approach the SDE's marginal (N = 1000 -> error ~1e-3).
    m, v = 1.0, 0.0
    for i in range(1000):
        m, v = m * (1 - betas[i]).sqrt(), (1 - betas[i]) * v + betas[i]
        if i in (299, 999):
            mean, std = sde.marginal_prob(
                torch.ones(1, 1, dtype=torch.float64), torch.tensor([(i + 1) / 1000]).double()
            )
            assert abs(float(m) - float(mean)) < 2e-3 and abs(float(v) - float(std**2)) < 2e-3


def test_ve_discretize_is_the_smld_chain():
    sde = VESDE(sigma_min=0.01, sigma_max=50.0, N=100)
    sigmas = torch.exp(torch.linspace(math.log(0.01), math.log(50.0), 100, dtype=torch.float64))
    x = torch.randn(4, 2, dtype=torch.float64)
    var = 0.0
    for i in range(100):
        # (t (N - 1)).long() rounds down, as score_sde and diffusers do: nudge t onto index i.
        f, G = sde.discretize(x, torch.full((4,), (i + 1e-6) / 99, dtype=torch.float64))
        assert torch.equal(f, torch.zeros_like(x))
        var = var + G[0] ** 2
        # sum of the chain's variance increments telescopes to sigma_i^2 (sigma_{-1} = 0)
        assert abs(float(var) - float(sigmas[i] ** 2)) <= 1e-9 * float(sigmas[i] ** 2)


def test_subvp_discretize_is_euler_maruyama():
    sde = subVPSDE(N=250)
    x, t = torch.randn(6, 2, dtype=torch.float64), torch.rand(6, dtype=torch.float64)
    f, G = sde.discretize(x, t)
    drift, g = sde.sde(x, t)
    assert_close(f, drift / 250)
    assert_close(G, g / math.sqrt(250))


@pytest.mark.parametrize("name", sorted(SDES))
def test_reverse_and_probability_flow(name):
    sde = SDES[name]()
    x, t = torch.randn(7, 3, dtype=torch.float64), torch.rand(7, dtype=torch.float64)
    s = torch.randn(7, 3, dtype=torch.float64)
    drift, g = sde.sde(x, t)
    rd, rg = sde.reverse(lambda x, t: s).sde(x, t)
    assert_close(rd, drift - g[:, None] ** 2 * s)
    assert_close(rg, g)
    pd, pg = sde.reverse(lambda x, t: s, probability_flow=True).sde(x, t)
    assert_close(pd, drift - 0.5 * g[:, None] ** 2 * s)
    assert torch.equal(pg, torch.zeros_like(pg))
    f, G = sde.discretize(x, t)
    rf, rG = sde.reverse(lambda x, t: s).discretize(x, t)
    assert_close(rf, f - G[:, None] ** 2 * s)


@pytest.mark.parametrize("name", sorted(SDES))
def test_prior(name):
    sde = SDES[name]()
    g = torch.Generator().manual_seed(0)
    z = sde.prior_sampling((4000, 3), generator=g, dtype=torch.float64)
    std = 50.0 if name == "ve" else 1.0
    assert abs(float(z.std()) / std - 1) < 0.05
    ref = (
        torch.distributions.Normal(torch.tensor(0.0).double(), torch.tensor(std).double())
        .log_prob(z[:9])
        .sum(1)
    )
    assert_close(sde.prior_logp(z[:9]), ref)
    # The prior matches the marginal at T (VP/subVP up to exp(-10) of the data mean).
    _, sT = sde.marginal_prob(torch.zeros(1, 1, dtype=torch.float64), torch.ones(1).double())
    assert abs(float(sT) - std) < 1e-3 * std


def test_bad_inputs():
    with pytest.raises(ValueError, match="sigma_min"):
        VESDE(sigma_min=5.0, sigma_max=1.0)
    with pytest.raises(ValueError, match="beta_min"):
        VPSDE(beta_min=-1.0)
    with pytest.raises(ValueError, match="N must be"):
        VPSDE(N=0)
    with pytest.raises(ValueError, match="too small"):
        VPSDE(N=20).discretize(torch.randn(3, 2), 0.5)
    with pytest.raises(ValueError, match="t must be"):
        VPSDE().sde(torch.randn(3, 2), torch.rand(4))
