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


@functools.cache
def triton_version() -> str | None:
    """The installed Triton's version, or None when Triton is missing."""
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


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
