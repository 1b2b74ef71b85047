"""Helpers shared by the toy diffusion experiments: training a small score network and wrapping
it so that samplers (which run in float64 on the CPU) can call it on any device."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import torch

from deepnotes.diffusion.toy import ScoreNet


@contextmanager
def threads(n: int):
    """Run a block with torch.set_num_threads(n): the toy tensors are tiny, and extra threads
    only contend on a busy CPU."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def train_score_net(
    loss_fn: Callable[[ScoreNet, torch.Tensor, torch.Generator], torch.Tensor],
    sample: Callable[[int, torch.Generator], torch.Tensor],
    *,
    steps: int,
    batch: int,
    lr: float,
    hidden: int,
    device: torch.device,
    seed: int,
    progress=None,
) -> tuple[ScoreNet, list[float]]:
    """Adam on `loss_fn(net, x, generator)` with fresh data `sample(batch, generator)` per step,
    cosine-decayed learning rate. Returns (net, loss per step)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = ScoreNet(2, hidden).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    losses = []
    it = range(steps) if progress is None else progress(range(steps), desc="train score net")
    for _ in it:
        x = sample(batch, g).float().to(device)
        loss = loss_fn(net, x, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return net.eval(), losses


def cpu_score_fn(net: ScoreNet, conditioning: Callable[[torch.Tensor], torch.Tensor] | None = None):
    """score_fn(x, c) on CPU float64 tensors, evaluated by `net` on its own device in float32.
    `conditioning` maps the sampler's second argument (t or sigma) to the net's sigma."""
    dev = next(net.parameters()).device

    def score_fn(x, c):  # differentiable in x: the likelihood's trace needs it
        c = torch.as_tensor(c, dtype=x.dtype).expand(x.shape[0])
        sigma = c if conditioning is None else conditioning(c)
        return net(x.to(dev, torch.float32), sigma.to(dev, torch.float32)).to(x)

    return score_fn
