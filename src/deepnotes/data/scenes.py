"""Offline detection scenes: coloured shapes on a noisy canvas, with boxes and classes.

`make_scenes(n, ...)` draws n images, each with 1..max_objects shapes of the classes
SHAPES (circle, square, triangle, cross, ring), in random colours, sizes and positions, on a
random-tinted noisy background. Objects may touch but overlap at most `max_iou`, so every box
is visible. The colour says nothing about the class; the shape does.

Deterministic given `seed`. Boxes are cxcywh normalised to 0..1 (DETR's convention), tight
around the drawn pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SHAPES = ("circle", "square", "triangle", "cross", "ring")


@dataclass
class Scenes:
    images: torch.Tensor  # [n, 3, H, W] float32 in 0..1
    targets: list[dict]  # per image: {"class_labels": [k] int64, "boxes": [k, 4] cxcywh 0..1}

    def __len__(self) -> int:
        return len(self.targets)


def _shape_mask(kind: str, h: int, w: int) -> np.ndarray:
    """Boolean [h, w] mask of the shape filling an h×w box (touching all four sides)."""
    y, x = np.mgrid[0:h, 0:w]
    u = (x + 0.5) / w * 2 - 1  # -1..1 across the box
    v = (y + 0.5) / h * 2 - 1
    if kind == "circle":
        m = u**2 + v**2 <= 1.0
    elif kind == "square":
        m = np.ones((h, w), bool)
    elif kind == "triangle":  # apex at the top centre, base at the bottom
        m = np.abs(u) <= (v + 1) / 2
    elif kind == "cross":
        m = (np.abs(u) <= 0.3) | (np.abs(v) <= 0.3)
    elif kind == "ring":
        r = u**2 + v**2
        m = (r <= 1.0) & (r >= 0.35)
    else:
        raise ValueError(f"unknown shape {kind!r}; choose from {SHAPES}")
    # make the mask touch every side of its box so that the box is tight
    m[:, 0] |= m[:, 1] if w > 1 else m[:, 0]
    m[0, :] |= m[1, :] if h > 1 else m[0, :]
    m[:, -1] |= m[:, -2] if w > 1 else m[:, -1]
    m[-1, :] |= m[-2, :] if h > 1 else m[-1, :]
    return m


def _iou(a, b) -> float:
    """IoU of two (x0, y0, x1, y1) pixel boxes."""
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def make_scenes(
    n: int,
    size: int | tuple[int, int] = 64,
    max_objects: int = 4,
    min_objects: int = 1,
    num_classes: int = len(SHAPES),
    obj_size: tuple[float, float] = (0.12, 0.45),
    max_iou: float = 0.1,
    noise: float = 0.08,
    seed: int = 0,
) -> Scenes:
    """n scenes on an H×W canvas (size = side or (H, W)).

    obj_size: (min, max) side of an object as a fraction of min(H, W).
    """
    H, W = (size, size) if isinstance(size, int) else size
    if n < 0 or H < 8 or W < 8:
        raise ValueError(f"need n >= 0 and a canvas of at least 8×8, got n={n}, {H}×{W}")
    if not 1 <= min_objects <= max_objects:
        raise ValueError(f"need 1 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
    if not 1 <= num_classes <= len(SHAPES):
        raise ValueError(f"num_classes must be in 1..{len(SHAPES)}, got {num_classes}")
    lo, hi = obj_size
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"obj_size must satisfy 0 < min <= max <= 1, got {obj_size}")
    rng = np.random.default_rng(seed)
    images = np.empty((n, 3, H, W), np.float32)
    targets = []
    side = min(H, W)
    for i in range(n):
        bg = rng.uniform(0.0, 0.35, size=3)
        img = bg[:, None, None] + noise * rng.standard_normal((3, H, W))
        k = int(rng.integers(min_objects, max_objects + 1))
        placed, labels = [], []
        for _ in range(50 * k):  # rejection sampling of non-overlapping boxes
            if len(placed) == k:
                break
            h = max(3, int(round(rng.uniform(lo, hi) * side)))
            w = max(3, int(round(h * rng.uniform(0.7, 1.4))))
            w = min(w, W)
            h = min(h, H)
            y0, x0 = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
            box = (x0, y0, x0 + w, y0 + h)
            if any(_iou(box, p) > max_iou for p in placed):
                continue
            cls = int(rng.integers(num_classes))
            colour = rng.uniform(0.45, 1.0, size=3)
            colour[rng.integers(3)] = rng.uniform(0.0, 0.3)  # saturated, far from the background
            m = _shape_mask(SHAPES[cls], h, w)
            img[:, y0 : y0 + h, x0 : x0 + w][:, m] = colour[:, None]
            placed.append(box)
            labels.append(cls)
        images[i] = np.clip(img, 0, 1)
        b = np.asarray(placed, np.float64).reshape(-1, 4)
        cxcywh = np.stack(
            [
                (b[:, 0] + b[:, 2]) / 2 / W,
                (b[:, 1] + b[:, 3]) / 2 / H,
                (b[:, 2] - b[:, 0]) / W,
                (b[:, 3] - b[:, 1]) / H,
            ],
            -1,
        )
        targets.append(
            {
                "class_labels": torch.as_tensor(labels, dtype=torch.int64),
                "boxes": torch.as_tensor(cxcywh, dtype=torch.float32),
            }
        )
    return Scenes(torch.from_numpy(images), targets)
