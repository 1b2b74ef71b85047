"""Samplers for score models and diffusion models.

API in one screen (x: [B, ...] everywhere; `generator` = an optional torch.Generator):

Discrete-time DDPM / DDIM, for any noise-prediction model `eps_model(x, t) -> eps` with
t: [B] int64 timesteps in [0, num_train_timesteps):
    betas = beta_schedule("linear" | "scaled_linear", num_train_timesteps, beta_start, beta_end)
    alphas_cumprod = torch.cumprod(1 - betas, 0)            # float32, as diffusers
    ts = inference_timesteps(num_train_timesteps, num_steps, spacing="leading", steps_offset=0)
    x_prev, x0 = ddpm_step(eps, t, t_prev, x, alphas_cumprod, noise)        # one ancestral step
    x_prev, x0 = ddim_step(eps, t, t_prev, x, alphas_cumprod, eta=0.0, noise=None)
    x = ddpm_sample(eps_model, x_T, alphas_cumprod, ts, generator=g)
    x = ddim_sample(eps_model, x_T, alphas_cumprod, ts, eta=0.0, generator=g)
  t_prev = -1 means "after the last step" (alpha_bar = 1). `prediction_type` may be "epsilon",
  "sample" or "v_prediction"; `clip_sample` clamps the predicted x0 to [-c, c]. These equal one
  step of diffusers' DDPMScheduler / DDIMScheduler given the same model output and noise.

Score-SDE samplers, for `score_fn(x, t) -> score` and an SDE from `deepnotes.diffusion.sde`:
    x, nfe = pc_sampler(sde, score_fn, shape, predictor="reverse_diffusion", corrector="langevin")
    x, nfe = ode_sampler(sde, score_fn, shape)              # probability-flow ODE, RK45
    EulerMaruyamaPredictor / ReverseDiffusionPredictor / LangevinCorrector(...).update(x, t)

NCSN (Song & Ermon 2019), for `score_fn(x)` or a noise-conditional `score_fn(x, sigma)`:
    x = langevin_dynamics(score_fn, x0, step_size, n_steps)
    x = annealed_langevin_dynamics(score_fn, x0, sigmas, eps, n_steps_each)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy import integrate

from deepnotes.diffusion.sde import SDE, VPSDE, ScoreFn, bcast

__all__ = [
    "EulerMaruyamaPredictor",
    "LangevinCorrector",
    "ReverseDiffusionPredictor",
    "annealed_langevin_dynamics",
    "beta_schedule",
    "ddim_sample",
    "ddim_step",
    "ddpm_sample",
    "ddpm_step",
    "inference_timesteps",
    "langevin_dynamics",
    "ode_sampler",
    "pc_sampler",
]


def _randn_like(x: torch.Tensor, generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


# --------------------------------------------------------------------------- NCSN Langevin


@torch.no_grad()
def langevin_dynamics(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    step_size: float,
    n_steps: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """x_{k+1} = x_k + (eps / 2) score(x_k) + sqrt(eps) z_k (NCSN eq. 4); x: [B, ...]."""
    if step_size <= 0 or n_steps < 0:
        raise ValueError(f"need step_size > 0 and n_steps >= 0, got {step_size}, {n_steps}")
    for _ in range(n_steps):
        x = x + 0.5 * step_size * score_fn(x) + step_size**0.5 * _randn_like(x, generator)
    return x


@torch.no_grad()
def annealed_langevin_dynamics(
    score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    sigmas,
    eps: float,
    n_steps_each: int,
    generator: torch.Generator | None = None,
    denoise: bool = False,
) -> torch.Tensor:
    """NCSN Algorithm 1: Langevin at each noise level sigma_1 > ... > sigma_L in turn, with
    step alpha_i = eps sigma_i^2 / sigma_L^2 (so alpha_i * ||score||^2 stays level-independent).

    score_fn(x [B, ...], sigma [B]) -> [B, ...]. With denoise=True the result is followed by one
    Tweedie step x + sigma_L^2 score(x, sigma_L) (the noise-free mean, NCSNv2).
    """
    sigmas = torch.as_tensor(sigmas, dtype=x.dtype, device=x.device)
    if sigmas.dim() != 1 or len(sigmas) == 0 or (sigmas <= 0).any():
        raise ValueError("sigmas must be a non-empty 1-D sequence of positive noise levels")
    if (sigmas[1:] > sigmas[:-1]).any():
        raise ValueError("sigmas must be non-increasing (largest noise first)")
    if eps <= 0 or n_steps_each < 1:
        raise ValueError(f"need eps > 0 and n_steps_each >= 1, got {eps}, {n_steps_each}")
    sigma_L = sigmas[-1]
    for sigma in sigmas:
        alpha = eps * (sigma / sigma_L) ** 2
        s = sigma.expand(x.shape[0])
        for _ in range(n_steps_each):
            x = x + 0.5 * alpha * score_fn(x, s) + alpha.sqrt() * _randn_like(x, generator)
    if denoise:
        x = x + sigma_L**2 * score_fn(x, sigma_L.expand(x.shape[0]))
    return x


# --------------------------------------------------------------------------- PC sampling


class EulerMaruyamaPredictor:
    """x <- x - [f - g^2 score] dt + g sqrt(dt) z, one step of the reverse SDE, dt = T / N."""

    def __init__(self, sde: SDE, score_fn: ScoreFn, probability_flow: bool = False):
        self.sde, self.rsde = sde, sde.reverse(score_fn, probability_flow)

    def update(self, x, t, noise=None, generator=None):
        """x: [B, ...], t: [B] -> (x, x_mean)."""
        dt = -self.sde.T / self.sde.N
        drift, diffusion = self.rsde.sde(x, t)
        z = _randn_like(x, generator) if noise is None else noise
        x_mean = x + drift * dt
        return x_mean + bcast(diffusion, x) * (-dt) ** 0.5 * z, x_mean


class ReverseDiffusionPredictor:
    """x <- x - f + G^2 score + G z: the forward discretisation (SMLD / DDPM) run backwards."""

    def __init__(self, sde: SDE, score_fn: ScoreFn, probability_flow: bool = False):
        self.sde, self.rsde = sde, sde.reverse(score_fn, probability_flow)

    def update(self, x, t, noise=None, generator=None):
        f, G = self.rsde.discretize(x, t)
        z = _randn_like(x, generator) if noise is None else noise
        x_mean = x - f
        return x_mean + bcast(G, x) * z, x_mean


class LangevinCorrector:
    """Langevin MCMC at fixed t with the signal-to-noise step rule (score_sde Algorithm 4):
    eps = 2 alpha (snr ||z|| / ||score||)^2 with norms averaged over the batch; alpha = alpha_i of
    the DDPM chain for VP SDEs, 1 otherwise."""

    def __init__(self, sde: SDE, score_fn: ScoreFn, snr: float, n_steps: int = 1):
        if snr <= 0 or n_steps < 0:
            raise ValueError(f"need snr > 0 and n_steps >= 0, got {snr}, {n_steps}")
        if isinstance(sde, VPSDE) and sde.beta_1 / sde.N >= 1:
            raise ValueError(
                f"N={sde.N} is too small: the step uses alpha_i = 1 - beta_max / N > 0"
            )
        self.sde, self.score_fn, self.snr, self.n_steps = sde, score_fn, snr, n_steps

    def update(self, x, t, noise=None, generator=None):
        """noise: optional [n_steps, B, ...] (or [B, ...] when n_steps = 1)."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[0])
        if isinstance(self.sde, VPSDE):  # subVPSDE too
            alpha = self.sde.alphas[self.sde.timestep(t).cpu()].to(x)
        else:
            alpha = torch.ones_like(t)
        x_mean = x
        for k in range(self.n_steps):
            grad = self.score_fn(x, t)
            if noise is None:
                z = _randn_like(x, generator)
            else:
                z = noise if noise.shape == x.shape else noise[k]
            grad_norm = grad.flatten(1).norm(dim=1).mean()
            noise_norm = z.flatten(1).norm(dim=1).mean()
            step = (self.snr * noise_norm / grad_norm) ** 2 * 2 * alpha
            x_mean = x + bcast(step, x) * grad
            x = x_mean + bcast((2 * step).sqrt(), x) * z
        return x, x_mean


PREDICTORS = {
    "euler_maruyama": EulerMaruyamaPredictor,
    "reverse_diffusion": ReverseDiffusionPredictor,
}


@torch.no_grad()
def pc_sampler(
    sde: SDE,
    score_fn: ScoreFn,
    shape,
    *,
    predictor: str | None = "reverse_diffusion",
    corrector: str | None = "langevin",
    snr: float = 0.16,
    n_steps: int = 1,
    eps: float = 1e-3,
    denoise: bool = True,
    probability_flow: bool = False,
    x: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    dtype=torch.float32,
) -> tuple[torch.Tensor, int]:
    """Predictor-corrector sampling (score_sde Algorithms 2-3) over N = sde.N steps from T to eps.

    Each step runs the corrector (n_steps Langevin moves), then the predictor. Returns
    (x [shape], number of score evaluations). denoise=True returns the last noise-free mean.
    """
    if predictor is not None and predictor not in PREDICTORS:
        raise ValueError(f"unknown predictor {predictor!r}; valid: {sorted(PREDICTORS)} or None")
    if corrector not in (None, "langevin"):
        raise ValueError(f"unknown corrector {corrector!r}; valid: 'langevin' or None")
    if x is None:
        x = sde.prior_sampling(shape, generator=generator, dtype=dtype)
    pred = PREDICTORS[predictor](sde, score_fn, probability_flow) if predictor else None
    corr = LangevinCorrector(sde, score_fn, snr, n_steps) if corrector else None
    timesteps = torch.linspace(sde.T, eps, sde.N, dtype=x.dtype)
    x_mean, nfe = x, 0
    for t in timesteps:
        vec_t = t.expand(x.shape[0]).to(x.device)
        if corr is not None:
            x, x_mean = corr.update(x, vec_t, generator=generator)
            nfe += n_steps
        if pred is not None:
            x, x_mean = pred.update(x, vec_t, generator=generator)
            nfe += 1
    return (x_mean if denoise else x), nfe


@torch.no_grad()
def ode_sampler(
    sde: SDE,
    score_fn: ScoreFn,
    shape,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    eps: float = 1e-3,
    denoise: bool = False,
    x: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    dtype=torch.float32,
) -> tuple[torch.Tensor, int]:
    """Integrate the probability-flow ODE dx/dt = f - g^2 score / 2 from T down to eps with
    scipy's RK45 (rtol = atol = 1e-5 by default, as score_sde). Returns (x, nfe)."""
    if x is None:
        x = sde.prior_sampling(shape, generator=generator, dtype=dtype)
    rsde = sde.reverse(score_fn, probability_flow=True)
    shape, dev, dt = x.shape, x.device, x.dtype

    def ode_func(t, y):
        xt = torch.from_numpy(y).to(dev, dt).reshape(shape)
        drift = rsde.sde(xt, torch.full((shape[0],), t, dtype=dt, device=dev))[0]
        return drift.double().cpu().numpy().reshape(-1)

    y0 = x.double().cpu().numpy().reshape(-1)
    sol = integrate.solve_ivp(ode_func, (sde.T, eps), y0, rtol=rtol, atol=atol, method="RK45")
    x = torch.from_numpy(sol.y[:, -1]).to(dev, dt).reshape(shape)
    nfe = int(sol.nfev)
    if denoise:
        _, x = ReverseDiffusionPredictor(sde, score_fn).update(
            x, torch.full((shape[0],), eps, dtype=dt)
        )
        nfe += 1
    return x, nfe


# --------------------------------------------------------------------------- DDPM / DDIM


def beta_schedule(
    name: str, num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> torch.Tensor:
    """float32 betas [num_train_timesteps]: "linear" (DDPM) or "scaled_linear" (Stable
    Diffusion: linear in sqrt(beta), e.g. beta_start=0.00085, beta_end=0.012)."""
    n = num_train_timesteps
    if name == "linear":
        return torch.linspace(beta_start, beta_end, n, dtype=torch.float32)
    if name == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=torch.float32) ** 2
    raise ValueError(f"unknown beta schedule {name!r}; valid: 'linear', 'scaled_linear'")


def inference_timesteps(
    num_train_timesteps: int, num_steps: int, spacing: str = "leading", steps_offset: int = 0
) -> torch.Tensor:
    """Descending int64 timesteps for sampling with num_steps model calls.

    "leading": k * (T // n) + offset (DDIM, SD v1 uses offset 1); "linspace": round(linspace(0,
    T-1, n)); "trailing": round(arange(T, 0, -T/n)) - 1 (Lin et al. 2024, Table 2)."""
    T, n = num_train_timesteps, num_steps
    if not 1 <= n <= T:
        raise ValueError(f"need 1 <= num_steps <= num_train_timesteps, got {n}, {T}")
    if spacing == "leading":
        ts = np.arange(0, n)[::-1] * (T // n) + steps_offset
    elif spacing == "linspace":
        ts = np.linspace(0, T - 1, n).round()[::-1]
    elif spacing == "trailing":
        ts = np.round(np.arange(T, 0, -T / n)) - 1
    else:
        raise ValueError(f"unknown spacing {spacing!r}; valid: leading, linspace, trailing")
    return torch.from_numpy(ts.astype(np.int64).copy())


def _x0_eps(model_output, x, a_t, prediction_type):
    """(predicted x0, predicted eps) from the model output, with x = sqrt(a) x0 + sqrt(1-a) eps."""
    b_t = 1 - a_t
    if prediction_type == "epsilon":
        return (x - b_t**0.5 * model_output) / a_t**0.5, model_output
    if prediction_type == "sample":
        return model_output, (x - a_t**0.5 * model_output) / b_t**0.5
    if prediction_type == "v_prediction":
        return a_t**0.5 * x - b_t**0.5 * model_output, a_t**0.5 * model_output + b_t**0.5 * x
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


def _alpha(alphas_cumprod: torch.Tensor, t: int, final: float | torch.Tensor = 1.0):
    t = int(t)
    return alphas_cumprod[t] if t >= 0 else torch.as_tensor(final, dtype=alphas_cumprod.dtype)


def ddpm_step(
    model_output: torch.Tensor,
    t: int,
    t_prev: int,
    x: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    noise: torch.Tensor | None = None,
    *,
    prediction_type: str = "epsilon",
    clip_sample: float | None = None,
    variance_type: str = "fixed_small",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ancestral step x_t -> x_{t_prev} of DDPM (Ho et al. 2020, eqs. 6-7), with the effective
    beta = 1 - a_t / a_prev when steps are skipped. Returns (x_prev, predicted x0).

    Posterior mean = sqrt(a_prev) beta / (1 - a_t) x0
                   + sqrt(a_t / a_prev) (1 - a_prev) / (1 - a_t) x_t;
    variance: "fixed_small" = beta (1 - a_prev) / (1 - a_t) (the posterior's), "fixed_large" = beta.
    No noise is added at t = 0.
    """
    a_t, a_prev = _alpha(alphas_cumprod, t), _alpha(alphas_cumprod, t_prev)
    beta = 1 - a_t / a_prev
    x0, _ = _x0_eps(model_output, x, a_t, prediction_type)
    if clip_sample is not None:
        x0 = x0.clamp(-clip_sample, clip_sample)
    mean = (a_prev**0.5 * beta / (1 - a_t)) * x0 + (
        (1 - beta) ** 0.5 * (1 - a_prev) / (1 - a_t)
    ) * x
    if int(t) <= 0:
        return mean, x0
    if variance_type == "fixed_small":
        var = torch.clamp((1 - a_prev) / (1 - a_t) * beta, min=1e-20)
    elif variance_type == "fixed_large":
        var = beta
    else:
        raise ValueError(
            f"unknown variance_type {variance_type!r}; valid: fixed_small, fixed_large"
        )
    z = _randn_like(model_output, generator) if noise is None else noise
    return mean + var**0.5 * z, x0


def ddim_step(
    model_output: torch.Tensor,
    t: int,
    t_prev: int,
    x: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
    *,
    prediction_type: str = "epsilon",
    clip_sample: float | None = None,
    final_alpha_cumprod: float | torch.Tensor = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step (Song et al. 2021, eq. 12): x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev -
    sigma^2) eps + sigma z, sigma = eta sqrt((1 - a_prev) / (1 - a_t) (1 - a_t / a_prev)).
    eta = 0 is deterministic; eta = 1 is DDPM's posterior. Returns (x_prev, predicted x0)."""
    a_t = _alpha(alphas_cumprod, t)
    a_prev = _alpha(alphas_cumprod, t_prev, final_alpha_cumprod)
    x0, eps = _x0_eps(model_output, x, a_t, prediction_type)
    if clip_sample is not None:
        x0 = x0.clamp(-clip_sample, clip_sample)
        eps = (x - a_t**0.5 * x0) / (1 - a_t) ** 0.5  # keep x consistent with the clipped x0
    sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) ** 0.5
    x_prev = a_prev**0.5 * x0 + (1 - a_prev - sigma**2) ** 0.5 * eps
    if eta > 0:
        z = _randn_like(model_output, generator) if noise is None else noise
        x_prev = x_prev + sigma * z
    return x_prev, x0


def _timestep_vec(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)


@torch.no_grad()
def ddpm_sample(eps_model, x, alphas_cumprod, timesteps, *, generator=None, **step_kw):
    """Ancestral sampling from x = x_T over descending `timesteps`;
    eps_model(x, t [B]) -> [B, ...]."""
    ts = [int(t) for t in timesteps]
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        out = eps_model(x, _timestep_vec(t, x))
        x, _ = ddpm_step(out, t, t_prev, x, alphas_cumprod.to(x), generator=generator, **step_kw)
    return x


@torch.no_grad()
def ddim_sample(eps_model, x, alphas_cumprod, timesteps, eta=0.0, *, generator=None, **step_kw):
    """DDIM sampling from x = x_T over descending `timesteps` (the next one is t_prev)."""
    ts = [int(t) for t in timesteps]
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        out = eps_model(x, _timestep_vec(t, x))
        x, _ = ddim_step(
            out, t, t_prev, x, alphas_cumprod.to(x), eta, generator=generator, **step_kw
        )
    return x
