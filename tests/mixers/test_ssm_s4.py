"""S4D / S4 mixers beyond the battery: every mode against the recurrence, both directions,
the init and discretisation options, and padding equal to truncation."""

from __future__ import annotations

import pytest
import torch

import deepnotes.mixers as M
from tests.helpers import assert_close


def build(name, causal, mode, **kw):
    kw = {"d_state": 8, "chunk_size": 16, **kw}
    m = M.build(name, 24, causal=causal, mode=mode, **kw)
    return m.double().eval()


@pytest.mark.parametrize("name", ["s4d", "s4"])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("mode", ["fft", "chunk"])
def test_modes_match_recurrence(name, causal, mode, seed):
    m = build(name, causal, mode)
    x = torch.randn(2, 50, 24, dtype=torch.float64)
    with torch.no_grad():
        assert_close(m(x), m.reference(x), what=f"{name} {mode} causal={causal}")


@pytest.mark.parametrize("kw", [{"init": "inv"}, {"disc": "bilinear"}, {"d_state": 4}])
def test_s4d_options(kw, seed):
    x = torch.randn(2, 40, 24, dtype=torch.float64)
    for mode in ("fft", "chunk"):
        m = build("s4d", True, mode, **kw)
        with torch.no_grad():
            assert_close(m(x), m.reference(x), what=f"{kw} {mode}")


@pytest.mark.parametrize("name", ["s4d", "s4"])
def test_fft_and_chunk_share_gradients(name, seed):
    """The same parameters in both modes give the same loss gradients."""
    m_fft = build(name, False, "fft")
    m_chunk = build(name, False, "chunk")
    m_chunk.load_state_dict(m_fft.state_dict())
    x = torch.randn(2, 37, 24, dtype=torch.float64)
    grads = []
    for m in (m_fft, m_chunk):
        m.zero_grad()
        m(x).square().sum().backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    for n in grads[0]:
        assert_close(grads[1][n], grads[0][n], what=f"grad {n}")


@pytest.mark.parametrize("name", ["s4d", "s4"])
@pytest.mark.parametrize("causal", [True, False])
def test_right_padding_equals_truncation(name, causal, seed):
    m = build(name, causal, "auto")
    x = torch.randn(1, 40, 24, dtype=torch.float64)
    mask = torch.ones(1, 40, dtype=torch.bool)
    mask[:, 29:] = False
    with torch.no_grad():
        assert_close(m(x, mask)[:, :29], m(x[:, :29]))


def test_state_is_constant_size(seed):
    m = build("s4", True, "auto")
    state = m.init_state(2, dtype=torch.float64)
    shape = state.x.shape
    for _ in range(5):
        _, state = m.step(torch.randn(2, 24, dtype=torch.float64), state)
    assert state.x.shape == shape == (2, 24, 8)


def test_bad_options():
    with pytest.raises(ValueError, match="d_state must be even"):
        M.build("s4d", 8, causal=True, d_state=5)
    with pytest.raises(ValueError, match="mode must be one of"):
        M.build("s4", 8, causal=True, mode="conv")
    with pytest.raises(ValueError, match="init must be one of"):
        M.build("s4d", 8, causal=True, init="legs")
    with pytest.raises(ValueError, match="step decoding needs a causal"):
        M.build("s4d", 8, causal=False).init_state(1)


# ----------------------------------------------------------------------------- half precision
@pytest.mark.parametrize("name", ["s4d", "s4"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("how", ["autocast", "module"])
@pytest.mark.parametrize("mode", ["fft", "chunk"])
def test_half_precision_runs_the_ssm_in_fp32(name, dtype, how, mode, seed):
    """fp16/bf16 (autocast, or a .half()/.bfloat16() module): forward and backward work and
    match fp32 to half-precision tolerance, because the kernel is computed in fp32."""
    ref = M.build(name, 24, causal=True, mode=mode, d_state=8, chunk_size=16)
    m = M.build(name, 24, causal=True, mode=mode, d_state=8, chunk_size=16)
    m.load_state_dict(ref.state_dict())
    x = torch.randn(2, 37, 24)
    if how == "autocast":
        xin = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=dtype):
            y = m(xin)
    else:
        m = m.to(dtype)
        xin = x.to(dtype).requires_grad_()
        y = m(xin)
        assert m.log_dt.dtype == dtype  # the parameters really are half
        # The fp32 reference gets the same rounded weights and inputs, so the comparison
        # measures the half-precision compute alone (bf16 rounding of the weights by itself
        # moved dlog_dt by up to 11% for some seeds).
        ref.load_state_dict({k: v.float() for k, v in m.state_dict().items()})
        x = xin.detach().float()
    y_ref = ref(x)
    y_ref.square().mean().backward()
    assert y.dtype == dtype
    y.float().square().mean().backward()
    assert_close(y.float(), y_ref.detach(), tol=3e-2, what=f"{name} {how} {dtype} forward")
    assert xin.grad is not None and torch.isfinite(xin.grad).all()
    for (n, p), q in zip(m.named_parameters(), ref.parameters(), strict=True):
        assert p.grad is not None and torch.isfinite(p.grad.float()).all(), n
    # The SSM's own parameters get fp32-accurate gradients up to the half-precision GLU.
    assert_close(m.log_dt.grad.float(), ref.log_dt.grad, tol=0.1, what=f"{name} dlog_dt")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_step_decoding(dtype, seed):
    m = M.build("s4d", 16, causal=True, d_state=4).to(dtype)
    x = torch.randn(1, 5, 16, dtype=dtype)
    state = m.init_state(1)
    out = []
    for t in range(5):
        y, state = m.step(x[:, t], state)
        out.append(y)
    assert out[0].dtype == dtype
    assert_close(torch.stack(out, 1).float(), m(x).float(), tol=2e-2, what="step vs forward")


def test_kernels_refuse_half_inputs():
    from deepnotes.ops.ssm.s4 import fft_conv, vandermonde_kernel

    with pytest.raises(ValueError, match=r"vandermonde_kernel: torch.float16"):
        vandermonde_kernel(torch.ones(2, dtype=torch.float16), torch.ones(2), 4)
    with pytest.raises(ValueError, match=r"fft_conv: torch.bfloat16"):
        fft_conv(torch.ones(1, 2, 4, dtype=torch.bfloat16), torch.ones(2, 4))
