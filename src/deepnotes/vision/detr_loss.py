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

import itertools

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
    def _flat_index(indices, Q: int, sizes: list[int]) -> Tensor:
        """Per-image matches -> [2, M] rows into the flattened predictions [B*Q] and the
        concatenated targets [Σ n_b], in the order image by image (built on the host)."""
        offsets = [0, *itertools.accumulate(sizes)]
        rows = [
            torch.stack([src + b * Q, tgt + offsets[b]]) for b, (src, tgt) in enumerate(indices)
        ]
        return torch.cat(rows, dim=1) if rows else torch.zeros(2, 0, dtype=torch.int64)

    def _losses(self, out: dict, labels: Tensor, boxes: Tensor, n_true: Tensor, idx: Tensor,
                num_boxes: float) -> dict:  # fmt: skip
        """One decoder layer. labels [N], boxes [N, 4]: the batch's targets concatenated;
        n_true [B]: targets per image; idx [2, M]: matched (flat query, target) pairs."""
        logits = out["logits"]
        if logits.shape[-1] != self.num_classes + 1:
            raise ValueError(
                f"logits have {logits.shape[-1]} classes, expected C+1 = {self.num_classes + 1}"
            )
        pred, tgt = idx
        target_classes = torch.full(
            (logits.shape[0] * logits.shape[1],), self.num_classes, dtype=torch.int64,
            device=logits.device,
        )  # fmt: skip
        target_classes[pred] = labels[tgt]
        loss_ce = F.cross_entropy(
            logits.transpose(1, 2),
            target_classes.view(logits.shape[:2]),
            self.empty_weight.to(logits),
        )
        src = out["pred_boxes"].flatten(0, 1)[pred]
        tgt = boxes[tgt].to(src)
        loss_bbox = (src - tgt).abs().sum() / num_boxes
        # predictions come out of a sigmoid (valid boxes): no check, no device sync
        giou = generalized_box_iou(box_cxcywh_to_xyxy(src), box_cxcywh_to_xyxy(tgt), check=False)
        loss_giou = (1 - torch.diagonal(giou)).sum() / num_boxes
        with torch.no_grad():
            n_pred = (logits.argmax(-1) != logits.shape[-1] - 1).sum(1).float()
            card = (n_pred - n_true).abs().mean()
        return {
            "loss_ce": loss_ce,
            "loss_bbox": loss_bbox,
            "loss_giou": loss_giou,
            "cardinality_error": card,
        }

    def forward(self, outputs: dict, targets: list[dict]) -> dict[str, Tensor]:
        layers = [outputs, *(outputs.get("aux_outputs") or [])]
        device = outputs["logits"].device
        sizes = [len(t["class_labels"]) for t in targets]
        # Box losses are normalised by the number of target boxes (at least 1).
        num_boxes = max(float(sum(sizes)), 1.0)
        labels = torch.cat([t["class_labels"] for t in targets]).to(device)
        boxes = torch.cat([t["boxes"] for t in targets]).to(device)
        n_true = torch.tensor(sizes, dtype=torch.float32, device=device)
        # All layers are matched with one device->host transfer, and their matches go back
        # in one host->device transfer (every layer matches the same number of pairs).
        matches = self.matcher.match_layers(layers, targets)
        Q = outputs["logits"].shape[1]
        idx = torch.stack([self._flat_index(m, Q, sizes) for m in matches]).to(device)
        losses = {}
        for i, (out, layer_idx) in enumerate(zip(layers, idx, strict=True)):
            suffix = "" if i == 0 else f"_{i - 1}"
            for k, v in self._losses(out, labels, boxes, n_true, layer_idx, num_boxes).items():
                losses[k + suffix] = v
        return losses

    def weighted_total(self, losses: dict[str, Tensor]) -> Tensor:
        """Σ weight · loss over loss_ce/bbox/giou and their auxiliary copies."""
        total = 0.0
        for k, v in losses.items():
            base = k.rsplit("_", 1)[0] if k[-1].isdigit() else k
            if base in self.weights:
                total = total + self.weights[base] * v
        return total
