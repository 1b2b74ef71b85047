"""The sequence-parallel (segmented) linear attention against the float64 chunked form:
outputs, final state and every gradient, across segment boundaries and padding."""

from __future__ import annotations

import pytest
import torch

from deepnotes.ops.linear_attention import torch_chunk_linear_attn
from deepnotes.ops.linear_attention.triton_segmented import (
    segment_length,
    segmented_chunk_linear_attn,
)
from tests.helpers import assert_close
from tests.ops.kernel_cases import assert_rule, cpu, cpu_only, gpu, values_and_grads
from tests.ops.linear_attention.test_chunk_linear_attn import _inputs

bf16, f16, f32 = torch.bfloat16, torch.float16, torch.float32

CASES = [
    # B, H, T, K, V, normalize, feature_map, with_state, dtype, segments
    cpu(1, 2, 150, 32, 32, True, "elu1", False, f32, 3, id="T150-3seg-pad-elu1-f32"),
    cpu(1, 1, 128, 16, 48, True, None, True, bf16, 4, id="T128-4seg-state-bf16"),
    cpu(2, 1, 100, 16, 16, False, "elu1", True, f32, 2, id="unnorm-2seg-elu1-state-f32"),
    cpu(1, 1, 40, 16, 16, True, "elu1", True, f16, 8, id="short-T-fewer-segments-f16"),
    *[
        gpu(B, H, T, D, D, True, "elu1", state, bf16, n, id=f"T{T}-D{D}-s{int(state)}-{n}seg")
        for B, H, T in [(1, 4, 1000), (2, 16, 8192)]
        for D in (64, 128)
        for state in (False, True)
        for n in (4, 16)
    ],
]


def _fn(normalize, feature_map, with_state, segments):
    def fn(q, k, v, *state):
        init = tuple(state) if with_state else None
        if segments is None:  # the PyTorch chunked form (the reference)
            o, (S, z) = torch_chunk_linear_attn(
                q, k, v, normalize=normalize, feature_map=feature_map,
                initial_state=init, output_final_state=True,
            )  # fmt: skip
        else:
            o, (S, z) = segmented_chunk_linear_attn(
                q, k, v, segments=segments, normalize=normalize, feature_map=feature_map,
                initial_state=init, output_final_state=True,
            )  # fmt: skip
        return o, S, z

    return fn


@pytest.mark.parametrize("B,H,T,K,V,normalize,feature_map,with_state,dtype,segments,device", CASES)
def test_segmented_matches_reference(
    B, H, T, K, V, normalize, feature_map, with_state, dtype, segments, device, seed
):
    x = _inputs(B, H, T, K, V, feature_map, with_state, dtype, device)
    cot = [
        torch.randn(B, H, T, V, device=device, dtype=dtype),
        torch.randn(B, H, K, V, device=device, dtype=dtype),
        torch.randn(B, H, K, device=device, dtype=dtype),
    ]
    ours = values_and_grads(_fn(normalize, feature_map, with_state, segments), x, cot)
    lowp = values_and_grads(_fn(normalize, feature_map, with_state, None), x, cot)
    ref = values_and_grads(
        _fn(normalize, feature_map, with_state, None), [t.double() for t in x], cot
    )
    names = ["o", "S_T", "z_T", "dq", "dk", "dv"] + (["dS_0", "dz_0"] if with_state else [])
    assert ours[0].dtype == dtype and ours[0].shape == (B, H, T, V)
    assert_rule(ours, lowp, ref, names, dtype)


@cpu_only
def test_one_segment_is_the_one_walk_kernel(seed):
    """segments=1 runs the chunk kernel on the whole sequence from a zero state: the same
    output as the one-walk kernel."""
    from deepnotes.ops.linear_attention.triton_chunk import triton_chunk_linear_attn

    q, k, v = _inputs(1, 2, 70, 16, 16, "elu1", False, f32, "cpu")
    a, _ = segmented_chunk_linear_attn(q, k, v, segments=1, feature_map="elu1")
    b, _ = triton_chunk_linear_attn(q, k, v, feature_map="elu1")
    assert_close(a, b, tol=1e-6, what="one segment vs one walk")


def test_segment_length():
    assert segment_length(32768, 16, 64) == 2048
    assert segment_length(150, 3, 16) == 64  # ceil(50 / 16) chunks of 16
    assert segment_length(40, 8, 16) == 16  # 3 segments cover 40: fewer than asked
    with pytest.raises(ValueError, match="segments must be >= 1"):
        segment_length(100, 0, 16)
