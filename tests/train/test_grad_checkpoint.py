"""Gradient checkpointing: same gradients, less activation memory."""

from __future__ import annotations

import copy

import pytest
import torch

from deepnotes.train import TrainConfig, Trainer, enable_gradient_checkpointing
from deepnotes.train.grad_checkpoint import (
    checkpoint_segments,
    is_checkpointed,
    set_gradient_checkpointing,
)
from deepnotes.train.lm import lm_loss
from deepnotes.utils.timing import peak_memory_bytes
from tests.train.tiny import tiny_lm


def grads(model, x, y):
    model.zero_grad()
    lm_loss(model, (x, y))[0].backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_checkpointed_blocks_give_identical_gradients(seed):
    a = tiny_lm(d=60, layers=3)
    b = copy.deepcopy(a)
    set_gradient_checkpointing(b.blocks)
    assert all(is_checkpointed(blk) for blk in b.blocks)
    assert list(a.state_dict()) == list(b.state_dict())  # names unchanged
    x, y = torch.randint(0, 32, (3, 63)), torch.randint(0, 32, (3, 63))
    ga, gb = grads(a, x, y), grads(b, x, y)
    for n in ga:
        assert torch.equal(ga[n], gb[n]), n  # recomputation repeats the same arithmetic
    set_gradient_checkpointing(b.blocks, enabled=False)
    assert not any(is_checkpointed(blk) for blk in b.blocks)


def test_segments_give_identical_gradients(seed):
    blocks = [torch.nn.Sequential(torch.nn.Linear(20, 20), torch.nn.Tanh()) for _ in range(5)]
    x = torch.randn(4, 20, requires_grad=True)

    def run(segments):
        for blk in blocks:
            blk.zero_grad()
        x.grad = None
        if segments:
            out = checkpoint_segments(blocks, x, segments)
        else:
            out = x
            for blk in blocks:
                out = blk(out)
        out.square().sum().backward()
        return [x.grad.clone(), *[p.grad.clone() for blk in blocks for p in blk.parameters()]]

    ref = run(0)
    for s in (1, 2, 5):
        assert all(torch.equal(a, b) for a, b in zip(run(s), ref, strict=True))
    with pytest.raises(ValueError, match="segments"):
        checkpoint_segments(blocks, x, 6)


def test_activation_memory_grows_slower_with_depth(seed):
    """Peak memory of forward + backward: checkpointing stores ~one [B, T, D] per block."""
    x, y = torch.randint(0, 32, (4, 128)), torch.randint(0, 32, (4, 128))

    def peak(layers, ckpt):
        torch.manual_seed(0)
        m = tiny_lm(d=64, layers=layers)
        if ckpt:
            set_gradient_checkpointing(m.blocks)
        return peak_memory_bytes(lambda: lm_loss(m, (x, y))[0].backward())

    slope_plain = (peak(6, False) - peak(2, False)) / 4
    slope_ckpt = (peak(6, True) - peak(2, True)) / 4
    assert slope_ckpt < 0.5 * slope_plain, (slope_ckpt, slope_plain)


def test_trainer_switch(seed):
    """The LM's own switch is used when it has one; otherwise `blocks` are patched."""
    m = tiny_lm()
    enable_gradient_checkpointing(m)
    assert m.gradient_checkpointing and not any(is_checkpointed(b) for b in m.blocks)

    class Plain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList(torch.nn.Linear(4, 4) for _ in range(2))

    p = Plain()
    enable_gradient_checkpointing(p)
    assert all(is_checkpointed(b) for b in p.blocks)
    with pytest.raises(ValueError, match="blocks"):
        enable_gradient_checkpointing(torch.nn.Linear(2, 2))
    x = torch.randint(0, 32, (2, 9))
    m = tiny_lm()
    hist = Trainer(m, TrainConfig(steps=2, grad_checkpointing=True, progress=False),
                   lambda: (x, x)).fit()  # fmt: skip
    assert len(hist) == 2 and m.gradient_checkpointing
