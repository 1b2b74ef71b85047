"""Norms, activations and FFN blocks against their written-out definitions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepnotes.layers.activations import ACTIVATIONS, GLU_GATES, derivative
from deepnotes.layers.ffn import FFN_KINDS, GLUFFN, MLP, build_ffn, ffn_hidden
from deepnotes.layers.norms import RMSNorm, build_norm, naive_rms_norm
from tests.helpers import assert_close


@pytest.mark.parametrize("D", [60, 64])
def test_rmsnorm_matches_definition(D, seed):
    norm = RMSNorm(D).double()
    with torch.no_grad():
        norm.weight.copy_(torch.randn(D))
    x = torch.randn(3, 7, D, dtype=torch.float64) * 3 + 1
    ms = x.square().mean(-1, keepdim=True)
    expected = x / torch.sqrt(ms + norm.eps) * norm.weight
    assert_close(norm(x), expected, what="RMSNorm")
    assert_close(naive_rms_norm(x, norm.weight, norm.eps), expected, what="naive_rms_norm")


def test_rmsnorm_bf16_computes_in_fp32(seed):
    x = torch.randn(4, 64, dtype=torch.bfloat16) * 100
    y = RMSNorm(64)(x)
    assert y.dtype == torch.bfloat16
    assert_close(y, naive_rms_norm(x.double(), None, 1e-6), dtype=torch.bfloat16)


def test_build_norm_kinds():
    assert isinstance(build_norm("layernorm", 8), torch.nn.LayerNorm)
    assert isinstance(build_norm("rmsnorm", 8), RMSNorm)
    with pytest.raises(ValueError, match="unknown norm"):
        build_norm("batchnorm", 8)


@pytest.mark.parametrize("name", ["relu", "gelu", "silu", "sigmoid", "tanh"])
def test_activation_derivatives(name, seed):
    x = torch.randn(101, dtype=torch.float64) * 3
    closed = {
        "relu": (x > 0).double(),
        "gelu": torch.special.ndtr(x) + x * torch.exp(-0.5 * x**2) / (2 * torch.pi) ** 0.5,
        "silu": torch.sigmoid(x) * (1 + x * (1 - torch.sigmoid(x))),
        "sigmoid": torch.sigmoid(x) * (1 - torch.sigmoid(x)),
        "tanh": 1 - torch.tanh(x) ** 2,
    }[name]
    assert_close(derivative(name, x), closed, what=f"d{name}/dx")


def test_step_activation_zero_derivative():
    x = torch.tensor([-1.0, 0.5, 2.0])
    assert torch.equal(ACTIVATIONS["step"](x), torch.tensor([0.0, 1.0, 1.0]))
    assert torch.count_nonzero(derivative("step", x)) == 0


@pytest.mark.parametrize("kind", FFN_KINDS)
@pytest.mark.parametrize("D", [60, 64])
def test_ffn_matches_formula(kind, D, seed):
    ffn = build_ffn(kind, D, bias=True).double()
    x = torch.randn(2, 5, D, dtype=torch.float64)
    W1, b1 = ffn.w_in.weight, ffn.w_in.bias
    W2, b2 = ffn.w_out.weight, ffn.w_out.bias
    h = x @ W1.T + b1
    if kind in GLU_GATES:
        assert isinstance(ffn, GLUFFN)
        a, b = h.chunk(2, -1)
        gate = {
            "glu": torch.sigmoid,
            "bilinear": lambda t: t,
            "reglu": F.relu,
            "geglu": F.gelu,
            "swiglu": F.silu,
        }[kind]
        expected = (gate(a) * b) @ W2.T + b2
    else:
        assert isinstance(ffn, MLP)
        expected = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu}[kind](h) @ W2.T + b2
    assert_close(ffn(x), expected, what=f"{kind} ffn")


@pytest.mark.parametrize("D", [60, 64, 256])
def test_glu_hidden_matches_mlp_params(D):
    """Shazeer 2020: GLU hidden = 2/3 of the MLP's, so parameter counts agree (to rounding)."""
    n = lambda m: sum(p.numel() for p in m.parameters())
    mlp = n(build_ffn("gelu", D))
    for kind in GLU_GATES:
        glu = n(build_ffn(kind, D))
        assert abs(glu - mlp) <= 3 * D, (kind, glu, mlp)
    assert ffn_hidden("swiglu", 768, multiple_of=64) % 64 == 0


def test_bad_ffn_kind():
    with pytest.raises(ValueError, match="unknown ffn"):
        build_ffn("tanhglu", 8)
