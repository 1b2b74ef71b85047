"""FLASH mixed-chunk attention (Hua et al. 2022, "Transformer Quality in Linear Time", sec. 3.2):
the explicit T x T reference.

One head with shared-Z queries and keys. The sequence is cut into chunks of C positions;
within a chunk the scores are relu^2 (quadratic, "local"), across chunks they are plain dot
products summed in linear time ("global"):

    A_ij = relu(q_quad_i . k_quad_j / sqrt(S))^2  [j in the chunk of i; j <= i if causal]
         + q_lin_i . k_lin_j                     [causal: j in an earlier chunk; else: any j]
    o_i  = (1 / n_i) sum_j A_ij v_j

Scaling constants, against the paper. The paper's GAU writes A = relu^2(Q K^T / sqrt(s)) / n
with n the sequence length. Its causal linear part is a cumulative sum over *earlier* chunks
(chunk g reads chunks h < g), which we keep: the current chunk is covered by the quadratic
term. We divide row i by n_i = the number of positions it may attend to: n_i = T when
non-causal (the paper's 1/n) and n_i = i + 1 when causal. The causal choice never depends on
T, so a prefix's outputs do not change when the sequence grows and token-by-token decoding
equals the full forward. The relu^2 argument is scaled by the constant 1/sqrt(S).

`scaling="paper"` is the paper's pseudo-code instead (Hua et al. 2022, the FLASH code in the
appendix; FLASH-pytorch does the same): constants only, no per-row normaliser,

    A_ij = relu(q_quad_i . k_quad_j / C)^2                  [same chunk, j <= i if causal]
         + q_lin_i . k_lin_j / C   (causal, earlier chunks)  or  / T  (non-causal, any j)
    o_i  = sum_j A_ij v_j

so the local (quadratic) term keeps its size at every position, where the default's 1/n_i
makes it fade as C / i against the linear sum on long sequences.

Shapes: q_quad, k_quad, q_lin, k_lin: [B, T, S]; v: [B, T, E] -> o [B, T, E].
"""

from __future__ import annotations

import math

import torch

SCALINGS = ("position", "paper")  # row i / n_i (ours) | the paper's pseudo-code constants


def check_gau_inputs(
    q_quad, k_quad, q_lin, k_lin, v, chunk_size: int, scaling: str = "position"
) -> None:
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    shapes = [t.shape for t in (q_quad, k_quad, q_lin, k_lin)]
    if q_quad.dim() != 3 or any(s != shapes[0] for s in shapes):
        raise ValueError(
            "expected q_quad, k_quad, q_lin, k_lin of one shape [B, T, S]; got "
            + ", ".join(str(tuple(s)) for s in shapes)
        )
    if v.dim() != 3 or v.shape[:2] != q_quad.shape[:2]:
        raise ValueError(
            f"expected v: [B, T, E] with B, T = {tuple(q_quad.shape[:2])}, got {tuple(v.shape)}"
        )
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")


def row_normaliser(T: int, causal: bool, *, device=None, dtype=None) -> torch.Tensor:
    """n_i of the module docstring, as a [T, 1] column: i + 1 if causal, else T."""
    if causal:
        return torch.arange(1, T + 1, device=device, dtype=dtype)[:, None]
    return torch.full((T, 1), float(T), device=device, dtype=dtype)


def relu2_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """relu(q k^T / sqrt(S))^2 over the last two dims: q [.., n, S], k [.., m, S] -> [.., n, m]."""
    return torch.relu(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).square()


def naive_gau(
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
    """The mixed-chunk attention as one explicit T x T matrix (see the module docstring)."""
    check_gau_inputs(q_quad, k_quad, q_lin, k_lin, v, chunk_size, scaling)
    T = q_quad.shape[1]
    pos = torch.arange(T, device=q_quad.device)
    chunk = pos // chunk_size
    same = chunk[:, None] == chunk[None, :]
    quad_allowed = same & (pos[None, :] <= pos[:, None]) if causal else same
    lin_allowed = chunk[None, :] < chunk[:, None] if causal else torch.ones_like(same)
    lin = (q_lin @ k_lin.transpose(-1, -2)) * lin_allowed
    if scaling == "paper":  # written out from the definition, independently of the chunk form
        quad = torch.relu(q_quad @ k_quad.transpose(-1, -2) / chunk_size).square()
        return (quad * quad_allowed + lin / (chunk_size if causal else T)) @ v
    A = relu2_scores(q_quad, k_quad) * quad_allowed + lin
    n = row_normaliser(T, causal, device=v.device, dtype=v.dtype)
    return (A @ v) / n
