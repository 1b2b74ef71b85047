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


def test_segments_for_the_measured_shapes():
    """The dispatch rule at the bench's shapes (B*T = 65,536, H*D = 2048): only D = 128 at
    T = 32k (B*H = 32) is cut, into 4 segments; D = 64 and more (batch, head) rows walk once."""
    from deepnotes.ops.linear_attention.triton_chunk import segments_for

    assert segments_for(2, 16, 32768, 128) == 4
    assert segments_for(8, 16, 8192, 128) == 1  # B*H = 128
    assert segments_for(32, 16, 2048, 128) == 1
    assert segments_for(2, 32, 32768, 64) == 1  # K = 64: one walk measured faster
    assert segments_for(1, 1, 1 << 20, 128) == 16  # capped at MAX_SEGMENTS
    assert segments_for(1, 2, 2048, 128) == 2  # each segment >= 16 chunks of 64
    assert segments_for(1, 2, 512, 128) == 1  # too short to cut


@cpu_only
def test_kernel_path_runs_the_segments_it_is_given(seed):
    """triton_chunk_linear_attn(segments=n) is the segmented form: the same values and
    gradients as the float64 chunked form (the interpreter's own choice is one walk)."""
    from deepnotes.ops.linear_attention.triton_chunk import triton_chunk_linear_attn

    x = _inputs(1, 2, 150, 16, 16, "elu1", False, f32, "cpu")
    cot = [torch.randn(1, 2, 150, 16)]

    def kernel(q, k, v):
        return triton_chunk_linear_attn(q, k, v, feature_map="elu1", segments=3)[0]

    def reference(q, k, v):
        return torch_chunk_linear_attn(q, k, v, feature_map="elu1")[0]

    ours = values_and_grads(kernel, x, cot)
    ref = values_and_grads(reference, [t.double() for t in x], cot)
    for a, b, name in zip(ours, ref, ["o", "dq", "dk", "dv"]):
        assert_close(a, b, tol=1e-5, what=name)
