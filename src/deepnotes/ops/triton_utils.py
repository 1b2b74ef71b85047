"""Small pieces shared by the Triton kernels of every op family."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from deepnotes.ops.backend import interpreting


def dot_precision(dtype: torch.dtype) -> str:
    """`tl.dot` input precision: exact products for fp32 inputs (used to check the kernels
    tightly), the hardware default for fp16/bf16 (where the setting does not apply)."""
    return "ieee" if dtype == torch.float32 else "tf32"


def dot_upcast(dtype: torch.dtype) -> bool:
    """Whether `mm` casts its operands to fp32 first: only under Triton's interpreter, whose
    `tl.dot` multiplies the raw bit patterns of bf16 tensors (stored as uint16 in numpy).
    Operands are rounded to bf16 before the cast, so the numerics still match the GPU."""
    return interpreting() and dtype == torch.bfloat16


@triton.jit
def mm(a, b, acc, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """acc + a @ b (fp32 accumulation), see `dot_precision` and `dot_upcast`."""
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    else:
        return tl.dot(a, b, acc, input_precision=PRECISION)


def pow2(n: int, lo: int = 16) -> int:
    """The smallest power of two >= max(n, lo): a tile side that covers n."""
    return max(lo, triton.next_power_of_2(n))


@triton.jit
def row_dot_kernel(
    O,
    DO,
    DELTA,
    stride_ob,
    stride_oh,
    stride_ot,
    stride_db,
    stride_dh,
    stride_dt,
    H,
    T_q,
    D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """delta = rowsum(o * do) in fp32, [B, H, T_q]: the backward pre-pass of softmax attention
    (FlashAttention-2's D_i) and of normalised linear attention."""
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    offs_d = tl.arange(0, BLOCK_D)
    mask = (offs_m[:, None] < T_q) & (offs_d[None, :] < D)
    rows = offs_m[:, None]
    o_base = O + b.to(tl.int64) * stride_ob + h.to(tl.int64) * stride_oh
    do_base = DO + b.to(tl.int64) * stride_db + h.to(tl.int64) * stride_dh
    o = tl.load(o_base + rows * stride_ot + offs_d[None, :], mask=mask, other=0.0)
    do = tl.load(do_base + rows * stride_dt + offs_d[None, :], mask=mask, other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    tl.store(DELTA + bh.to(tl.int64) * T_q + offs_m, delta, mask=offs_m < T_q)
