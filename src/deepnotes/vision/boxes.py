"""Box formats and overlaps for detection.

Boxes are `[..., 4]` tensors: `cxcywh` = (centre x, centre y, width, height) and `xyxy` =
(left, top, right, bottom), both usually normalised to 0..1 of the image.
"""

from __future__ import annotations

import torch
from torch import Tensor


def box_cxcywh_to_xyxy(b: Tensor) -> Tensor:
    """b: [..., 4] (cx, cy, w, h) -> [..., 4] (x0, y0, x1, y1)."""
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xyxy_to_cxcywh(b: Tensor) -> Tensor:
    """b: [..., 4] (x0, y0, x1, y1) -> [..., 4] (cx, cy, w, h)."""
    x0, y0, x1, y1 = b.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def box_area(b: Tensor) -> Tensor:
    """b: [N, 4] xyxy -> [N] areas."""
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def _check_xyxy(b: Tensor, name: str) -> None:
    if b.ndim != 2 or b.shape[-1] != 4:
        raise ValueError(f"{name} must be [N, 4], got {tuple(b.shape)}")
    if not bool((b[:, 2:] >= b[:, :2]).all()):
        raise ValueError(f"{name} must be xyxy boxes with x1 >= x0 and y1 >= y0")


def box_iou(a: Tensor, b: Tensor, check: bool = True) -> tuple[Tensor, Tensor]:
    """Pairwise IoU of xyxy boxes. a: [N, 4], b: [M, 4] -> (iou [N, M], union [N, M]).

    check: verify x1 >= x0 and y1 >= y0; it reads the boxes back to the host (a device sync),
    so callers whose boxes are valid by construction turn it off in their hot loop.
    """
    if check:
        _check_xyxy(a, "a")
        _check_xyxy(b, "b")
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter / union, union


def generalized_box_iou(a: Tensor, b: Tensor, check: bool = True) -> Tensor:
    """Pairwise GIoU (Rezatofighi et al. 2019) of xyxy boxes: a: [N, 4], b: [M, 4] -> [N, M].

    GIoU = IoU - |C \\ (A ∪ B)| / |C|, with C the smallest box enclosing A and B; it lies in
    (-1, 1] and still has a gradient when the boxes do not overlap. check: as in `box_iou`.
    """
    iou, union = box_iou(a, b, check)
    lt = torch.minimum(a[:, None, :2], b[None, :, :2])
    rb = torch.maximum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    hull = wh[..., 0] * wh[..., 1]
    return iou - (hull - union) / hull
