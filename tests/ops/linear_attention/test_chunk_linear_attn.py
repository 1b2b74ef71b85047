"""chunk_linear_attn's Triton kernel against the float64 chunked/recurrent references."""

from __future__ import annotations

import pytest
import torch

from deepnotes.ops.linear_attention import (
    chunk_linear_attn,
    recurrent_linear_attn,
    torch_chunk_linear_attn,
)
from tests.helpers import assert_close
from tests.ops.kernel_cases import assert_rule, cpu, cpu_only, gpu, values_and_grads

bf16, f16, f32 = torch.bfloat16, torch.float16, torch.float32

CASES = [
    # B, H, T, K, V, normalize, feature_map, with_state, dtype
    cpu(1, 2, 63, 32, 32, True, "elu1", False, bf16, id="T63-norm-elu1-bf16"),
    cpu(1, 1, 50, 32, 48, True, None, True, f32, id="T50-V48-norm-state-f32"),
    cpu(2, 1, 40, 16, 16, False, "elu1", True, f32, id="unnorm-elu1-state-f32"),
    cpu(1, 2, 63, 64, 64, False, None, False, f16, id="unnorm-f16"),
    cpu(1, 2, 1, 32, 32, False, "elu1", True, bf16, id="T1-bf16"),
    # (1, 8, 2048) at D = 128: B*H = 8, so the kernel path runs 2 segments (segments_for)
    *[
        gpu(B, H, T, D, D, norm, "elu1", state, dt, id=f"T{T}-D{D}-n{int(norm)}-s{int(state)}-{dt}")
        for B, H, T in [(2, 4, 63), (2, 4, 1000), (1, 8, 2048)]
        for D in (64, 128)
        for norm, state in [(True, False), (False, True), (True, True)]
        for dt in (bf16, f16)
    ],
    gpu(2, 2, 1000, 64, 64, True, None, True, f32, id="f32"),
    # B*H >= 128: the 128-wide value blocks used at the benchmark's sizes
    gpu(8, 16, 300, 128, 128, True, "elu1", True, bf16, id="wideV-bf16"),
    gpu(1, 2, 1000, 60, 100, True, "elu1", False, bf16, id="K60-V100"),
]


def _inputs(B, H, T, K, V, feature_map, with_state, dtype, device):
    q = torch.randn(B, H, T, K, device=device, dtype=dtype)
    k = torch.randn(B, H, T, K, device=device, dtype=dtype)
    if feature_map is None:  # the op expects feature-mapped (non-negative) q, k
        q, k = q.sigmoid(), k.sigmoid()
    v = torch.randn(B, H, T, V, device=device, dtype=dtype)
    x = [q, k, v]
    if with_state:
        x += [
            torch.rand(B, H, K, V, device=device, dtype=dtype),
            torch.rand(B, H, K, device=device, dtype=dtype) + 1.0,
        ]
    return x


def _fn(backend, normalize, feature_map, with_state):
    def fn(q, k, v, *state):
        o, (S, z) = chunk_linear_attn(
            q,
            k,
            v,
            normalize=normalize,
            feature_map=feature_map,
            backend=backend,
            initial_state=tuple(state) if with_state else None,
            output_final_state=True,
        )
        return o, S, z

    return fn


@pytest.mark.parametrize("B,H,T,K,V,normalize,feature_map,with_state,dtype,device", CASES)
def test_chunk_linear_attn_matches_reference(
    B, H, T, K, V, normalize, feature_map, with_state, dtype, device, seed
):
    """o, the final state (S, z), and gradients of q, k, v (and the initial state)."""
    x = _inputs(B, H, T, K, V, feature_map, with_state, dtype, device)
    cot = [
        torch.randn(B, H, T, V, device=device, dtype=dtype),
        torch.randn(B, H, K, V, device=device, dtype=dtype),
        torch.randn(B, H, K, device=device, dtype=dtype),
    ]
    ours = values_and_grads(_fn("triton", normalize, feature_map, with_state), x, cot)
    lowp = values_and_grads(_fn("torch", normalize, feature_map, with_state), x, cot)
    ref = values_and_grads(
        _fn("torch", normalize, feature_map, with_state), [t.double() for t in x], cot
    )
    names = ["o", "S_T", "z_T", "dq", "dk", "dv"] + (["dS_0", "dz_0"] if with_state else [])
    assert ours[0].dtype == dtype
    assert_rule(ours, lowp, ref, names, dtype)


def _prefill_then_decode(device):
    """The kernel's final state continues the sequence in the recurrent form."""
    B, H, T, K, V = 2, 2, 37, 32, 32
    q, k, v = (torch.randn(B, H, T + 5, d, device=device) for d in (K, K, V))
    o_full, _ = recurrent_linear_attn(q, k, v, feature_map="elu1")
    o_pre, state = chunk_linear_attn(
        q[:, :, :T],
        k[:, :, :T],
        v[:, :, :T],
        feature_map="elu1",
        output_final_state=True,
        backend="triton",
    )
    o_dec, _ = recurrent_linear_attn(
        q[:, :, T:], k[:, :, T:], v[:, :, T:], feature_map="elu1", initial_state=state
    )
    assert_close(torch.cat([o_pre, o_dec], 2), o_full, tol=1e-5, what="prefill + decode")


@cpu_only
def test_prefill_then_decode_cpu(seed):
    _prefill_then_decode("cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_prefill_then_decode_gpu(seed):
    _prefill_then_decode("cuda")


def test_backend_selection(seed, monkeypatch):
    q, k, v = _inputs(1, 2, 20, 8, 8, "elu1", False, torch.float32, "cpu")
    import deepnotes.ops.linear_attention.triton_chunk as tc

    monkeypatch.setattr(tc, "triton_chunk_linear_attn", lambda *a, **kw: pytest.fail("kernel"))
    ref, _ = torch_chunk_linear_attn(q, k, v, feature_map="elu1")
    assert_close(chunk_linear_attn(q, k, v, feature_map="elu1")[0], ref)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(ValueError, match="feature_map 'relu'"):
        chunk_linear_attn(q, k, v, feature_map="relu", backend="triton")
    with pytest.raises(ValueError, match="exceed"):
        big = torch.rand(1, 1, 4, 512)
        chunk_linear_attn(big, big, big, backend="triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="need CUDA tensors"):
        chunk_linear_attn(q, k, v, backend="triton")
