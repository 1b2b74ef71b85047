"""Learning-rate schedules as LambdaLR multipliers (picklable, so they checkpoint cleanly).

Warm-up + cosine (the GPT-3 / nanoGPT schedule): for optimizer step s (0-based),

    f(s) = (s + 1) / W                                       s < W   (linear warm-up)
    f(s) = r + (1 - r) · ½ (1 + cos(π · (s - W) / (S - W)))  W <= s <= S
    f(s) = r                                                 s > S

with W warm-up steps, S total steps and r = min_lr / lr. The warm-up keeps Adam's first,
poorly estimated second moments from producing huge steps; the cosine anneals to r · lr.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class WarmupCosine:
    """Multiplier f(step) of the base lr: linear warm-up, then cosine decay to min_ratio."""

    warmup: int  # W: steps of linear warm-up (0 = none)
    total: int  # S: step at which the cosine reaches min_ratio
    min_ratio: float = 0.1  # r = min_lr / lr
    decay: str = "cosine"  # "cosine" | "linear" | "constant" after the warm-up

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.total < 1:
            raise ValueError(f"need warmup >= 0 and total >= 1, got {self.warmup}, {self.total}")
        if not 0.0 <= self.min_ratio <= 1.0:
            raise ValueError(f"min_ratio must lie in [0, 1], got {self.min_ratio}")
        if self.decay not in ("cosine", "linear", "constant"):
            raise ValueError(f"decay must be cosine, linear or constant, got {self.decay!r}")

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.decay == "constant":
            return 1.0
        span = max(1, self.total - self.warmup)
        progress = min(1.0, (step - self.warmup) / span)
        if self.decay == "linear":
            shape = 1.0 - progress
        else:
            shape = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_ratio + (1.0 - self.min_ratio) * shape


def build_scheduler(
    optimizer: torch.optim.Optimizer, schedule: WarmupCosine
) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR over every param group; call `.step()` once after each optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
