"""Normalisation layers: LayerNorm (Ba et al. 2016) and RMSNorm (Zhang & Sennrich 2019).

LayerNorm:  y = (x - mean(x)) / sqrt(var(x) + eps) * g + b
RMSNorm:    y = x / sqrt(mean(x^2) + eps) * g
Both normalise over the last dim. RMSNorm drops the centring and the bias: cheaper, and in
Transformers no worse (Zhang & Sennrich 2019; T5, LLaMA use it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("layernorm", "rmsnorm")


def naive_rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Reference RMSNorm (fp64 or wider): x / sqrt(mean(x^2) + eps) * weight. x: [..., D]."""
    xf = x.double()
    y = xf * torch.rsqrt(xf.square().mean(-1, keepdim=True) + eps)
    if weight is not None:
        y = y * weight.double()
    return y.to(x.dtype)


class RMSNorm(nn.Module):
    """RMSNorm over the last dim. x: [..., D] -> [..., D], computed in fp32 for half inputs."""

    def __init__(self, dim: int, eps: float = 1e-6, elementwise_affine: bool = True) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if elementwise_affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(f"RMSNorm: expected last dim {self.dim}, got {x.shape[-1]}")
        # F.rms_norm is the fused form of naive_rms_norm; upcast so bf16 inputs keep precision.
        ct = torch.promote_types(x.dtype, torch.float32)
        w = None if self.weight is None else self.weight.to(ct)
        return F.rms_norm(x.to(ct), (self.dim,), w, self.eps).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}"


def build_norm(kind: str, dim: int, *, eps: float = 1e-5, bias: bool = True) -> nn.Module:
    """'layernorm' | 'rmsnorm' -> module normalising the last dim of size `dim`."""
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=eps, bias=bias)
    if kind == "rmsnorm":
        return RMSNorm(dim, eps=eps)
    raise ValueError(f"unknown norm {kind!r}; valid: {', '.join(NORMS)}")
