"""DDPG: deep deterministic policy gradient (Lillicrap et al. 2016), one readable file.

A deterministic actor a = mu(s; theta) and a critic q(s, a; w), both off-policy from a replay
buffer, each with a slowly moving target copy (soft update w' <- tau w + (1 - tau) w'):

    critic: minimise (q(s, a) - y)^2,  y = r + gamma (1 - terminated) q'(s', mu'(s'))
    actor:  maximise q(s, mu(s))  (the deterministic policy gradient, Silver et al. 2014:
            grad_theta J = E[ grad_a q(s, a)|_{a = mu(s)} grad_theta mu(s) ])

Exploration adds Gaussian or Ornstein-Uhlenbeck noise to mu(s) in the [-1, 1] action scale.
Actions are handled in that scale throughout (actor output = tanh) and mapped to the env's
bounds only when stepping, as in SB3.

Defaults are the rl-baselines3-zoo Pendulum entry (hyperparams/ddpg.yml): 2e4 steps,
gamma 0.98, buffer 2e5, 1e4 random warm-up steps, Gaussian noise 0.1, one gradient step per
env step run at each episode end, lr 1e-3, 400-300 ReLU networks; SB3's batch 256, tau 0.005.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.rl.buffers import ReplayBuffer
from deepnotes.rl.common import (
    EpisodeStats,
    true_next_obs,
)
from deepnotes.rl.loop import OuterLoop, default_recorder, open_envs
from deepnotes.rl.recorder import Recorder


@dataclass
class DDPGConfig:
    env_id: str = "Pendulum-v1"  # a gymnasium env with a 1-D Box action space
    seed: int = 0  # seeds envs, torch, numpy and the replay sampler
    total_steps: int = 20_000  # env steps (rl-zoo Pendulum budget)
    n_envs: int = 1  # sub-envs in the SyncVectorEnv (rl-zoo: 1)
    buffer_size: int = 200_000  # replay capacity (rl-zoo)
    learning_starts: int = 10_000  # uniform-random warm-up steps before any update (rl-zoo)
    batch_size: int = 256  # replay minibatch (SB3 default)
    gamma: float = 0.98  # discount (rl-zoo)
    tau: float = 0.005  # soft target update rate (SB3 default)
    actor_lr: float = 1e-3  # Adam (rl-zoo)
    critic_lr: float = 1e-3  # Adam (rl-zoo)
    hidden: tuple[int, ...] = (400, 300)  # actor and critic widths, ReLU (rl-zoo, the paper)
    noise: str = "normal"  # "normal" (rl-zoo) or "ou" (the paper's Ornstein-Uhlenbeck)
    noise_std: float = 0.1  # noise scale in the [-1, 1] action scale (rl-zoo)
    ou_theta: float = 0.15  # OU mean reversion (the paper, SB3)
    ou_dt: float = 1e-2  # OU time step (SB3)
    train_freq: int = 0  # update every k env steps; 0 = at each episode end (rl-zoo)
    gradient_steps: int = -1  # per update; -1 = as many as env steps since the last (rl-zoo)
    eval_every: int = 1_000  # env steps between evaluations
    eval_episodes: int = 10  # deterministic evaluation episodes per point
    checkpoint_every: int = 5_000  # env steps between checkpoints (when a path is given)


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """theta' <- tau theta + (1 - tau) theta' for every parameter (Lillicrap et al. 2016)."""
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters(), strict=True):
            t.mul_(1.0 - tau).add_(s, alpha=tau)


class GaussianNoise:
    def __init__(self, act_dim: int, std: float, rng: np.random.Generator):
        self.act_dim, self.std, self.rng = act_dim, std, rng

    def __call__(self, n: int) -> np.ndarray:
        return self.rng.normal(0.0, self.std, size=(n, self.act_dim))

    def reset(self, i: int) -> None:
        pass


class OUNoise:
    """x_{t+1} = x_t + theta (0 - x_t) dt + sigma sqrt(dt) N(0, 1), one process per sub-env."""

    def __init__(self, n_envs, act_dim, std, theta, dt, rng: np.random.Generator):
        self.x = np.zeros((n_envs, act_dim))
        self.std, self.theta, self.dt, self.rng = std, theta, dt, rng

    def __call__(self, n: int) -> np.ndarray:
        noise = self.rng.normal(size=self.x.shape)
        self.x = self.x - self.theta * self.x * self.dt + self.std * math.sqrt(self.dt) * noise
        return self.x.copy()

    def reset(self, i: int) -> None:
        self.x[i] = 0.0


class Actor(nn.Module):
    """mu(s): [B, obs_dim] -> [B, act_dim] in [-1, 1]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        sizes, layers = [obs_dim, *hidden], []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(sizes[-1], act_dim), nn.Tanh())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


class Critic(nn.Module):
    """q(s, a): ([B, obs_dim], [B, act_dim]) -> [B]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        sizes, layers = [obs_dim + act_dim, *hidden], []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(sizes[-1], 1))

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, act], -1)).squeeze(-1)


class DDPGAgent(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, low, high, cfg: DDPGConfig):
        super().__init__()
        self.actor = Actor(obs_dim, act_dim, cfg.hidden)
        self.critic = Critic(obs_dim, act_dim, cfg.hidden)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.low, self.high = np.asarray(low, np.float64), np.asarray(high, np.float64)

    def to_env(self, a: np.ndarray) -> np.ndarray:
        """[-1, 1] -> [low, high]."""
        return (self.low + (a + 1.0) * 0.5 * (self.high - self.low)).astype(np.float32)

    def act_np(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        with torch.no_grad():
            a = self.actor(torch.as_tensor(obs, dtype=torch.float32)).numpy()
        return self.to_env(a)


def ddpg_update(agent: DDPGAgent, actor_opt, critic_opt, batch: dict, cfg: DDPGConfig) -> dict:
    """One critic step, one actor step, then soft updates of both targets."""
    with torch.no_grad():
        next_q = agent.critic_target(batch["next_obs"], agent.actor_target(batch["next_obs"]))
        y = batch["rewards"] + cfg.gamma * (1.0 - batch["terminated"]) * next_q
    critic_loss = F.mse_loss(agent.critic(batch["obs"], batch["actions"]), y)
    critic_opt.zero_grad()
    critic_loss.backward()
    critic_opt.step()
    actor_loss = -agent.critic(batch["obs"], agent.actor(batch["obs"])).mean()
    actor_opt.zero_grad()
    actor_loss.backward()
    actor_opt.step()
    soft_update(agent.critic_target, agent.critic, cfg.tau)
    soft_update(agent.actor_target, agent.actor, cfg.tau)
    return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item()}


def train(
    cfg: DDPGConfig,
    recorder: Recorder | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress=None,
) -> tuple[DDPGAgent, Recorder]:
    """Train DDPG on `cfg.env_id` (continuous actions only; a Discrete space raises)."""
    if cfg.noise not in ("normal", "ou"):
        raise ValueError(f"noise must be 'normal' or 'ou', got {cfg.noise!r}")
    envs, _, obs_dim, act_dim, _ = open_envs(cfg, "DDPG", discrete=False, continuous=True)
    rng = np.random.default_rng(cfg.seed)
    act_space = envs.single_action_space
    agent = DDPGAgent(obs_dim, act_dim, act_space.low, act_space.high, cfg)
    actor_opt = torch.optim.Adam(agent.actor.parameters(), lr=cfg.actor_lr)
    critic_opt = torch.optim.Adam(agent.critic.parameters(), lr=cfg.critic_lr)
    if cfg.noise == "normal":
        noise = GaussianNoise(act_dim, cfg.noise_std, rng)
    else:
        noise = OUNoise(cfg.n_envs, act_dim, cfg.noise_std, cfg.ou_theta, cfg.ou_dt, rng)
    recorder = default_recorder(cfg, recorder)
    buffer = ReplayBuffer(cfg.buffer_size, obs_dim, act_dim)
    stats = EpisodeStats(cfg.n_envs)
    parts = {
        "agent": agent,
        "actor_opt": actor_opt,
        "critic_opt": critic_opt,
        "buffer": buffer,
        "stats": stats,
        "recorder": recorder,
    }
    loop = OuterLoop("ddpg", cfg, envs, parts, agent.act_np, checkpoint=checkpoint,
                     resume=resume, progress=progress)  # fmt: skip
    pending = 0
    if loop.restored:
        st = loop.restored
        rng.bit_generator.state = st["agent_rng"]
        if isinstance(noise, OUNoise):
            noise.x = st["ou_x"]
        pending = st["pending"]

    total = (cfg.total_steps // cfg.n_envs) * cfg.n_envs
    while loop.running(total):
        obs = loop.obs
        if loop.step < cfg.learning_starts:
            a = rng.uniform(-1.0, 1.0, size=(cfg.n_envs, act_dim))
        else:
            with torch.no_grad():
                a = agent.actor(torch.as_tensor(obs, dtype=torch.float32)).numpy()
            a = np.clip(a + noise(cfg.n_envs), -1.0, 1.0)
        next_obs, r, term, trunc, infos = envs.step(agent.to_env(a))
        done = term | trunc
        buffer.add(obs, a, r, true_next_obs(next_obs, infos, done), term)
        stats.update(r, done)
        for i in np.flatnonzero(done):
            noise.reset(i)
        loop.advance(cfg.n_envs, next_obs)
        pending += cfg.n_envs
        due = done.any() if cfg.train_freq == 0 else pending >= cfg.train_freq
        if due and loop.step > cfg.learning_starts:
            n_grad = pending if cfg.gradient_steps < 0 else cfg.gradient_steps
            for _ in range(n_grad):
                ddpg_update(agent, actor_opt, critic_opt, buffer.sample(cfg.batch_size, rng), cfg)
            pending = 0
        elif due:
            pending = 0
        loop.checkpoint_if_due(
            pending=pending, agent_rng=rng.bit_generator.state, ou_x=getattr(noise, "x", None)
        )
    loop.finish()
    return agent, recorder
