"""Toy data with exact scores: Gaussian mixtures under VE and VP perturbations, a small score
network, and the sliced Wasserstein distance used to grade samples.

A perturbation x_t = a x_0 + s z (VE: a = 1, s = sigma; VP: a = exp(-1/2 int beta), s^2 = 1 - a^2)
maps the mixture sum_k w_k N(mu_k, S_k) to sum_k w_k N(a mu_k, a^2 S_k + s^2 I): its log-density
and score are closed-form at every noise level, so samplers can be tested with no learning.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from deepnotes.diffusion.sde import SDE


class GaussianMixture:
    """sum_k weights[k] N(means[k], covs[k]). weights: [K], means: [K, D], covs: [K, D, D]
    (or [K] / a float for isotropic components)."""

    def __init__(self, weights, means, covs=1.0, dtype=torch.float64):
        w = torch.as_tensor(weights, dtype=dtype)
        mu = torch.as_tensor(means, dtype=dtype)
        if mu.dim() != 2 or w.shape != (mu.shape[0],):
            raise ValueError(
                f"need weights [K] and means [K, D], got {tuple(w.shape)}, {tuple(mu.shape)}"
            )
        if (w < 0).any() or abs(float(w.sum()) - 1.0) > 1e-9:
            raise ValueError("weights must be non-negative and sum to 1")
        K, D = mu.shape
        c = torch.as_tensor(covs, dtype=dtype)
        if c.dim() == 0:
            c = c.expand(K)
        if c.dim() == 1:
            c = c[:, None, None] * torch.eye(D, dtype=dtype)
        if c.shape != (K, D, D):
            raise ValueError(f"covs must be a float, [K] or [K, D, D], got {tuple(c.shape)}")
        self.weights, self.means, self.covs = w, mu, c.clone()
        self.K, self.dim = K, D

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """[n, D] samples (float64) and nothing else."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        L = torch.linalg.cholesky(self.covs)
        z = torch.randn(n, self.dim, dtype=self.means.dtype, generator=generator)
        return self.means[k] + torch.einsum("nij,nj->ni", L[k], z)

    def _perturbed(self, a: torch.Tensor, s: torch.Tensor):
        """Per-sample component means [B, K, D] and covariances [B, K, D, D]."""
        eye = torch.eye(self.dim, dtype=a.dtype)
        m = a[:, None, None] * self.means.to(a)
        C = a[:, None, None, None] ** 2 * self.covs.to(a) + s[:, None, None, None] ** 2 * eye
        return m, C

    def _parts(self, x: torch.Tensor, a: torch.Tensor, s: torch.Tensor):
        """log(w_k N(x; m_k, C_k)) [B, K] and C_k^{-1} (x - m_k) [B, K, D]."""
        if bool((a == a[0]).all() and (s == s[0]).all()):
            # One noise level for the whole batch (every sampler step): factor once.
            m, C = self._perturbed(a[:1], s[:1])
        else:
            m, C = self._perturbed(a, s)
        Cinv = torch.linalg.inv(C)  # [B or 1, K, D, D]; D is small
        logdet = torch.linalg.slogdet(C)[1]  # [B or 1, K]
        diff = x[:, None, :] - m  # [B, K, D]
        Cinv_diff = (Cinv * diff[:, :, None, :]).sum(-1)
        quad = (diff * Cinv_diff).sum(-1)
        logc = -0.5 * quad - 0.5 * logdet - 0.5 * self.dim * math.log(2 * math.pi)
        return logc + torch.log(self.weights.to(x)), Cinv_diff

    def log_prob(self, x: torch.Tensor, a=None, s=None) -> torch.Tensor:
        """log p(x) of the perturbed mixture: x [B, D] -> [B] (a = 1, s = 0: the data)."""
        a, s = self._coeffs(x, a, s)
        logc, _ = self._parts(x, a, s)
        return torch.logsumexp(logc, -1)

    def score(self, x: torch.Tensor, a=None, s=None) -> torch.Tensor:
        """grad_x log p(x) = -sum_k r_k(x) C_k^{-1} (x - m_k): x [B, D] -> [B, D]."""
        a, s = self._coeffs(x, a, s)
        logc, Cinv_diff = self._parts(x, a, s)
        # exp(logc - logsumexp): torch.softmax over a tiny last dim is slow on CPU
        r = torch.exp(logc - torch.logsumexp(logc, -1, keepdim=True))
        return -(r[..., None] * Cinv_diff).sum(1)

    def _coeffs(self, x, a, s):
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must be [B, {self.dim}], got {tuple(x.shape)}")
        B = x.shape[0]
        a = torch.ones(B, dtype=x.dtype) if a is None else torch.as_tensor(a, dtype=x.dtype)
        s = torch.zeros(B, dtype=x.dtype) if s is None else torch.as_tensor(s, dtype=x.dtype)
        return a.expand(B), s.expand(B)

    def sde_score_fn(self, sde: SDE):
        """score_fn(x, t) of the marginal p_t under `sde` (exact; x: [B, D], t: [B])."""

        def score_fn(x, t):
            a, s = sde.mean_coeff_std(torch.as_tensor(t, dtype=x.dtype).expand(x.shape[0]))
            return self.score(x, a, s)

        return score_fn

    def sde_log_prob_fn(self, sde: SDE):
        """logp_fn(x, t) of the marginal p_t under `sde` (exact)."""

        def logp_fn(x, t):
            a, s = sde.mean_coeff_std(torch.as_tensor(t, dtype=x.dtype).expand(x.shape[0]))
            return self.log_prob(x, a, s)

        return logp_fn

    def sigma_score_fn(self):
        """score_fn(x, sigma) of the data convolved with N(0, sigma^2 I) (SMLD / NCSN levels)."""

        def score_fn(x, sigma):
            sigma = torch.as_tensor(sigma, dtype=x.dtype).expand(x.shape[0])
            return self.score(x, torch.ones_like(sigma), sigma)

        return score_fn


def ncsn_mixture() -> GaussianMixture:
    """NCSN Figure 3's data: 1/5 N((-5, -5), I) + 4/5 N((5, 5), I)."""
    return GaussianMixture([0.2, 0.8], [[-5.0, -5.0], [5.0, 5.0]], 1.0)


def ring_mixture(k: int = 8, radius: float = 3.0, std: float = 0.25) -> GaussianMixture:
    """k equal Gaussians of standard deviation `std` on a circle of `radius`."""
    ang = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
    means = radius * torch.stack([ang.cos(), ang.sin()], 1)
    return GaussianMixture(torch.full((k,), 1.0 / k, dtype=torch.float64), means, std**2)


class ScoreNet(nn.Module):
    """A small noise-conditional score network s(x, sigma) = MLP([x, log sigma]) / sigma.

    Dividing by sigma follows NCSN's observation that ||score|| ~ 1 / sigma; the MLP then only
    learns a unit-scale field. x: [B, D], sigma: [B] -> [B, D].
    """

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3):
        super().__init__()
        layers, d = [], dim + 1
        for _ in range(depth):
            layers += [nn.Linear(d, hidden), nn.SiLU()]
            d = hidden
        layers.append(nn.Linear(d, dim))
        self.net = nn.Sequential(*layers)
        self.dim = dim

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
        h = torch.cat([x, torch.log(sigma)[:, None]], 1)
        return self.net(h) / sigma[:, None]

    def sde_score_fn(self, sde: SDE):
        """score_fn(x, t) for `sde`: the network conditioned on the marginal std s(t)."""

        def score_fn(x, t):
            _, s = sde.mean_coeff_std(torch.as_tensor(t, dtype=x.dtype).expand(x.shape[0]))
            return self(x, s)

        return score_fn


def sliced_wasserstein(
    x: torch.Tensor, y: torch.Tensor, n_proj: int = 256, generator: torch.Generator | None = None
) -> float:
    """Sliced 2-Wasserstein distance between point clouds x: [N, D] and y: [M, D].

    sqrt(mean over random unit directions of W2^2 of the 1-D projections); the 1-D W2 is exact
    on matched quantiles (both sorted, resampled to the smaller size).
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need [N, D] and [M, D], got {tuple(x.shape)}, {tuple(y.shape)}")
    x, y = x.double(), y.double()
    d = torch.randn(x.shape[1], n_proj, dtype=torch.float64, generator=generator)
    d = d / d.norm(dim=0, keepdim=True)
    px, py = (x @ d).sort(0).values, (y @ d).sort(0).values
    n = min(px.shape[0], py.shape[0])
    q = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    ix = (q * px.shape[0]).long().clamp(max=px.shape[0] - 1)
    iy = (q * py.shape[0]).long().clamp(max=py.shape[0] - 1)
    return float(((px[ix] - py[iy]) ** 2).mean().sqrt())
