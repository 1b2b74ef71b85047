"""Activation functions, from the threshold unit to the gates of the GLU family.

- step(x)  = 1[x > 0]: the perceptron's threshold; zero gradient almost everywhere.
- sigmoid(x) = 1 / (1 + e^-x): smooth, but saturates on both sides (vanishing gradients).
- tanh(x): a zero-centred sigmoid, still saturating.
- relu(x) = max(x, 0): no saturation for x > 0, cheap; dead for x < 0.
- gelu(x) = x * Phi(x) (Hendrycks & Gimpel 2016), Phi the standard normal CDF: a smooth relu
  that weights x by how likely it is to be positive.
- silu(x) = swish(x) = x * sigmoid(x) (Ramachandran et al. 2017; Elfwing et al. 2018).

GLU variants (Dauphin et al. 2017; Shazeer 2020) gate one linear projection with another:
FFN_GLU(x) = (act(x W) * (x V)) W2, with act = sigmoid (GLU), relu (ReGLU), gelu (GeGLU),
silu (SwiGLU) or the identity (bilinear). `GLU_GATES` maps each name to its gate.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def step(x: torch.Tensor) -> torch.Tensor:
    return (x > 0).to(x.dtype)


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "step": step,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": F.relu,
    "gelu": F.gelu,  # exact erf form, as in BERT/GPT-2 papers (GPT-2 code uses the tanh fit)
    "silu": F.silu,
    "identity": identity,
}

# GLU variant -> gate activation (Shazeer 2020, table 1)
GLU_GATES: dict[str, str] = {
    "glu": "sigmoid",
    "bilinear": "identity",
    "reglu": "relu",
    "geglu": "gelu",
    "swiglu": "silu",
}


def get_activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}") from None


def derivative(name: str, x: torch.Tensor) -> torch.Tensor:
    """d act(x) / dx elementwise, by autograd (the step function's is 0 away from 0)."""
    x = x.detach().double().requires_grad_(True)
    y = get_activation(name)(x)
    if not y.requires_grad:  # step: piecewise constant
        return torch.zeros_like(x)
    (g,) = torch.autograd.grad(y.sum(), x)
    return g
