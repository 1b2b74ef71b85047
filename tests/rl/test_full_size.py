"""Full-size training (minutes on a CPU): run by scripts/slow_tests.sh, not in CI."""

from __future__ import annotations

import pytest

from deepnotes.rl import ddpg, trpo

pytestmark = pytest.mark.slow


def test_trpo_cartpole_reaches_475_within_100k():
    cfg = trpo.TRPOConfig(seed=0, total_steps=100_000, eval_every=20_000)
    _, rec = trpo.train(cfg)
    assert rec.final_return() >= 475


def test_ddpg_pendulum_reaches_minus_200_within_20k():
    cfg = ddpg.DDPGConfig(seed=0, total_steps=20_000, eval_every=5_000)
    _, rec = ddpg.train(cfg)
    assert rec.final_return() >= -200
