"""Gradient (activation) checkpointing per block (Chen et al. 2016, "Training deep nets with
sublinear memory cost").

Backward needs the activations of the forward pass. Keeping all of them costs memory
proportional to depth L times the activations inside one block (attention scores, the
4x-wide FFN hidden state, norm outputs ...). A checkpointed block keeps only its *input*;
its internals are dropped after the forward and recomputed, one block at a time, during the
backward. Memory then grows with L only by one [B, T, D] tensor per block, plus the
internals of the single block being recomputed, at the price of a second forward (~+33%
compute for forward:backward = 1:2). Grouping √L blocks per checkpoint segment balances the
two terms, giving O(√L) memory, as in the paper.

`use_reentrant=False` is the implementation PyTorch recommends: it works with inputs that
do not require grad, with keyword arguments, and with `torch.autograd.grad`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def _checkpointed_forward(module: nn.Module, forward, *args, **kwargs):
    if module.training and torch.is_grad_enabled():
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return forward(*args, **kwargs)


def set_gradient_checkpointing(blocks: Iterable[nn.Module], enabled: bool = True) -> None:
    """Recompute each block's activations in backward instead of storing them.

    Patches the instance's `forward`, so parameter names and state dicts do not change, and
    only while training with autograd on (eval and `no_grad` run the plain forward).
    """
    for block in blocks:
        patched = "forward" in block.__dict__
        if enabled and not patched:
            block.forward = functools.partial(_checkpointed_forward, block, block.forward)
        elif not enabled and patched:
            del block.forward


def is_checkpointed(block: nn.Module) -> bool:
    return "forward" in block.__dict__


def checkpoint_segments(blocks: list[nn.Module], x: torch.Tensor, segments: int) -> torch.Tensor:
    """Run blocks in sequence, storing only the input of each of `segments` groups.

    With `segments = round(sqrt(L))` stored inputs and recompute working set are both ~√L
    blocks (Chen et al. 2016, sec. 4.1). Blocks take and return one tensor.
    """
    if not 1 <= segments <= len(blocks):
        raise ValueError(f"segments must lie in [1, {len(blocks)}], got {segments}")
    bounds = torch.linspace(0, len(blocks), segments + 1).round().long().tolist()

    def run(lo: int, hi: int, h: torch.Tensor) -> torch.Tensor:
        for b in blocks[lo:hi]:
            h = b(h)
        return h

    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        x = checkpoint(run, lo, hi, x, use_reentrant=False)
    return x
