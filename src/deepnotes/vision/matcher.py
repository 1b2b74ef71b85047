"""Hungarian matching of DETR's predictions to the ground-truth set (Carion et al. 2020, eq. 1).

For each image the cost of giving target j to query i is

    C[i, j] = -w_class * p_i(c_j) + w_bbox * ||b_i - b_j||_1 - w_giou * GIoU(b_i, b_j)

(the constant 1 of "1 - p" is dropped: it does not change the assignment), and the
one-to-one assignment of least total cost is found with `scipy.optimize.linear_sum_assignment`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from deepnotes.vision.boxes import box_cxcywh_to_xyxy, generalized_box_iou


class HungarianMatcher(nn.Module):
    """`matcher(outputs, targets) -> [(pred_idx [k], target_idx [k]) per image]`.

    outputs: {"logits": [B, Q, C+1], "pred_boxes": [B, Q, 4] cxcywh in 0..1};
    targets: [{"class_labels": [n] int64, "boxes": [n, 4] cxcywh}] * B.
    k = min(Q, n); pred_idx is sorted ascending.
    """

    def __init__(self, cost_class: float = 1.0, cost_bbox: float = 1.0, cost_giou: float = 1.0):
        super().__init__()
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError("at least one of cost_class, cost_bbox, cost_giou must be non-zero")
        self.cost_class, self.cost_bbox, self.cost_giou = cost_class, cost_bbox, cost_giou

    def cost_matrices(self, outputs: dict, targets: list[dict]) -> list[Tensor]:
        """Per-image cost matrices [Q, n_b] (float, on CPU)."""
        logits, boxes = outputs["logits"], outputs["pred_boxes"]
        if logits.ndim != 3 or boxes.shape != (*logits.shape[:2], 4):
            raise ValueError(
                f"logits must be [B, Q, C+1] and pred_boxes [B, Q, 4], got "
                f"{tuple(logits.shape)} and {tuple(boxes.shape)}"
            )
        if len(targets) != logits.shape[0]:
            raise ValueError(f"{len(targets)} targets for a batch of {logits.shape[0]}")
        costs = []
        for b, t in enumerate(targets):
            labels, tboxes = t["class_labels"], t["boxes"]
            if len(labels) == 0:
                costs.append(logits.new_zeros(logits.shape[1], 0).cpu())
                continue
            prob = logits[b].softmax(-1)  # [Q, C+1]
            c_class = -prob[:, labels]
            c_bbox = torch.cdist(boxes[b], tboxes, p=1)
            c_giou = -generalized_box_iou(box_cxcywh_to_xyxy(boxes[b]), box_cxcywh_to_xyxy(tboxes))
            c = self.cost_bbox * c_bbox + self.cost_class * c_class + self.cost_giou * c_giou
            # A NaN/inf cost (a degenerate prediction) is made the largest finite cost so
            # that it is matched only when nothing else is left.
            big = torch.finfo(c.dtype).max
            costs.append(torch.nan_to_num(c, nan=big, posinf=big, neginf=big).cpu())
        return costs

    @torch.no_grad()
    def forward(self, outputs: dict, targets: list[dict]) -> list[tuple[Tensor, Tensor]]:
        from scipy.optimize import linear_sum_assignment  # the [vision] extra

        out = []
        for c in self.cost_matrices(outputs, targets):
            i, j = linear_sum_assignment(c.numpy())
            out.append(
                (torch.as_tensor(i, dtype=torch.int64), torch.as_tensor(j, dtype=torch.int64))
            )
        return out
