"""Monte Carlo control reaches the optimal policy of a small grid (fixed seeds)."""

from __future__ import annotations

import numpy as np
import pytest

from deepnotes.rl import mc
from deepnotes.rl import planning as pl
from deepnotes.rl.envs import GridWorld


def small_grid():
    # 3x3, forbidden centre, target in a corner: every path must go round the forbidden cell
    return GridWorld(3, 3, forbidden=[(1, 1)], target=(2, 2))


def test_mc_basic_is_exact_on_a_deterministic_grid():
    env = small_grid()
    res = mc.mc_basic(env, 0.9, episode_length=80)
    assert res.history[-1]["value_error"] < 1e-6  # the greedy policy is optimal
    v_star = pl.value_iteration(env.P, env.R, 0.9).v
    q_star = pl.q_from_v(env.P, env.R, v_star, 0.9)
    # one episode per pair, truncated at 80 steps: |q - q*| <= 0.9^80 * 10
    assert np.abs(res.q - q_star).max() < 0.9**80 * 10 + 1e-9


def test_mc_basic_short_episodes_are_not_enough():
    # Zhao's point in section 5.2: an episode must be long enough to reach the target
    res = mc.mc_basic(small_grid(), 0.9, episode_length=2)
    assert res.history[-1]["value_error"] > 1.0


@pytest.mark.parametrize("visit", ["first", "every"])
def test_mc_exploring_starts(visit):
    env = small_grid()
    res = mc.mc_exploring_starts(env, 0.9, episode_length=10, n_episodes=1500, visit=visit,
                                 seed=0, eval_every=500, horizon=40, alpha=0.1)  # fmt: skip
    assert res.history[-1]["value_error"] < 1e-6


@pytest.mark.parametrize("visit", ["first", "every"])
def test_mc_epsilon_greedy(visit):
    env = small_grid()
    res = mc.mc_epsilon_greedy(env, 0.9, 0.1, episode_length=10, n_episodes=4000, visit=visit,
                               seed=0, eval_every=1000, horizon=40)  # fmt: skip
    last = res.history[-1]
    assert last["value_error"] < 1e-6  # its greedy part is the optimal policy
    assert last["eps_value_error"] < 1e-6  # and it is the best epsilon-greedy policy
    assert np.allclose(res.pi.max(1), 1 - 0.1 + 0.1 / 5)


def test_mc_bad_arguments():
    with pytest.raises(ValueError, match="visit"):
        mc.mc_exploring_starts(small_grid(), 0.9, 5, 1, visit="last")
    with pytest.raises(ValueError, match="epsilon"):
        mc.mc_epsilon_greedy(small_grid(), 0.9, 0.0, 5, 1)
