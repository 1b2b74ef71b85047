"""Stochastic approximation (Zhao ch. 6): the theory under MC, TD and SGD.

- Incremental mean: w_{k+1} = w_k - (1/k)(w_k - x_k) equals the running average exactly.
- Robbins-Monro (1951): find the root of g(w) = 0 from noisy samples g~(w, eta) = g(w) + eta
  by w_{k+1} = w_k - a_k g~(w_k, eta_k). Converges w.p. 1 when 0 < c1 <= g'(w) <= c2,
  sum a_k = inf, sum a_k^2 < inf and the noise is a martingale difference with bounded
  variance (Zhao Thm 6.1; Blum 1954). `project` optionally clips each iterate to an interval,
  the projected RM of Kushner & Yin, for a g whose slope is unbounded.
- Mean estimation as optimisation, J(w) = E[||w - X||^2] / 2: gradient descent on the whole
  sample, stochastic gradient descent on one sample per step, mini-batch GD in between.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def incremental_mean(xs: np.ndarray) -> np.ndarray:
    """w_{k+1} = w_k - (1/k)(w_k - x_k) for k = 1..n, w_1 = x_1 -> [n] (or [n, d]) iterates."""
    xs = np.asarray(xs, dtype=np.float64)
    w = np.zeros_like(xs[0])
    out = np.empty_like(xs)
    for k, x in enumerate(xs, start=1):
        w = w - (w - x) / k
        out[k - 1] = w
    return out


def robbins_monro(
    g_noisy: Callable[[float, np.random.Generator], float],
    w1: float,
    n_iters: int,
    a: Callable[[int], float] = lambda k: 1.0 / k,
    seed: int = 0,
    project: tuple[float, float] | None = None,
) -> np.ndarray:
    """Iterates w_1..w_{n+1} of w_{k+1} = w_k - a_k g~(w_k), optionally clipped to `project`.

    g_noisy(w, rng) returns one noisy observation of g(w). Returns [n_iters + 1] float64.
    """
    rng = np.random.default_rng(seed)
    w = np.empty(n_iters + 1)
    w[0] = w1
    for k in range(1, n_iters + 1):
        step = w[k - 1] - a(k) * g_noisy(w[k - 1], rng)
        if project is not None:
            step = min(max(step, project[0]), project[1])
        w[k] = step
    return w


def cubic_example(w: float, rng: np.random.Generator) -> float:
    """Zhao's example: g(w) = w^3 - 5 observed with N(0, 1) noise; root 5^(1/3) ~ 1.70998.
    The slope 3 w^2 is unbounded, outside RM's condition g' <= c2."""
    return w**3 - 5.0 + rng.standard_normal()


def tanh_example(w: float, rng: np.random.Generator, noise: float = 0.0) -> float:
    """Zhao's Figure 6.3 example: g(w) = tanh(w - 1), root 1 (noise-free by default)."""
    return float(np.tanh(w - 1.0)) + noise * rng.standard_normal()


def mean_estimation_descent(
    samples: np.ndarray,
    method: str,
    n_iters: int,
    batch_size: int = 1,
    w1: np.ndarray | None = None,
    a: Callable[[int], float] = lambda k: 1.0 / k,
    seed: int = 0,
) -> np.ndarray:
    """Minimise J(w) = mean_i ||w - x_i||^2 / 2 over `samples` [n, d]; grad = w - x.

    method: "gd" (full gradient, mean of all samples), "sgd" (one random sample per step) or
    "mbgd" (`batch_size` samples drawn with replacement). Returns the iterates [n_iters+1, d].
    """
    if method not in ("gd", "sgd", "mbgd"):
        raise ValueError(f"method must be 'gd', 'sgd' or 'mbgd', got {method!r}")
    x = np.asarray(samples, dtype=np.float64)
    rng = np.random.default_rng(seed)
    w = np.zeros(x.shape[1]) if w1 is None else np.array(w1, dtype=np.float64)
    out = np.empty((n_iters + 1, x.shape[1]))
    out[0] = w
    full_mean = x.mean(0)
    for k in range(1, n_iters + 1):
        if method == "gd":
            target = full_mean
        else:
            m = 1 if method == "sgd" else batch_size
            target = x[rng.integers(0, len(x), size=m)].mean(0)
        w = w - a(k) * (w - target)
        out[k] = w
    return out
