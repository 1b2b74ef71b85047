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

    def batch_cost(self, outputs: dict, targets: list[dict]) -> Tensor:
        """Cost of every query against every target of the batch: [B, Q, N], N = Σ n_b.

        Image b's own matrix is the column block of its targets (`split_costs`). Scoring the
        whole batch in one go, as the reference does, costs a few kernels instead of a few
        per image; the cross-image blocks are computed and thrown away, which is cheap.
        """
        logits, boxes = outputs["logits"], outputs["pred_boxes"]
        if logits.ndim != 3 or boxes.shape != (*logits.shape[:2], 4):
            raise ValueError(
                f"logits must be [B, Q, C+1] and pred_boxes [B, Q, 4], got "
                f"{tuple(logits.shape)} and {tuple(boxes.shape)}"
            )
        if len(targets) != logits.shape[0]:
            raise ValueError(f"{len(targets)} targets for a batch of {logits.shape[0]}")
        B, Q = logits.shape[:2]
        labels = torch.cat([t["class_labels"] for t in targets]).to(logits.device)
        if len(labels) == 0:
            return logits.new_zeros(B, Q, 0)
        tboxes = torch.cat([t["boxes"] for t in targets]).to(boxes)
        prob = logits.flatten(0, 1).softmax(-1)  # [B*Q, C+1]
        pboxes = boxes.flatten(0, 1)
        c_class = -prob[:, labels]
        c_bbox = torch.cdist(pboxes, tboxes, p=1)
        # predicted boxes come out of a sigmoid and are valid xyxy by construction: skipping
        # the check saves a device sync
        c_giou = -generalized_box_iou(
            box_cxcywh_to_xyxy(pboxes), box_cxcywh_to_xyxy(tboxes), check=False
        )
        c = self.cost_bbox * c_bbox + self.cost_class * c_class + self.cost_giou * c_giou
        # A NaN/inf cost (a degenerate prediction) is made the largest finite cost so
        # that it is matched only when nothing else is left.
        big = torch.finfo(c.dtype).max
        return torch.nan_to_num(c, nan=big, posinf=big, neginf=big).view(B, Q, -1)

    @staticmethod
    def split_costs(cost: Tensor, targets: list[dict]) -> list[Tensor]:
        """[B, Q, N] batch costs -> per-image matrices [Q, n_b] (views)."""
        sizes = [len(t["class_labels"]) for t in targets]
        return [c[b] for b, c in enumerate(cost.split(sizes, dim=-1))]

    def cost_matrices(self, outputs: dict, targets: list[dict]) -> list[Tensor]:
        """Per-image cost matrices [Q, n_b] (float, on CPU)."""
        return self.split_costs(self.batch_cost(outputs, targets).cpu(), targets)

    @torch.no_grad()
    def match_layers(
        self, outputs: list[dict], targets: list[dict]
    ) -> list[list[tuple[Tensor, Tensor]]]:
        """`forward` for several predictions of the same batch (DETR's decoder layers).

        The costs of all layers are stacked and moved to the host in one transfer: one
        device sync per training step instead of one per layer (or per image).
        """
        from scipy.optimize import linear_sum_assignment  # the [vision] extra

        costs = torch.stack([self.batch_cost(o, targets) for o in outputs]).cpu()
        if costs.dtype not in (torch.float32, torch.float64):  # half types: numpy has no bf16
            costs = costs.float()
        out = []
        for cost in costs:
            layer = []
            for c in self.split_costs(cost, targets):
                i, j = linear_sum_assignment(c.numpy())
                layer.append(
                    (torch.as_tensor(i, dtype=torch.int64), torch.as_tensor(j, dtype=torch.int64))
                )
            out.append(layer)
        return out

    @torch.no_grad()
    def forward(self, outputs: dict, targets: list[dict]) -> list[tuple[Tensor, Tensor]]:
        return self.match_layers([outputs], targets)[0]
