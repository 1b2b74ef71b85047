"""Chunked selective scan in PyTorch, and the public dispatcher `selective_scan`.

The recurrence h_t = a_t * h_{t-1} + b_t (a_t = exp(delta_t A), b_t = delta_t B_t u_t) is
processed in chunks of `chunk_size` steps, the last state carried from chunk to chunk. Each
chunk runs under activation checkpointing, so training keeps only the chunk-boundary states
([Bt, Dm, N] per chunk) instead of every [Bt, Dm, l, N] intermediate: memory is O(L) in the
input size, and the chunk's working set is recomputed during backward.

Inside a chunk, two algorithms (`algorithm=`):
- "parallel": composition of affine maps is associative,
      (a1, b1) then (a2, b2)  =  (a2 * a1, a2 * b1 + b2),
  so all prefixes follow in log2(l) parallel steps (Hillis & Steele 1986; Blelloch 1990;
  Martin & Cundy 2018 for linear RNNs). O(l log l) work, wide tensors: the GPU form.
- "sequential": one step at a time on [Bt, Dm, N] slices. O(l) work on cache-sized
  tensors; on CPU it measured 3-10x faster than "parallel" (docs/ssm.md).
- "recurrent" (`scan_recurrent.py`): the same walk on time-major tensors with a
  hand-written backward (the reverse scan), so no checkpointing and no per-step autograd;
  on CPU 1.6-2.3x faster forward and 1.8-2.8x forward+backward than "sequential"
  (`deepnotes bench scan-forms`, benchmarks/scan-forms-cpu.json).
  First derivatives only (its backward is not itself differentiable): for higher ones
  pass algorithm="sequential".
"auto" picks "recurrent" on CPU and "parallel" elsewhere. All are linear in L.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from deepnotes.ops.backend import use_triton
from deepnotes.ops.ssm.naive import (
    check_scan_inputs,
    compute_dtype,
    finish_output,
    naive_selective_scan,
    prepare_delta,
)
from deepnotes.ops.ssm.scan_recurrent import scan_chunk_recurrent


def scan_chunk(u, delta, A, B, C, h0):
    """One chunk of the scan, all l steps in parallel (Hillis-Steele inclusive scan).

    u, delta: [Bt, Dm, l]; A: [Dm, N]; B, C: [Bt, N, l]; h0: [Bt, Dm, N] (state before the
    chunk). Returns y: [Bt, Dm, l] (sum_n C_t h_t, before D and z) and h_l: [Bt, Dm, N].
    """
    a = torch.exp(delta[..., None] * A[:, None, :])  # [Bt, Dm, l, N]
    b = (delta * u)[..., None] * B.transpose(1, 2)[:, None]  # [Bt, Dm, l, N]
    # Fold the incoming state into the first step: h_0' = a_0 h0 + b_0.
    b = torch.cat([b[:, :, :1] + a[:, :, :1] * h0[:, :, None], b[:, :, 1:]], dim=2)
    l = u.shape[-1]
    off = 1
    while off < l:
        # Element i absorbs element i - off: (a, b)_i <- (a_i a_{i-off}, a_i b_{i-off} + b_i).
        b = torch.cat([b[:, :, :off], a[:, :, off:] * b[:, :, :-off] + b[:, :, off:]], dim=2)
        if 2 * off < l:
            a = torch.cat([a[:, :, :off], a[:, :, off:] * a[:, :, :-off]], dim=2)
        off *= 2
    y = (b * C.transpose(1, 2)[:, None]).sum(-1)  # sum_n C_t[n] h_t[n]
    return y, b[:, :, -1]


def scan_chunk_sequential(u, delta, A, B, C, h):
    """The same chunk one step at a time (same arguments and results as `scan_chunk`).

    The decays and inputs of the whole chunk are formed at once and unbound into per-step
    views, so the loop is two elementwise ops per step (and backward stacks the per-step
    gradients once instead of scattering each step into a zero tensor).
    """
    a = torch.exp(delta[..., None] * A[:, None, :]).unbind(2)  # l x [Bt, Dm, N]
    b = ((delta * u)[..., None] * B.transpose(1, 2)[:, None]).unbind(2)
    hs = []
    for a_t, b_t in zip(a, b, strict=True):
        h = a_t * h + b_t
        hs.append(h)
    return (torch.stack(hs, dim=2) * C.transpose(1, 2)[:, None]).sum(-1), h


ALGORITHMS = {
    "parallel": scan_chunk,
    "sequential": scan_chunk_sequential,
    "recurrent": scan_chunk_recurrent,
}
# chunk functions that keep only their inputs for the backward: no checkpointing around them
SAVES_INPUTS_ONLY = {"recurrent"}


def torch_selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    *,
    chunk_size: int = 64,
    algorithm: str = "auto",
):
    """Chunked selective scan; same signature and results as `naive_selective_scan`.

    u, delta, z: [Bt, Dm, L]; A: [Dm, N]; B, C: [Bt, N, L]; D, delta_bias: [Dm].
    Returns y: [Bt, Dm, L] (and the last state [Bt, Dm, N] with `return_last_state`).
    `chunk_size` trades parallel width (larger) against working memory (smaller);
    `algorithm` is "parallel" | "sequential" | "auto" (see the module docstring).
    """
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    if chunk_size <= 0:
        raise ValueError(f"torch_selective_scan: chunk_size must be positive, got {chunk_size}")
    if algorithm == "auto":
        algorithm = "recurrent" if u.device.type == "cpu" else "parallel"
    if algorithm not in ALGORITHMS:
        raise ValueError(
            f"torch_selective_scan: algorithm must be 'auto' or one of {list(ALGORITHMS)}, "
            f"got {algorithm!r}"
        )
    scan = ALGORITHMS[algorithm]
    dtype_in = u.dtype
    cd = compute_dtype(u)
    u, delta, A, B, C = (t.to(cd) for t in (u, delta, A, B, C))
    delta = prepare_delta(delta, delta_bias, delta_softplus)
    Bt, Dm, L = u.shape
    h = u.new_zeros(Bt, Dm, A.shape[1])
    ys = []
    # A single chunk gains nothing from checkpointing (its working set is all there is).
    grad = L > chunk_size and torch.is_grad_enabled() and algorithm not in SAVES_INPUTS_ONLY
    # Split once: the backward of `split` concatenates the chunks' gradients in one pass,
    # where indexing chunk by chunk would give each chunk a full-length zero gradient to add
    # up (O(L^2 / chunk_size) time, measured as fwd+bwd growing ~4x per doubling of L).
    chunks = zip(*(t.split(chunk_size, dim=-1) for t in (u, delta, B, C)), strict=True)
    for u_c, delta_c, B_c, C_c in chunks:
        args = (u_c, delta_c, A, B_c, C_c, h)
        if grad and any(t.requires_grad for t in args):
            y, h = checkpoint(scan, *args, use_reentrant=False)
        else:
            y, h = scan(*args)
        ys.append(y)
    out = finish_output(torch.cat(ys, dim=-1), u, D, z, dtype_in)
    return (out, h) if return_last_state else out


def _triton_problem(u, A) -> str | None:
    """Why the Triton kernel cannot take these inputs (None when it can)."""
    from deepnotes.ops.ssm.triton_scan import MAX_N

    if u.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        return f"dtype {u.dtype}; the kernel runs fp16/bf16/fp32"
    if A.shape[1] > MAX_N:
        return f"state size N = {A.shape[1]} > {MAX_N}"
    return None


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    backend: str = "auto",
    fwd: str = "auto",
    bwd: str = "auto",
):
    """Selective scan (public). Shapes as in `naive_selective_scan`.

    backend: "auto" | "triton" | "torch" (or env DEEPNOTES_KERNELS when "auto"; see
    `deepnotes.ops.backend`). The Triton kernel (`triton_scan.py`) runs on CUDA for fp16,
    bf16 and fp32 inputs with N <= 64; elsewhere the chunked PyTorch form runs. fwd: the
    kernel's forward, "auto" | "walk" | "chunked" (or env DEEPNOTES_SCAN_FWD when "auto";
    default "walk"; see `triton_scan.forward_variant`); bwd: likewise the kernel's backward,
    "auto" | "walk" | "chunked" (env DEEPNOTES_SCAN_BWD; default "walk"; see
    `triton_scan.backward_variant`); the PyTorch form ignores both. Mixed dtypes
    need no cast (as in mamba_ssm): both paths read each input in its own dtype, compute in
    fp32 (fp64 for fp64 u), return y in u's dtype and each gradient in its input's dtype.
    """
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    tensors = tuple(t for t in (u, delta, A, B, C, D, z, delta_bias) if t is not None)
    if use_triton("selective_scan", backend, tensors, lambda forced: _triton_problem(u, A)):
        from deepnotes.ops.ssm.triton_scan import triton_selective_scan

        return triton_selective_scan(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, fwd=fwd, bwd=bwd
        )
    return torch_selective_scan(
        u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state
    )


__all__ = [
    "naive_selective_scan",
    "scan_chunk",
    "scan_chunk_sequential",
    "selective_scan",
    "torch_selective_scan",
]
