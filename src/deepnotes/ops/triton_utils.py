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
