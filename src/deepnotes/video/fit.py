"""A small supervised loop for the video classifiers (clips or stacked flow in, class out).

AdamW with a cosine learning rate, optional wall-clock cap; data stays on the CPU and is
moved to the device batch by batch, so the same code serves the CPU and GPU presets.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def train_classifier(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch: int,
    lr: float,
    device: torch.device | str = "cpu",
    weight_decay: float = 0.05,
    max_seconds: float | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: Callable | None = None,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Fit `model(x_batch) -> logits` to y. Returns {"loss": per-step losses, "seconds": ...}.

    transform: applied to each training batch (e.g. pick one frame), on the device.
    """
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y need the same positive length, got {len(x)}, {len(y)}")
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(x) / batch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    gen = torch.Generator().manual_seed(seed)
    losses, t0 = [], time.perf_counter()
    bar = progress(total=steps) if progress else None
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(batch):
            xb, yb = x[idx].to(device), y[idx].to(device)
            if transform is not None:
                xb = transform(xb)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
                break
        else:
            continue
        break
    if bar is not None:
        bar.close()
    return {"loss": losses, "seconds": [time.perf_counter() - t0]}


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, *, batch: int = 64, device="cpu") -> torch.Tensor:
    """Logits of `model` over x in eval mode, on the CPU: [N, K]."""
    model.to(device).eval()
    return torch.cat([model(xb.to(device)).float().cpu() for xb in x.split(batch)])
