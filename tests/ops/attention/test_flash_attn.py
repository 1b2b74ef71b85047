"""flash_attn (FlashAttention-2 Triton kernels) against the float64 reference and SDPA."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepnotes.ops.attention import flash_attn, naive_softmax_attn
from deepnotes.ops.attention.flash import torch_flash_attn
from tests.helpers import assert_close, rel_rms
from tests.ops.kernel_cases import assert_rule, cpu, cpu_only, gpu, values_and_grads

NAMES = ["o", "dq", "dk", "dv"]
bf16, f16, f32 = torch.bfloat16, torch.float16, torch.float32

CASES = [
    # B, H, T_q, T_k, D, causal, dtype
    cpu(1, 2, 63, 63, 64, True, bf16, id="T63-causal-bf16"),
    cpu(1, 2, 63, 63, 128, False, f16, id="T63-D128-bidir-f16"),
    cpu(2, 1, 40, 70, 60, True, f32, id="Tq<Tk-D60-causal-f32"),
    cpu(1, 1, 70, 40, 32, True, bf16, id="Tq>Tk-causal-bf16"),
    cpu(1, 2, 33, 33, 64, False, f32, id="T33-bidir-f32"),
    *[
        gpu(B, H, T, T, D, causal, dt, id=f"T{T}-D{D}-{'causal' if causal else 'bidir'}-{dt}")
        for B, H, T in [(2, 4, 63), (1, 4, 1000), (2, 8, 2048)]
        for D in (64, 128)
        for causal in (True, False)
        for dt in (bf16, f16)
    ],
    gpu(2, 2, 300, 1000, 64, True, bf16, id="Tq<Tk-causal"),
    gpu(2, 2, 1000, 300, 128, True, bf16, id="Tq>Tk-causal"),
    gpu(1, 2, 1000, 1000, 60, True, f32, id="D60-f32"),
]


def _inputs(B, H, T_q, T_k, D, dtype, device):
    q = torch.randn(B, H, T_q, D, device=device, dtype=dtype)
    k = torch.randn(B, H, T_k, D, device=device, dtype=dtype)
    v = torch.randn(B, H, T_k, D, device=device, dtype=dtype)
    return [q, k, v]


@pytest.mark.parametrize("B,H,T_q,T_k,D,causal,dtype,device", CASES)
def test_flash_attn_matches_reference(B, H, T_q, T_k, D, causal, dtype, device, seed):
    """Outputs and all gradients vs float64; error at most 2x SDPA's in the same dtype."""
    x = _inputs(B, H, T_q, T_k, D, dtype, device)
    cot = [torch.randn(B, H, T_q, D, device=device, dtype=dtype)]
    ours = values_and_grads(
        lambda q, k, v: flash_attn(q, k, v, causal=causal, backend="triton"), x, cot
    )
    lowp = values_and_grads(lambda q, k, v: torch_flash_attn(q, k, v, causal=causal), x, cot)
    ref = values_and_grads(
        lambda q, k, v: naive_softmax_attn(q, k, v, causal=causal),
        [t.double() for t in x],
        cot,
    )
    assert ours[0].dtype == dtype
    assert_rule(ours, lowp, ref, NAMES, dtype)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_backward_is_bitwise_reproducible(seed):
    """dq has its own kernel (no atomic adds), so two runs give identical bits."""
    x = _inputs(2, 4, 1000, 1000, 128, bf16, "cuda")
    cot = [torch.randn(2, 4, 1000, 128, device="cuda", dtype=bf16)]

    def f(q, k, v):
        return flash_attn(q, k, v, causal=True, backend="triton")

    first, second = values_and_grads(f, x, cot), values_and_grads(f, x, cot)
    for name, a, b in zip(NAMES, first, second, strict=True):
        assert torch.equal(a, b), f"{name} differs between two runs"


def _fully_masked(device):
    """Causal with T_q > T_k: the first T_q - T_k queries see no key at all."""
    B, H, T_q, T_k, D = 1, 2, 50, 20, 64
    x = _inputs(B, H, T_q, T_k, D, torch.bfloat16, device)
    x = [t.requires_grad_(True) for t in x]
    o = flash_attn(*x, causal=True, backend="triton")
    o.float().sum().backward()
    assert torch.isfinite(o).all()
    assert torch.count_nonzero(o[:, :, : T_q - T_k]) == 0, "rows with no key must be 0"
    for name, t in zip("qkv", x, strict=True):
        assert torch.isfinite(t.grad).all(), f"d{name} has NaN"
    assert torch.count_nonzero(x[0].grad[:, :, : T_q - T_k]) == 0
    ref = naive_softmax_attn(*(t.detach().double() for t in x), causal=True)
    assert_close(o, ref, dtype=torch.bfloat16, what="o with fully masked rows")


@cpu_only
def test_fully_masked_rows_give_zeros_not_nan_cpu(seed):
    _fully_masked("cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fully_masked_rows_give_zeros_not_nan_gpu(seed):
    _fully_masked("cuda")


def _length_one(device):
    x = [t.requires_grad_(True) for t in _inputs(3, 2, 1, 1, 64, torch.float16, device)]
    for causal in (True, False):
        o = flash_attn(*x, causal=causal, backend="triton")
        # one key: softmax weight 1, o = v exactly; the scores get zero gradient
        assert_close(o, x[2], dtype=torch.float16, what="T=1 output")
        (g,) = torch.autograd.grad(o.float().square().sum(), [x[0]])
        assert torch.isfinite(g).all() and g.abs().max() < 1e-2


@cpu_only
def test_length_one_cpu(seed):
    _length_one("cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_length_one_gpu(seed):
    _length_one("cuda")


@pytest.mark.parametrize(
    "dtype,device",
    [cpu(bf16, id="bf16"), cpu(f16, id="f16"), gpu(bf16, id="bf16"), gpu(f16, id="f16")],
)
def test_error_at_most_twice_sdpa(dtype, device, seed):
    """FlashAttention's rule, stated on its own: forward error vs fp64 <= 2x SDPA's."""
    T = 128 if device == "cpu" else 2048
    x = _inputs(2, 2, T, T, 64, dtype, device)
    ref = naive_softmax_attn(*(t.double() for t in x), causal=True)
    ours = flash_attn(*x, causal=True, backend="triton")
    sdpa = F.scaled_dot_product_attention(*x, is_causal=True)
    assert rel_rms(ours, ref) <= 2 * rel_rms(sdpa, ref)


def test_backend_selection(seed, monkeypatch):
    x = _inputs(1, 2, 16, 16, 32, torch.float32, "cpu")
    ref = naive_softmax_attn(*x, causal=True)
    # "auto" on CPU is the PyTorch path (the interpreter is never chosen automatically)
    import deepnotes.ops.attention.triton_flash as tf

    monkeypatch.setattr(tf, "triton_flash_attn", lambda *a, **k: pytest.fail("kernel ran"))
    assert_close(flash_attn(*x, causal=True), ref, tol=1e-5)
    assert_close(flash_attn(*x, causal=True, backend="torch"), ref, tol=1e-5)
    monkeypatch.setenv("DEEPNOTES_KERNELS", "torch")
    assert_close(flash_attn(*x, causal=True), ref, tol=1e-5)
    monkeypatch.setenv("DEEPNOTES_KERNELS", "bogus")
    with pytest.raises(ValueError, match="DEEPNOTES_KERNELS"):
        flash_attn(*x, causal=True)
    with pytest.raises(ValueError, match="backend must be one of"):
        flash_attn(*x, causal=True, backend="cuda")


def test_forced_triton_explains_why_not(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    x = _inputs(1, 1, 8, 8, 32, torch.bfloat16, "cpu")
    with pytest.raises(ValueError, match="need CUDA tensors"):
        flash_attn(*x, causal=True, backend="triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    big = _inputs(1, 1, 8, 8, 256, torch.bfloat16, "cpu")
    with pytest.raises(ValueError, match="head dim 256"):
        flash_attn(*big, causal=True, backend="triton")
    with pytest.raises(ValueError, match="dtype torch.float64"):
        flash_attn(*(t.double() for t in x), causal=True, backend="triton")


def test_a_negative_scale_takes_the_pytorch_path(monkeypatch, seed):
    """The kernel takes each row's maximum of the raw scores before scaling, which needs
    scale > 0: "auto" falls back to PyTorch (still exact), a forced kernel says why."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    x = _inputs(1, 2, 16, 16, 32, torch.float32, "cpu")
    ref = naive_softmax_attn(*x, causal=True, scale=-0.3)
    assert_close(flash_attn(*x, causal=True, scale=-0.3), ref, tol=1e-5)
    with pytest.raises(ValueError, match="scale -0.3 <= 0"):
        flash_attn(*x, causal=True, scale=-0.3, backend="triton")
    from deepnotes.ops.attention.triton_flash import triton_flash_attn

    with pytest.raises(ValueError, match="scale must be > 0"):
        triton_flash_attn(*x, causal=True, scale=-0.3)
    zero = naive_softmax_attn(*x, causal=True, scale=0.0)  # uniform over the visible keys
    assert_close(flash_attn(*x, causal=True, scale=0.0), zero, tol=1e-5)
    with pytest.raises(ValueError, match="scale 0.0 <= 0"):
        flash_attn(*x, causal=True, scale=0.0, backend="triton")


def test_bad_shapes():
    q = torch.randn(1, 2, 8, 16)
    with pytest.raises(ValueError, match="head dims differ"):
        flash_attn(q, torch.randn(1, 2, 8, 32), torch.randn(1, 2, 8, 32), causal=True)
    with pytest.raises(ValueError, match=r"\[B, H, T, D\]"):
        flash_attn(q[0], q[0], q[0], causal=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_uses_the_kernel_on_cuda(monkeypatch):
    import deepnotes.ops.attention.triton_flash as tf

    calls = []
    real = tf.triton_flash_attn
    monkeypatch.setattr(tf, "triton_flash_attn", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = _inputs(1, 2, 128, 128, 64, torch.bfloat16, "cuda")
    flash_attn(*x, causal=True)
    assert calls, "auto did not pick the Triton kernel for bf16 CUDA inputs"
    flash_attn(*(t.float() for t in x), causal=True)
    assert len(calls) == 1, "auto must leave fp32 to PyTorch"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_softmax_mixer_uses_the_kernel_on_cuda(monkeypatch, seed):
    """The softmax mixer's default impl runs flash_attn's kernel on CUDA and matches SDPA."""
    import deepnotes.mixers as M
    import deepnotes.ops.attention.triton_flash as tf

    calls = []
    real = tf.triton_flash_attn
    monkeypatch.setattr(tf, "triton_flash_attn", lambda *a, **k: calls.append(1) or real(*a, **k))
    m = M.build("softmax", 256, causal=True, n_heads=4).cuda().bfloat16()
    x = torch.randn(2, 300, 256, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    y = m(x)
    assert calls, "the softmax mixer did not use the Triton kernel"
    (gx,) = torch.autograd.grad(y.float().square().sum(), [x])
    m.impl = "sdpa"
    y2 = m(x)
    (gx2,) = torch.autograd.grad(y2.float().square().sum(), [x])
    assert_close(y, y2, tol=2e-2, what="mixer output, kernel vs SDPA")
    assert_close(gx, gx2, tol=3e-2, what="mixer input gradient, kernel vs SDPA")
