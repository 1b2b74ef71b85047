"""Where a step's time goes: torch.profiler over a callable, read on the device side.

On CUDA the kernels themselves are read (device events, so nothing is counted twice: an ATen
op's, or a graph launch's, own device time is its kernels'); elsewhere, the CPU ops by self
time. `kernel_kind` sorts kernel names into a few families (matrix products, attention,
optimizer, ...), so a training step's time can be split by what bounds each part.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import torch

# (family, pattern) in order: the first match names a kernel. Patterns cover cuBLAS /
# CUTLASS / cuDNN kernel names (with cuBLAS's `nvjet_*` GEMMs, seen under CUDA 13), torch's
# native kernels, inductor's generated Triton kernels (`triton_<kind>_fused_<ops>`) and the
# CPU ATen op names seen off CUDA.
KINDS: tuple[tuple[str, str], ...] = (
    ("attention", r"flash|fmha|attn|attention|sdpa|cudnn_generated|sm90_.*mha"),
    ("optimizer", r"adam|multi_tensor|foreach|_amp_|clip|norm_kernel.*l2|lpnorm"),
    (
        "matmul",
        r"gemm|nvjet|xmma|cutlass|cublas|sm\d+_.*tensorop|matmul|aten::mm\b|aten::addmm|"
        r"aten::bmm|aten::linear",
    ),
    ("loss", r"log_softmax|nll_loss|cross_entropy|logsumexp"),
    ("norm", r"layer_norm|rms_norm|native_layer_norm|_norm_"),
    ("copy", r"memcpy|memset|copy_|aten::to\b|aten::contiguous|fill_"),
)


def kernel_kind(name: str) -> str:
    """Family of a kernel (or CPU op) name: attention, optimizer, matmul, loss, norm, copy,
    or 'elementwise' (everything else, mostly fused pointwise / reduction kernels)."""
    low = name.lower()
    for kind, pattern in KINDS:
        if re.search(pattern, low):
            return kind
    return "elementwise"


def profile_steps(device: torch.device, run: Callable[[], int], top: int = 12) -> dict:
    """Profile `run()` once; it returns how many steps it ran.

    -> {"steps", "device_ms_per_step" (CUDA) | "cpu_ms_per_step", "wall_ms_per_step",
    ["kernels_per_step",] "by_kind": {family: ms per step} (largest first), "ops": the `top`
    kernels / ops, each with its calls and microseconds per step}. A wall time well above the
    device time means gaps between kernels."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    if cuda:
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        steps = run()
        if cuda:
            torch.cuda.synchronize(device)
    wall = time.perf_counter() - t0
    steps = max(1, int(steps))

    def self_us(e) -> float:  # torch >= 2.4 names it device time; older, cuda time
        if not cuda:
            return e.self_cpu_time_total
        return getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)

    events = [e for e in prof.key_averages() if self_us(e) > 0]
    if cuda:
        events = [e for e in events if e.device_type != DeviceType.CPU]
    events.sort(key=self_us, reverse=True)
    total = sum(self_us(e) for e in events)
    by_kind: dict[str, float] = {}
    for e in events:
        k = kernel_kind(e.key)
        by_kind[k] = by_kind.get(k, 0.0) + self_us(e)
    ranked = sorted(by_kind.items(), key=lambda kv: -kv[1])
    by_kind = {k: round(v / steps / 1e3, 4) for k, v in ranked}
    return {
        "steps": steps,
        "device_ms_per_step" if cuda else "cpu_ms_per_step": round(total / steps / 1e3, 4),
        "wall_ms_per_step": round(1e3 * wall / steps, 4),
        **({"kernels_per_step": round(sum(e.count for e in events) / steps, 1)} if cuda else {}),
        "by_kind": by_kind,
        "ops": [
            {"name": e.key[:80], "kind": kernel_kind(e.key),
             "calls_per_step": round(e.count / steps, 2),
             "us_per_step": round(self_us(e) / steps, 2)}
            for e in events[:top]
        ],
    }  # fmt: skip


# the families in the order the split plot stacks them (largest share first in an LM step)
FAMILIES = ("matmul", "attention", "elementwise", "loss", "norm", "optimizer", "copy")


def draw_by_kind(ax, labels: list[str], splits: list[dict[str, float]]) -> None:
    """Stacked horizontal bars, one per row: each row's time per step by kernel family
    (`profile_steps(...)["by_kind"]`), the families in one order and colour across rows."""
    left = [0.0] * len(splits)
    for i, fam in enumerate(FAMILIES):
        width = [s.get(fam, 0.0) for s in splits]
        if any(width):
            ax.barh(labels, width, left=left, color=f"C{i}", label=fam)
            left = [a + b for a, b in zip(left, width, strict=True)]
    for j, total in enumerate(left):
        ax.text(total, j, f" {total:.1f}", va="center", fontsize=8)
    ax.set(xlabel="device time per step (ms)", xlim=(0, 1.15 * max(left, default=1)))
    ax.legend(fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.25), frameon=False)
