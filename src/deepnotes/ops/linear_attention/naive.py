"""Linear attention references (Katharopoulos et al. 2020): the explicit T x T form and the
step-by-step recurrence.

With a non-negative feature map phi applied to queries and keys beforehand, causal linear
attention is (eq. 2 and 9 of the paper)

    o_t = sum_{s<=t} (q_t . k_s) v_s / (sum_{s<=t} q_t . k_s + eps)
        = q_t S_t / (q_t . z_t + eps),  S_t = sum_{s<=t} k_s v_s^T,  z_t = sum_{s<=t} k_s.

Shapes: q, k: [B, H, T, K] (already feature-mapped, non-negative), v: [B, H, T, V].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def feature_map_elu1(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = elu(x) + 1 > 0 (Katharopoulos et al. 2020, eq. 7)."""
    return F.elu(x) + 1.0


FEATURE_MAPS = {"elu1": feature_map_elu1}


def apply_feature_map(q, k, feature_map: str | None):
    """Apply the named feature map to q and k (None: they are already feature-mapped)."""
    if feature_map is None:
        return q, k
    if feature_map not in FEATURE_MAPS:
        raise ValueError(
            f"unknown feature_map {feature_map!r}; valid names: {', '.join(FEATURE_MAPS)}"
        )
    fm = FEATURE_MAPS[feature_map]
    return fm(q), fm(k)


def check_qkv(q, k, v) -> None:
    if q.dim() != 4 or k.shape != q.shape or v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(
            "expected q, k: [B, H, T, K] and v: [B, H, T, V]; got "
            f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )


def naive_linear_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = True,
    normalize: bool = True,
    eps: float = 1e-6,
    feature_map: str | None = None,
) -> torch.Tensor:
    """Explicit T x T linear attention: A = q k^T (lower-triangular if causal).

    o = A v / (A 1 + eps) with the normaliser, o = A v without it.

    q, k: [B, H, T, K] (non-negative unless normalize=False), v: [B, H, T, V] -> o [B, H, T, V].
    """
    check_qkv(q, k, v)
    q, k = apply_feature_map(q, k, feature_map)
    A = q @ k.transpose(-1, -2)  # [B, H, T, T]
    if causal:
        T = q.shape[-2]
        A = A * torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    o = A @ v
    if normalize:
        o = o / (A.sum(-1, keepdim=True) + eps)
    return o


def recurrent_linear_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    normalize: bool = True,
    initial_state: tuple[torch.Tensor, torch.Tensor] | None = None,
    eps: float = 1e-6,
    feature_map: str | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Causal linear attention as an RNN, one step at a time (paper, eq. 18-20).

    q, k: [B, H, T, K], v: [B, H, T, V]; initial_state: (S [B, H, K, V], z [B, H, K]).
    Returns o [B, H, T, V] and the final state (S, z).
    """
    check_qkv(q, k, v)
    q, k = apply_feature_map(q, k, feature_map)
    B, H, T, K = q.shape
    if initial_state is None:
        S = q.new_zeros(B, H, K, v.shape[-1])
        z = q.new_zeros(B, H, K)
    else:
        S, z = initial_state
    outs = []
    for t in range(T):
        k_t, v_t, q_t = k[:, :, t], v[:, :, t], q[:, :, t]
        S = S + k_t[..., :, None] * v_t[..., None, :]
        z = z + k_t
        o_t = (q_t[..., None, :] @ S)[..., 0, :]
        if normalize:
            o_t = o_t / ((q_t * z).sum(-1, keepdim=True) + eps)
        outs.append(o_t)
    return torch.stack(outs, dim=2), (S, z)
