"""Stable-Baselines3 / sb3-contrib as peers, run under the same evaluation protocol.

Optional at runtime: `sb3_available()` says whether they import; callers skip the peer with a
note when they don't. The peer is evaluated by the same `Recorder` (same evaluation seeds,
same schedule, evaluation time excluded from training time) through an SB3 callback.
"""

from __future__ import annotations

from typing import Any

from deepnotes.rl.recorder import Recorder, eval_seed


def sb3_available() -> tuple[bool, str]:
    """(True, versions) if stable-baselines3 and sb3-contrib import, else (False, reason)."""
    try:
        import sb3_contrib
        import stable_baselines3
    except ImportError as e:
        return (
            False,
            f"stable-baselines3/sb3-contrib not installed ({e.name}): pip install 'deepnotes[rl]'",
        )
    return (
        True,
        f"stable-baselines3 {stable_baselines3.__version__}, sb3-contrib {sb3_contrib.__version__}",
    )


def _make_model(algo: str, env_id: str, seed: int, hp: dict[str, Any]):
    from stable_baselines3 import A2C, DDPG
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.noise import NormalActionNoise

    hp = dict(hp)
    n_envs = hp.pop("n_envs", 1)
    env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    if algo == "a2c":
        return A2C("MlpPolicy", env, seed=seed, device="cpu", **hp)
    if algo == "trpo":
        from sb3_contrib import TRPO

        return TRPO("MlpPolicy", env, seed=seed, device="cpu", **hp)
    if algo == "ddpg":
        import numpy as np

        std = hp.pop("noise_std", 0.1)
        act_dim = env.action_space.shape[0]
        noise = NormalActionNoise(np.zeros(act_dim), std * np.ones(act_dim))
        return DDPG("MlpPolicy", env, seed=seed, device="cpu", action_noise=noise, **hp)
    raise ValueError(f"no SB3 peer for {algo!r}")


def train_sb3(
    algo: str,
    env_id: str,
    seed: int,
    total_steps: int,
    hp: dict[str, Any],
    eval_every: int,
    eval_episodes: int,
    threshold: float | None = None,
    progress_path=None,
) -> Recorder:
    """Train the SB3 peer of `algo` and return its Recorder (curve, training time)."""
    from stable_baselines3.common.callbacks import BaseCallback

    model = _make_model(algo, env_id, seed, hp)

    def act(obs):
        return model.predict(obs, deterministic=True)[0]

    recorder = Recorder(
        env_id,
        eval_every,
        eval_episodes,
        eval_seed(seed),
        threshold=threshold,
        progress_path=progress_path,
        label=f"sb3-{algo}",
    )

    class EvalCallback(BaseCallback):
        def _on_training_start(self) -> None:
            recorder.start()
            recorder.maybe_eval(0, act)

        def _on_step(self) -> bool:
            recorder.maybe_eval(self.model.num_timesteps, act)
            return True

    model.learn(total_timesteps=total_steps, callback=EvalCallback())
    recorder.force_eval(model.num_timesteps, act)
    recorder.stop()
    model.get_env().close()
    return recorder
