"""Environment helpers shared by the deep RL algorithms.

- `make_vec_env`: gymnasium's own `SyncVectorEnv`, in the SAME_STEP autoreset mode, so the
  observation returned with `terminated | truncated` is already the first one of the next
  episode and the true last observation sits in `info["final_obs"]` (needed to bootstrap
  through time-limit truncation, e.g. every Pendulum episode).
- `check_action_space`: a clear `ValueError` when an algorithm meets a space it can't handle.
- `true_next_obs`: the real s_{t+1} of each sub-environment, undoing the autoreset.
- `evaluate`: mean return of a deterministic policy on fixed evaluation seeds (the same
  protocol is used for our agents and for the Stable-Baselines3 peers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def require_gymnasium():
    """Import gymnasium or raise an ImportError that says how to install it."""
    try:
        import gymnasium
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("deepnotes.rl needs gymnasium: pip install 'deepnotes[rl]'") from e
    return gymnasium


def make_env(env_id: str, **kwargs: Any):
    """`gymnasium.make(env_id)`, with a clear error for an unknown id."""
    gym = require_gymnasium()
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as e:
        raise ValueError(f"cannot make environment {env_id!r}: {e}") from e


def make_vec_env(env_id: str, n_envs: int, **kwargs: Any):
    """`n_envs` copies of `env_id` in a `gymnasium.vector.SyncVectorEnv` (SAME_STEP autoreset).

    Sync (not async) because the classic-control envs step in microseconds: worker processes
    would cost more in IPC than they save, and a 2-core machine has no cores to spare.
    Seed it with `envs.reset(seed=seed)` (sub-env i gets seed + i).
    """
    gym = require_gymnasium()
    if n_envs < 1:
        raise ValueError(f"n_envs must be >= 1, got {n_envs}")
    make_env(env_id, **kwargs).close()  # fail early with a readable error
    fns = [lambda: gym.make(env_id, **kwargs) for _ in range(n_envs)]
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def describe_space(space) -> str:
    return f"{type(space).__name__}{getattr(space, 'shape', '')}"


def check_action_space(space, algo: str, *, discrete: bool, continuous: bool) -> str:
    """Return "discrete" or "continuous", or raise a ValueError naming what `algo` supports.

    Continuous means a 1-D `Box` with finite bounds (the deterministic actors squash with
    tanh into those bounds; Gaussian policies are clipped to them by the env).
    """
    gym = require_gymnasium()
    spaces = gym.spaces
    if isinstance(space, spaces.Discrete):
        if discrete:
            return "discrete"
        raise ValueError(
            f"{algo} needs a continuous Box action space, but the environment has "
            f"{describe_space(space)} (discrete). {algo} outputs a real-valued action "
            "through a deterministic actor; use A2C, QAC or TRPO for discrete actions."
        )
    if isinstance(space, spaces.Box):
        if not continuous:
            raise ValueError(
                f"{algo} supports only Discrete action spaces, got {describe_space(space)}."
            )
        if len(space.shape) != 1:
            raise ValueError(f"{algo} needs a 1-D Box action space, got shape {space.shape}")
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise ValueError(f"{algo} needs finite action bounds, got [{space.low}, {space.high}]")
        return "continuous"
    raise ValueError(
        f"{algo} supports Discrete or 1-D Box action spaces, got {describe_space(space)}"
    )


def true_next_obs(next_obs: np.ndarray, infos: dict, done: np.ndarray) -> np.ndarray:
    """The real s_{t+1} per sub-env: `info["final_obs"]` where an episode just ended.

    next_obs: [N, obs_dim] as returned by a SAME_STEP vector env; done: [N] bool.
    """
    real = next_obs.copy()
    if done.any():
        for i in np.flatnonzero(done):
            real[i] = infos["final_obs"][i]
    return real


class EpisodeStats:
    """Undiscounted returns and lengths of finished training episodes, per sub-env."""

    def __init__(self, n_envs: int):
        self.ret = np.zeros(n_envs)
        self.len = np.zeros(n_envs, dtype=np.int64)
        self.finished: list[tuple[float, int]] = []

    def update(self, rewards: np.ndarray, done: np.ndarray) -> None:
        self.ret += rewards
        self.len += 1
        for i in np.flatnonzero(done):
            self.finished.append((float(self.ret[i]), int(self.len[i])))
            self.ret[i], self.len[i] = 0.0, 0

    def recent_mean(self, k: int = 20) -> float:
        if not self.finished:
            return float("nan")
        return float(np.mean([r for r, _ in self.finished[-k:]]))

    def state_dict(self) -> dict:
        return {"ret": self.ret.copy(), "len": self.len.copy(), "finished": list(self.finished)}

    def load_state_dict(self, d: dict) -> None:
        self.ret, self.len, self.finished = d["ret"].copy(), d["len"].copy(), list(d["finished"])


def evaluate(
    act: Callable[[np.ndarray], np.ndarray],
    env_id: str,
    n_episodes: int,
    seed: int,
    env_kwargs: dict | None = None,
) -> list[float]:
    """Undiscounted return of `n_episodes` episodes; episode i starts from `reset(seed=seed+i)`.

    act: maps one observation batch [1, obs_dim] to actions [1, ...] (deterministic).
    Continuous actions are clipped to the action space's bounds.
    """
    env = make_env(env_id, **(env_kwargs or {}))
    low, high = getattr(env.action_space, "low", None), getattr(env.action_space, "high", None)
    returns = []
    try:
        for i in range(n_episodes):
            obs, _ = env.reset(seed=seed + i)
            total, done = 0.0, False
            while not done:
                a = act(np.asarray(obs)[None])[0]
                if low is not None:
                    a = np.clip(a, low, high)
                obs, r, term, trunc, _ = env.step(a)
                total += float(r)
                done = term or trunc
            returns.append(total)
    finally:
        env.close()
    return returns


def seeds_list(seeds: Sequence[int] | int) -> list[int]:
    return list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
