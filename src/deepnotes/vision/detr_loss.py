"""DETR's set criterion (Carion et al. 2020, eq. 2 and the box loss of sec. 3.1).

After the Hungarian match:
- `loss_ce`: cross-entropy of every query's logits against its matched class, or the
  no-object class C for unmatched queries, whose weight is `eos_coef` (0.1 in the paper) to
  balance the many empty queries;
- `loss_bbox`: L1 between matched boxes (cxcywh), summed and divided by the number of
  target boxes in the batch;
- `loss_giou`: sum of (1 - GIoU) over matched pairs, divided likewise;
- `cardinality_error`: |#predicted non-empty - #targets| averaged over images (logged only).
Auxiliary decoding losses (sec. 3.2) repeat all of this on each earlier decoder layer with its
own matching; their keys get the suffix `_i`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepnotes.vision.boxes import box_cxcywh_to_xyxy, generalized_box_iou
from deepnotes.vision.matcher import HungarianMatcher


class SetCriterion(nn.Module):
    """`criterion(outputs, targets) -> {name: scalar}`; `weighted_total(losses)` sums them.

    outputs: {"logits": [B, Q, C+1], "pred_boxes": [B, Q, 4],
              "aux_outputs": optional list of the same dicts for earlier decoder layers}.
    """

    def __init__(
        self,
        num_classes: int,
        matcher: HungarianMatcher | None = None,
        eos_coef: float = 0.1,
        weight_ce: float = 1.0,
        weight_bbox: float = 5.0,
        weight_giou: float = 2.0,
    ):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.matcher = matcher if matcher is not None else HungarianMatcher(1.0, 5.0, 2.0)
        self.weights = {"loss_ce": weight_ce, "loss_bbox": weight_bbox, "loss_giou": weight_giou}
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight)

    @staticmethod
    def _pred_index(indices):
        batch = torch.cat([torch.full_like(src, b) for b, (src, _) in enumerate(indices)])
        return batch, torch.cat([src for src, _ in indices])

    def _losses(self, out: dict, targets: list[dict], indices, num_boxes: float) -> dict:
        logits = out["logits"]
        if logits.shape[-1] != self.num_classes + 1:
            raise ValueError(
                f"logits have {logits.shape[-1]} classes, expected C+1 = {self.num_classes + 1}"
            )
        idx = self._pred_index(indices)
        target_classes = torch.full(
            logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device
        )
        target_classes[idx] = torch.cat(
            [t["class_labels"][j] for t, (_, j) in zip(targets, indices, strict=True)]
        )
        loss_ce = F.cross_entropy(
            logits.transpose(1, 2), target_classes, self.empty_weight.to(logits)
        )
        src = out["pred_boxes"][idx]
        tgt = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices, strict=True)], dim=0)
        loss_bbox = (src - tgt).abs().sum() / num_boxes
        giou = generalized_box_iou(box_cxcywh_to_xyxy(src), box_cxcywh_to_xyxy(tgt))
        loss_giou = (1 - torch.diagonal(giou)).sum() / num_boxes
        with torch.no_grad():
            n_pred = (logits.argmax(-1) != logits.shape[-1] - 1).sum(1).float()
            n_true = torch.tensor(
                [float(len(t["class_labels"])) for t in targets], device=logits.device
            )
            card = (n_pred - n_true).abs().mean()
        return {
            "loss_ce": loss_ce,
            "loss_bbox": loss_bbox,
            "loss_giou": loss_giou,
            "cardinality_error": card,
        }

    def forward(self, outputs: dict, targets: list[dict]) -> dict[str, Tensor]:
        # Box losses are normalised by the number of target boxes (at least 1).
        num_boxes = max(float(sum(len(t["class_labels"]) for t in targets)), 1.0)
        losses = self._losses(outputs, targets, self.matcher(outputs, targets), num_boxes)
        for i, aux in enumerate(outputs.get("aux_outputs") or []):
            for k, v in self._losses(aux, targets, self.matcher(aux, targets), num_boxes).items():
                losses[f"{k}_{i}"] = v
        return losses

    def weighted_total(self, losses: dict[str, Tensor]) -> Tensor:
        """Σ weight · loss over loss_ce/bbox/giou and their auxiliary copies."""
        total = 0.0
        for k, v in losses.items():
            base = k.rsplit("_", 1)[0] if k[-1].isdigit() else k
            if base in self.weights:
                total = total + self.weights[base] * v
        return total
