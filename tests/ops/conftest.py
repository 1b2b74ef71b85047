"""Kernel tests run on CPU under Triton's interpreter (TRITON_INTERPRET=1) and on CUDA.

The interpreter (Triton 3.9) converts fp32 -> bf16 by truncation, where the GPU rounds to
nearest even; a truncating cast doubles the rounding error of every bf16 intermediate and
would make the CPU checks looser than the GPU's. We give the interpreter the GPU's rounding.
"""

from __future__ import annotations

import numpy as np
import torch


def _round_bf16_like_the_gpu() -> None:
    try:
        import triton.language as tl
        from triton.runtime import interpreter
    except ImportError:
        return
    builder = getattr(interpreter, "InterpreterBuilder", None)
    if builder is None or getattr(builder, "_deepnotes_rtne", False):
        return
    original = builder.cast_impl

    def cast_impl(self, src, dst_type):
        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
            x = torch.from_numpy(np.ascontiguousarray(src.data, dtype=np.float32))
            bits = x.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
            return interpreter.TensorHandle(bits, dst_type.scalar)
        return original(self, src, dst_type)

    builder.cast_impl = cast_impl
    builder._deepnotes_rtne = True


_round_bf16_like_the_gpu()
