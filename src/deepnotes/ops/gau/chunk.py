"""FLASH mixed-chunk attention by chunks: O(T C S + T C E + T S E) time, no T x T matrix.

Same definition and constants as `naive_gau` (see `deepnotes.ops.gau.naive`): per chunk,
the masked C x C relu^2 matrix; across chunks, the state sum k_lin^T v, as an exclusive
prefix sum over chunks when causal (the paper's cumulative sum) or one global sum otherwise.

`chunk_gau`, the public op, dispatches between this PyTorch form and the Triton kernels
(`triton_chunk.py`); `naive.py` and `recurrent.py` hold the references.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from deepnotes.ops.backend import cast_inputs, use_triton
from deepnotes.ops.gau.naive import check_gau_inputs, relu2_scores, row_normaliser


def paper_as_position(q_quad, k_lin, *, chunk_size: int, causal: bool):
    """The paper's constants (`naive_gau`, scaling="paper") through the default form:
    relu(q.k / C)^2 = relu((q sqrt(S) / C) . k / sqrt(S))^2, and the linear term's 1/C (or
    1/T) moves into k_lin. The caller multiplies the default form's output by n_i to undo its
    row normaliser. Returns (q_quad, k_lin) rescaled. Exact up to rounding, so the Triton
    kernels serve both scalings unchanged."""
    S, T = q_quad.shape[-1], q_quad.shape[1]
    return q_quad * (math.sqrt(S) / chunk_size), k_lin / (chunk_size if causal else T)


def _chunks(t: torch.Tensor, C: int) -> torch.Tensor:
    """[B, T, X] -> [B, G, C, X], zero-padding T to a multiple of C (zeros add nothing)."""
    B, T, X = t.shape
    pad = (-T) % C
    if pad:
        t = F.pad(t, (0, 0, 0, pad))
    return t.view(B, -1, C, X)


def torch_chunk_gau(
    q_quad: torch.Tensor,
    k_quad: torch.Tensor,
    q_lin: torch.Tensor,
    k_lin: torch.Tensor,
    v: torch.Tensor,
    *,
    chunk_size: int,
    causal: bool,
    scaling: str = "position",
) -> torch.Tensor:
    """Mixed-chunk attention. q_*, k_*: [B, T, S]; v: [B, T, E] -> o [B, T, E].

    scaling: "position" (row i / n_i) | "paper" (the pseudo-code's constants; see `naive`).
    """
    check_gau_inputs(q_quad, k_quad, q_lin, k_lin, v, chunk_size, scaling)
    if scaling == "paper":
        q_quad, k_lin = paper_as_position(q_quad, k_lin, chunk_size=chunk_size, causal=causal)
        o = torch_chunk_gau(q_quad, k_quad, q_lin, k_lin, v, chunk_size=chunk_size, causal=causal)
        return o * row_normaliser(o.shape[1], causal, device=v.device, dtype=o.dtype)
    B, T, _ = q_quad.shape
    C = chunk_size
    qq, kq, ql, kl, vc = (_chunks(t, C) for t in (q_quad, k_quad, q_lin, k_lin, v))
    A = relu2_scores(qq, kq)  # [B, G, C, C]
    if causal:
        A = A.tril()
    o = A @ vc  # local, quadratic within each chunk
    if causal:
        dS = kl.transpose(-1, -2) @ vc  # [B, G, S, E]
        S_before = torch.cat([torch.zeros_like(dS[:, :1]), dS.cumsum(1)[:, :-1]], 1)
        o = o + ql @ S_before
    else:
        S_all = k_lin.transpose(-1, -2) @ v  # [B, S, E]
        o = o + ql @ S_all[:, None]
    o = o.reshape(B, -1, v.shape[-1])[:, :T]
    return o / row_normaliser(T, causal, device=v.device, dtype=v.dtype)


def _triton_problem(xs, chunk_size: int, forced: bool) -> str | None:
    """Why the Triton kernels cannot take these inputs (None when it can)."""
    from deepnotes.ops.gau.triton_chunk import MAX_S

    dtypes = {t.dtype for t in xs}
    if len(dtypes) > 1:
        return f"inputs have different dtypes: {sorted(map(str, dtypes))}"
    (dtype,) = dtypes
    if dtype not in (torch.float16, torch.bfloat16) and not (forced and dtype == torch.float32):
        return f"dtype {dtype}; the kernels run fp16/bf16 (fp32 only when forced)"
    if xs[0].shape[-1] > MAX_S:
        return f"shared width S = {xs[0].shape[-1]} > {MAX_S}"
    if chunk_size < 16 or chunk_size & (chunk_size - 1):
        return f"chunk_size {chunk_size} is not a power of two >= 16"
    return None


def chunk_gau(
    q_quad: torch.Tensor,
    k_quad: torch.Tensor,
    q_lin: torch.Tensor,
    k_lin: torch.Tensor,
    v: torch.Tensor,
    *,
    chunk_size: int,
    causal: bool,
    backend: str = "auto",
    scaling: str = "position",
) -> torch.Tensor:
    """Mixed-chunk attention; see `torch_chunk_gau`.

    backend: "auto" | "triton" | "torch" (see `deepnotes.ops.backend`). The Triton kernels
    (`triton_chunk.py`) run on CUDA for fp16/bf16 inputs with S <= 128 and a power-of-two
    chunk_size >= 16; elsewhere the chunked PyTorch form runs. The five inputs are first cast
    to one dtype, the output's: the autocast dtype under `torch.autocast`, else their promoted
    dtype (`deepnotes.ops.backend.cast_inputs`). (The GAU mixer's roles are fp32 under bf16
    autocast, z * gamma + beta with fp32 parameters, while v is bf16.)

    scaling: "position" (default: row i / n_i) | "paper" (the pseudo-code's constants, see
    `deepnotes.ops.gau.naive`). Both backends compute "paper" as the default form of rescaled
    inputs times n_i (`paper_as_position`), so the Triton kernels need no change for it.
    """
    check_gau_inputs(q_quad, k_quad, q_lin, k_lin, v, chunk_size, scaling)
    if scaling == "paper":
        q_quad, k_lin = paper_as_position(q_quad, k_lin, chunk_size=chunk_size, causal=causal)
        o = chunk_gau(q_quad, k_quad, q_lin, k_lin, v, chunk_size=chunk_size, causal=causal,
                      backend=backend)  # fmt: skip
        return o * row_normaliser(o.shape[1], causal, device=o.device, dtype=o.dtype)
    xs = cast_inputs(q_quad, k_quad, q_lin, k_lin, v)
    if use_triton("chunk_gau", backend, xs, lambda forced: _triton_problem(xs, chunk_size, forced)):
        from deepnotes.ops.gau.triton_chunk import triton_chunk_gau

        return triton_chunk_gau(*xs, chunk_size=chunk_size, causal=causal)
    return torch_chunk_gau(*xs, chunk_size=chunk_size, causal=causal)
