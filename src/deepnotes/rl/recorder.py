"""Periodic evaluation, learning curves and time-to-threshold, shared by every algorithm.

Training wall time excludes evaluation time, so time-to-threshold compares learning speed,
not evaluation cost. The same recorder evaluates the Stable-Baselines3 peers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepnotes.rl.common import evaluate
from deepnotes.utils.io import atomic_write_json


def eval_seed(seed: int) -> int:
    """First evaluation-episode seed of a run with training seed `seed` (disjoint from it)."""
    return 10**6 + 1000 * seed


@dataclass
class Recorder:
    """Evaluate every `eval_every` env steps; keep the curve; note when `threshold` is met.

    Evaluation: `eval_episodes` episodes of `env_id`, episode i reset with seed
    `eval_seed + i`, actions from a deterministic `act(obs [1, d]) -> actions [1, ...]`.
    progress_path: if set, the curve is rewritten there atomically after each evaluation.
    """

    env_id: str
    eval_every: int
    eval_episodes: int = 10
    eval_seed: int = 10**6
    threshold: float | None = None
    progress_path: str | Path | None = None
    label: str = ""
    curve: list[dict] = field(default_factory=list)
    train_time: float = 0.0  # seconds of training, evaluation excluded
    next_eval: int = 0
    _t0: float | None = None

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        if self._t0 is not None:
            self.train_time += time.perf_counter() - self._t0
            self._t0 = None

    def maybe_eval(self, step: int, act: Callable, extra: dict | None = None) -> bool:
        """Evaluate if `step` has reached the next evaluation point. Returns True if it did."""
        if step < self.next_eval:
            return False
        self.force_eval(step, act, extra)
        while self.next_eval <= step:
            self.next_eval += self.eval_every
        return True

    def force_eval(self, step: int, act: Callable, extra: dict | None = None) -> dict:
        running = self._t0 is not None
        self.stop()
        returns = evaluate(act, self.env_id, self.eval_episodes, self.eval_seed)
        row = {
            "step": int(step),
            "time_s": round(self.train_time, 3),
            "eval_return": float(np.mean(returns)),
            "eval_std": float(np.std(returns)),
            **(extra or {}),
        }
        if self.curve and self.curve[-1]["step"] == row["step"]:
            self.curve[-1] = row  # re-evaluated after a last update at the same step
        else:
            self.curve.append(row)
        if self.progress_path is not None:
            atomic_write_json(self.progress_path, {"label": self.label, "curve": self.curve})
        if running:
            self.start()
        return row

    def time_to_threshold(self) -> tuple[int | None, float | None]:
        """(env steps, training seconds) at the first evaluation >= threshold, else (None, None)."""
        if self.threshold is None:
            return None, None
        for row in self.curve:
            if row["eval_return"] >= self.threshold:
                return row["step"], row["time_s"]
        return None, None

    def final_return(self) -> float:
        return self.curve[-1]["eval_return"] if self.curve else math.nan

    def state_dict(self) -> dict:
        return {
            "curve": list(self.curve),
            "train_time": self.train_time,
            "next_eval": self.next_eval,
        }

    def load_state_dict(self, d: dict) -> None:
        self.curve, self.train_time = list(d["curve"]), d["train_time"]
        self.next_eval = d["next_eval"]
