"""Forward SDEs of score-based diffusion (Song et al. 2021, "Score-Based Generative Modeling
through Stochastic Differential Equations"), with score_sde's method names and meanings.

Every SDE runs forward on t in [0, T] (T = 1):  dx = f(x, t) dt + g(t) dw.

- `sde(x, t) -> (drift f(x, t), diffusion g(t))`
- `marginal_prob(x0, t) -> (mean, std)` of the Gaussian perturbation kernel p_0t(x_t | x_0)
- `prior_sampling(shape)`, `prior_logp(z)`: the reference distribution at t = T
- `discretize(x, t) -> (f, G)`: one step x_{i+1} = x_i + f + G z of the discrete chain
  (SMLD for VE, DDPM for VP, Euler-Maruyama otherwise)
- `reverse(score_fn, probability_flow=False)`: the reverse-time SDE (eq. 6) or the
  probability-flow ODE (eq. 13), as another object with `sde` and `discretize`

Shapes: x: [B, ...] (any trailing shape), t: [B] (or a float, broadcast over the batch);
drift has x's shape, diffusion is [B].
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x [B, ...], t [B]) -> [B, ...]


def bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample vector v: [B] to [B, 1, ..., 1] so it broadcasts against x."""
    return v.reshape(v.shape[0], *([1] * (x.dim() - 1)))


def _as_t(t, x: torch.Tensor) -> torch.Tensor:
    """t as a [B] tensor on x's device and dtype."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.dim() == 0:
        t = t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"t must be a scalar or have shape [B]={x.shape[0]}, got {tuple(t.shape)}")
    return t


class SDE:
    """Base class: dx = f(x, t) dt + g(t) dw on [0, T], discretised into N steps."""

    T: float = 1.0

    def __init__(self, N: int):
        if N < 1:
            raise ValueError(f"N must be >= 1, got {N}")
        self.N = N

    def sde(self, x: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def marginal_prob(self, x0: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean [B, ...], std [B]) of p_0t(x_t | x_0)."""
        raise NotImplementedError

    def prior_sampling(self, shape, *, generator=None, dtype=torch.float32, device="cpu"):
        raise NotImplementedError

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        """log p_T(z): [B], summed over every non-batch dimension."""
        raise NotImplementedError

    def discretize(self, x: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """Euler-Maruyama: f = drift * dt, G = g * sqrt(dt), dt = T / N. Returns ([B, ...], [B])."""
        dt = self.T / self.N
        drift, diffusion = self.sde(x, t)
        return drift * dt, diffusion * math.sqrt(dt)

    def mean_coeff_std(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a(t), s(t)), both [B]: x_t = a(t) x_0 + s(t) z. Used by the analytic mixture scores."""
        one = torch.ones(t.shape[0], 1, dtype=t.dtype, device=t.device)
        mean, std = self.marginal_prob(one, t)
        return mean[:, 0], std

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> ReverseSDE:
        return ReverseSDE(self, score_fn, probability_flow)


class ReverseSDE:
    """The reverse-time SDE dx = [f - g^2 score] dt + g dw_bar, run from T to 0 (Anderson 1982);
    with probability_flow=True the ODE dx = [f - g^2 score / 2] dt with the same marginals."""

    def __init__(self, fwd: SDE, score_fn: ScoreFn, probability_flow: bool = False):
        self.fwd, self.score_fn, self.probability_flow = fwd, score_fn, probability_flow
        self.N, self.T = fwd.N, fwd.T

    def sde(self, x: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        t = _as_t(t, x)
        drift, diffusion = self.fwd.sde(x, t)
        score = self.score_fn(x, t)
        w = 0.5 if self.probability_flow else 1.0
        drift = drift - bcast(diffusion**2, x) * score * w
        return drift, torch.zeros_like(diffusion) if self.probability_flow else diffusion

    def discretize(self, x: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """(rev_f, rev_G) so that one reverse step is x <- x - rev_f + rev_G z (score_sde)."""
        t = _as_t(t, x)
        f, G = self.fwd.discretize(x, t)
        w = 0.5 if self.probability_flow else 1.0
        rev_f = f - bcast(G**2, x) * self.score_fn(x, t) * w
        return rev_f, torch.zeros_like(G) if self.probability_flow else G


def _gaussian_logp(z: torch.Tensor, var: float) -> torch.Tensor:
    n = z[0].numel()
    return -0.5 * n * math.log(2 * math.pi * var) - z.flatten(1).pow(2).sum(1) / (2 * var)


class VPSDE(SDE):
    """Variance preserving: dx = -beta(t) x / 2 dt + sqrt(beta(t)) dw, beta linear in t.
    Discretised as DDPM's chain, beta_i = beta_min / N + i (beta_max - beta_min) / (N (N - 1))."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000):
        super().__init__(N)
        if not 0 < beta_min <= beta_max:
            raise ValueError(f"need 0 < beta_min <= beta_max, got {beta_min}, {beta_max}")
        self.beta_0, self.beta_1 = beta_min, beta_max
        # float64 tables: callers cast to their dtype.
        self.discrete_betas = torch.linspace(beta_min / N, beta_max / N, N, dtype=torch.float64)
        self.alphas = 1.0 - self.discrete_betas
        self.alphas_cumprod = torch.cumprod(self.alphas, 0)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta_0 + t * (self.beta_1 - self.beta_0)

    def _log_mean_coeff(self, t: torch.Tensor) -> torch.Tensor:
        # log a(t) = -1/2 int_0^t beta(s) ds
        return -0.25 * t**2 * (self.beta_1 - self.beta_0) - 0.5 * t * self.beta_0

    def sde(self, x, t):
        t = _as_t(t, x)
        beta_t = self.beta(t)
        return -0.5 * bcast(beta_t, x) * x, torch.sqrt(beta_t)

    def marginal_prob(self, x0, t):
        t = _as_t(t, x0)
        lmc = self._log_mean_coeff(t)
        return bcast(torch.exp(lmc), x0) * x0, torch.sqrt(1.0 - torch.exp(2.0 * lmc))

    def prior_sampling(self, shape, *, generator=None, dtype=torch.float32, device="cpu"):
        return torch.randn(shape, generator=generator, dtype=dtype, device=device)

    def prior_logp(self, z):
        return _gaussian_logp(z, 1.0)

    def timestep(self, t: torch.Tensor) -> torch.Tensor:
        """Index i of the discrete chain for continuous t (score_sde's rounding down)."""
        return (t * (self.N - 1) / self.T).long()

    def discretize(self, x, t):
        """DDPM: x_{i+1} = sqrt(1 - beta_i) x_i + sqrt(beta_i) z, i.e. f = (sqrt(alpha_i) - 1) x."""
        if self.beta_1 / self.N >= 1:
            raise ValueError(
                f"N={self.N} is too small for the DDPM discretisation: beta_max / N must be < 1"
            )
        t = _as_t(t, x)
        i = self.timestep(t).cpu()
        beta = self.discrete_betas[i].to(x)
        alpha = self.alphas[i].to(x)
        return bcast(torch.sqrt(alpha), x) * x - x, torch.sqrt(beta)


class subVPSDE(VPSDE):  # noqa: N801 - score_sde's name
    """Sub-variance preserving: the VP drift with g(t)^2 = beta(t) (1 - exp(-2 int_0^t beta));
    its marginal variance (1 - a(t)^2)^2 is below VP's at every t. Discretised by Euler-Maruyama."""

    def sde(self, x, t):
        t = _as_t(t, x)
        beta_t = self.beta(t)
        discount = 1.0 - torch.exp(-2 * self.beta_0 * t - (self.beta_1 - self.beta_0) * t**2)
        return -0.5 * bcast(beta_t, x) * x, torch.sqrt(beta_t * discount)

    def marginal_prob(self, x0, t):
        t = _as_t(t, x0)
        lmc = self._log_mean_coeff(t)
        return bcast(torch.exp(lmc), x0) * x0, 1.0 - torch.exp(2.0 * lmc)

    def discretize(self, x, t):
        return SDE.discretize(self, x, t)


class VESDE(SDE):
    """Variance exploding: dx = sqrt(d sigma(t)^2 / dt) dw with sigma(t) = sigma_min (sigma_max /
    sigma_min)^t. Its discretisation is SMLD's (NCSN's) chain over geometric noise levels."""

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, N: int = 1000):
        super().__init__(N)
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self.discrete_sigmas = torch.exp(
            torch.linspace(math.log(sigma_min), math.log(sigma_max), N, dtype=torch.float64)
        )

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def sde(self, x, t):
        t = _as_t(t, x)
        g = self.sigma(t) * math.sqrt(2 * (math.log(self.sigma_max) - math.log(self.sigma_min)))
        return torch.zeros_like(x), g

    def marginal_prob(self, x0, t):
        # Like score_sde, the kernel is N(x0, sigma(t)^2): the sigma_min^2 at t = 0 is ignored.
        t = _as_t(t, x0)
        return x0, self.sigma(t)

    def prior_sampling(self, shape, *, generator=None, dtype=torch.float32, device="cpu"):
        z = torch.randn(shape, generator=generator, dtype=dtype, device=device)
        return z * self.sigma_max

    def prior_logp(self, z):
        return _gaussian_logp(z, self.sigma_max**2)

    def timestep(self, t: torch.Tensor) -> torch.Tensor:
        return (t * (self.N - 1) / self.T).long()

    def discretize(self, x, t):
        """SMLD: x_{i+1} = x_i + sqrt(sigma_{i+1}^2 - sigma_i^2) z, with sigma_{-1} = 0."""
        t = _as_t(t, x)
        i = self.timestep(t).cpu()
        sigma = self.discrete_sigmas[i]
        prev = torch.where(
            i == 0, torch.zeros_like(sigma), self.discrete_sigmas[(i - 1).clamp(min=0)]
        )
        return torch.zeros_like(x), torch.sqrt(sigma**2 - prev**2).to(x)
