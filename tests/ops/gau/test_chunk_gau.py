"""chunk_gau's Triton kernels against the explicit float64 T x T reference."""

from __future__ import annotations

import pytest
import torch

from deepnotes.ops.gau import chunk_gau, naive_gau, torch_chunk_gau
from tests.ops.kernel_cases import assert_rule, cpu, gpu, values_and_grads

bf16, f16, f32 = torch.bfloat16, torch.float16, torch.float32

CASES = [
    # B, T, S, E, chunk_size, causal, dtype
    cpu(1, 63, 32, 48, 32, True, bf16, id="T63-causal-bf16"),
    cpu(2, 50, 16, 32, 16, False, f32, id="T50-bidir-f32"),
    cpu(1, 40, 32, 16, 16, True, f16, id="T40-causal-f16"),
    cpu(1, 1, 16, 16, 16, True, f32, id="T1"),
    *[
        gpu(B, T, 128, E, C, causal, dt, id=f"T{T}-E{E}-C{C}-{'c' if causal else 'nc'}-{dt}")
        for B, T in [(2, 63), (2, 1000), (1, 4096)]
        for E, C in [(256, 128), (512, 256)]
        for causal in (True, False)
        for dt in (bf16, f16)
    ],
    gpu(1, 1000, 100, 200, 64, True, f32, id="S100-E200-f32"),
]


@pytest.mark.parametrize("B,T,S,E,C,causal,dtype,device", CASES)
def test_chunk_gau_matches_reference(B, T, S, E, C, causal, dtype, device, seed):
    x = [torch.randn(B, T, S, device=device, dtype=dtype) for _ in range(4)]
    x.append(torch.randn(B, T, E, device=device, dtype=dtype))
    cot = [torch.randn(B, T, E, device=device, dtype=dtype)]
    ours = values_and_grads(
        lambda *a: chunk_gau(*a, chunk_size=C, causal=causal, backend="triton"), x, cot
    )
    lowp = values_and_grads(lambda *a: torch_chunk_gau(*a, chunk_size=C, causal=causal), x, cot)
    ref = values_and_grads(
        lambda *a: naive_gau(*a, chunk_size=C, causal=causal), [t.double() for t in x], cot
    )
    assert ours[0].dtype == dtype
    assert_rule(ours, lowp, ref, ["o", "dq_quad", "dk_quad", "dq_lin", "dk_lin", "dv"], dtype)


def test_backend_selection(seed, monkeypatch):
    x = [torch.randn(1, 20, 8) for _ in range(4)] + [torch.randn(1, 20, 12)]
    import deepnotes.ops.gau.triton_chunk as tc

    monkeypatch.setattr(tc, "triton_chunk_gau", lambda *a, **k: pytest.fail("kernel ran"))
    ref = torch_chunk_gau(*x, chunk_size=16, causal=True)
    torch.testing.assert_close(chunk_gau(*x, chunk_size=16, causal=True), ref)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(ValueError, match="chunk_size 12 is not a power of two"):
        chunk_gau(*x, chunk_size=12, causal=True, backend="triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="need CUDA tensors"):
        chunk_gau(*x, chunk_size=16, causal=True, backend="triton")


PAPER_CASES = [c for c in CASES if c.id in ("T63-causal-bf16", "T50-bidir-f32")] + [
    gpu(2, 1000, 128, 256, 128, causal, bf16, id=f"paper-T1000-{'c' if causal else 'nc'}")
    for causal in (True, False)
]


@pytest.mark.parametrize("B,T,S,E,C,causal,dtype,device", PAPER_CASES)
def test_chunk_gau_paper_scaling_matches_reference(B, T, S, E, C, causal, dtype, device, seed):
    """scaling="paper" through the Triton kernels (rescaled inputs, output times n_i)."""
    x = [torch.randn(B, T, S, device=device, dtype=dtype) for _ in range(4)]
    x.append(torch.randn(B, T, E, device=device, dtype=dtype))
    cot = [torch.randn(B, T, E, device=device, dtype=dtype)]
    kw = dict(chunk_size=C, causal=causal, scaling="paper")
    ours = values_and_grads(lambda *a: chunk_gau(*a, backend="triton", **kw), x, cot)
    lowp = values_and_grads(lambda *a: torch_chunk_gau(*a, **kw), x, cot)
    ref = values_and_grads(lambda *a: naive_gau(*a, **kw), [t.double() for t in x], cot)
    assert ours[0].dtype == dtype
    assert_rule(ours, lowp, ref, ["o", "dq_quad", "dk_quad", "dq_lin", "dk_lin", "dv"], dtype)
