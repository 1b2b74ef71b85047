"""Every sampler run with exact Gaussian-mixture scores (no learning): samples match the target."""

from __future__ import annotations

import math

import pytest
import torch

from deepnotes.diffusion.samplers import (
    EulerMaruyamaPredictor,
    LangevinCorrector,
    ReverseDiffusionPredictor,
    annealed_langevin_dynamics,
    beta_schedule,
    ddim_sample,
    ddim_step,
    ddpm_sample,
    ddpm_step,
    inference_timesteps,
    langevin_dynamics,
    ode_sampler,
    pc_sampler,
)
from deepnotes.diffusion.sde import VESDE, VPSDE, subVPSDE
from deepnotes.diffusion.toy import GaussianMixture, ncsn_mixture, sliced_wasserstein
from tests.helpers import assert_close

F64 = torch.float64


def _mixture():
    return GaussianMixture([0.3, 0.7], [[-2.0, 0.0], [2.0, 1.0]], [0.25, 0.5])


def _check_samples(x, gm, slack_w=0.02, slack_mean=0.06, rel_var=0.12):
    """Mode weight of the left component, mean and per-axis variance within statistical bounds."""
    n = x.shape[0]
    assert torch.isfinite(x).all()
    mean = (gm.weights[:, None] * gm.means).sum(0)
    second = (gm.weights[:, None] * (torch.diagonal(gm.covs, dim1=1, dim2=2) + gm.means**2)).sum(0)
    var = second - mean**2
    w = float(gm.weights[0])
    frac = float((x[:, 0] < 0).double().mean())
    assert abs(frac - w) <= 4.5 * math.sqrt(w * (1 - w) / n) + slack_w, (frac, w)
    assert ((x.mean(0) - mean).abs() <= 4.5 * (var / n).sqrt() + slack_mean).all(), (
        x.mean(0),
        mean,
    )
    assert ((x.var(0) / var - 1).abs() <= rel_var).all(), (x.var(0), var)


def _x_T(sde, gm, n, g):
    """Exact samples of p_T (data pushed through the forward kernel), so no prior mismatch."""
    x0 = gm.sample(n, g)
    mean, std = sde.marginal_prob(x0, torch.ones(n, dtype=F64))
    return mean + std[:, None] * torch.randn(n, 2, generator=g, dtype=F64)


SDES = {
    "ve": lambda: VESDE(sigma_min=0.01, sigma_max=10.0, N=200),
    "vp": lambda: VPSDE(N=200),
    "subvp": lambda: subVPSDE(N=200),
}
PC = [("euler_maruyama", None), ("reverse_diffusion", None), ("reverse_diffusion", "langevin")]


@pytest.mark.parametrize("name", sorted(SDES))
@pytest.mark.parametrize("predictor,corrector", PC)
def test_pc_sampler_exact_score(name, predictor, corrector):
    sde, gm = SDES[name](), _mixture()
    g = torch.Generator().manual_seed(7)
    x, nfe = pc_sampler(
        sde,
        gm.sde_score_fn(sde),
        None,
        predictor=predictor,
        corrector=corrector,
        x=_x_T(sde, gm, 1500, g),
        generator=g,
    )
    assert nfe == 200 * (2 if corrector else 1)
    _check_samples(x, gm)


@pytest.mark.parametrize("name", sorted(SDES))
def test_probability_flow_ode_exact_score(name):
    sde, gm = SDES[name](), _mixture()
    g = torch.Generator().manual_seed(3)
    x, nfe = ode_sampler(sde, gm.sde_score_fn(sde), None, x=_x_T(sde, gm, 1500, g))
    assert 20 < nfe < 1000
    _check_samples(x, gm, slack_w=0.0, slack_mean=0.0, rel_var=0.1)


def test_ode_is_deterministic_and_invertible():
    """Forward then backward through the ODE returns the start point (RK45, tol 1e-5)."""
    sde, gm = VPSDE(), _mixture()
    x0 = gm.sample(50, torch.Generator().manual_seed(0))
    xa, _ = ode_sampler(sde, gm.sde_score_fn(sde), None, x=x0.clone())
    xb, _ = ode_sampler(sde, gm.sde_score_fn(sde), None, x=x0.clone())
    assert torch.equal(xa, xb)


def test_predictor_and_corrector_formulas():
    sde = VPSDE(N=50)
    x, t = torch.randn(4, 3, dtype=F64), torch.full((4,), 0.37, dtype=F64)
    s, z = torch.randn(4, 3, dtype=F64), torch.randn(4, 3, dtype=F64)
    drift, g = sde.sde(x, t)
    x1, m1 = EulerMaruyamaPredictor(sde, lambda x, t: s).update(x, t, noise=z)
    assert_close(m1, x - (drift - g[:, None] ** 2 * s) / 50)
    assert_close(x1, m1 + g[:, None] * math.sqrt(1 / 50) * z)
    f, G = sde.discretize(x, t)
    x2, m2 = ReverseDiffusionPredictor(sde, lambda x, t: s).update(x, t, noise=z)
    assert_close(m2, x - f + G[:, None] ** 2 * s)
    x3, m3 = LangevinCorrector(sde, lambda x, t: s, snr=0.2).update(x, t, noise=z)
    alpha = sde.alphas[int(0.37 * 49)]
    step = 2 * alpha * (0.2 * z.norm(dim=1).mean() / s.norm(dim=1).mean()) ** 2
    assert_close(m3, x + step * s)
    assert_close(x3, m3 + (2 * step).sqrt() * z)


def test_ncsn_figure3_langevin_vs_annealed_exact_score():
    """Plain Langevin keeps the initial basin (~1/2 each); annealed recovers 1/5 vs 4/5."""
    gm, g, n = ncsn_mixture(), torch.Generator().manual_seed(11), 2000
    x0 = torch.rand(n, 2, generator=g, dtype=F64) * 16 - 8
    plain = langevin_dynamics(lambda x: gm.score(x), x0, 0.1, 500, g)
    frac_plain = float((plain.sum(1) < 0).double().mean())
    assert 0.4 < frac_plain < 0.6, frac_plain
    sigmas = torch.exp(torch.linspace(math.log(20.0), 0.0, 10, dtype=F64))
    ann = annealed_langevin_dynamics(gm.sigma_score_fn(), x0, sigmas, 0.1, 100, g)
    frac_ann = float((ann.sum(1) < 0).double().mean())
    assert abs(frac_ann - 0.2) < 4.5 * math.sqrt(0.16 / n) + 0.01, frac_ann


def _eps_model(gm, alphas_cumprod):
    """The exact noise prediction eps = -sqrt(1 - a_t) grad log p_t(x_t)."""

    def eps_model(x, t):
        a = alphas_cumprod[t].to(x)
        return -(1 - a).sqrt()[:, None] * gm.score(x, a.sqrt(), (1 - a).sqrt())

    return eps_model


@pytest.mark.parametrize(
    "kind,steps,eta",
    [("ddpm", 1000, None), ("ddpm", 100, None), ("ddim", 50, 0.0), ("ddim", 250, 1.0)],
)
def test_ddpm_ddim_exact_eps(kind, steps, eta):
    gm = GaussianMixture([0.3, 0.7], [[-1.0, 0.0], [1.0, 0.5]], [0.04, 0.09])
    ac = torch.cumprod(1 - beta_schedule("linear", 1000), 0)
    ts = inference_timesteps(1000, steps, "leading")
    g = torch.Generator().manual_seed(5)
    xT = torch.randn(1500, 2, generator=g, dtype=F64)
    if kind == "ddpm":
        x = ddpm_sample(_eps_model(gm, ac), xT, ac, ts, generator=g)
    else:
        x = ddim_sample(_eps_model(gm, ac), xT, ac, ts, eta=eta, generator=g)
    _check_samples(x, gm, slack_mean=0.03)


def test_ddim_eta1_is_ddpm_posterior():
    ac = torch.cumprod(1 - beta_schedule("linear", 1000), 0).double()
    x, e, z = (torch.randn(5, 3, dtype=F64) for _ in range(3))
    for t, t_prev in [(999, 979), (500, 480), (20, 0), (13, -1)]:
        a, a0 = ddpm_step(e, t, t_prev, x, ac, z)
        b, b0 = ddim_step(e, t, t_prev, x, ac, 1.0, z)
        assert_close(a, b, tol=1e-9)  # DDPM clamps the variance at 1e-20
        assert_close(a0, b0, tol=1e-12)


def test_schedules_and_timesteps():
    b = beta_schedule("scaled_linear", 1000, 0.00085, 0.012)
    assert abs(float(b[0]) - 0.00085) < 1e-9 and abs(float(b[-1]) - 0.012) < 1e-9
    assert inference_timesteps(1000, 4, "leading", 1).tolist() == [751, 501, 251, 1]
    assert inference_timesteps(1000, 4, "trailing").tolist() == [999, 749, 499, 249]
    assert inference_timesteps(10, 3, "linspace").tolist() == [9, 4, 0]
    with pytest.raises(ValueError, match="num_steps"):
        inference_timesteps(10, 11)
    with pytest.raises(ValueError, match="beta schedule"):
        beta_schedule("cosine")


def test_bad_inputs():
    sde = VESDE()
    with pytest.raises(ValueError, match="predictor"):
        pc_sampler(sde, lambda x, t: x, (2, 2), predictor="heun")
    with pytest.raises(ValueError, match="non-increasing"):
        annealed_langevin_dynamics(lambda x, s: x, torch.zeros(2, 2), [1.0, 2.0], 0.1, 1)
    with pytest.raises(ValueError, match="snr"):
        LangevinCorrector(sde, lambda x, t: x, snr=0.0)
    with pytest.raises(ValueError, match="too small"):
        LangevinCorrector(VPSDE(N=15), lambda x, t: x, snr=0.1)


def test_mixture_score_is_the_gradient_of_its_log_density():
    """The ground truth itself: the analytic score equals autograd of the analytic log-density,
    per sample at mixed noise levels, and log_prob integrates to 1 on a grid."""
    gm = GaussianMixture(
        [0.2, 0.5, 0.3],
        [[0.0, 1.0], [2.0, -1.0], [-3.0, 0.5]],
        [[[1.0, 0.3], [0.3, 0.5]], [[0.4, 0.0], [0.0, 0.4]], [[0.7, -0.2], [-0.2, 0.3]]],
    )
    x = torch.randn(9, 2, dtype=F64, requires_grad=True)
    a, s = torch.rand(9, dtype=F64), torch.rand(9, dtype=F64)
    (grad,) = torch.autograd.grad(gm.log_prob(x, a, s).sum(), x)
    assert_close(gm.score(x.detach(), a, s), grad)
    lin = torch.linspace(-9, 8, 341, dtype=F64)
    X, Y = torch.meshgrid(lin, lin, indexing="xy")
    p = gm.log_prob(torch.stack([X.reshape(-1), Y.reshape(-1)], 1)).exp().sum() * (17 / 340) ** 2
    assert abs(float(p) - 1) < 1e-3


def test_sliced_wasserstein():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 2, generator=g, dtype=F64)
    assert sliced_wasserstein(x, x, generator=g) == 0.0
    # a shift by delta: W2 of every projection is |d . delta|, so SWD = |delta| / sqrt(2) in 2-D
    delta = torch.tensor([3.0, -4.0], dtype=F64)
    swd = sliced_wasserstein(x + delta, x, n_proj=4000, generator=g)
    assert abs(swd - 5 / math.sqrt(2)) < 0.1
