"""Score-matching objectives: denoising (Vincent 2011; NCSN's multi-level form; score_sde's
continuous-time form) and sliced (Song et al. 2019).

Explicit score matching, E_p ||s(x) - grad log p(x)||^2 / 2, needs the unknown data score. Two
ways round it:

- Denoising: perturb x~ = x + sigma z; the score of the kernel is -z / sigma, and
  E ||s(x~) - (-z / sigma)||^2 has the same minimiser as explicit matching against the score
  of the perturbed data. NCSN weights level sigma by lambda(sigma) = sigma^2 so every level
  contributes O(1): sigma^2 ||s + z / sigma||^2 = ||sigma s + z||^2.
- Sliced: integration by parts turns the objective into E[tr(ds/dx) + ||s||^2 / 2]; project
  on random directions v to avoid the full Jacobian: E_v[v^T (ds/dx) v + (v^T s)^2 / 2]
  (or ||s||^2 / 2 for the variance-reduced form when E[v v^T] = I).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from deepnotes.diffusion.sde import SDE, bcast

__all__ = ["dsm_loss", "sde_dsm_loss", "sliced_score_matching_loss"]


def dsm_loss(
    score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    sigmas,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """NCSN's multi-level DSM loss (eq. 6 with lambda(sigma) = sigma^2), a scalar.

    x: [B, ...] data; sigmas: [L] noise levels, one drawn uniformly per sample;
    score_fn(x~ [B, ...], sigma [B]) -> [B, ...]. Per sample: 1/2 ||sigma s(x~, sigma) + z||^2.
    """
    sigmas = torch.as_tensor(sigmas, dtype=x.dtype, device=x.device)
    if sigmas.dim() != 1 or len(sigmas) == 0 or (sigmas <= 0).any():
        raise ValueError("sigmas must be a non-empty 1-D sequence of positive noise levels")
    idx = torch.randint(len(sigmas), (x.shape[0],), generator=generator).to(x.device)
    sigma = sigmas[idx]
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    s = score_fn(x + bcast(sigma, x) * z, sigma)
    return 0.5 * (bcast(sigma, x) * s + z).flatten(1).pow(2).sum(1).mean()


def sde_dsm_loss(
    score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    sde: SDE,
    eps: float = 1e-5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """score_sde's continuous-time DSM with lambda(t) = std(t)^2: t ~ U(eps, T),
    x_t = mean(t) + std(t) z, loss = 1/2 ||std(t) s(x_t, t) + z||^2 (summed, batch-averaged)."""
    t = torch.rand(x.shape[0], generator=generator, dtype=x.dtype).to(x.device)
    t = t * (sde.T - eps) + eps
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    mean, std = sde.marginal_prob(x, t)
    s = score_fn(mean + bcast(std, x) * z, t)
    return 0.5 * (bcast(std, x) * s + z).flatten(1).pow(2).sum(1).mean()


def sliced_score_matching_loss(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    n_particles: int = 1,
    variance_reduction: bool = True,
    noise: str = "gaussian",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sliced score matching (Song et al. 2019, eq. 8), a scalar to minimise.

    x: [B, ...]; score_fn(x) -> [B, ...] (differentiable in x). Per projection v:
    v^T (ds/dx) v + (v^T s)^2 / 2, or v^T (ds/dx) v + ||s||^2 / 2 with variance_reduction
    (SSM-VR). Its expectation equals explicit score matching up to a constant in s.
    """
    if n_particles < 1:
        raise ValueError(f"n_particles must be >= 1, got {n_particles}")
    if noise not in ("gaussian", "rademacher"):
        raise ValueError(f"unknown noise {noise!r}; valid: 'gaussian', 'rademacher'")
    xr = x.repeat_interleave(n_particles, 0).detach().requires_grad_(True)
    v = torch.randn(xr.shape, generator=generator, dtype=x.dtype).to(x.device)
    if noise == "rademacher":
        v = torch.sign(v)
    s = score_fn(xr)
    sv = (s * v).flatten(1).sum(1)
    (grad_sv,) = torch.autograd.grad(sv.sum(), xr, create_graph=True)
    vjv = (grad_sv * v).flatten(1).sum(1)  # v^T (ds/dx) v
    if variance_reduction:
        half = 0.5 * s.flatten(1).pow(2).sum(1)
    else:
        half = 0.5 * sv**2
    return (vjv + half).mean()
