"""The outer loop that every online RL algorithm here shares; each keeps its own inner step.

    loop = OuterLoop("a2c", cfg, envs, parts, agent.act_np, checkpoint=..., resume=...)
    while loop.running(total):          # evaluates greedily every cfg.eval_every steps
        ... collect, update ...         # the algorithm's own step, reading loop.obs
        loop.advance(n, obs)            # count env steps, report progress
        loop.checkpoint_if_due()        # atomic checkpoint every cfg.checkpoint_every steps
    loop.finish()                       # final evaluation, stop the clock, close the envs

What it owns: the step counter and the current observation, resuming both (and every part's
state, the environments and the random generators) from a checkpoint, the recorder's
periodic and final evaluations, progress, and checkpoints. `parts` maps names to objects with
`state_dict()` and must hold the run's "stats" (`EpisodeStats`) and "recorder" (`Recorder`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from deepnotes.rl.checkpoint import resume_agent, save_agent
from deepnotes.rl.common import check_action_space, make_vec_env
from deepnotes.rl.nets import space_dims
from deepnotes.rl.recorder import Recorder, eval_seed


def open_envs(cfg, algo: str, *, discrete: bool, continuous: bool):
    """Seed torch, make cfg.n_envs vector envs and check their action space fits `algo`.

    Returns (envs, kind, obs_dim, act_dim, is_discrete); kind is "discrete" or "continuous".
    """
    torch.manual_seed(cfg.seed)
    envs = make_vec_env(cfg.env_id, cfg.n_envs)
    kind = check_action_space(
        envs.single_action_space, algo, discrete=discrete, continuous=continuous
    )
    return (envs, kind, *space_dims(envs))


def default_recorder(cfg, recorder: Recorder | None) -> Recorder:
    """The caller's recorder, or one evaluating every cfg.eval_every steps on held-out seeds."""
    if recorder is not None:
        return recorder
    return Recorder(cfg.env_id, cfg.eval_every, cfg.eval_episodes, eval_seed(cfg.seed))


class OuterLoop:
    """Step counter, observation, evaluation, progress and checkpoints of one training run."""

    def __init__(
        self,
        algo: str,
        cfg,
        envs,
        parts: dict[str, Any],
        act: Callable,
        *,
        checkpoint: str | Path | None = None,
        resume: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        missing = {"stats", "recorder"} - set(parts)
        if missing:
            raise ValueError(f"OuterLoop: parts lacks {sorted(missing)}")
        self.algo, self.cfg, self.envs, self.parts, self.act = algo, cfg, envs, parts, act
        self.checkpoint, self.progress = checkpoint, progress
        self.recorder: Recorder = parts["recorder"]
        self.stats = parts["stats"]
        self.step, self.obs = 0, envs.reset(seed=cfg.seed)[0]
        self.restored: dict[str, Any] = {}  # the checkpoint resumed from (its extras), if any
        if resume and checkpoint is not None and Path(checkpoint).exists():
            self.restored = resume_agent(checkpoint, algo, envs, parts)
            self.step, self.obs = self.restored["step"], self.restored["obs"]
        every = cfg.checkpoint_every
        self.next_ckpt = (self.step // every + 1) * every
        self._started = False

    def _extra(self) -> dict[str, Any]:
        return {"train_return": self.stats.recent_mean()}

    def running(self, total: int) -> bool:
        """True while fewer than `total` env steps are done; evaluates when one is due."""
        if not self._started:
            self.recorder.start()
            self._started = True
        if self.step >= total:
            return False
        self.recorder.maybe_eval(self.step, self.act, self._extra())
        return True

    def advance(self, n: int, obs: Any) -> None:
        """Count n more env steps, with `obs` the observation to continue from."""
        self.step += n
        self.obs = obs
        if self.progress is not None:
            self.progress(self.step)

    def checkpoint_if_due(self, **extra: Any) -> None:
        """Save every part, the envs and the RNGs when a checkpoint is due; `extra` holds the
        algorithm's own plain values (a pending action, a noise state ...)."""
        if self.checkpoint is None or self.step < self.next_ckpt:
            return
        self.next_ckpt += self.cfg.checkpoint_every
        save_agent(
            self.checkpoint, self.algo, self.cfg, self.step, self.obs, self.envs, self.parts,
            **extra,
        )  # fmt: skip

    def finish(self) -> None:
        """The final evaluation; stop the training clock; close the envs."""
        self.recorder.force_eval(self.step, self.act, self._extra())
        self.recorder.stop()
        self.envs.close()
