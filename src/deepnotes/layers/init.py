"""Weight initialisation schemes for the language model (and anything built of Linears).

For a weight W: [fan_out, fan_in] drawn from N(0, sigma^2):
- "normal":  sigma = 0.02 (GPT-2, BERT): fixed, independent of width.
- "lecun":   sigma = 1/sqrt(fan_in) (LeCun et al. 1998): keeps Var(x W^T) = Var(x).
- "kaiming": sigma = sqrt(2/fan_in) (He et al. 2015): compensates ReLU halving the variance.
- "xavier":  sigma = sqrt(2/(fan_in + fan_out)) (Glorot & Bengio 2010): a compromise between
  the forward (fan_in) and backward (fan_out) variance.
- "t5":      sigma = 1/sqrt(fan_in) everywhere, except W_q: sigma = 1/sqrt(fan_in * d_head)
  (Mesh TensorFlow's T5 init). T5 computes softmax(q k^T) with NO 1/sqrt(d_head); with unit-
  variance inputs q then has per-component variance 1/d_head and k variance 1, so
  Var(q . k) = d_head * (1/d_head) * 1 = 1, the same as the scaled form at init.

Scaled residual init (GPT-2, Radford et al. 2019): the projection that writes into the
residual stream (attention output, FFN output) gets sigma / sqrt(2 L), so that after the 2 L
residual additions of an L-layer model the stream's variance grows by O(1), not O(L).

Only `nn.Linear` and `nn.Embedding` weights are re-drawn. Other parameters (RNN weights, SSM
A / dt / D, convolutions) keep the mixer's own init, and so does any parameter marked
`param._no_reinit = True` (mamba_ssm's convention) or any module whose mixer sets the class
attribute `own_init = True`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

INIT_SCHEMES = ("normal", "lecun", "kaiming", "xavier", "t5")

# attribute names under which a mixer keeps the projection that writes into the residual
RESIDUAL_OUT_NAMES = ("out", "out_proj", "o_proj", "proj_out", "w_out", "wo")


def init_std(scheme: str, fan_in: int, fan_out: int, std: float = 0.02) -> float:
    """The sigma of N(0, sigma^2) for a [fan_out, fan_in] weight under `scheme`."""
    if scheme == "normal":
        return std
    if scheme in ("lecun", "t5"):
        return 1.0 / math.sqrt(fan_in)
    if scheme == "kaiming":
        return math.sqrt(2.0 / fan_in)
    if scheme == "xavier":
        return math.sqrt(2.0 / (fan_in + fan_out))
    raise ValueError(f"unknown init scheme {scheme!r}; valid: {', '.join(INIT_SCHEMES)}")


def embedding_std(scheme: str, d_model: int, std: float = 0.02) -> float:
    """Token/position embedding sigma: `std` for "normal", else 1/sqrt(d_model).

    1/sqrt(d) is the fan-in of the output head that a tied embedding doubles as, so tied
    logits start with unit variance.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; valid: {', '.join(INIT_SCHEMES)}")
    return std if scheme == "normal" else 1.0 / math.sqrt(d_model)


def residual_scale(n_layers: int) -> float:
    """GPT-2's factor 1/sqrt(2 L) for projections into the residual stream."""
    return 1.0 / math.sqrt(2 * n_layers)


def _reinit_ok(p: torch.Tensor | None) -> bool:
    return p is not None and not getattr(p, "_no_reinit", False)


@torch.no_grad()
def init_linear_(linear: nn.Linear, sigma: float) -> None:
    """W ~ N(0, sigma^2), bias = 0 (both unless marked `_no_reinit`)."""
    if _reinit_ok(linear.weight):
        linear.weight.normal_(0.0, sigma)
    if _reinit_ok(linear.bias):
        linear.bias.zero_()


@torch.no_grad()
def init_linears_(module: nn.Module, scheme: str, std: float = 0.02) -> None:
    """Re-draw every nn.Linear in `module` under `scheme` (skipping own_init mixers)."""
    skip = [m for m in module.modules() if getattr(type(m), "own_init", False)]
    skipped = {id(x) for m in skip for x in m.modules()}
    for m in module.modules():
        if isinstance(m, nn.Linear) and id(m) not in skipped:
            init_linear_(m, init_std(scheme, m.in_features, m.out_features, std))


def residual_out(module: nn.Module) -> nn.Linear | None:
    """The Linear that writes a block's output into the residual stream, if it has one."""
    for name in RESIDUAL_OUT_NAMES:
        m = getattr(module, name, None)
        if isinstance(m, nn.Linear):
            return m
    return None


@torch.no_grad()
def scale_weight_(linear: nn.Linear, factor: float, rows: slice | None = None) -> None:
    """Multiply linear.weight (or rows of it) by factor, unless marked `_no_reinit`."""
    if _reinit_ok(linear.weight):
        w = linear.weight if rows is None else linear.weight[rows]
        w.mul_(factor)


def t5_query_init_(mixer: nn.Module) -> None:
    """Divide W_q's init by sqrt(d_head): T5's compensation for dropping 1/sqrt(d_head).

    Needs a multi-head mixer with a fused `qkv` projection ([3 D, D], q rows first) and
    `head_dim`, as `deepnotes.mixers.common.MultiHeadMixer` has.
    """
    qkv, head_dim = getattr(mixer, "qkv", None), getattr(mixer, "head_dim", None)
    if not isinstance(qkv, nn.Linear) or head_dim is None:
        raise ValueError(
            f"init='t5' needs a multi-head attention mixer with a fused qkv projection; "
            f"{type(mixer).__name__} has none"
        )
    d = qkv.out_features // 3
    scale_weight_(qkv, 1.0 / math.sqrt(head_dim), rows=slice(0, d))
