"""Model-based methods: the books' figures to the printed decimal, and solver agreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepnotes.rl import planning as pl
from deepnotes.rl.envs import book, sutton_barto_4x4, sutton_barto_grid, zhao_grid
from tests.helpers import assert_close


def assert_printed(v, printed, decimals=1):
    ok = book.matches_printed(v, printed, decimals)
    v = np.asarray(v).reshape(printed.shape)
    assert ok.all(), f"differs from the book at {np.argwhere(~ok).tolist()}:\n{v.round(3)}"


@pytest.mark.parametrize(
    "kw,gamma,printed",
    [
        ({}, 0.9, book.ZHAO_FIG_3_4),
        ({}, 0.5, book.ZHAO_GAMMA_0_5),
        ({"r_forbidden": -10.0}, 0.9, book.ZHAO_R_FORBIDDEN_10),
    ],
    ids=["fig3.4", "gamma0.5", "r_forbidden-10"],
)
def test_zhao_optimal_values(kw, gamma, printed):
    env = zhao_grid(**kw)
    vi = pl.value_iteration(env.P, env.R, gamma)
    pi = pl.policy_iteration(env.P, env.R, gamma)
    tpi = pl.truncated_policy_iteration(env.P, env.R, gamma, j_trunc=5)
    for r in (vi, pi, tpi):
        assert_printed(r.v, printed)
    # the greedy policy of each solver is optimal: its exact value is v*
    v_pi = pl.bellman_closed_form(env.P, env.R, vi.pi, gamma)
    assert np.abs(v_pi - pi.v).max() < 1e-8


def test_zhao_optimal_policy_depends_on_forbidden_penalty():
    # gamma 0.9, r_forbidden -1: the optimal policy cuts through forbidden cells (Zhao's point)
    env = zhao_grid()
    pi = pl.policy_iteration(env.P, env.R, 0.9).pi
    assert pi[env.state((3, 1))].argmax() == 1  # forbidden (3, 1): right into the target
    assert pi[env.state((3, 2))].argmax() == 4  # the target: stay
    env10 = zhao_grid(r_forbidden=-10.0)
    v10 = pl.policy_iteration(env10.P, env10.R, 0.9)
    assert v10.pi[env10.state((2, 1))].argmax() == 3  # now it detours left, away from them


def test_sutton_barto_figure_3_2_random_policy():
    env = sutton_barto_grid()
    pi = np.full((25, 4), 0.25)
    v = pl.bellman_closed_form(env.P, env.R, pi, 0.9)
    assert_printed(v, book.SB_FIG_3_2)
    v_it, iters = pl.policy_evaluation(env.P, env.R, pi, 0.9, tol=1e-12)
    assert np.abs(v_it - v).max() < 1e-10 and iters > 10


def test_sutton_barto_figure_3_5_optimal():
    env = sutton_barto_grid()
    assert_printed(pl.value_iteration(env.P, env.R, 0.9).v, book.SB_FIG_3_5)
    assert_printed(pl.policy_iteration(env.P, env.R, 0.9).v, book.SB_FIG_3_5)


def test_sutton_barto_figure_4_1():
    env = sutton_barto_4x4()
    pi = np.full((16, 4), 0.25)
    v = pl.bellman_closed_form(env.P, env.R, pi, 1.0, env.terminal_mask)
    assert_printed(v, book.SB_FIG_4_1, decimals=0)
    assert np.abs(v.reshape(4, 4) - book.SB_FIG_4_1).max() < 1e-9  # exact integers
    v_it, _ = pl.policy_evaluation(env.P, env.R, pi, 1.0, tol=1e-12, terminal=env.terminal_mask)
    assert np.abs(v_it - v).max() < 1e-8
    with pytest.raises(ValueError, match="singular"):
        pl.bellman_closed_form(env.P, env.R, pi, 1.0)  # without the terminal mask


def random_mdp(rng, S=13, A=4):
    P = rng.random((S, A, S)) ** 4
    P /= P.sum(-1, keepdims=True)
    R = rng.normal(size=(S, A))
    pi = rng.random((S, A))
    return P, R, pi / pi.sum(1, keepdims=True)


def test_closed_form_vs_iterative_random_mdp(seed):
    P, R, pi = random_mdp(np.random.default_rng(seed))
    v_cf = pl.bellman_closed_form(P, R, pi, 0.95)
    v_it, _ = pl.policy_evaluation(P, R, pi, 0.95, tol=1e-13)
    assert_close(torch.tensor(v_it), torch.tensor(v_cf), tol=1e-10, what="policy evaluation")
    # v = r_pi + gamma P_pi v holds
    P_pi, r_pi = pl.policy_matrices(P, R, pi)
    assert np.abs(r_pi + 0.95 * P_pi @ v_cf - v_cf).max() < 1e-10


def test_vi_pi_tpi_agree_random_mdp(seed):
    P, R, _ = random_mdp(np.random.default_rng(seed), S=17, A=3)
    vi = pl.value_iteration(P, R, 0.9, tol=1e-12)
    pi = pl.policy_iteration(P, R, 0.9)
    tpi = pl.truncated_policy_iteration(P, R, 0.9, j_trunc=3, tol=1e-12)
    for r in (vi, tpi):
        assert np.abs(r.v - pi.v).max() < 1e-9
    # optimality: no action improves on v* (Bellman optimality equation)
    q = pl.q_from_v(P, R, pi.v, 0.9)
    assert np.abs(q.max(1) - pi.v).max() < 1e-9
    assert pi.iterations < vi.iterations  # PI needs far fewer (but costlier) iterations
