"""Choosing between a Triton kernel and its PyTorch form.

Every op family's public function (`flash_attn`, `chunk_linear_attn`, `chunk_gau`,
`selective_scan`) takes `backend="auto" | "triton" | "torch"`; the environment variable
`DEEPNOTES_KERNELS` (same values) sets the default for the whole process. An explicit
argument other than "auto" wins over the variable.

- "auto": the Triton kernel when the inputs are on CUDA and the family's checks pass
  (dtype, head size, ...), the PyTorch form otherwise. Never an error.
- "triton": the kernel, or a ValueError that says why it cannot run. CPU tensors are
  accepted only under Triton's interpreter (`TRITON_INTERPRET=1`), which is how the test
  suite checks the kernels on machines without a GPU.
- "torch": the PyTorch form.

Input dtypes. Each public function first casts its sequence inputs (q, k, v and the like,
not weights) to one dtype with `cast_inputs`, so that both paths see the same operands and a
kernel's `tl.dot` never receives two operand types: under `torch.autocast` for the inputs'
device, the autocast dtype (these ops are matmul-like, which autocast runs in bf16/fp16);
otherwise the promoted dtype of the inputs (fp32 with bf16 -> fp32). Gradients come back in
each input's own dtype (the cast is part of the autograd graph). `selective_scan` is the
exception: like mamba_ssm's it reads each input in its own dtype (weights A, D, delta_bias
usually fp32, the rest often bf16), computes in fp32 and returns u's dtype.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import torch

BACKENDS = ("auto", "triton", "torch")
ENV_VAR = "DEEPNOTES_KERNELS"


def interpreting() -> bool:
    """True when Triton kernels run on the CPU through Triton's interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _find_triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


# Looked up once at import: a plain value, which torch.compile reads without the warning it
# gives for a functools.cache-wrapped call inside a traced function.
_TRITON_VERSION = _find_triton_version()


def triton_version() -> str | None:
    """The installed Triton's version, or None when Triton is missing."""
    return _TRITON_VERSION


def input_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The one dtype `cast_inputs` gives these tensors (see the module docstring).

    fp64 is never lowered (autocast leaves fp64 alone too), so float64 references stay exact.
    """
    dtype = functools.reduce(torch.promote_types, (t.dtype for t in tensors))
    device_type = tensors[0].device.type
    if dtype != torch.float64 and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return dtype


def cast_inputs(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The tensors in one dtype, `input_dtype(*tensors)` (no copy for those already in it)."""
    dtype = input_dtype(*tensors)
    return tuple(t.to(dtype) for t in tensors)


def requested_backend(backend: str = "auto") -> str:
    """The backend asked for: the argument unless "auto", else $DEEPNOTES_KERNELS."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    env = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if env not in BACKENDS:
        raise ValueError(f"${ENV_VAR} must be one of {BACKENDS}, got {env!r}")
    return env


def device_problem(*tensors: torch.Tensor) -> str | None:
    """Why Triton cannot run on these tensors' device (None when it can)."""
    if triton_version() is None:
        return "Triton is not installed (pip install 'deepnotes[kernels]')"
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        return f"inputs are on different devices: {sorted(map(str, devices))}"
    (device,) = devices
    if device.type == "cuda":
        return None
    if device.type == "cpu" and interpreting():
        return None
    return (
        f"inputs are on {device.type}; the Triton kernels need CUDA tensors "
        "(or TRITON_INTERPRET=1 for CPU tensors)"
    )


def use_triton(
    op: str,
    backend: str,
    tensors: tuple[torch.Tensor, ...],
    check: Callable[[bool], str | None] | None = None,
) -> bool:
    """Decide whether `op` runs its Triton kernel.

    tensors: the inputs whose device decides; check(forced): the op's own support test,
    returning a reason string when the kernel cannot handle these inputs (dtype, sizes, ...);
    `forced` is True when Triton was asked for explicitly (some ops then accept fp32, which
    "auto" leaves to PyTorch). "auto" picks Triton only for CUDA tensors (the interpreter is
    for tests, and slow).
    """
    choice = requested_backend(backend)
    if choice == "torch":
        return False
    problem = device_problem(*tensors)
    if choice == "auto" and (problem is not None or tensors[0].device.type != "cuda"):
        return False
    if problem is None and check is not None:
        problem = check(choice == "triton")
    if problem is None:
        return True
    if choice == "triton":
        raise ValueError(f"{op}: backend='triton' cannot run here: {problem}")
    return False
