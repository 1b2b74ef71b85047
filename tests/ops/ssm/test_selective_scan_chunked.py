"""The chunk-parallel (two-level) forward of the Triton selective scan, under the interpreter:
outputs and saved tensors against the step-by-step forward (v3) and the float64 reference,
gradients through the shared backward."""

from __future__ import annotations

import pytest
import torch

import deepnotes.ops.ssm.triton_scan as ts
import deepnotes.ops.ssm.triton_scan_chunked as tsc
from deepnotes.ops.ssm import naive_selective_scan, selective_scan
from tests.helpers import assert_close
from tests.ops.kernel_cases import assert_rule, cpu_only, values_and_grads
from tests.ops.ssm.scan_cases import scan_fn, scan_inputs

pytestmark = cpu_only

bf16, f32 = torch.bfloat16, torch.float32
ALL = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
CORE = ALL[:5]


def _fwd(x, softplus, fwd, chunk_len=None, save=True, last=True):
    """triton_scan.selective_scan_fwd on the named inputs (absent ones None)."""
    args = [x.get(k) for k in ALL]
    return ts.selective_scan_fwd(*args, softplus, save, last, fwd, chunk_len)


FWD_CASES = [
    # Bt, Dm, N, L, CL, arguments given, softplus
    pytest.param(2, 5, 6, 37, 8, ALL, True, id="L37-CL8-many-chunks"),
    pytest.param(1, 4, 3, 37, 24, ALL, True, id="L37-CL24-saves-inside-chunks"),
    pytest.param(1, 3, 4, 11, 16, ALL, True, id="L11-CL16-shorter-than-a-chunk"),
    pytest.param(1, 4, 3, 16, 16, CORE, False, id="L16-CL16-one-chunk"),
    pytest.param(1, 3, 2, 75, 4, CORE, True, id="L75-CL4-19-chunks"),
    pytest.param(2, 3, 5, 21, 8, ("u", "delta", "A", "B", "C", "D"), False, id="D-only"),
    pytest.param(1, 6, 4, 30, 8, ("u", "delta", "A", "B", "C", "z"), True, id="z-only"),
    pytest.param(1, 3, 4, 19, 8, CORE + ("delta_bias",), True, id="bias-only"),
]


@pytest.mark.parametrize("Bt,Dm,N,L,CL,names,softplus", FWD_CASES)
def test_chunked_forward_matches_walk_and_reference(Bt, Dm, N, L, CL, names, softplus, seed):
    x = scan_inputs(Bt, Dm, N, L, names, softplus=softplus)
    out, h0s, hlast, ypre = _fwd(x, softplus, "chunked", CL)
    out3, h0s3, hlast3, ypre3 = _fwd(x, softplus, "walk")
    ref, href = naive_selective_scan(
        **{k: v.double() for k, v in x.items()}, delta_softplus=softplus, return_last_state=True
    )
    assert_close(out, ref, f32, what="out vs reference")
    assert_close(hlast, href, f32, what="last state vs reference")
    assert_close(out, out3, f32, what="out vs walk")
    assert_close(hlast, hlast3, f32, what="last state vs walk")
    # the tensors the backward reads: states every SAVE_EVERY steps, y before the gate
    assert h0s.shape == h0s3.shape
    assert_close(h0s, h0s3, f32, what="saved states vs walk")
    assert (ypre is None) == (ypre3 is None) == ("z" not in names)
    if ypre is not None:
        assert_close(ypre, ypre3, f32, what="y before the gate vs walk")


def test_chunked_forward_without_saving(seed):
    """Inference: nothing saved, no last state; the output unchanged."""
    x = scan_inputs(1, 4, 3, 23, ALL)
    out, h0s, hlast, ypre = _fwd(x, True, "chunked", 8, save=False, last=False)
    assert h0s is None and hlast is None and ypre is None
    assert_close(out, _fwd(x, True, "walk", save=False, last=False)[0], f32)


GRAD_CASES = [
    # Bt, Dm, N, L, CL, arguments given, softplus, return_last_state
    pytest.param(2, 4, 5, 37, 8, ALL, True, True, id="L37-CL8-all-last"),
    pytest.param(1, 5, 4, 13, 16, ALL, True, False, id="L13-CL16-one-short-chunk"),
    pytest.param(1, 3, 3, 40, 12, CORE, False, True, id="L40-CL12-core"),
]


@pytest.mark.parametrize("Bt,Dm,N,L,CL,names,softplus,last", GRAD_CASES)
def test_chunked_gradients(Bt, Dm, N, L, CL, names, softplus, last, seed):
    """Gradients through the existing backward: equal to the walk's (same saved tensors) and
    to the float64 reference by the kernel tests' rule."""
    x = scan_inputs(Bt, Dm, N, L, names, softplus=softplus)

    def run(impl, **kw):
        return scan_fn(impl, names, softplus, last, **kw)

    cot = [torch.randn(Bt, Dm, L)] + ([torch.randn(Bt, Dm, N)] if last else [])
    vals = list(x.values())
    ts_chunked = run(ts.triton_selective_scan, fwd="chunked", chunk_len=CL)
    ours = values_and_grads(ts_chunked, vals, cot)
    walk = values_and_grads(run(selective_scan, backend="triton", fwd="walk"), vals, cot)
    ref = values_and_grads(run(naive_selective_scan), [t.double() for t in vals], cot)
    out_names = ["out"] + (["h_last"] if last else []) + [f"d{n}" for n in names]
    for name, a, w in zip(out_names, ours, walk, strict=True):
        assert_close(a, w, f32, what=f"{name} vs walk")
    assert_rule(ours, walk, ref, out_names, f32)


@pytest.mark.parametrize("split", [1, 4])
def test_chunked_state_split(split, seed, monkeypatch):
    """States split over 1 or 4 lane groups (N = 6, padded to 8), as the autotuner may pick."""
    monkeypatch.setattr(tsc, "INTERPRET_SPLIT", split)
    x = scan_inputs(1, 5, 6, 29, ALL)
    out, h0s, hlast, ypre = _fwd(x, True, "chunked", 8)
    for a, b, what in zip((out, h0s, hlast, ypre), _fwd(x, True, "walk"), ("out", "h0s", "h", "y")):
        assert_close(a, b, f32, what=what)


def test_chunked_bf16(seed):
    """bf16 inputs: tiles of 8 steps (one 16-byte load), fp32 parameters."""
    x = scan_inputs(1, 4, 4, 35, ALL, dtype=bf16)
    out, _, hlast, _ = _fwd(x, True, "chunked", 16)
    out3, _, hlast3, _ = _fwd(x, True, "walk")
    assert out.dtype == bf16
    assert_close(out, out3, bf16, what="out vs walk")
    assert_close(hlast, hlast3, f32, what="last state vs walk")


def test_forward_selection(seed, monkeypatch):
    """fwd="auto" reads $DEEPNOTES_SCAN_FWD (default: the walk); bad values and chunk lengths
    are refused."""
    x = scan_inputs(1, 3, 2, 9, ALL)
    calls = []
    chunked = ts.selective_scan_fwd_chunked

    def spy(*a, **k):
        calls.append(a[-1])  # chunk_len
        return chunked(*a, **k)

    monkeypatch.setattr(ts, "selective_scan_fwd_chunked", spy)
    monkeypatch.delenv(ts.FWD_ENV_VAR, raising=False)
    assert ts.forward_variant() == "walk"
    y_walk = selective_scan(**x, backend="triton")
    assert calls == []
    monkeypatch.setenv(ts.FWD_ENV_VAR, "chunked")
    assert ts.forward_variant() == "chunked"
    y_chunked = selective_scan(**x, backend="triton")
    assert calls == [None]
    assert_close(y_chunked, y_walk, f32)
    assert ts.forward_variant("walk") == "walk"  # the argument wins over the variable
    monkeypatch.setenv(ts.FWD_ENV_VAR, "bogus")
    with pytest.raises(ValueError, match="DEEPNOTES_SCAN_FWD"):
        selective_scan(**x, backend="triton")
    with pytest.raises(ValueError, match="fwd must be one of"):
        selective_scan(**x, backend="triton", fwd="parallel")
    with pytest.raises(ValueError, match="multiple of 4"):
        ts.triton_selective_scan(**x, fwd="chunked", chunk_len=6)


def test_chunk_length_caps_the_grid(monkeypatch):
    """Too many chunks for the grid's second axis: the chunk length doubles."""
    monkeypatch.setattr(tsc, "MAX_CHUNKS", 4)
    assert tsc.chunk_length(100, 4, 8) == 32
    assert tsc.chunk_length(30, 4, 8) == 8
