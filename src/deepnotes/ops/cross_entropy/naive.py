"""The plain form: the whole [N, V] logits, then `F.cross_entropy` in fp32 (or fp64)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def torch_linear_cross_entropy(
    h: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """F.cross_entropy(h @ weight^T + bias, targets), the logits upcast to fp32 first.

    h: [N, D], weight: [V, D], bias: [V] or None, targets: [N] -> scalar (reduction "mean"
    over the targets that are not ignore_index, or "sum"). Materialises [N, V] logits in the
    inputs' dtype and again in fp32 (fp64 stays fp64), as `LM.loss` does.
    """
    logits = F.linear(h, weight, bias)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(logits, targets, ignore_index=ignore_index, reduction=reduction)
