"""QAC: the simplest actor-critic (Zhao Alg. 10.1), one readable file.

The policy gradient grad J = E[grad ln pi(a|s; theta) q_pi(s, a)] with q_pi replaced by a
learned critic q(s, a; w), itself learned by SARSA-style TD:

    critic:  w     <- w     + a_w     [r + gamma q(s', a'; w) - q(s, a; w)] grad_w q(s, a; w)
    actor:   theta <- theta + a_theta grad_theta ln pi(a|s; theta) q(s, a; w)

with a ~ pi(.|s), a' ~ pi(.|s') (on-policy). Every step of the N sub-environments of a
vector env gives one batched update (mean over the batch), with Adam in place of plain
SGD. Discrete actions: the critic outputs q(s, .) for all actions. Terminal states do not
bootstrap; time-limit truncation bootstraps from the final observation.

QAC uses q itself (no baseline) as the weight of the score, so its gradient has a high
variance: A2C's advantage q - v is the fix (see a2c.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.rl.common import EpisodeStats, true_next_obs
from deepnotes.rl.loop import OuterLoop, default_recorder, open_envs
from deepnotes.rl.nets import PolicyNet, mlp
from deepnotes.rl.recorder import Recorder


@dataclass
class QACConfig:
    env_id: str = "CartPole-v1"  # a gymnasium env with a Discrete action space
    seed: int = 0  # seeds envs and torch
    total_steps: int = 100_000  # env steps, all sub-envs together
    n_envs: int = 8  # sub-envs: one batched update per vector step
    gamma: float = 0.99  # discount
    actor_lr: float = 3e-4  # Adam; smaller than the critic's so q leads pi
    critic_lr: float = 1e-3  # Adam
    hidden: tuple[int, ...] = (64, 64)  # actor and critic widths
    eval_every: int = 10_000  # env steps between evaluations
    eval_episodes: int = 10  # deterministic evaluation episodes per point
    checkpoint_every: int = 50_000  # env steps between checkpoints (when a path is given)


class QACAgent(nn.Module):
    def __init__(self, obs_dim: int, n_actions: int, cfg: QACConfig):
        super().__init__()
        self.actor = PolicyNet(obs_dim, n_actions, True, cfg.hidden)
        self.q = mlp([obs_dim, *cfg.hidden, n_actions], nn.Tanh, out_gain=1.0)  # q(s, .)

    def act_np(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return self.actor.act(torch.as_tensor(obs, dtype=torch.float32), deterministic).numpy()


def qac_update(agent, actor_opt, critic_opt, s, a, r, s_next, a_next, not_term, gamma) -> dict:
    """One batched QAC step. s, s_next: [N, obs_dim]; a, a_next: [N] long; r, not_term: [N]."""
    q_sa = agent.q(s).gather(1, a[:, None]).squeeze(1)
    with torch.no_grad():
        target = r + gamma * not_term * agent.q(s_next).gather(1, a_next[:, None]).squeeze(1)
    critic_loss = F.mse_loss(q_sa, target)  # semi-gradient TD (SARSA)
    critic_opt.zero_grad()
    critic_loss.backward()
    critic_opt.step()
    logp = agent.actor.dist(s).log_prob(a)
    actor_loss = -(logp * q_sa.detach()).mean()  # grad ln pi * q
    actor_opt.zero_grad()
    actor_loss.backward()
    actor_opt.step()
    return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item()}


def train(
    cfg: QACConfig,
    recorder: Recorder | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress=None,
) -> tuple[QACAgent, Recorder]:
    """Train QAC on `cfg.env_id` (Discrete actions only)."""
    envs, _, obs_dim, n_actions, _ = open_envs(cfg, "QAC", discrete=True, continuous=False)
    agent = QACAgent(obs_dim, n_actions, cfg)
    actor_opt = torch.optim.Adam(agent.actor.parameters(), lr=cfg.actor_lr)
    critic_opt = torch.optim.Adam(agent.q.parameters(), lr=cfg.critic_lr)
    recorder = default_recorder(cfg, recorder)
    stats = EpisodeStats(cfg.n_envs)
    parts = {"agent": agent, "actor_opt": actor_opt, "critic_opt": critic_opt,
             "stats": stats, "recorder": recorder}  # fmt: skip
    loop = OuterLoop("qac", cfg, envs, parts, agent.act_np, checkpoint=checkpoint,
                     resume=resume, progress=progress)  # fmt: skip
    a = loop.restored.get("action")  # the action about to be taken in each sub-env

    total = (cfg.total_steps // cfg.n_envs) * cfg.n_envs
    s = torch.as_tensor(loop.obs, dtype=torch.float32)
    if a is None:
        with torch.no_grad():
            a = agent.actor.dist(s).sample()
    while loop.running(total):
        obs, r, term, trunc, infos = envs.step(a.numpy())
        done = term | trunc
        stats.update(r, done)
        s_real = torch.as_tensor(true_next_obs(obs, infos, done), dtype=torch.float32)
        s_next = torch.as_tensor(obs, dtype=torch.float32)
        with torch.no_grad():
            a_real = agent.actor.dist(s_real).sample()  # a' ~ pi(.|s') for the TD target
            # the action taken next: where an episode ended, one for the new episode's start
            a_next = torch.where(torch.as_tensor(done), agent.actor.dist(s_next).sample(), a_real)
        r_t = torch.as_tensor(r, dtype=torch.float32)
        not_term = torch.as_tensor(~term, dtype=torch.float32)
        qac_update(agent, actor_opt, critic_opt, s, a, r_t, s_real, a_real, not_term, cfg.gamma)
        s, a = s_next, a_next
        loop.advance(cfg.n_envs, obs)
        loop.checkpoint_if_due(action=a)  # the pending action is part of the state
    loop.finish()
    return agent, recorder
