"""Shared pieces of the kernel tests: where they run, and the comparison rule.

CPU cases run the kernels under Triton's interpreter and need TRITON_INTERPRET=1 (set by
scripts/test.sh for the whole suite); CUDA cases are marked `gpu` (scripts/gpu_check.sh).

The rule (FlashAttention's own test rule, applied to every output and gradient): the
kernel's relative RMS error against a float64 reference is at most
max(TOLERANCE[dtype], 2 x the error of the PyTorch form run in the same dtype).
"""

from __future__ import annotations

import os

import pytest
import torch

from tests.helpers import TOLERANCE, assert_close, rel_rms

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
CUDA = torch.cuda.is_available()

cpu_only = pytest.mark.skipif(
    not INTERPRET, reason="CPU kernel tests need TRITON_INTERPRET=1 (scripts/test.sh sets it)"
)
gpu_only = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs CUDA")]


def cpu(*values, id: str | None = None):
    """A test case on CPU (interpreter)."""
    return pytest.param(*values, "cpu", marks=cpu_only, id=f"cpu-{id}" if id else None)


def gpu(*values, id: str | None = None):
    """A test case on CUDA."""
    return pytest.param(*values, "cuda", marks=gpu_only, id=f"cuda-{id}" if id else None)


def values_and_grads(fn, inputs, cotangents):
    """Run fn(*inputs) -> tensor or tuple; return outputs + d(sum <out, cot>)/d(inputs)."""
    xs = [x.detach().clone().requires_grad_(True) for x in inputs]
    outs = fn(*xs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    loss = sum((o.double() * c.double()).sum() for o, c in zip(outs, cotangents, strict=True))
    grads = torch.autograd.grad(loss, xs)
    return [o.detach() for o in outs] + [g.detach() for g in grads]


def assert_rule(kernel, lowp, ref, names, dtype, factor: float = 2.0):
    """kernel/lowp/ref: lists of tensors (outputs then gradients), ref in float64."""
    base = TOLERANCE[dtype]
    for name, a, lo, r in zip(names, kernel, lowp, ref, strict=True):
        assert torch.isfinite(a).all(), f"{name}: kernel produced NaN/inf"
        tol = min(max(base, factor * rel_rms(lo, r)), 10 * base)
        assert_close(a, r, tol=tol, what=f"{name} ({dtype})")
