"""Monte Carlo control, the first model-free methods (Zhao ch. 5; Sutton & Barto ch. 5).

No model is used: only `env.reset(options={"start": s})` and `env.step(a)` of a gymnasium
environment with Discrete states and actions (the grid world). Action values are means of
sampled discounted returns g_t = r_{t+1} + gamma g_{t+1}, computed backwards per episode.

- `mc_basic`: policy iteration with q_pi(s, a) estimated from episodes started at every
  (s, a) (Zhao Alg. 5.1). On a deterministic grid with a deterministic policy one episode per
  pair is exact up to the truncation gamma^L of an episode of length L.
- `mc_exploring_starts`: episodes start at a random (s, a), then follow the greedy policy;
  every return in the episode updates its (s, a) average and the policy is improved at once
  (Zhao Alg. 5.2). `visit="first"` uses only the first visit of (s, a) in an episode.
- `mc_epsilon_greedy`: no exploring starts; the policy is epsilon-greedy, which keeps every
  action tried (Zhao Alg. 5.3). It converges to the best epsilon-greedy policy, whose greedy
  part is optimal when epsilon is small.

The grid world is a continuing task, so episodes are cut at a fixed length, and a return
g_t from step t of an episode of length L sums only L - t rewards: late visits are biased
towards 0. `horizon` H removes that bias in practice: an episode runs L + H steps and only its
first L + 1 steps (each with at least H rewards after it) update q, so the truncation error is
at most gamma^H max|r| / (1 - gamma). H = 0 gives the textbook algorithms exactly.

Every method records, as it goes, the exact value of its current policy against the optimum
(computed from the env's model only to measure, never to learn).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from deepnotes.rl.planning import (
    bellman_closed_form,
    epsilon_greedy_policy,
    greedy_policy,
    optimal_epsilon_greedy_values,
    value_iteration,
)


@dataclass
class MCResult:
    q: np.ndarray  # [S, A] action-value estimates
    pi: np.ndarray  # [S, A] final policy (greedy, or epsilon-greedy)
    episodes: int  # episodes used
    history: list[dict] = field(default_factory=list)  # {"episodes", "value_error", ...}


def generate_episode(env, s0: int, a0: int, pi: np.ndarray, length: int, rng) -> list:
    """[(s_t, a_t, r_{t+1})] for t < length, starting at (s0, a0), then a_t ~ pi(.|s_t).

    Actions are drawn by inverse-CDF sampling from per-state cumulative probabilities (much
    cheaper than a `rng.choice` call per step).
    """
    cum = np.cumsum(pi, 1).tolist()
    last = pi.shape[1] - 1
    u = rng.random(length).tolist()
    env.reset(options={"start": int(s0)})
    s, a, ep = int(s0), int(a0), []
    for t in range(length):
        s2, r, terminated, truncated, _ = env.step(a)
        ep.append((s, a, r))
        if terminated or truncated:
            break
        s = s2
        a = min(bisect.bisect_right(cum[s], u[t]), last)
    return ep


def _returns(ep: list, gamma: float) -> list[float]:
    g, out = 0.0, [0.0] * len(ep)
    for t in range(len(ep) - 1, -1, -1):
        g = ep[t][2] + gamma * g
        out[t] = g
    return out


class _Judge:
    """Exact errors of the current policy, from the env's model (measurement only)."""

    def __init__(self, env, gamma: float, epsilon: float = 0.0):
        self.P, self.R, self.gamma = env.P, env.R, gamma
        self.terminal = env.terminal_mask
        self.v_star = value_iteration(self.P, self.R, gamma, terminal=self.terminal).v
        self.v_eps = (
            optimal_epsilon_greedy_values(self.P, self.R, gamma, epsilon) if epsilon else None
        )

    def __call__(self, q: np.ndarray, pi: np.ndarray, episodes: int) -> dict:
        v_pi = bellman_closed_form(self.P, self.R, pi, self.gamma, self.terminal)
        greedy = greedy_policy(q)
        v_greedy = bellman_closed_form(self.P, self.R, greedy, self.gamma, self.terminal)
        row = {
            "episodes": episodes,
            # max_s |v_greedy(q)(s) - v*(s)|: 0 once the greedy policy is optimal
            "value_error": float(np.abs(v_greedy - self.v_star).max()),
            # max_s |sum_a pi(a|s) q(s, a) - v_pi(s)|: how well q estimates the policy's values
            "estimate_error": float(np.abs((pi * q).sum(1) - v_pi).max()),
        }
        if self.v_eps is not None:
            row["eps_value_error"] = float(np.abs(v_pi - self.v_eps).max())
        return row


def _pairs(env) -> list[tuple[int, int]]:
    live = np.flatnonzero(~env.terminal_mask)
    return [(int(s), a) for s in live for a in range(env.n_actions)]


def mc_basic(
    env,
    gamma: float,
    episode_length: int,
    n_iters: int = 20,
    episodes_per_pair: int = 1,
    seed: int = 0,
) -> MCResult:
    """MC Basic: evaluate q_pi(s, a) for all pairs by sampling, then act greedily; stop when
    the policy no longer changes. Starts from the policy 'always action 0'."""
    rng = np.random.default_rng(seed)
    S, A = env.n_states, env.n_actions
    pi = np.zeros((S, A))
    pi[:, 0] = 1.0
    judge, history, episodes = _Judge(env, gamma), [], 0
    q = np.zeros((S, A))
    for _ in range(n_iters):
        q = np.zeros((S, A))
        for s, a in _pairs(env):
            gs = [
                _returns(generate_episode(env, s, a, pi, episode_length, rng), gamma)[0]
                for _ in range(episodes_per_pair)
            ]
            q[s, a] = np.mean(gs)
            episodes += episodes_per_pair
        new_pi = greedy_policy(q)
        history.append(judge(q, new_pi, episodes))
        if np.array_equal(new_pi, pi):
            break
        pi = new_pi
    return MCResult(q, pi, episodes, history)


def _mc_control(
    env, gamma, episode_length, n_episodes, visit, seed, eval_every, epsilon, es, horizon, alpha
):
    if visit not in ("first", "every"):
        raise ValueError(f"visit must be 'first' or 'every', got {visit!r}")
    if episode_length < 1 or horizon < 0:
        raise ValueError(f"need episode_length >= 1, horizon >= 0; got {episode_length}, {horizon}")
    rng = np.random.default_rng(seed)
    S, A = env.n_states, env.n_actions
    q, count = np.zeros((S, A)), np.zeros((S, A))

    def policy_of(q):
        return greedy_policy(q) if epsilon == 0 else epsilon_greedy_policy(q, epsilon)

    pi = policy_of(q)
    pairs, live = _pairs(env), np.flatnonzero(~env.terminal_mask)
    judge, history = _Judge(env, gamma, epsilon), []
    for k in range(1, n_episodes + 1):
        if es:  # exploring starts: any (s, a) may begin an episode
            s0, a0 = pairs[rng.integers(len(pairs))]
        else:
            s0 = int(rng.choice(live))
            a0 = int(rng.choice(A, p=pi[s0]))
        ep = generate_episode(env, s0, a0, pi, episode_length + horizon, rng)
        gs = _returns(ep, gamma)
        # a terminated episode has exact returns: use all of it; else the first L steps
        used = len(ep) if len(ep) < episode_length + horizon else episode_length
        first = {}
        for t, (s, a, _) in enumerate(ep[:used]):
            first.setdefault((s, a), t)
        for t in range(used - 1, -1, -1):
            s, a, _ = ep[t]
            if visit == "first" and first[(s, a)] != t:
                continue
            count[s, a] += 1
            # sample average (alpha None) or a constant step that forgets older policies
            step = 1.0 / count[s, a] if alpha is None else alpha
            q[s, a] += step * (gs[t] - q[s, a])
            # policy improvement at s: (epsilon-)greedy, first action within 1e-9 of the max
            row = q[s]
            best = int(np.argmax(row >= row.max() - 1e-9))
            pi[s] = epsilon / A
            pi[s, best] += 1.0 - epsilon
        if k % eval_every == 0 or k == n_episodes:
            history.append(judge(q, pi, k))
    return MCResult(q, pi, n_episodes, history)


def mc_exploring_starts(
    env,
    gamma: float,
    episode_length: int,
    n_episodes: int,
    visit: str = "first",
    seed: int = 0,
    eval_every: int = 100,
    horizon: int = 0,
    alpha: float | None = None,
) -> MCResult:
    """MC Exploring Starts with first- or every-visit averaging (greedy policy)."""
    return _mc_control(
        env, gamma, episode_length, n_episodes, visit, seed, eval_every, 0.0, True, horizon, alpha
    )


def mc_epsilon_greedy(
    env,
    gamma: float,
    epsilon: float,
    episode_length: int,
    n_episodes: int,
    visit: str = "every",
    seed: int = 0,
    eval_every: int = 100,
    horizon: int = 0,
    alpha: float | None = None,
) -> MCResult:
    """MC epsilon-greedy (no exploring starts) with first- or every-visit averaging."""
    if not 0.0 < epsilon <= 1.0:
        raise ValueError(f"epsilon must be in (0, 1], got {epsilon}")
    return _mc_control(
        env,
        gamma,
        episode_length,
        n_episodes,
        visit,
        seed,
        eval_every,
        epsilon,
        False,
        horizon,
        alpha,
    )
