"""Kimi k1.5 RL: online policy mirror descent with a length penalty (Kimi team 2025, §2.3).

Iteration i maximises E[r] - τ KL(π || πi) over π, whose solution is
    π*(y|x) = πi(y|x) exp(r(x, y)/τ) / Z,   Z = Σ_y πi(y|x) exp(r(x, y)/τ).
Taking logs, r - τ log Z = τ log π*/πi for every y, so πθ is fitted to π* by the squared
surrogate over k samples y_j ~ πi:
    L(θ) = 1/k Σ_j (r_j - τ log Z - τ log πθ(y_j|x)/πi(y_j|x))²,
with τ log Z estimated by the mean reward r̄ of the k samples. Its gradient, up to the
factor 2τ, is the report's
    -1/k Σ_j [∇ log πθ(y_j|x) (r_j - r̄) - τ/2 ∇ (log πθ(y_j|x)/πi(y_j|x))²]:
a policy gradient with the mean reward as baseline plus an l2 pull towards πi (no value
network). Each iteration starts from a fresh optimizer (the experiment resets it).

Length penalty (§2.3.3): within one prompt's k samples, with lengths l_j,
    λ_j = 0.5 - (l_j - min l) / (max l - min l),
a correct answer gets reward λ_j, a wrong one min(0, λ_j); all lengths equal gives 0.
"""

from __future__ import annotations

import torch


def _check(logp: torch.Tensor, logp_old: torch.Tensor, rewards: torch.Tensor, tau: float):
    if not (logp.shape == logp_old.shape == rewards.shape) or logp.dim() == 0:
        raise ValueError(
            f"logp, logp_old and rewards must share one shape [..., k], got {tuple(logp.shape)}, "
            f"{tuple(logp_old.shape)}, {tuple(rewards.shape)}"
        )
    if logp.shape[-1] < 2:
        raise ValueError("need k >= 2 samples per prompt to estimate tau log Z by the mean")
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")


def kimi_surrogate_loss(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    rewards: torch.Tensor,
    tau: float,
    tau_log_z: torch.Tensor | None = None,
) -> torch.Tensor:
    """The squared mirror-descent surrogate, averaged over prompts and samples.

    logp: [..., k] log πθ(y_j|x) (summed over response tokens); logp_old: same under πi
    (no gradient); rewards: [..., k]. tau_log_z: [...] exact τ log Z, default the mean
    reward of the k samples.
    """
    _check(logp, logp_old, rewards, tau)
    if tau_log_z is None:
        tau_log_z = rewards.mean(-1)
    resid = rewards - tau_log_z[..., None] - tau * (logp - logp_old.detach())
    return (resid**2).mean()


def kimi_pg_loss(
    logp: torch.Tensor, logp_old: torch.Tensor, rewards: torch.Tensor, tau: float
) -> torch.Tensor:
    """The report's gradient form as a loss: -mean[(r - r̄) log πθ - τ/2 (log πθ/πi)²].

    Its gradient equals that of `kimi_surrogate_loss` divided by 2τ.
    """
    _check(logp, logp_old, rewards, tau)
    adv = (rewards - rewards.mean(-1, keepdim=True)).detach()
    ratio = logp - logp_old.detach()
    return -(adv * logp - 0.5 * tau * ratio**2).mean()


def length_penalty(lengths: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """lengths: [..., k] response lengths; correct: [..., k] bool -> λ rewards [..., k] fp32."""
    if lengths.shape != correct.shape or lengths.dim() == 0:
        raise ValueError(
            f"lengths and correct must share a shape [..., k], got {tuple(lengths.shape)} and "
            f"{tuple(correct.shape)}"
        )
    lengths = lengths.float()
    lo = lengths.min(-1, keepdim=True).values
    hi = lengths.max(-1, keepdim=True).values
    span = hi - lo
    lam = torch.where(span > 0, 0.5 - (lengths - lo) / span.clamp(min=1e-12), 0.0)
    return torch.where(correct.bool(), lam, lam.clamp(max=0.0))


def rloo_loss(logp: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """REINFORCE with a leave-one-out mean baseline (RLOO; GRPO without the std division).

    logp, rewards: [..., k]. Loss = -mean[(r_j - mean_{i != j} r_i) log πθ(y_j|x)].
    """
    if logp.shape != rewards.shape or logp.shape[-1] < 2:
        raise ValueError("logp and rewards must share a shape [..., k] with k >= 2")
    k = rewards.shape[-1]
    baseline = (rewards.sum(-1, keepdim=True) - rewards) / (k - 1)
    return -((rewards - baseline).detach() * logp).mean()
