"""Reinforcement learning, from the grid world and the Bellman equation to TRPO.

- `envs`: the grid world (gymnasium API) with exact model tensors and a PNG renderer.
- `planning`: Bellman equation in closed form and iteratively, value / policy / truncated
  policy iteration.
- `mc`: Monte Carlo control (MC Basic, exploring starts, epsilon-greedy).
- `sa`: stochastic approximation (incremental mean, Robbins-Monro, GD / SGD / mini-batch).
- one file per deep algorithm: `qac`, `a2c`, `off_policy_ac`, `ddpg`, `trpo`; shared
  infrastructure in `common` (env helpers), `nets`, `buffers`, `checkpoint`, `recorder`,
  and `peers` (Stable-Baselines3 under the same protocol).
"""
