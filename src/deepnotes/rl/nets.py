"""Small networks shared by the policy-gradient algorithms (QAC, A2C, off-policy AC, TRPO).

Initialisation follows the common practice of OpenAI baselines / SB3 / CleanRL: orthogonal
weights with gain sqrt(2) in hidden layers, 0.01 for the policy head (a near-uniform first
policy) and 1 for the value head; zero biases.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Categorical, Independent, Normal


def mlp(
    sizes: list[int], activation: type[nn.Module] = nn.Tanh, out_gain: float = 1.0
) -> nn.Sequential:
    """Linear layers of `sizes` with `activation` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        lin = nn.Linear(sizes[i], sizes[i + 1])
        last = i == len(sizes) - 2
        nn.init.orthogonal_(lin.weight, out_gain if last else math.sqrt(2))
        nn.init.zeros_(lin.bias)
        layers.append(lin)
        if not last:
            layers.append(activation())
    return nn.Sequential(*layers)


class PolicyNet(nn.Module):
    """pi(a|s): a Categorical over n actions, or a diagonal Gaussian with a learned,
    state-independent log std (the parametrisation of TRPO/PPO papers and SB3)."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        discrete: bool,
        hidden: tuple[int, ...] = (64, 64),
        log_std_init: float = 0.0,
    ):
        super().__init__()
        self.discrete = discrete
        self.body = mlp([obs_dim, *hidden, act_dim], nn.Tanh, out_gain=0.01)
        if not discrete:
            self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))

    def dist(self, obs: torch.Tensor):
        """obs: [B, obs_dim] float32 -> a distribution with batch shape [B]."""
        out = self.body(obs)
        if self.discrete:
            return Categorical(logits=out)
        return Independent(Normal(out, self.log_std.exp().expand_as(out)), 1)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """obs: [B, obs_dim] -> actions [B] (long) or [B, act_dim] (float)."""
        d = self.dist(obs)
        if deterministic:
            return d.probs.argmax(-1) if self.discrete else d.mean
        return d.sample()


class ValueNet(nn.Module):
    """v(s): [B, obs_dim] -> [B]."""

    def __init__(self, obs_dim: int, hidden: tuple[int, ...] = (64, 64)):
        super().__init__()
        self.body = mlp([obs_dim, *hidden, 1], nn.Tanh, out_gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.body(obs).squeeze(-1)


def space_dims(env) -> tuple[int, int, bool]:
    """(obs_dim, act_dim, discrete) of a (vector) env with a flat Box observation space."""
    obs_space = getattr(env, "single_observation_space", env.observation_space)
    act_space = getattr(env, "single_action_space", env.action_space)
    if len(obs_space.shape) != 1:
        raise ValueError(f"expected a flat observation vector, got shape {obs_space.shape}")
    discrete = not hasattr(act_space, "low")
    act_dim = int(act_space.n) if discrete else int(act_space.shape[0])
    return int(obs_space.shape[0]), act_dim, discrete
