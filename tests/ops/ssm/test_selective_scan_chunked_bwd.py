"""The chunk-parallel backward of the Triton selective scan (`triton_scan_chunked_bwd.py`):
gradients of every input and of the last state against the single-walk backward and the
float64 reference, after either forward; and how the variant is picked."""

from __future__ import annotations

import pytest
import torch

import deepnotes.ops.ssm.triton_scan as ts
import deepnotes.ops.ssm.triton_scan_chunked_bwd as tscb
from deepnotes.ops.ssm import naive_selective_scan, selective_scan, torch_selective_scan
from tests.helpers import assert_close
from tests.ops.kernel_cases import assert_rule, cpu, cpu_only, gpu, values_and_grads
from tests.ops.ssm.scan_cases import scan_cotangents, scan_fn, scan_inputs

bf16, f16, f32 = torch.bfloat16, torch.float16, torch.float32
ALL = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
CORE = ALL[:5]

# Under the interpreter the states are saved every 16 steps (triton_scan.INTERPRET_CONFIG),
# so the chunk lengths are multiples of 16; on a GPU, of 64.
CASES = [
    # Bt, Dm, N, L, CL, arguments given, softplus, return_last_state, forward, dtype
    cpu(2, 5, 3, 37, 16, ALL, True, True, "walk", f32, id="L37-CL16-3-chunks-all"),
    cpu(1, 6, 4, 70, 32, ALL, False, False, "chunked", f32, id="L70-CL32-tiles-in-chunks"),
    cpu(1, 5, 4, 45, 16, CORE, True, True, "chunked", bf16, id="L45-CL16-core-bf16"),
    cpu(1, 4, 2, 33, 16, CORE + ("z",), False, True, "walk", bf16, id="L33-z-only-bf16"),
    cpu(1, 3, 5, 11, 32, ALL, True, True, "walk", f32, id="L11-CL32-shorter-than-a-chunk"),
    *[
        gpu(Bt, Dm, N, L, CL, args, True, last, fwd, dt, id=f"L{L}-CL{CL}-N{N}-{fwd}-{dt}")
        for Bt, Dm, N, L, CL in [
            (2, 64, 16, 63, 64),
            (2, 96, 16, 1000, 64),
            (1, 256, 16, 4096, 128),
            (1, 64, 3, 8195, 256),
            (1, 48, 64, 333, 128),
            (1, 32, 16, 32768, 128),
        ]
        for args, last, fwd in [(ALL, True, "walk"), (CORE, False, "chunked")]
        for dt in (bf16, f32)
    ],
    gpu(2, 40, 12, 1000, 192, ALL, False, True, "chunked", f16, id="N12-Dm40-CL192-f16"),
]


@pytest.mark.parametrize("Bt,Dm,N,L,CL,names,softplus,last,fwd,dtype,device", CASES)
def test_chunked_backward_matches_walk_and_reference(
    Bt, Dm, N, L, CL, names, softplus, last, fwd, dtype, device, seed
):
    x = scan_inputs(Bt, Dm, N, L, names, dtype, device, softplus)

    def run(impl, **kw):
        return scan_fn(impl, names, softplus, last, **kw)

    cot = scan_cotangents(Bt, Dm, N, L, last, dtype, device)
    vals = list(x.values())
    kern = ts.triton_selective_scan
    ours = values_and_grads(run(kern, fwd=fwd, bwd="chunked", bwd_chunk_len=CL), vals, cot)
    walk = values_and_grads(run(kern, fwd=fwd, bwd="walk"), vals, cot)
    lowp = values_and_grads(run(torch_selective_scan), vals, cot)
    ref = values_and_grads(run(naive_selective_scan), [t.double() for t in vals], cot)
    out_names = ["out"] + (["h_last"] if last else []) + [f"d{n}" for n in names]
    for name, a, w in zip(out_names, ours, walk, strict=True):
        assert a.dtype == w.dtype
        assert_close(a, w, what=f"{name} vs walk")  # the tensor's own dtype's tolerance
    assert_rule(ours, lowp, ref, out_names, dtype)


@cpu_only
def test_chunked_backward_through_the_public_function(seed, monkeypatch):
    """bwd="auto" reads $DEEPNOTES_SCAN_BWD (default: the walk); the chunked backward runs
    when asked, with the default chunk length."""
    x = scan_inputs(1, 3, 2, 40, ALL)
    calls = []
    chunked = tscb.selective_scan_bwd_chunked

    def spy(*a, **k):
        calls.append(a[6])  # the chunk length
        return chunked(*a, **k)

    monkeypatch.setattr(tscb, "selective_scan_bwd_chunked", spy)
    monkeypatch.delenv(ts.BWD_ENV_VAR, raising=False)
    assert ts.backward_variant() == "walk"
    vals, cot = list(x.values()), [torch.randn(1, 3, 40)]

    def grads(**kw):
        return values_and_grads(scan_fn(selective_scan, ALL, True, False, **kw), vals, cot)

    walk = grads(backend="triton")
    assert calls == []
    monkeypatch.setenv(ts.BWD_ENV_VAR, "chunked")
    assert ts.backward_variant() == "chunked"
    assert ts.backward_variant("walk") == "walk"  # the argument wins over the variable
    ours = grads(backend="triton")
    assert calls == [16]  # INTERPRET_CHUNK_LEN
    for a, w in zip(ours, walk, strict=True):
        assert_close(a, w, f32)
    monkeypatch.delenv(ts.BWD_ENV_VAR)
    grads(backend="triton", bwd="chunked", fwd="chunked")
    assert calls == [16, 16]


@cpu_only
def test_bad_backward_is_refused_before_any_work(seed, monkeypatch):
    """Bad variants (argument or variable) and chunk lengths raise before the forward runs."""
    x = scan_inputs(1, 3, 2, 9, ALL)
    monkeypatch.setattr(ts, "selective_scan_fwd", lambda *a, **k: pytest.fail("forward ran"))
    with pytest.raises(ValueError, match="bwd must be one of"):
        selective_scan(**x, backend="triton", bwd="parallel")
    monkeypatch.setenv(ts.BWD_ENV_VAR, "bogus")
    with pytest.raises(ValueError, match="DEEPNOTES_SCAN_BWD"):
        selective_scan(**x, backend="triton")
    monkeypatch.delenv(ts.BWD_ENV_VAR)
    with pytest.raises(ValueError, match="multiple of 16"):  # the saved states' spacing
        ts.triton_selective_scan(**x, bwd="chunked", bwd_chunk_len=24)


@cpu_only
def test_backward_parts_leave_out_exactly_their_part(seed):
    """parts="no-bc" gives the full backward's gradients but dB, dC (left at zero); "dh"
    runs the recurrence only (every gradient zero); a bad value or a chunked backward with
    parts is refused."""
    Bt, Dm, N, L = 1, 5, 3, 37
    x = scan_inputs(Bt, Dm, N, L, ALL)
    args = (*x.values(), True)
    _, h0s, _, ypre = ts.selective_scan_fwd(*args, True, False)
    dout = torch.randn(Bt, Dm, L)
    full = ts.selective_scan_bwd(*args, h0s, ypre, dout, None)
    no_bc = ts.selective_scan_bwd(*args, h0s, ypre, dout, None, parts="no-bc")
    names = ("du", "ddelta", "dA", "dB", "dC", "dD", "dz", "dbias")
    for name, f, g in zip(names, full, no_bc, strict=True):
        if name in ("dB", "dC"):
            assert f.abs().sum() > 0 and not g.any()
        else:
            assert torch.equal(f, g), name
    dh = ts.selective_scan_bwd(*args, h0s, ypre, dout, None, parts="dh")
    for name in ("dB", "dC", "dD", "dbias"):
        assert not dh[names.index(name)].any(), name
    # the recurrence's end state is kept (in dA) so that it is really computed: a_0 dh_0,
    # with dh_t = C_t dy_t + a_{t+1} dh_{t+1}, summed over the batch
    dt = torch.nn.functional.softplus(x["delta"] + x["delta_bias"][:, None])  # [Bt, Dm, L]
    a = torch.exp(dt[..., None] * x["A"][:, None, :])  # [Bt, Dm, L, N]
    dy = dout * torch.nn.functional.silu(x["z"])
    g = torch.zeros(Bt, Dm, N)
    for t in reversed(range(L)):
        g = dy[:, :, t, None] * x["C"][:, None, :, t] + g  # dh_t
        g = a[:, :, t] * g  # a_t dh_t: what reaches the state before step t
    assert_close(dh[2], g.sum(0), f32)
    with pytest.raises(ValueError, match="parts='some'"):
        ts.selective_scan_bwd(*args, h0s, ypre, dout, None, parts="some")
    with pytest.raises(ValueError, match="walk backward only"):
        ts.selective_scan_bwd(*args, h0s, ypre, dout, None, bwd="chunked", parts="dh")
