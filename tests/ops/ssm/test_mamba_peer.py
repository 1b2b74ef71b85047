"""The mamba_ssm peer (`mamba_peer.mamba_selective_scan`): its plumbing on CPU through a fake
`selective_scan_cuda` built on our reference, and on CUDA the real extension against ours."""

from __future__ import annotations

import math
import sys
import types

import pytest
import torch

from deepnotes.ops.ssm import mamba_peer, naive_selective_scan, selective_scan
from tests.helpers import TOLERANCE, assert_close, rel_rms
from tests.ops.kernel_cases import CUDA, values_and_grads
from tests.ops.ssm.scan_cases import scan_fn, scan_inputs

ALL = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
CORE = ALL[:5]


def fake_extension(calls: list) -> types.ModuleType:
    """`selective_scan_cuda` with the real one's arguments and result lists
    (csrc/selective_scan/selective_scan.cpp: `selective_scan_fwd`, `selective_scan_bwd`),
    computed by `naive_selective_scan`. B and C arrive as [Bt, 1, N, L]."""

    def fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        calls.append("fwd")
        assert B.dim() == 4 and B.shape[1] == 1 and C.dim() == 4 and C.shape[1] == 1
        Bt, Dm, L = u.shape
        N = A.shape[1]
        out, h = naive_selective_scan(
            u, delta, A, B[:, 0], C[:, 0], D, None, delta_bias, delta_softplus, True
        )
        # x: [Bt, Dm, chunks of 2048 steps, 2N], (decay, state) pairs; the state of the last
        # chunk's end is the last state. Decays are filled with NaN: they must not leak out.
        x = torch.full((Bt, Dm, math.ceil(L / 2048), 2 * N), math.nan, dtype=A.dtype)
        x[:, :, -1, 1::2] = h
        result = [out, x]
        if z is not None:
            result.append(out * torch.nn.functional.silu(z.to(out.dtype)))
        return result

    def bwd(u, delta, A, B, C, D, z, delta_bias, dout, x, out, dz, delta_softplus, recompute):
        calls.append("bwd")
        assert dz is None and recompute is False
        assert (out is None) == (z is None)
        assert x.shape[-1] == 2 * A.shape[1] and B.dim() == 4 and C.dim() == 4
        args = dict(u=u, delta=delta, A=A, B=B[:, 0], C=C[:, 0], D=D, z=z, delta_bias=delta_bias)
        given = {k: v.detach().requires_grad_() for k, v in args.items() if v is not None}
        with torch.enable_grad():
            y = naive_selective_scan(**given, delta_softplus=delta_softplus)
            grads = torch.autograd.grad(y, list(given.values()), dout)
        grads = dict(zip(given, grads, strict=True))
        result = [grads[k] for k in ("u", "delta", "A")]
        result += [grads["B"].unsqueeze(1), grads["C"].unsqueeze(1)]
        result += [grads.get("D"), grads.get("delta_bias")]  # undefined (None) when not given
        if z is not None:
            result.append(grads["z"])
        return result

    module = types.ModuleType(mamba_peer.EXTENSION)
    module.fwd, module.bwd = fwd, bwd
    return module


def test_available_names_the_missing_extension(monkeypatch):
    monkeypatch.setitem(sys.modules, mamba_peer.EXTENSION, None)  # import fails, as here
    why = mamba_peer.available()
    assert isinstance(why, str) and "selective_scan_cuda" in why
    assert "build_mamba_scan.sh" in why
    monkeypatch.setitem(sys.modules, mamba_peer.EXTENSION, fake_extension([]))
    assert mamba_peer.available() is None


@pytest.mark.parametrize(
    "names,softplus,last,L",
    [(ALL, True, True, 37), (CORE, False, False, 20), (ALL, True, True, 2100)],
    ids=["all-last", "core", "all-2chunks"],
)
def test_wrapper_through_a_fake_extension(names, softplus, last, L, monkeypatch, seed):
    """Outputs and gradients through the wrapper equal the reference's: arguments reach the
    extension in its order, B and C are given a group axis and lose it in their gradients,
    the last state is read from x, and each gradient goes back to its input."""
    calls: list = []
    monkeypatch.setitem(sys.modules, mamba_peer.EXTENSION, fake_extension(calls))
    Bt, Dm, N = 2, 3, 4
    x = scan_inputs(Bt, Dm, N, L, names, torch.float32, "cpu", softplus)
    vals = list(x.values())
    cot = [torch.randn(Bt, Dm, L)]
    if last:  # mamba_ssm passes no gradient through the last state: compare with none
        cot.append(torch.zeros(Bt, Dm, N))
    peer = values_and_grads(
        scan_fn(mamba_peer.mamba_selective_scan, names, softplus, last), vals, cot
    )
    ref = values_and_grads(scan_fn(naive_selective_scan, names, softplus, last), vals, cot)
    assert calls == ["fwd", "bwd"]
    out_names = ["out"] + (["h_last"] if last else [])
    for name, a, r in zip(out_names + [f"d{n}" for n in names], peer, ref, strict=True):
        assert a.shape == r.shape and a.dtype == r.dtype, name
        assert_close(a, r, tol=TOLERANCE[torch.float32], what=name)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("names", [ALL, CORE], ids=["all", "core"])
@pytest.mark.parametrize("L", [1000, 2500])  # 2500: two of the extension's 2048-step chunks
@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_mamba_ssm_matches_ours(dtype, names, L, seed):
    """The real extension against our kernel: each output and gradient within the shared
    tolerance of ours, or within 3x our own error against the float64 reference (both are
    approximations of it; mamba_ssm builds with --use_fast_math)."""
    why = mamba_peer.available()
    if why is not None:
        pytest.skip(why)
    Bt, Dm, N = 2, 64, 16
    last = names == ALL
    x = scan_inputs(Bt, Dm, N, L, names, dtype, "cuda", softplus=True)
    vals = list(x.values())
    cot = [torch.randn(Bt, Dm, L, device="cuda", dtype=dtype)]
    if last:  # mamba_ssm passes no gradient through the last state
        cot.append(torch.zeros(Bt, Dm, N, device="cuda"))
    peer = values_and_grads(scan_fn(mamba_peer.mamba_selective_scan, names, True, last), vals, cot)
    ours = values_and_grads(scan_fn(selective_scan, names, True, last, backend="triton"), vals, cot)
    ref = values_and_grads(
        scan_fn(naive_selective_scan, names, True, last), [t.double() for t in vals], cot
    )
    out_names = ["out"] + (["h_last"] if last else [])
    for name, p, o, r in zip(out_names + [f"d{n}" for n in names], peer, ours, ref, strict=True):
        assert p.shape == o.shape and p.dtype == o.dtype, name
        assert torch.isfinite(p).all(), f"{name}: mamba_ssm produced NaN/inf"
        tol = max(TOLERANCE[dtype], 3 * rel_rms(o, r))
        assert_close(p, o, tol=tol, what=f"{name} ({dtype}, L={L})")
