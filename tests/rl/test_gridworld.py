"""GridWorld: transitions and rewards, the gymnasium API, the exact model and the renderer."""

from __future__ import annotations

import numpy as np
import pytest

from deepnotes.rl.envs import GridWorld, sutton_barto_4x4, sutton_barto_grid, zhao_grid
from deepnotes.rl.envs.render import save_grid_png

UP, RIGHT, DOWN, LEFT, STAY = range(5)


def step_from(env, cell, action):
    env.reset(options={"start": cell})
    s, r, term, trunc, info = env.step(action)
    return info["cell"], r, term


def test_zhao_transitions_and_rewards():
    env = zhao_grid()
    assert (env.n_states, env.n_actions) == (25, 5)
    assert step_from(env, (0, 0), UP) == ((0, 0), -1.0, False)  # boundary: stay, -1
    assert step_from(env, (0, 0), LEFT) == ((0, 0), -1.0, False)
    assert step_from(env, (0, 0), RIGHT) == ((0, 1), 0.0, False)
    assert step_from(env, (0, 1), DOWN) == ((1, 1), -1.0, False)  # into a forbidden cell
    assert step_from(env, (1, 1), STAY) == ((1, 1), -1.0, False)  # staying in it
    assert step_from(env, (4, 2), UP) == ((3, 2), 1.0, False)  # into the target
    assert step_from(env, (3, 2), STAY) == ((3, 2), 1.0, False)  # not terminal by default
    assert step_from(env, (4, 4), DOWN) == ((4, 4), -1.0, False)


def test_custom_rewards_and_terminal_target():
    env = GridWorld(2, 3, forbidden=[(0, 1)], target=(1, 2), r_boundary=-2, r_forbidden=-5,
                    r_target=3, r_other=-0.5, terminal_target=True)  # fmt: skip
    assert step_from(env, (0, 0), RIGHT) == ((0, 1), -5.0, False)
    assert step_from(env, (0, 0), UP) == ((0, 0), -2.0, False)
    assert step_from(env, (0, 0), DOWN) == ((1, 0), -0.5, False)
    assert step_from(env, (1, 1), RIGHT) == ((1, 2), 3.0, True)
    t = env.state((1, 2))
    assert (env.next_state[t] == t).all() and (env.reward[t] == 0).all()  # absorbing


def test_sutton_barto_jumps_and_terminals():
    env = sutton_barto_grid()
    assert env.n_actions == 4
    for a in range(4):
        assert step_from(env, (0, 1), a) == ((4, 1), 10.0, False)
        assert step_from(env, (0, 3), a) == ((2, 3), 5.0, False)
    assert step_from(env, (4, 0), DOWN) == ((4, 0), -1.0, False)
    env4 = sutton_barto_4x4()
    assert step_from(env4, (0, 1), LEFT) == ((0, 0), -1.0, True)
    assert step_from(env4, (1, 1), RIGHT) == ((1, 2), -1.0, False)
    assert step_from(env4, (0, 2), UP) == ((0, 2), -1.0, False)


def test_model_matches_sampled_steps(seed):
    rng = np.random.default_rng(seed)
    forb = {tuple(c) for c in rng.integers(0, [4, 6], size=(5, 2))}
    env = GridWorld(4, 6, forbidden=forb, target=(3, 5), r_other=float(rng.normal()))
    P, R = env.P, env.R
    assert P.shape == (24, 5, 24) and np.allclose(P.sum(-1), 1.0)
    for s in range(env.n_states):
        for a in range(env.n_actions):
            env.reset(options={"start": s})
            s2, r, *_ = env.step(a)
            assert P[s, a, s2] == 1.0 and R[s, a] == r


def test_gymnasium_api():
    from gymnasium.utils.env_checker import check_env

    env = zhao_grid(start="random", max_steps=7)
    check_env(env, skip_render_check=True)
    s0, _ = env.reset(seed=3)
    s1, _ = env.reset(seed=3)
    assert s0 == s1
    for t in range(7):
        *_, trunc, _ = env.step(STAY)
    assert trunc and t == 6


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="outside"):
        GridWorld(3, 3, forbidden=[(3, 0)])
    with pytest.raises(ValueError, match="needs a target"):
        GridWorld(3, 3, terminal_target=True)
    with pytest.raises(ValueError, match="action"):
        zhao_grid().step(7)


def test_renderer_writes_png(tmp_path):
    env = zhao_grid()
    pi = np.full((25, 5), 0.2)
    path = save_grid_png(tmp_path / "g.png", env, np.arange(25.0), pi, "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = zhao_grid(render_mode="rgb_array").render()
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
