"""The TMA forward (`triton_flash_tma`): the same o and lse as the pointer kernel, and the
rule against float64 (outputs and gradients; the backward is shared)."""

from __future__ import annotations

import pytest
import torch

from deepnotes.ops.attention import naive_softmax_attn
from deepnotes.ops.attention.flash import torch_flash_attn
from deepnotes.ops.attention.triton_flash import flash_attn_fwd, triton_flash_attn
from deepnotes.ops.attention.triton_flash_tma import tma_problem
from tests.helpers import TOLERANCE, assert_close
from tests.ops.kernel_cases import assert_rule, cpu, cpu_only, gpu, values_and_grads

NAMES = ["o", "dq", "dk", "dv"]
bf16, f16, f32 = torch.bfloat16, torch.float16, torch.float32

CASES = [
    # B, H, T_q, T_k, D, causal, dtype, loads
    cpu(1, 2, 63, 63, 64, True, bf16, "tma", id="T63-causal-bf16"),
    cpu(2, 1, 40, 70, 32, True, f32, "tma-ws", id="Tq<Tk-causal-f32-ws"),
    cpu(1, 1, 70, 40, 24, True, f16, "tma", id="Tq>Tk-D24-causal-f16"),
    cpu(1, 2, 33, 33, 64, False, f32, "tma-ws", id="T33-bidir-f32-ws"),
    *[
        gpu(B, H, T, T, D, causal, bf16, loads, id=f"T{T}-D{D}-{causal}-{loads}")
        for B, H, T in [(2, 4, 63), (2, 8, 2048)]
        for D in (64, 128)
        for causal in (True, False)
        for loads in ("tma", "tma-ws")
    ],
    gpu(2, 2, 300, 1000, 64, True, bf16, "tma", id="Tq<Tk-causal"),
    gpu(2, 2, 1000, 300, 128, True, f16, "tma-ws", id="Tq>Tk-causal-ws"),
    gpu(1, 2, 1000, 1000, 96, True, bf16, "tma", id="D96"),
]


def _inputs(B, H, T_q, T_k, D, dtype, device):
    return [torch.randn(B, H, T, D, device=device, dtype=dtype) for T in (T_q, T_k, T_k)]


@pytest.mark.parametrize("B,H,T_q,T_k,D,causal,dtype,loads,device", CASES)
def test_tma_forward_matches_pointer_kernel_and_reference(
    B, H, T_q, T_k, D, causal, dtype, loads, device, seed
):
    x = _inputs(B, H, T_q, T_k, D, dtype, device)
    scale = D**-0.5
    o_p, lse_p = flash_attn_fwd(*x, causal, scale)
    o_t, lse_t = flash_attn_fwd(*x, causal, scale, loads)
    # same blocks in the same order: equal up to the rounding of a different instruction order
    assert_close(o_t, o_p, tol=TOLERANCE[dtype], what=f"o {loads} vs pointer")
    finite = torch.isfinite(lse_p)
    assert torch.equal(finite, torch.isfinite(lse_t))
    assert_close(lse_t[finite], lse_p[finite], tol=TOLERANCE[torch.float32], what="lse")
    cot = [torch.randn(B, H, T_q, D, device=device, dtype=dtype)]
    ours = values_and_grads(
        lambda q, k, v: triton_flash_attn(q, k, v, causal=causal, loads=loads), x, cot
    )
    lowp = values_and_grads(lambda q, k, v: torch_flash_attn(q, k, v, causal=causal), x, cot)
    ref = values_and_grads(
        lambda q, k, v: naive_softmax_attn(q, k, v, causal=causal), [t.double() for t in x], cot
    )
    assert ours[0].dtype == dtype
    assert_rule(ours, lowp, ref, NAMES, dtype)


@cpu_only
def test_unaligned_head_dim_is_refused_with_the_reason():
    q = torch.randn(1, 1, 8, 60, dtype=bf16)  # 120-byte rows: TMA needs multiples of 16
    assert "multiple of 16" in tma_problem(q)
    with pytest.raises(ValueError, match="multiple of 16"):
        flash_attn_fwd(q, q, q, True, 0.1, "tma")
    with pytest.raises(ValueError, match="loads must be"):
        flash_attn_fwd(q, q, q, True, 0.1, "tme")
