"""Selective scan: the chunked forms (parallel Hillis-Steele and sequential chunks) vs the
sequential reference, and the reference vs the closed-form sum it implements."""

from __future__ import annotations

import pytest
import torch

from deepnotes.ops.ssm import naive_selective_scan, selective_scan, torch_selective_scan
from tests.helpers import assert_close


def make_inputs(Bt, Dm, N, L, dtype=torch.float64, requires_grad=False):
    """Realistic ranges: delta ~ softplus scale, A = -exp(.) as Mamba's S4D-real init."""
    u = torch.randn(Bt, Dm, L, dtype=dtype)
    delta = torch.randn(Bt, Dm, L, dtype=dtype) * 0.5 - 1.0
    A = -torch.exp(torch.randn(Dm, N, dtype=dtype) * 0.5)
    B = torch.randn(Bt, N, L, dtype=dtype)
    C = torch.randn(Bt, N, L, dtype=dtype)
    D = torch.randn(Dm, dtype=dtype)
    z = torch.randn(Bt, Dm, L, dtype=dtype)
    delta_bias = torch.randn(Dm, dtype=dtype) * 0.3
    ts = dict(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias)
    if requires_grad:
        for t in ts.values():
            t.requires_grad_(True)
    return ts


def closed_form(u, delta, A, B, C):
    """y_t = sum_{s<=t} sum_n C_t[n] exp(A[n] sum_{s<r<=t} delta_r) delta_s B_s[n] u_s.

    The explicit O(L^2) unrolling of the recurrence (no D, z, bias; delta used as given).
    """
    cum = delta.cumsum(-1)  # [Bt, Dm, L]
    gap = cum[..., :, None] - cum[..., None, :]  # [Bt, Dm, t, s]
    L = u.shape[-1]
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    decay = torch.exp(gap[..., None] * A[None, :, None, None, :])  # [Bt, Dm, t, s, N]
    decay = decay * causal[..., None]
    w = torch.einsum("bdtsn,bnt,bns->bdts", decay, C, B)
    return torch.einsum("bdts,bds->bdt", w, delta * u)


@pytest.mark.parametrize("L", [1, 7, 33])
def test_reference_matches_closed_form(L, seed):
    x = make_inputs(2, 5, 3, L)
    y = naive_selective_scan(x["u"], x["delta"].exp(), x["A"], x["B"], x["C"])
    assert_close(y, closed_form(x["u"], x["delta"].exp(), x["A"], x["B"], x["C"]))


ALGOS = ["parallel", "sequential", "recurrent"]


@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("L,chunk", [(1, 64), (63, 64), (64, 16), (130, 64), (100, 7)])
def test_chunked_matches_reference_fp64(L, chunk, algorithm, seed):
    x = make_inputs(2, 6, 5, L)
    kw = dict(delta_softplus=True, return_last_state=True)
    y_ref, h_ref = naive_selective_scan(**x, **kw)
    y, h = torch_selective_scan(**x, **kw, chunk_size=chunk, algorithm=algorithm)
    assert_close(y, y_ref, what="y")
    assert_close(h, h_ref, what="last state")


@pytest.mark.parametrize("algorithm", ALGOS)
def test_chunked_matches_reference_fp32(algorithm, seed):
    x = make_inputs(2, 8, 16, 150, dtype=torch.float32)
    y_ref = naive_selective_scan(**x, delta_softplus=True)
    y = torch_selective_scan(**x, delta_softplus=True, algorithm=algorithm)
    assert_close(y, y_ref, what="fp32 y")


def test_optional_arguments(seed):
    """Without D, z and bias the two forms still agree, and D / z act as documented."""
    x = make_inputs(1, 4, 3, 41)
    core = {k: x[k] for k in ("u", "delta", "A", "B", "C")}
    y0 = naive_selective_scan(**core)
    assert_close(torch_selective_scan(**core, chunk_size=8), y0)
    y_dz = naive_selective_scan(**core, D=x["D"], z=x["z"])
    expected = (y0 + x["u"] * x["D"][:, None]) * torch.nn.functional.silu(x["z"])
    assert_close(y_dz, expected, what="D skip and silu(z) gate")


@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("L,chunk", [(37, 16), (64, 64)])
def test_gradients_match(L, chunk, algorithm, seed):
    x = make_inputs(2, 4, 3, L, requires_grad=True)
    kw = dict(delta_softplus=True, return_last_state=True)
    y_ref, h_ref = naive_selective_scan(**x, **kw)
    y, h = torch_selective_scan(**x, **kw, chunk_size=chunk, algorithm=algorithm)
    gy, gh = torch.randn_like(y), torch.randn_like(h)
    names = list(x)
    g_ref = torch.autograd.grad((y_ref * gy).sum() + (h_ref * gh).sum(), list(x.values()))
    g = torch.autograd.grad((y * gy).sum() + (h * gh).sum(), list(x.values()))
    for n, a, b in zip(names, g, g_ref, strict=True):
        assert_close(a, b, what=f"grad {n}")


@pytest.mark.parametrize("algorithm", ALGOS)
def test_gradcheck_chunked(algorithm, seed):
    x = make_inputs(1, 2, 2, 9, requires_grad=True)
    f = lambda *args: torch_selective_scan(
        *args, delta_softplus=True, chunk_size=4, algorithm=algorithm
    )
    order = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
    assert torch.autograd.gradcheck(f, tuple(x[k] for k in order))


def test_half_precision_accumulates_in_fp32(seed):
    x = make_inputs(1, 4, 4, 50, dtype=torch.float32)
    y32 = torch_selective_scan(**x, delta_softplus=True)
    xb = {k: v.bfloat16() for k, v in x.items()}
    yb = torch_selective_scan(**xb, delta_softplus=True)
    assert yb.dtype == torch.bfloat16
    assert_close(yb, y32, tol=3e-2, what="bf16 inputs")


def test_public_dispatch(seed, monkeypatch):
    x = make_inputs(1, 3, 2, 20)
    assert_close(selective_scan(**x), torch_selective_scan(**x))
    assert_close(selective_scan(**x, backend="torch"), naive_selective_scan(**x))
    with pytest.raises(ValueError, match="backend='triton' cannot run here"):
        selective_scan(**x, backend="triton")
    with pytest.raises(ValueError, match="backend must be one of"):
        selective_scan(**x, backend="cuda")
    monkeypatch.setenv("DEEPNOTES_KERNELS", "bogus")
    with pytest.raises(ValueError, match="DEEPNOTES_KERNELS"):
        selective_scan(**x)


@pytest.mark.parametrize(
    "field,bad,match",
    [
        ("u", torch.randn(2, 3), "u must be"),
        ("delta", torch.randn(1, 3, 5), "delta must match"),
        ("A", torch.randn(4, 2), "A must be"),
        ("B", torch.randn(1, 2, 7), "B must be"),
        ("C", torch.randn(1, 3, 8), "C must be"),
        ("D", torch.randn(2), "D must be"),
        ("z", torch.randn(1, 3, 7), "z must match"),
    ],
)
def test_bad_shapes(field, bad, match):
    x = make_inputs(1, 3, 2, 8, dtype=torch.float32)
    x[field] = bad
    for fn in (naive_selective_scan, torch_selective_scan):
        with pytest.raises(ValueError, match=match):
            fn(**x)
