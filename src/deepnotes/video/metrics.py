"""Per-frame mean average precision, the protocol of THUMOS'14 online action detection.

Every frame is a sample. For each action class c (the background class excluded), frames are
ranked by their class-c score and AP is the mean of the precision at each true frame's rank
(non-interpolated AP, as sklearn's `average_precision_score`). mAP averages AP over the action
classes that occur at least once. This is the `frame-level mAP` of TRN and OadTR's tables.
"""

from __future__ import annotations

import numpy as np


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """AP of one class. scores: [N] float, positives: [N] bool. Ties are ranked as one block
    (precision taken at the end of the block), matching sklearn."""
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    if scores.shape != positives.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and positives {positives.shape} must be [N]")
    n_pos = int(positives.sum())
    if n_pos == 0:
        raise ValueError("AP is undefined for a class with no positive frame")
    order = np.argsort(-scores, kind="mergesort")
    s, p = scores[order], positives[order]
    tp = np.cumsum(p)
    # keep the last index of each run of tied scores
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp_at, rank_at = tp[last], last + 1
    precision = tp_at / rank_at
    recall_step = np.diff(np.r_[0, tp_at]) / n_pos
    return float((precision * recall_step).sum())


def per_frame_map(
    scores: np.ndarray, labels: np.ndarray, *, background: int | None = 0
) -> tuple[float, dict[int, float]]:
    """scores: [N, K] (any monotone score, e.g. softmax), labels: [N] int in [0, K).

    Returns (mAP, {class: AP}) over the classes other than `background` that occur in labels.
    """
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(
            f"scores must be [N, K] and labels [N]; got {scores.shape}, {labels.shape}"
        )
    if labels.min() < 0 or labels.max() >= scores.shape[1]:
        raise ValueError(f"labels must lie in [0, {scores.shape[1]})")
    aps = {
        c: average_precision(scores[:, c], labels == c)
        for c in range(scores.shape[1])
        if c != background and (labels == c).any()
    }
    if not aps:
        raise ValueError("no action class (other than background) occurs in labels")
    return float(np.mean(list(aps.values()))), aps
