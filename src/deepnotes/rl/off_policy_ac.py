"""Off-policy actor-critic with importance sampling (Zhao Alg. 10.3; Degris et al. 2012).

Actions come from a behaviour policy beta, not from the policy pi being learned. Each sample
is reweighted by the importance ratio rho = pi(a|s; theta) / beta(a|s), which turns an
expectation under beta into one under pi, so the advantage actor-critic update still follows
grad J(theta):

    delta  = r + gamma v(s'; w) - v(s; w)                    (TD error = advantage estimate)
    critic: w     <- w     + a_w     rho delta grad_w v(s; w)
    actor:  theta <- theta + a_theta rho delta grad_theta ln pi(a|s; theta)

Behaviour policies: "uniform" (fixed, as in the book's example) or "lagged" (default): a copy
of pi refreshed every `behavior_every` env steps, mixed with epsilon of uniform noise so that
beta(a|s) >= epsilon / |A| and rho <= |A| / epsilon stays bounded. `rho_max` optionally clips
rho further (truncated importance sampling). Discrete actions; batched over a vector env.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deepnotes.rl.common import EpisodeStats, true_next_obs
from deepnotes.rl.loop import OuterLoop, default_recorder, open_envs
from deepnotes.rl.nets import PolicyNet, ValueNet
from deepnotes.rl.recorder import Recorder


@dataclass
class OffPolicyACConfig:
    env_id: str = "CartPole-v1"  # a gymnasium env with a Discrete action space
    seed: int = 0  # seeds envs and torch
    total_steps: int = 100_000  # env steps, all sub-envs together
    n_envs: int = 8  # sub-envs: one batched update per vector step
    gamma: float = 0.99  # discount
    actor_lr: float = 3e-4  # Adam
    critic_lr: float = 1e-3  # Adam
    hidden: tuple[int, ...] = (64, 64)  # actor and critic widths
    behavior: str = "lagged"  # "lagged" (old copy of pi + epsilon) or "uniform" (the book's)
    epsilon: float = 0.3  # uniform share of the lagged behaviour policy
    behavior_every: int = 2_000  # env steps between refreshes of the lagged copy
    rho_max: float | None = None  # clip importance ratios (None: no clipping)
    eval_every: int = 10_000  # env steps between evaluations
    eval_episodes: int = 10  # deterministic evaluation episodes per point
    checkpoint_every: int = 50_000  # env steps between checkpoints (when a path is given)


class OffPolicyACAgent(nn.Module):
    def __init__(self, obs_dim: int, n_actions: int, cfg: OffPolicyACConfig):
        super().__init__()
        self.actor = PolicyNet(obs_dim, n_actions, True, cfg.hidden)
        self.critic = ValueNet(obs_dim, cfg.hidden)
        self.behavior_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.n_actions, self.cfg = n_actions, cfg

    def behavior_probs(self, obs: torch.Tensor) -> torch.Tensor:
        """beta(.|s): [N, n_actions]."""
        uniform = torch.full((obs.shape[0], self.n_actions), 1.0 / self.n_actions)
        if self.cfg.behavior == "uniform":
            return uniform
        with torch.no_grad():
            lagged = self.behavior_actor.dist(obs).probs
        return (1 - self.cfg.epsilon) * lagged + self.cfg.epsilon * uniform

    def act_np(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return self.actor.act(torch.as_tensor(obs, dtype=torch.float32), deterministic).numpy()


def off_policy_ac_update(agent, actor_opt, critic_opt, s, a, beta_a, r, s_next, not_term, cfg):
    """One batched update. s, s_next: [N, d]; a: [N]; beta_a = beta(a|s), r, not_term: [N]."""
    logp = agent.actor.dist(s).log_prob(a)
    rho = (logp.detach().exp() / beta_a).detach()
    if cfg.rho_max is not None:
        rho = rho.clamp(max=cfg.rho_max)
    v = agent.critic(s)
    with torch.no_grad():
        target = r + cfg.gamma * not_term * agent.critic(s_next)
    delta = target - v
    critic_loss = (rho * delta.pow(2)).mean() / 2  # gradient: -rho delta grad v
    critic_opt.zero_grad()
    critic_loss.backward()
    critic_opt.step()
    actor_loss = -(rho * delta.detach() * logp).mean()
    actor_opt.zero_grad()
    actor_loss.backward()
    actor_opt.step()
    return {"rho_mean": rho.mean().item(), "critic_loss": critic_loss.item()}


def train(
    cfg: OffPolicyACConfig,
    recorder: Recorder | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress=None,
) -> tuple[OffPolicyACAgent, Recorder]:
    """Train off-policy actor-critic on `cfg.env_id` (Discrete actions only)."""
    if cfg.behavior not in ("lagged", "uniform"):
        raise ValueError(f"behavior must be 'lagged' or 'uniform', got {cfg.behavior!r}")
    if not 0.0 < cfg.epsilon <= 1.0:
        raise ValueError(f"epsilon must be in (0, 1] so that rho stays bounded, got {cfg.epsilon}")
    envs, _, obs_dim, n_actions, _ = open_envs(
        cfg, "off-policy AC", discrete=True, continuous=False
    )
    agent = OffPolicyACAgent(obs_dim, n_actions, cfg)
    actor_opt = torch.optim.Adam(agent.actor.parameters(), lr=cfg.actor_lr)
    critic_opt = torch.optim.Adam(agent.critic.parameters(), lr=cfg.critic_lr)
    recorder = default_recorder(cfg, recorder)
    stats = EpisodeStats(cfg.n_envs)
    parts = {"agent": agent, "actor_opt": actor_opt, "critic_opt": critic_opt,
             "stats": stats, "recorder": recorder}  # fmt: skip
    loop = OuterLoop("off_policy_ac", cfg, envs, parts, agent.act_np, checkpoint=checkpoint,
                     resume=resume, progress=progress)  # fmt: skip

    total = (cfg.total_steps // cfg.n_envs) * cfg.n_envs
    next_refresh = (loop.step // cfg.behavior_every + 1) * cfg.behavior_every
    while loop.running(total):
        s = torch.as_tensor(loop.obs, dtype=torch.float32)
        beta = agent.behavior_probs(s)
        a = torch.multinomial(beta, 1).squeeze(1)
        obs, r, term, trunc, infos = envs.step(a.numpy())
        done = term | trunc
        stats.update(r, done)
        s_next = torch.as_tensor(true_next_obs(obs, infos, done), dtype=torch.float32)
        off_policy_ac_update(
            agent, actor_opt, critic_opt, s, a, beta.gather(1, a[:, None]).squeeze(1),
            torch.as_tensor(r, dtype=torch.float32), s_next,
            torch.as_tensor(~term, dtype=torch.float32), cfg,
        )  # fmt: skip
        loop.advance(cfg.n_envs, obs)
        if loop.step >= next_refresh:
            next_refresh += cfg.behavior_every
            agent.behavior_actor.load_state_dict(agent.actor.state_dict())
        loop.checkpoint_if_due()
    loop.finish()
    return agent, recorder
