"""Random mini-batches drawn from in-memory tensors (synthetic tasks, small data sets)."""

from __future__ import annotations

import torch


def random_batches(*tensors: torch.Tensor, batch_size: int, seed: int, device=None):
    """A zero-argument callable drawing random batches (with replacement) from tensors."""
    g = torch.Generator().manual_seed(seed)
    n = tensors[0].shape[0]

    def draw():
        idx = torch.randint(n, (batch_size,), generator=g)
        return tuple(t[idx].to(device) for t in tensors)

    return draw
