"""Reinforcement-learning experiments: grid world, Monte Carlo, stochastic approximation,
actor-critic, and benchmarks beside Stable-Baselines3."""
