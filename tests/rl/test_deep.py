"""Deep RL building blocks: CG, the TRPO step, GAE, soft updates, seeding, checkpoints, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from deepnotes.rl import a2c, ddpg, off_policy_ac, qac, trpo
from deepnotes.rl.buffers import compute_gae
from deepnotes.rl.nets import PolicyNet
from tests.helpers import assert_close


def test_conjugate_gradient_solves_spd_system(seed):
    g = torch.Generator().manual_seed(seed)
    for n in (37, 64):
        M = torch.randn(n, n, generator=g, dtype=torch.float64)
        A = M @ M.T + n * torch.eye(n, dtype=torch.float64)  # SPD, well conditioned
        b = torch.randn(n, generator=g, dtype=torch.float64)
        x = trpo.conjugate_gradient(lambda v: A @ v, b, iters=n, tol=1e-28)
        assert_close(x, torch.linalg.solve(A, b), tol=1e-10, what=f"CG n={n}")
    # exact in at most n steps for n distinct eigenvalues (here n = 5)
    A = torch.diag(torch.tensor([1.0, 2.0, 3.0, 5.0, 8.0], dtype=torch.float64))
    b = torch.ones(5, dtype=torch.float64)
    assert_close(trpo.conjugate_gradient(lambda v: A @ v, b, iters=5, tol=0), 1 / A.diagonal(),
                 tol=1e-12)  # fmt: skip


@pytest.mark.parametrize("discrete", [True, False])
@pytest.mark.parametrize("max_kl", [0.01, 0.05])
def test_trpo_step_satisfies_kl_constraint(seed, discrete, max_kl):
    torch.manual_seed(seed)
    B, obs_dim, act_dim = 300, 5, 3
    pi = PolicyNet(obs_dim, act_dim, discrete, hidden=(32, 32)).double()
    obs = torch.randn(B, obs_dim, dtype=torch.float64)
    with torch.no_grad():
        d = pi.dist(obs)
        actions = d.sample()
        old_logp = d.log_prob(actions)
        old = [p.clone() for p in pi.parameters()]
    adv = torch.randn(B, dtype=torch.float64)
    info = trpo.trpo_step(pi, obs, actions, adv, old_logp, max_kl, cg_iters=20, cg_damping=1e-3)
    assert info["accepted"]
    with torch.no_grad():
        new = pi.dist(obs)
        kl = torch.distributions.kl_divergence(d, new).mean().item()
        # surrogate L(theta) - L(theta_old), with L(theta_old) = mean(adv)
        gain = (torch.exp(new.log_prob(actions) - old_logp) * adv).mean().item() - adv.mean().item()
    assert kl <= max_kl * (1 + 1e-9) and abs(kl - info["kl"]) < 1e-9
    assert kl > 0.05 * max_kl  # a real step, not a vanishing one
    assert gain > 0 and abs(gain - info["surrogate_gain"]) < 1e-9
    assert any((p - q).abs().max() > 0 for p, q in zip(pi.parameters(), old, strict=True))


def test_gae_hand_computed():
    # T = 3, one env; gamma = 0.5, lambda = 0.5; the episode is truncated after t = 1
    # (bootstrap from V(final obs) = 4) and a new one runs at t = 2 and terminates.
    r = torch.tensor([[1.0], [2.0], [3.0]])
    v = torch.tensor([[0.5], [1.0], [2.0]])
    nv = torch.tensor([[1.0], [4.0], [9.0]])
    term = torch.tensor([[0.0], [0.0], [1.0]])
    end = torch.tensor([[0.0], [1.0], [1.0]])
    adv, ret = compute_gae(r, v, nv, term, end, 0.5, 0.5)
    d2 = 3.0 - 2.0  # terminal: no bootstrap
    d1 = 2.0 + 0.5 * 4.0 - 1.0  # truncated: bootstraps, and A_1 does not see t = 2
    d0 = 1.0 + 0.5 * 1.0 - 0.5
    expected = torch.tensor([[d0 + 0.25 * d1], [d1], [d2]])
    assert torch.allclose(adv, expected) and torch.allclose(ret, expected + v)


def test_gae_matches_direct_sum(seed):
    # A_t = sum_l (gamma lambda)^l delta_{t+l} within an episode (Schulman et al. eq. 16)
    g = torch.Generator().manual_seed(seed)
    T, N, gamma, lam = 23, 3, 0.97, 0.9
    r, v, nv = (torch.randn(T, N, generator=g, dtype=torch.float64) for _ in range(3))
    end = (torch.rand(T, N, generator=g) < 0.15).double()
    term = end * (torch.rand(T, N, generator=g) < 0.5).double()
    adv, _ = compute_gae(r, v, nv, term, end, gamma, lam)
    delta = r + gamma * (1 - term) * nv - v
    ref = torch.zeros_like(adv)
    for n in range(N):
        for t in range(T):
            acc, c = 0.0, 1.0
            for u in range(t, T):
                acc += c * delta[u, n]
                if end[u, n]:
                    break
                c *= gamma * lam
            ref[t, n] = acc
    assert_close(adv, ref, tol=1e-12, what="GAE")


def test_ddpg_soft_update(seed):
    torch.manual_seed(seed)
    src, tgt = ddpg.Critic(3, 2, (17, 9)), ddpg.Critic(3, 2, (17, 9))
    before = [p.clone() for p in tgt.parameters()]
    ddpg.soft_update(tgt, src, 0.005)
    for b, s, t in zip(before, src.parameters(), tgt.parameters(), strict=True):
        assert_close(t, 0.005 * s + 0.995 * b, dtype=torch.float32)
    ddpg.soft_update(tgt, src, 1.0)  # tau = 1: a hard copy
    for s, t in zip(src.parameters(), tgt.parameters(), strict=True):
        assert torch.equal(s, t)


def test_ddpg_rejects_discrete_actions():
    with pytest.raises(ValueError, match="DDPG needs a continuous Box action space"):
        ddpg.train(ddpg.DDPGConfig(env_id="CartPole-v1", total_steps=10))


@pytest.mark.parametrize(
    "module,cfg_cls", [(qac, qac.QACConfig), (off_policy_ac, off_policy_ac.OffPolicyACConfig)]
)
def test_discrete_only_algorithms_reject_box_actions(module, cfg_cls):
    with pytest.raises(ValueError, match="supports only Discrete action spaces"):
        module.train(cfg_cls(env_id="Pendulum-v1", total_steps=10))


def test_unknown_env_is_a_clear_error():
    with pytest.raises(ValueError, match="NoSuchEnv"):
        a2c.train(a2c.A2CConfig(env_id="NoSuchEnv-v0", total_steps=10))


# tiny configurations: a few hundred env steps, small networks
TINY = {
    "a2c": (
        a2c,
        a2c.A2CConfig(
            total_steps=400, eval_every=200, eval_episodes=1, hidden=(16, 16), checkpoint_every=200
        ),
    ),
    "trpo": (
        trpo,
        trpo.TRPOConfig(
            env_id="Pendulum-v1",
            total_steps=512,
            n_steps=64,
            eval_every=256,
            eval_episodes=1,
            hidden=(16, 16),
            vf_batch=64,
            vf_epochs=2,
            checkpoint_every=256,
        ),
    ),
    "ddpg": (
        ddpg,
        ddpg.DDPGConfig(
            total_steps=500,
            learning_starts=150,
            batch_size=32,
            hidden=(16, 16),
            eval_every=250,
            eval_episodes=1,
            train_freq=50,
            noise="ou",
            checkpoint_every=250,
        ),
    ),
    "qac": (
        qac,
        qac.QACConfig(
            total_steps=400,
            n_envs=4,
            hidden=(16, 16),
            eval_every=200,
            eval_episodes=1,
            checkpoint_every=200,
        ),
    ),
    "off_policy_ac": (
        off_policy_ac,
        off_policy_ac.OffPolicyACConfig(
            total_steps=400,
            n_envs=4,
            hidden=(16, 16),
            eval_every=200,
            eval_episodes=1,
            behavior_every=120,
            checkpoint_every=200,
        ),
    ),
}


def params(agent):
    return torch.cat([p.detach().reshape(-1) for p in agent.parameters()])


@pytest.mark.parametrize("algo", list(TINY))
def test_same_seed_same_run(algo):
    module, cfg = TINY[algo]
    a1, r1 = module.train(cfg)
    a2, r2 = module.train(cfg)
    a3, _ = module.train(dataclasses.replace(cfg, seed=cfg.seed + 1))
    assert torch.equal(params(a1), params(a2))
    assert [c["eval_return"] for c in r1.curve] == [c["eval_return"] for c in r2.curve]
    assert not torch.equal(params(a1), params(a3))


@pytest.mark.parametrize("algo", list(TINY))
def test_checkpoint_resume_round_trip(algo, tmp_path):
    module, cfg = TINY[algo]
    ckpt = tmp_path / f"{algo}.pt"
    full, full_rec = module.train(cfg)  # uninterrupted
    half = dataclasses.replace(cfg, total_steps=cfg.checkpoint_every)
    module.train(half, checkpoint=ckpt)  # "crashes" after the first checkpoint
    assert ckpt.exists() and not list(tmp_path.glob(".*.tmp"))  # atomic: no leftovers
    resumed, rec = module.train(cfg, checkpoint=ckpt, resume=True)
    assert torch.equal(params(resumed), params(full))
    assert [c["step"] for c in rec.curve] == [c["step"] for c in full_rec.curve]
    assert [c["eval_return"] for c in rec.curve] == [c["eval_return"] for c in full_rec.curve]
    with pytest.raises(ValueError, match="checkpoint"):
        other = "trpo" if algo != "trpo" else "a2c"
        TINY[other][0].train(TINY[other][1], checkpoint=ckpt, resume=True)


def test_vector_env_bootstraps_truncation():
    import gymnasium as gym

    from deepnotes.rl.common import make_vec_env, true_next_obs

    envs = make_vec_env("Pendulum-v1", 3)
    envs.reset(seed=0)
    single = gym.make("Pendulum-v1")
    single.reset(seed=1)  # the same start as sub-env 1
    for _ in range(200):
        obs, r, term, trunc, info = envs.step(np.zeros((3, 1), np.float32))
        last, *_ = single.step(np.zeros(1, np.float32))
    assert trunc.all() and not term.any()  # Pendulum only ever truncates
    real = true_next_obs(obs, info, trunc | term)
    assert np.allclose(real[1], last)  # the true s_200, needed to bootstrap V(s_200)
    assert not np.allclose(obs[1], last)  # obs is already the next episode's first one
    envs.close()


def test_exploration_noise_statistics(seed):
    rng = np.random.default_rng(seed)
    sigma, theta, dt = 0.3, 0.15, 0.01
    ou = ddpg.OUNoise(64, 1, sigma, theta, dt, rng)
    xs = np.array([ou(64)[:, 0] for _ in range(30_000)])  # [T, 64] independent processes
    xs = xs[10_000:]  # past the transient (mixing time 1 / (theta dt) ~ 670 steps)
    a = 1 - theta * dt
    var = sigma**2 * dt / (1 - a**2)  # stationary variance of the AR(1) recursion
    assert abs(xs.var() / var - 1) < 0.2  # ~4.4 standard errors
    lag1 = np.mean([np.corrcoef(xs[:-1, i], xs[1:, i])[0, 1] for i in range(64)])
    assert abs(lag1 - a) < 5e-3  # strongly correlated in time, unlike Gaussian noise
    ou.reset(2)
    assert ou.x[2, 0] == 0.0 and ou.x[0, 0] != 0.0
    g = ddpg.GaussianNoise(3, 0.1, rng)(50_000)
    assert g.shape == (50_000, 3) and abs(g.std() - 0.1) < 2e-3
