"""Model-based methods on a finite MDP given as P[s, a, s'] and R[s, a] (float64 numpy).

- The Bellman equation of a policy pi, v = r_pi + gamma P_pi v, solved in closed form,
  v = (I - gamma P_pi)^-1 r_pi, and by iteration v_{k+1} = r_pi + gamma P_pi v_k (policy
  evaluation; a contraction for gamma < 1, and for gamma = 1 when every state reaches a
  terminal under pi).
- The Bellman optimality equation, v = max_pi (r_pi + gamma P_pi v), solved by value
  iteration, policy iteration and truncated policy iteration (Zhao ch. 4; Sutton & Barto
  ch. 4). Truncated PI with j evaluation sweeps is value iteration at j = 1 and policy
  iteration as j -> infinity.

Policies are arrays pi[s, a] of probabilities. Terminal states (absorbing, reward 0) may be
passed as a boolean mask; their value is fixed at 0, which keeps the closed form well posed
at gamma = 1 (Sutton & Barto's Figure 4.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def policy_matrices(P: np.ndarray, R: np.ndarray, pi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P_pi[s, s'] = sum_a pi(a|s) P[s, a, s'];  r_pi[s] = sum_a pi(a|s) R[s, a]."""
    _check(P, R, pi)
    return np.einsum("sa,sat->st", pi, P), np.einsum("sa,sa->s", pi, R)


def _check(P, R, pi=None) -> None:
    S, A = R.shape
    if P.shape != (S, A, S):
        raise ValueError(f"P must be [S, A, S] = {(S, A, S)}, got {P.shape}")
    if pi is not None:
        if pi.shape != (S, A):
            raise ValueError(f"pi must be [S, A] = {(S, A)}, got {pi.shape}")
        if not np.allclose(pi.sum(1), 1.0) or (pi < 0).any():
            raise ValueError("pi[s] must be a probability distribution over actions")


def bellman_closed_form(
    P: np.ndarray, R: np.ndarray, pi: np.ndarray, gamma: float, terminal: np.ndarray | None = None
) -> np.ndarray:
    """v_pi = (I - gamma P_pi)^-1 r_pi on non-terminal states (terminal values are 0): [S]."""
    P_pi, r_pi = policy_matrices(P, R, pi)
    S = len(r_pi)
    live = np.ones(S, bool) if terminal is None else ~np.asarray(terminal, bool)
    A = np.eye(live.sum()) - gamma * P_pi[np.ix_(live, live)]
    v = np.zeros(S)
    try:
        v[live] = np.linalg.solve(A, r_pi[live])
    except np.linalg.LinAlgError as e:
        raise ValueError(
            "I - gamma P_pi is singular: with gamma = 1 every state must reach a terminal "
            "state under pi (pass the terminal mask)"
        ) from e
    return v


def policy_evaluation(
    P: np.ndarray,
    R: np.ndarray,
    pi: np.ndarray,
    gamma: float,
    v0: np.ndarray | None = None,
    tol: float = 1e-10,
    max_iters: int = 100_000,
    terminal: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Iterate v <- r_pi + gamma P_pi v until max |change| < tol. Returns (v, iterations)."""
    P_pi, r_pi = policy_matrices(P, R, pi)
    v = np.zeros(len(r_pi)) if v0 is None else np.array(v0, dtype=np.float64)
    live = None if terminal is None else ~np.asarray(terminal, bool)
    for k in range(1, max_iters + 1):  # noqa: B007 - k is the iteration count returned
        v_new = r_pi + gamma * P_pi @ v
        if live is not None:
            v_new[~live] = 0.0
        delta = np.abs(v_new - v).max()
        v = v_new
        if delta < tol:
            return v, k
    return v, max_iters


def q_from_v(P: np.ndarray, R: np.ndarray, v: np.ndarray, gamma: float) -> np.ndarray:
    """q(s, a) = R[s, a] + gamma sum_s' P[s, a, s'] v(s'): [S, A]."""
    return R + gamma * np.einsum("sat,t->sa", P, v)


def greedy_policy(q: np.ndarray, atol: float = 1e-9) -> np.ndarray:
    """One-hot pi[s, a] on the first action within `atol` of max_a q(s, a) (a fixed tie rule
    so that results are reproducible)."""
    best = (q >= q.max(1, keepdims=True) - atol).argmax(1)
    pi = np.zeros_like(q)
    pi[np.arange(len(q)), best] = 1.0
    return pi


def epsilon_greedy_policy(q: np.ndarray, epsilon: float) -> np.ndarray:
    """pi(a*|s) = 1 - eps (|A| - 1) / |A| on the greedy action, eps / |A| on the others."""
    n = q.shape[1]
    return (1.0 - epsilon) * greedy_policy(q) + epsilon / n


@dataclass
class PlanResult:
    v: np.ndarray  # [S] value of the returned policy's fixed point / final iterate
    pi: np.ndarray  # [S, A] greedy policy
    iterations: int  # outer iterations
    history: list[np.ndarray] = field(default_factory=list)  # v after each outer iteration


def value_iteration(
    P, R, gamma: float, v0=None, tol: float = 1e-10, max_iters: int = 100_000, terminal=None
) -> PlanResult:
    """v_{k+1}(s) = max_a q_k(s, a) until max |change| < tol (Zhao Alg. 4.1)."""
    _check(P, R)
    v = np.zeros(R.shape[0]) if v0 is None else np.array(v0, dtype=np.float64)
    history = []
    for k in range(1, max_iters + 1):  # noqa: B007 - k is the iteration count returned
        v_new = q_from_v(P, R, v, gamma).max(1)
        if terminal is not None:
            v_new[np.asarray(terminal, bool)] = 0.0
        delta = np.abs(v_new - v).max()
        v = v_new
        history.append(v.copy())
        if delta < tol:
            break
    return PlanResult(v, greedy_policy(q_from_v(P, R, v, gamma)), k, history)


def truncated_policy_iteration(
    P,
    R,
    gamma: float,
    j_trunc: int,
    pi0=None,
    tol: float = 1e-10,
    max_iters: int = 100_000,
    terminal=None,
) -> PlanResult:
    """Evaluate the current policy with `j_trunc` sweeps started from the last values, then
    improve greedily; stop when the values move less than `tol` (Zhao Alg. 4.3)."""
    _check(P, R)
    S, A = R.shape
    pi = np.full((S, A), 1.0 / A) if pi0 is None else np.array(pi0, dtype=np.float64)
    v = np.zeros(S)
    history = []
    for k in range(1, max_iters + 1):  # noqa: B007 - k is the iteration count returned
        v_new, _ = policy_evaluation(
            P, R, pi, gamma, v, tol=0.0, max_iters=j_trunc, terminal=terminal
        )
        pi = greedy_policy(q_from_v(P, R, v_new, gamma))
        delta = np.abs(v_new - v).max()
        v = v_new
        history.append(v.copy())
        if delta < tol:
            break
    return PlanResult(v, pi, k, history)


def policy_iteration(
    P, R, gamma: float, pi0=None, max_iters: int = 1_000, terminal=None
) -> PlanResult:
    """Exact evaluation (closed form) then greedy improvement, until the policy is stable
    (Zhao Alg. 4.2). Converges in finitely many iterations."""
    _check(P, R)
    S, A = R.shape
    pi = np.full((S, A), 1.0 / A) if pi0 is None else np.array(pi0, dtype=np.float64)
    history = []
    for k in range(1, max_iters + 1):  # noqa: B007 - k is the iteration count returned
        v = bellman_closed_form(P, R, pi, gamma, terminal)
        history.append(v.copy())
        new_pi = greedy_policy(q_from_v(P, R, v, gamma))
        if np.array_equal(new_pi, pi):
            break
        pi = new_pi
    return PlanResult(v, pi, k, history)


def optimal_epsilon_greedy_values(
    P, R, gamma: float, epsilon: float, tol: float = 1e-12, max_iters: int = 100_000
) -> np.ndarray:
    """The value of the best epsilon-greedy policy: iterate
    v(s) = (1 - eps) max_a q(s, a) + eps mean_a q(s, a) (the target of MC epsilon-greedy)."""
    v = np.zeros(R.shape[0])
    for _ in range(max_iters):
        q = q_from_v(P, R, v, gamma)
        v_new = (1 - epsilon) * q.max(1) + epsilon * q.mean(1)
        if np.abs(v_new - v).max() < tol:
            return v_new
        v = v_new
    return v
