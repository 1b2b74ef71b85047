"""Adam and AdamW written out, parameter groups, and the optimizer factory.

Adam (Kingma & Ba 2015) with step t, gradient g_t and parameters θ:

    m_t = β1 m_{t-1} + (1 - β1) g_t                  first moment (momentum)
    v_t = β2 v_{t-1} + (1 - β2) g_t²                 second moment
    m̂_t = m_t / (1 - β1^t),  v̂_t = v_t / (1 - β2^t)  bias correction
    θ_t = θ_{t-1} - lr · m̂_t / (√v̂_t + ε)

Weight decay two ways:
- `Adam(weight_decay=λ)` is L2 regularisation: g_t ← g_t + λ θ_{t-1}. The decay term then
  flows through m and v, so it is divided by √v̂ like any gradient: a weight with large
  gradients (large v) is decayed less than one with small gradients.
- `AdamW(weight_decay=λ)` decouples it (Loshchilov & Hutter 2019, Algorithm 2, line 12):
  θ_t = θ_{t-1} - η_t (α m̂_t / (√v̂_t + ε) + λ θ_{t-1}). As in `torch.optim.AdamW` the
  schedule multiplier and step size are folded into one lr (η_t α = lr, and the decay is
  lr · λ · θ), so every weight shrinks by the same factor (1 - lr λ) each step, whatever
  its gradients.

`param_groups` keeps decay off norms, biases and embeddings, where shrinking toward zero is
not a sensible prior (a norm gain of 0 or an embedding of 0 is not "simpler"). A parameter
may also carry its own hyperparameters in an `_optim` dict attribute (S4's convention, e.g.
`{"lr": 1e-3, "weight_decay": 0.0}` on an SSM's A, B and log Δ): such parameters get groups
of their own; nothing in the library sets it, so by default the two groups above are all.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


class Adam(torch.optim.Optimizer):
    """Adam with optional L2 regularisation (weight_decay adds λ θ to the gradient)."""

    decoupled = False

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        if lr < 0 or eps < 0 or weight_decay < 0:
            raise ValueError(f"lr, eps and weight_decay must be >= 0: {lr}, {eps}, {weight_decay}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2) = group["lr"], group["betas"]
            eps, wd = group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise ValueError(f"{type(self).__name__} does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = int(state["step"].item())
                g = p.grad
                if wd != 0:
                    if self.decoupled:
                        p.mul_(1 - lr * wd)  # AdamW: decay θ directly, outside m and v
                    else:
                        g = g + wd * p  # Adam + L2: the decay becomes part of the gradient
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                m_hat = m / (1 - beta1**t)
                v_hat = v / (1 - beta2**t)
                p.addcdiv_(m_hat, v_hat.sqrt().add_(eps), value=-lr)
        return loss


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019, Algorithm 2)."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def _is_norm(module: nn.Module) -> bool:
    return (
        isinstance(
            module, nn.LayerNorm | nn.GroupNorm | nn.RMSNorm | nn.modules.batchnorm._BatchNorm
        )
        or "norm" in type(module).__name__.lower()
    )


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: decayed matrices, and undecayed norms, biases and embeddings.

    A parameter is left undecayed if it belongs to a normalisation layer (class name
    containing "Norm"), to an `nn.Embedding`, is named `*bias`, or has fewer than 2
    dimensions (gains, scalars). Tied weights appear once; an embedding tied to the output
    head stays undecayed. Parameters with an `_optim` dict (e.g. {"lr": 1e-3,
    "weight_decay": 0.0}) are moved into one extra group per distinct dict, whose entries
    override the group defaults (an "lr" there is that group's peak lr under any schedule).
    """
    no_decay: set[int] = set()
    for module in model.modules():
        if _is_norm(module) or isinstance(module, nn.Embedding):
            no_decay.update(id(p) for p in module.parameters(recurse=False))
    decay, keep = [], []
    own: dict[tuple, dict] = {}  # one group per distinct `_optim` dict
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        hp = getattr(p, "_optim", None)
        if hp:
            key = tuple(sorted(hp.items()))
            group = own.setdefault(key, {"params": [], "weight_decay": weight_decay, **hp})
            group["params"].append(p)
            group["name"] = "own:" + ",".join(f"{k}={v}" for k, v in key)
        elif id(p) in no_decay or name.endswith("bias") or p.dim() < 2:
            keep.append(p)
        else:
            decay.append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": keep, "weight_decay": 0.0, "name": "no_decay"},
    ]
    return [g for g in groups if g["params"]] + list(own.values())


OPTIMIZERS = ("adamw", "adamw-scratch", "adam-scratch")


def build_optimizer(
    model: nn.Module,
    name: str = "adamw",
    *,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
    weight_decay: float = 0.1,
) -> torch.optim.Optimizer:
    """'adamw' (torch, fused on CUDA, foreach elsewhere), 'adamw-scratch' or 'adam-scratch'.

    All three use `param_groups(model, weight_decay)`; for 'adam-scratch' the decay is L2.
    """
    groups = param_groups(model, weight_decay)
    if name == "adamw":
        on_cuda = all(p.is_cuda for g in groups for p in g["params"])
        impl = {"fused": True} if on_cuda else {"foreach": True}
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, **impl)
    if name == "adamw-scratch":
        return AdamW(groups, lr=lr, betas=betas, eps=eps)
    if name == "adam-scratch":
        return Adam(groups, lr=lr, betas=betas, eps=eps)
    raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")
