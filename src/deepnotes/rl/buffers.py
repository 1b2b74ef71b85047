"""Rollout storage with GAE for the on-policy algorithms, and the replay buffer of DDPG."""

from __future__ import annotations

import numpy as np
import torch

from deepnotes.rl.common import true_next_obs


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    episode_end: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016, eq. 16), one loop over time.

    All inputs are [T, N] (time, sub-env):
      rewards      r_t
      values       V(s_t)
      next_values  V(s_{t+1}) of the *true* next state (the final observation when an episode
                   ended at t), so time-limit truncation still bootstraps
      terminated   1 where s_{t+1} is terminal (no bootstrap)
      episode_end  1 where the episode ended at t (terminated or truncated): the sum stops
    delta_t = r_t + gamma (1 - term_t) V(s_{t+1}) - V(s_t)
    A_t     = delta_t + gamma lam (1 - end_t) A_{t+1}
    Returns (advantages, returns = advantages + values), both [T, N].
    """
    T = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[0])
    not_term = 1.0 - terminated.to(rewards.dtype)
    not_end = 1.0 - episode_end.to(rewards.dtype)
    for t in reversed(range(T)):
        delta = rewards[t] + gamma * not_term[t] * next_values[t] - values[t]
        last = delta + gamma * lam * not_end[t] * last
        adv[t] = last
    return adv, adv + values


class RolloutBuffer:
    """T steps of N sub-envs: observations, actions, log-probs, rewards, flags, values."""

    def __init__(self, T: int, N: int, obs_dim: int, act_shape: tuple[int, ...], discrete: bool):
        self.T, self.N = T, N
        f = torch.float32
        self.obs = torch.zeros(T, N, obs_dim, dtype=f)
        self.actions = torch.zeros(T, N, *act_shape, dtype=torch.long if discrete else f)
        self.logp = torch.zeros(T, N, dtype=f)
        self.rewards = torch.zeros(T, N, dtype=f)
        self.values = torch.zeros(T, N, dtype=f)
        self.next_values = torch.zeros(T, N, dtype=f)
        self.terminated = torch.zeros(T, N, dtype=f)
        self.episode_end = torch.zeros(T, N, dtype=f)

    def gae(self, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        return compute_gae(
            self.rewards,
            self.values,
            self.next_values,
            self.terminated,
            self.episode_end,
            gamma,
            lam,
        )


class ReplayBuffer:
    """A ring buffer of transitions (s, a, r, s', terminated) in numpy, sampled uniformly.

    `terminated` excludes time-limit truncation, so truncated transitions still bootstrap
    (Pardo et al. 2018, "Time limits in reinforcement learning").
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.actions = np.zeros((capacity, act_dim), np.float32)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.pos = 0
        self.size = 0

    def add(self, obs, action, reward, next_obs, terminated) -> None:
        """Add a batch of transitions: obs [N, obs_dim], action [N, act_dim], reward [N] ..."""
        for i in range(len(obs)):
            p = self.pos
            self.obs[p], self.actions[p], self.rewards[p] = obs[i], action[i], reward[i]
            self.next_obs[p], self.terminated[p] = next_obs[i], terminated[i]
            self.pos = (p + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        idx = rng.integers(0, self.size, size=batch_size)
        return {
            "obs": torch.from_numpy(self.obs[idx]),
            "actions": torch.from_numpy(self.actions[idx]),
            "rewards": torch.from_numpy(self.rewards[idx]),
            "next_obs": torch.from_numpy(self.next_obs[idx]),
            "terminated": torch.from_numpy(self.terminated[idx]),
        }

    def state_dict(self) -> dict:
        n = self.size
        return {
            "capacity": self.capacity,
            "pos": self.pos,
            "size": n,
            **{
                k: getattr(self, k)[:n].copy()
                for k in ("obs", "next_obs", "actions", "rewards", "terminated")
            },
        }

    def load_state_dict(self, d: dict) -> None:
        if d["capacity"] != self.capacity:
            raise ValueError(f"replay capacity {d['capacity']} != {self.capacity}")
        n = d["size"]
        for k in ("obs", "next_obs", "actions", "rewards", "terminated"):
            getattr(self, k)[:n] = d[k]
        self.pos, self.size = d["pos"], n


@torch.no_grad()
def collect_rollout(
    envs, obs: np.ndarray, policy, value, buf: RolloutBuffer, stats, low=None, high=None
):
    """Fill `buf` with T steps of every sub-env from `obs`; return the observation to go on from.

    policy: `PolicyNet` (its samples are stored unclipped; continuous actions are clipped to
    [low, high] only when sent to the env). value: `ValueNet`. stats: `EpisodeStats`.
    next_values is V(s_{t+1}) of the true next state, computed for the final observation where
    an episode was truncated (terminated ones are masked out by GAE anyway).
    """
    T = buf.T
    fixes = []  # (t, env indices, V(final obs)) for truncated episodes
    for t in range(T):
        o = torch.as_tensor(obs, dtype=torch.float32)
        d = policy.dist(o)
        a = d.sample()
        buf.obs[t], buf.actions[t], buf.logp[t] = o, a, d.log_prob(a)
        buf.values[t] = value(o)
        a_env = a.numpy()
        if low is not None:
            a_env = np.clip(a_env, low, high)
        obs, r, term, trunc, infos = envs.step(a_env)
        done = term | trunc
        buf.rewards[t] = torch.as_tensor(r, dtype=torch.float32)
        buf.terminated[t] = torch.as_tensor(term, dtype=torch.float32)
        buf.episode_end[t] = torch.as_tensor(done, dtype=torch.float32)
        stats.update(r, done)
        trunc_only = trunc & ~term
        if trunc_only.any():
            idx = np.flatnonzero(trunc_only)
            real = true_next_obs(obs, infos, trunc_only)[idx]
            fixes.append((t, torch.as_tensor(idx), value(torch.as_tensor(real))))
    # V(s_{t+1}): the next step's value, except where an episode ended at t.
    buf.next_values[:-1] = buf.values[1:]
    buf.next_values[-1] = value(torch.as_tensor(obs, dtype=torch.float32))
    for t, idx, v in fixes:
        buf.next_values[t, idx] = v
    return obs
