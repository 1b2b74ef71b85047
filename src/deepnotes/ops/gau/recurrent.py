"""FLASH mixed-chunk attention token by token (causal), with a state bounded by the chunk size.

State after t tokens: the linear-attention sum S = sum k_lin v^T over completed chunks, and the
keys/values of the current, unfinished chunk (fewer than C of them). Same definition and
constants as `naive_gau`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from deepnotes.ops.gau.naive import check_gau_inputs, relu2_scores


@dataclass
class GAUState:
    """Decoding state. S: [B, S, E]; the lists hold [B, S] / [B, E] tensors of the open chunk."""

    S: torch.Tensor
    t: int = 0  # tokens seen
    k_quad: list[torch.Tensor] = field(default_factory=list)
    k_lin: list[torch.Tensor] = field(default_factory=list)
    v: list[torch.Tensor] = field(default_factory=list)


def init_gau_state(batch: int, s: int, e: int, device=None, dtype=None) -> GAUState:
    return GAUState(S=torch.zeros(batch, s, e, device=device, dtype=dtype))


def gau_step(
    state: GAUState,
    q_quad: torch.Tensor,
    k_quad: torch.Tensor,
    q_lin: torch.Tensor,
    k_lin: torch.Tensor,
    v: torch.Tensor,
    *,
    chunk_size: int,
    scaling: str = "position",
) -> tuple[torch.Tensor, GAUState]:
    """One causal step. q_*, k_*: [B, S]; v: [B, E] -> (o [B, E], new state).

    scaling: "position" (divide by t) | "paper" (relu(q.k / C)^2 and S / C, no divisor).
    """
    kq = [*state.k_quad, k_quad]
    kl = [*state.k_lin, k_lin]
    vs = [*state.v, v]
    Kq, V = torch.stack(kq, 1), torch.stack(vs, 1)  # [B, c, S], [B, c, E]
    t = state.t + 1
    if scaling == "paper":
        scores = torch.relu(q_quad[:, None] @ Kq.transpose(-1, -2) / chunk_size).square()
        o = (scores @ V)[:, 0] + (q_lin[:, None] @ state.S)[:, 0] / chunk_size
    else:
        local = (relu2_scores(q_quad[:, None], Kq) @ V)[:, 0]
        glob = (q_lin[:, None] @ state.S)[:, 0]
        o = (local + glob) / t
    if len(kq) == chunk_size:  # the chunk is complete: fold it into the linear state
        S = state.S + torch.stack(kl, 1).transpose(1, 2) @ V
        return o, GAUState(S=S, t=t)
    return o, GAUState(S=state.S, t=t, k_quad=kq, k_lin=kl, v=vs)


def recurrent_gau(
    q_quad: torch.Tensor,
    k_quad: torch.Tensor,
    q_lin: torch.Tensor,
    k_lin: torch.Tensor,
    v: torch.Tensor,
    *,
    chunk_size: int,
    scaling: str = "position",
) -> torch.Tensor:
    """Causal mixed-chunk attention by a loop of `gau_step`. Shapes as `naive_gau`."""
    check_gau_inputs(q_quad, k_quad, q_lin, k_lin, v, chunk_size, scaling)
    B, T, S = q_quad.shape
    state = init_gau_state(B, S, v.shape[-1], device=v.device, dtype=v.dtype)
    outs = []
    for t in range(T):
        o, state = gau_step(
            state,
            q_quad[:, t],
            k_quad[:, t],
            q_lin[:, t],
            k_lin[:, t],
            v[:, t],
            chunk_size=chunk_size,
            scaling=scaling,
        )
        outs.append(o)
    return torch.stack(outs, 1)
