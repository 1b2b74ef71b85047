"""Stochastic approximation: incremental mean, Robbins-Monro, GD / SGD / mini-batch GD."""

from __future__ import annotations

import numpy as np

from deepnotes.rl import sa

ROOT = 5.0 ** (1.0 / 3.0)


def test_incremental_mean_is_the_running_average(seed):
    x = np.random.default_rng(seed).normal(3.0, 2.0, size=(257, 3))
    w = sa.incremental_mean(x)
    ref = np.cumsum(x, 0) / np.arange(1, 258)[:, None]
    assert np.abs(w - ref).max() < 1e-12


def test_robbins_monro_tanh_converges():
    # Zhao Fig. 6.3: g(w) = tanh(w - 1), w1 = 3, a_k = 1/k; the root is 1.
    w = sa.robbins_monro(sa.tanh_example, 3.0, 2000)
    assert abs(w[-1] - 1.0) < 0.01
    # with N(0, 0.5^2) observation noise, fixed seed: within 0.05 after 20k steps
    noisy = sa.robbins_monro(lambda w, r: sa.tanh_example(w, r, 0.5), 3.0, 20_000, seed=0)
    assert abs(noisy[-1] - 1.0) < 0.05


def test_robbins_monro_cubic_literal_diverges_projected_converges():
    # g(w) = w^3 - 5 + N(0, 1), w1 = 0, a_k = 1/k: w2 ~ 5, w3 ~ -55, ... the slope 3w^2 is
    # unbounded, RM's condition fails and the literal iteration blows up.
    with np.errstate(over="ignore", invalid="ignore"):
        w = sa.robbins_monro(sa.cubic_example, 0.0, 30, seed=0)
    assert not np.isfinite(w[-1]) or abs(w[-1]) > 1e6
    # Projected onto [0, 3] (slope bounded there) it converges: fixed seed, 5000 steps.
    w = sa.robbins_monro(sa.cubic_example, 0.0, 5000, seed=0, project=(0.0, 3.0))
    assert abs(w[-1] - ROOT) < 0.02


def test_gd_sgd_mbgd_mean_estimation():
    x = np.random.default_rng(0).uniform(-10, 10, size=(400, 2))  # Zhao's 20x20 square
    mean = x.mean(0)
    gd = sa.mean_estimation_descent(x, "gd", 50)
    sgd = sa.mean_estimation_descent(x, "sgd", 5000, seed=1)
    mb = sa.mean_estimation_descent(x, "mbgd", 5000, batch_size=50, seed=1)
    # a_k = 1/k, w1 = 0: GD reaches the sample mean after one step
    assert np.abs(gd[1] - mean).max() < 1e-12
    # SGD with a_k = 1/k is the running mean of its samples: error ~ 5.8/sqrt(k)
    assert np.linalg.norm(sgd[-1] - mean) < 0.5
    assert np.linalg.norm(mb[-1] - mean) < np.linalg.norm(sgd[-1] - mean) + 0.1
