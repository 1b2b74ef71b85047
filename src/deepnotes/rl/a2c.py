"""A2C: synchronous advantage actor-critic (Mnih et al. 2016), one readable file.

The actor-critic of the notes with a value baseline: the critic v(s; w) replaces q(s, a) by
the advantage A(s, a) = q(s, a) - v(s), estimated from n-step returns (GAE with lambda = 1 is
exactly the n-step return). One gradient step per rollout of n_steps x n_envs transitions:

    loss = -mean(A_t log pi(a_t|s_t)) - c_ent mean(H[pi(.|s_t)]) + c_v mean((G_t - v(s_t))^2)

Defaults are Stable-Baselines3's A2C defaults with the rl-baselines3-zoo CartPole-v1 entry
(hyperparams/a2c.yml: n_envs 8, 5e5 steps, ent_coef 0): n_steps 5, RMSprop(lr 7e-4,
alpha 0.99, eps 1e-5), gamma 0.99, vf_coef 0.5, max_grad_norm 0.5, separate 64-64 tanh
actor and critic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deepnotes.rl.buffers import RolloutBuffer, collect_rollout
from deepnotes.rl.common import EpisodeStats
from deepnotes.rl.loop import OuterLoop, default_recorder, open_envs
from deepnotes.rl.nets import PolicyNet, ValueNet
from deepnotes.rl.recorder import Recorder


@dataclass
class A2CConfig:
    env_id: str = "CartPole-v1"  # any gymnasium env with a Discrete or 1-D Box action space
    seed: int = 0  # seeds envs, torch and numpy: the same seed gives the same run on CPU
    total_steps: int = 500_000  # env steps (all sub-envs); rl-zoo's CartPole-v1 budget
    n_envs: int = 8  # parallel envs in one SyncVectorEnv (rl-zoo)
    n_steps: int = 5  # steps per env per update (SB3 default): batch = 40 transitions
    gamma: float = 0.99  # discount
    gae_lambda: float = 1.0  # 1.0: plain n-step returns, as in the A2C paper
    lr: float = 7e-4  # RMSprop learning rate (SB3 / A2C paper)
    rms_alpha: float = 0.99  # RMSprop smoothing (SB3)
    rms_eps: float = 1e-5  # RMSprop epsilon (SB3; TF-style small value)
    ent_coef: float = 0.0  # entropy bonus; rl-zoo uses 0 on CartPole
    vf_coef: float = 0.5  # weight of the critic's squared error
    max_grad_norm: float = 0.5  # global gradient clipping
    hidden: tuple[int, ...] = (64, 64)  # widths of actor and critic MLPs (not shared)
    normalize_advantage: bool = False  # SB3 default for A2C
    eval_every: int = 10_000  # env steps between evaluations
    eval_episodes: int = 10  # deterministic evaluation episodes per point
    checkpoint_every: int = 50_000  # env steps between checkpoints (when a path is given)


class A2CAgent(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, discrete: bool, cfg: A2CConfig):
        super().__init__()
        self.actor = PolicyNet(obs_dim, act_dim, discrete, cfg.hidden)
        self.critic = ValueNet(obs_dim, cfg.hidden)

    def act_np(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return self.actor.act(torch.as_tensor(obs, dtype=torch.float32), deterministic).numpy()


def a2c_loss(agent: A2CAgent, buf: RolloutBuffer, cfg: A2CConfig) -> tuple[torch.Tensor, dict]:
    adv, ret = buf.gae(cfg.gamma, cfg.gae_lambda)
    obs = buf.obs.flatten(0, 1)
    d = agent.actor.dist(obs)
    logp = d.log_prob(buf.actions.flatten(0, 1))
    adv, ret = adv.flatten(), ret.flatten()
    if cfg.normalize_advantage:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    policy_loss = -(adv.detach() * logp).mean()
    entropy = d.entropy().mean()
    value_loss = (ret.detach() - agent.critic(obs)).pow(2).mean()
    loss = policy_loss - cfg.ent_coef * entropy + cfg.vf_coef * value_loss
    return loss, {"policy_loss": policy_loss.item(), "value_loss": value_loss.item()}


def train(
    cfg: A2CConfig,
    recorder: Recorder | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress=None,
) -> tuple[A2CAgent, Recorder]:
    """Train A2C on `cfg.env_id`. Resumes from `checkpoint` when `resume` and it exists.

    progress: optional callable(step) for a progress bar. Returns (agent, recorder).
    """
    envs, kind, obs_dim, act_dim, discrete = open_envs(cfg, "A2C", discrete=True, continuous=True)
    act_space = envs.single_action_space
    agent = A2CAgent(obs_dim, act_dim, discrete, cfg)
    opt = torch.optim.RMSprop(agent.parameters(), lr=cfg.lr, alpha=cfg.rms_alpha, eps=cfg.rms_eps)
    recorder = default_recorder(cfg, recorder)
    low, high = (None, None) if kind == "discrete" else (act_space.low, act_space.high)
    act_shape = () if discrete else (act_dim,)
    buf = RolloutBuffer(cfg.n_steps, cfg.n_envs, obs_dim, act_shape, discrete)
    stats = EpisodeStats(cfg.n_envs)
    parts = {"agent": agent, "optimizer": opt, "stats": stats, "recorder": recorder}
    loop = OuterLoop("a2c", cfg, envs, parts, agent.act_np, checkpoint=checkpoint,
                     resume=resume, progress=progress)  # fmt: skip

    per_iter = cfg.n_steps * cfg.n_envs
    n_iters = max(1, cfg.total_steps // per_iter)  # never past the budget
    while loop.running(n_iters * per_iter):
        obs = collect_rollout(envs, loop.obs, agent.actor, agent.critic, buf, stats, low, high)
        loss, _ = a2c_loss(agent, buf, cfg)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
        opt.step()
        loop.advance(per_iter, obs)
        loop.checkpoint_if_due()
    loop.finish()
    return agent, recorder
