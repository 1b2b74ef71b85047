"""TRPO: trust region policy optimisation (Schulman et al. 2015), one readable file.

Each iteration collects n_steps x n_envs transitions, estimates advantages with GAE, then
solves the trust-region problem

    max_theta  L(theta) = E[ pi_theta(a|s) / pi_old(a|s) * A(s, a) ]
    s.t.       KL_bar(theta) = E_s[ KL(pi_old(.|s) || pi_theta(.|s)) ] <= delta

approximately: with g = grad L and F the Fisher matrix (the Hessian of KL_bar at theta_old),
the natural direction x = F^-1 g comes from conjugate gradient using only Fisher-vector
products F v = grad((grad KL_bar) . v) (Pearlmutter's trick, no matrix is ever formed); the
largest step on the quadratic KL model is beta = sqrt(2 delta / x^T F x); a backtracking line
search shrinks beta until the *exact* KL is <= delta and L improved. The critic v(s) is then
fitted to the GAE returns by Adam.

Defaults follow sb3-contrib's TRPO with the rl-baselines3-zoo CartPole-v1 entry
(hyperparams/trpo.yml: n_envs 2, n_steps 512, batch 512, cg_damping 1e-3, gae_lambda 0.98,
critic lr 1e-3, 20 critic epochs, target KL 0.01, 15 CG iterations, shrink 0.8 x 10).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.distributions import kl_divergence

from deepnotes.rl.buffers import RolloutBuffer, collect_rollout
from deepnotes.rl.common import EpisodeStats
from deepnotes.rl.loop import OuterLoop, default_recorder, open_envs
from deepnotes.rl.nets import PolicyNet, ValueNet
from deepnotes.rl.recorder import Recorder


@dataclass
class TRPOConfig:
    env_id: str = "CartPole-v1"  # any gymnasium env with a Discrete or 1-D Box action space
    seed: int = 0  # seeds envs, torch and numpy
    total_steps: int = 100_000  # env steps; the budget (rl-zoo uses the same)
    n_envs: int = 2  # rl-zoo
    n_steps: int = 512  # steps per env per iteration (rl-zoo CartPole; Pendulum: 1024)
    gamma: float = 0.99  # discount (rl-zoo Pendulum: 0.9)
    gae_lambda: float = 0.98  # GAE lambda (rl-zoo CartPole; sb3-contrib default 0.95)
    max_kl: float = 0.01  # trust-region radius delta (sb3-contrib target_kl)
    cg_iters: int = 15  # conjugate-gradient iterations (sb3-contrib)
    cg_damping: float = 1e-3  # F + damping I keeps CG well posed (rl-zoo CartPole)
    backtrack_coef: float = 0.8  # line-search shrink factor (sb3-contrib)
    backtrack_iters: int = 10  # line-search tries before the step is rejected (sb3-contrib)
    vf_lr: float = 1e-3  # Adam learning rate of the critic (sb3-contrib)
    vf_epochs: int = 20  # critic epochs per iteration (rl-zoo CartPole n_critic_updates)
    vf_batch: int = 512  # critic minibatch (rl-zoo CartPole batch_size)
    normalize_advantage: bool = True  # sb3-contrib default
    hidden: tuple[int, ...] = (64, 64)  # actor and critic widths (separate networks)
    log_std_init: float = 0.0  # initial log std of a Gaussian policy (continuous actions)
    eval_every: int = 5_000  # env steps between evaluations
    eval_episodes: int = 10  # deterministic evaluation episodes per point
    checkpoint_every: int = 20_000  # env steps between checkpoints (when a path is given)


def flat_grad(y: torch.Tensor, params: list[nn.Parameter], **kw) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(y, params, **kw)])


def conjugate_gradient(
    Avp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int, tol: float = 1e-10
) -> torch.Tensor:
    """Solve A x = b for symmetric positive-definite A given only v -> A v (Hestenes-Stiefel).

    b: [P]. Stops after `iters` iterations or when the squared residual is below `tol`.
    """
    x = torch.zeros_like(b)
    r = b.clone()  # residual b - A x with x = 0
    p = r.clone()
    rr = r @ r
    for _ in range(iters):
        if rr < tol:
            break
        Ap = Avp(p)
        alpha = rr / (p @ Ap)
        x += alpha * p
        r -= alpha * Ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def _set_flat(params: list[nn.Parameter], flat: torch.Tensor) -> None:
    i = 0
    for p in params:
        n = p.numel()
        p.data.copy_(flat[i : i + n].view_as(p))
        i += n


def trpo_step(
    policy: PolicyNet,
    obs: torch.Tensor,
    actions: torch.Tensor,
    adv: torch.Tensor,
    old_logp: torch.Tensor,
    max_kl: float,
    cg_iters: int = 15,
    cg_damping: float = 1e-3,
    backtrack_coef: float = 0.8,
    backtrack_iters: int = 10,
) -> dict:
    """One KL-constrained natural-gradient step of `policy`, in place.

    obs: [B, obs_dim]; actions: [B] or [B, act_dim]; adv, old_logp: [B].
    Returns {"kl", "surrogate_gain", "accepted", "step_frac"}; a rejected step leaves the
    parameters unchanged.
    """
    params = [p for p in policy.parameters() if p.requires_grad]
    with torch.no_grad():
        old_dist = policy.dist(obs)
    theta_old = torch.cat([p.data.reshape(-1) for p in params])

    def surrogate() -> torch.Tensor:
        return (torch.exp(policy.dist(obs).log_prob(actions) - old_logp) * adv).mean()

    def mean_kl() -> torch.Tensor:
        return kl_divergence(old_dist, policy.dist(obs)).mean()

    L_old = surrogate()
    g = flat_grad(L_old, params)
    grad_kl = flat_grad(mean_kl(), params, create_graph=True)

    def fvp(v: torch.Tensor) -> torch.Tensor:
        return flat_grad(grad_kl @ v, params, retain_graph=True) + cg_damping * v

    x = conjugate_gradient(fvp, g, cg_iters)
    xFx = x @ fvp(x)
    if not torch.isfinite(xFx) or xFx <= 0:
        return {"kl": 0.0, "surrogate_gain": 0.0, "accepted": False, "step_frac": 0.0}
    beta = torch.sqrt(2 * max_kl / xFx)
    frac = 1.0
    with torch.no_grad():
        for _ in range(backtrack_iters):
            _set_flat(params, theta_old + frac * beta * x)
            kl, gain = mean_kl().item(), (surrogate() - L_old).item()
            if kl <= max_kl and gain > 0:
                return {"kl": kl, "surrogate_gain": gain, "accepted": True, "step_frac": frac}
            frac *= backtrack_coef
        _set_flat(params, theta_old)
    return {"kl": 0.0, "surrogate_gain": 0.0, "accepted": False, "step_frac": 0.0}


class TRPOAgent(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, discrete: bool, cfg: TRPOConfig):
        super().__init__()
        self.actor = PolicyNet(obs_dim, act_dim, discrete, cfg.hidden, cfg.log_std_init)
        self.critic = ValueNet(obs_dim, cfg.hidden)

    def act_np(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return self.actor.act(torch.as_tensor(obs, dtype=torch.float32), deterministic).numpy()


def update(agent: TRPOAgent, vf_opt, buf: RolloutBuffer, cfg: TRPOConfig) -> dict:
    """Policy: one trust-region step on the whole rollout. Critic: minibatch regression."""
    adv, ret = buf.gae(cfg.gamma, cfg.gae_lambda)
    obs, actions = buf.obs.flatten(0, 1), buf.actions.flatten(0, 1)
    adv, ret, old_logp = adv.flatten(), ret.flatten(), buf.logp.flatten()
    if cfg.normalize_advantage:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    info = trpo_step(
        agent.actor,
        obs,
        actions,
        adv,
        old_logp,
        cfg.max_kl,
        cfg.cg_iters,
        cfg.cg_damping,
        cfg.backtrack_coef,
        cfg.backtrack_iters,
    )
    n = obs.shape[0]
    for _ in range(cfg.vf_epochs):
        perm = torch.randperm(n)
        for i in range(0, n, cfg.vf_batch):
            idx = perm[i : i + cfg.vf_batch]
            loss = (agent.critic(obs[idx]) - ret[idx]).pow(2).mean()
            vf_opt.zero_grad()
            loss.backward()
            vf_opt.step()
    info["value_loss"] = loss.item()
    return info


def train(
    cfg: TRPOConfig,
    recorder: Recorder | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress=None,
) -> tuple[TRPOAgent, Recorder]:
    """Train TRPO on `cfg.env_id`; resume from `checkpoint` when `resume` and it exists."""
    envs, kind, obs_dim, act_dim, discrete = open_envs(cfg, "TRPO", discrete=True, continuous=True)
    act_space = envs.single_action_space
    agent = TRPOAgent(obs_dim, act_dim, discrete, cfg)
    vf_opt = torch.optim.Adam(agent.critic.parameters(), lr=cfg.vf_lr)
    recorder = default_recorder(cfg, recorder)
    low, high = (None, None) if kind == "discrete" else (act_space.low, act_space.high)
    buf = RolloutBuffer(cfg.n_steps, cfg.n_envs, obs_dim, () if discrete else (act_dim,), discrete)
    stats = EpisodeStats(cfg.n_envs)
    parts = {"agent": agent, "optimizer": vf_opt, "stats": stats, "recorder": recorder}
    loop = OuterLoop("trpo", cfg, envs, parts, agent.act_np, checkpoint=checkpoint,
                     resume=resume, progress=progress)  # fmt: skip

    per_iter = cfg.n_steps * cfg.n_envs
    n_iters = max(1, cfg.total_steps // per_iter)  # never past the budget
    while loop.running(n_iters * per_iter):
        obs = collect_rollout(envs, loop.obs, agent.actor, agent.critic, buf, stats, low, high)
        update(agent, vf_opt, buf, cfg)
        loop.advance(per_iter, obs)
        loop.checkpoint_if_due()
    loop.finish()
    return agent, recorder
