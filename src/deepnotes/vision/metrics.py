"""Detection metrics: COCO mAP through pycocotools, and DETR's duplicate-prediction rate.

`coco_map(preds, targets, image_size)` fills pycocotools' COCO ground truth and result
structures in memory and runs the standard COCOeval (101-point interpolated precision,
IoU thresholds 0.50:0.05:0.95, up to 100 detections per image). It returns AP (the mean
over the ten thresholds), AP50, AP75 and the small/medium/large APs.
"""

from __future__ import annotations

import contextlib
import io

import torch
from torch import Tensor

from deepnotes.vision.boxes import box_cxcywh_to_xyxy, box_iou


def detr_predictions(logits: Tensor, boxes: Tensor) -> list[dict]:
    """DETR outputs -> per-image detections, one per query (no NMS, no threshold).

    logits: [B, Q, C+1], boxes: [B, Q, 4] cxcywh -> [{"scores": [Q], "labels": [Q],
    "boxes": [Q, 4] cxcywh}] with score = the best real-class probability.
    """
    prob = logits.softmax(-1)[..., :-1]
    scores, labels = prob.max(-1)
    return [
        {"scores": s, "labels": lab, "boxes": b}
        for s, lab, b in zip(scores, labels, boxes, strict=True)
    ]


def coco_map(
    preds: list[dict], targets: list[dict], image_size: tuple[int, int], max_dets: int = 100
) -> dict[str, float]:
    """COCO AP of detections against ground truth (both with cxcywh boxes in 0..1).

    preds: [{"scores": [k], "labels": [k], "boxes": [k, 4]}]; targets: [{"class_labels", "boxes"}].
    image_size: (H, W) in pixels, to express boxes (and COCO's area ranges) in pixels.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions for {len(targets)} images")
    H, W = image_size
    scale = torch.tensor([W, H, W, H], dtype=torch.float64)

    def xywh(b):
        xyxy = box_cxcywh_to_xyxy(b.detach().double().cpu()) * scale
        return torch.cat([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], -1).tolist()

    images, anns, dets = [], [], []
    classes = set()
    for i, (p, t) in enumerate(zip(preds, targets, strict=True)):
        images.append({"id": i, "height": H, "width": W})
        for c, b in zip(t["class_labels"].tolist(), xywh(t["boxes"]), strict=True):
            classes.add(int(c))
            anns.append(
                {"id": len(anns) + 1, "image_id": i, "category_id": int(c), "bbox": b,
                 "area": b[2] * b[3], "iscrowd": 0}
            )  # fmt: skip
        for s, c, b in zip(
            p["scores"].tolist(), p["labels"].tolist(), xywh(p["boxes"]), strict=True
        ):
            dets.append({"image_id": i, "category_id": int(c), "bbox": b, "score": float(s)})
    keys = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")
    if not anns:
        raise ValueError("no ground-truth boxes: AP is undefined")
    if not dets:
        return dict.fromkeys(keys, 0.0)
    classes |= {d["category_id"] for d in dets}
    gt = COCO()
    gt.dataset = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": c} for c in sorted(classes)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.maxDets = [1, 10, max_dets]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # stats: AP, AP50, AP75, AP_s, AP_m, AP_l (-1 where an area range has no boxes -> nan)
    return {
        k: (float(v) if v >= 0 else float("nan")) for k, v in zip(keys, ev.stats[:6], strict=True)
    }


def duplicate_rate(preds: list[dict], score_thresh: float = 0.5, iou_thresh: float = 0.7) -> float:
    """Fraction of confident detections (score > score_thresh) that duplicate a better one.

    A duplicate has the same label and IoU > iou_thresh with a higher-scoring confident
    detection of the same image: what NMS would remove. DETR's set loss should make it ~0.
    """
    n_conf = n_dup = 0
    for p in preds:
        keep = p["scores"] > score_thresh
        s, lab = p["scores"][keep], p["labels"][keep]
        b = box_cxcywh_to_xyxy(p["boxes"][keep].detach().float()).clamp(0, 1)
        n_conf += len(s)
        if len(s) < 2:
            continue
        order = s.argsort(descending=True)
        s, lab, b = s[order], lab[order], b[order]
        iou = box_iou(b, b)[0]
        for j in range(1, len(s)):
            same = (lab[:j] == lab[j]) & (iou[:j, j] > iou_thresh)
            n_dup += bool(same.any())
    return n_dup / n_conf if n_conf else 0.0
