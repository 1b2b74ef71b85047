"""Optical flow by TV-L1 (Zach, Pock & Bischof 2007), the flow the two-stream paper used.

TV-L1 minimises  sum |grad u| + |grad v| + lambda |I1(x + w) - I0(x)|  over the flow
w = (u, v): total variation keeps motion boundaries sharp, the L1 data term tolerates
outliers. scikit-image's `optical_flow_tvl1` solves it coarse-to-fine with warps.

It is slow (about 10 ms per 32x32 frame pair, seconds at full resolution), so flows are
computed once per clip and cached on disk, keyed by a hash of the frames and the settings.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np


def default_cache_dir() -> Path:
    """$DEEPNOTES_CACHE/flow, else ~/.cache/deepnotes/flow."""
    root = os.environ.get("DEEPNOTES_CACHE") or Path.home() / ".cache" / "deepnotes"
    return Path(root) / "flow"


def tvl1_flow(frames: np.ndarray, *, num_warp: int = 5, num_iter: int = 10) -> np.ndarray:
    """frames: [T, H, W] grayscale float -> flow [T-1, 2, H, W] as (x, y) = (column, row)
    displacement in pixels, from frame t to frame t+1."""
    from skimage.registration import optical_flow_tvl1

    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 3 or frames.shape[0] < 2:
        raise ValueError(f"frames must be [T>=2, H, W] grayscale, got {frames.shape}")
    out = np.empty((frames.shape[0] - 1, 2, *frames.shape[1:]), dtype=np.float32)
    for t in range(frames.shape[0] - 1):
        v, u = optical_flow_tvl1(frames[t], frames[t + 1], num_warp=num_warp, num_iter=num_iter)
        out[t, 0], out[t, 1] = u, v
    return out


def cached_tvl1_flow(frames: np.ndarray, cache_dir: str | Path | None = None, **kw) -> np.ndarray:
    """`tvl1_flow`, read from / written to `cache_dir` (default: `default_cache_dir()`)."""
    frames = np.ascontiguousarray(frames, dtype=np.float32)
    h = hashlib.sha1(frames.tobytes())
    h.update(repr((frames.shape, sorted(kw.items()))).encode())
    path = Path(cache_dir or default_cache_dir()) / f"{h.hexdigest()}.npy"
    if path.exists():
        return np.load(path)
    flow = tvl1_flow(frames, **kw)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, flow)
    os.replace(tmp, path)
    return flow


def flow_to_rgb(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """flow: [2, H, W] (x, y) -> RGB image [H, W, 3] in [0, 1].

    The usual HSV picture: hue = direction, saturation = 1, value = magnitude / max_magnitude
    (default: the largest magnitude in the field).
    """
    from matplotlib.colors import hsv_to_rgb

    flow = np.asarray(flow, dtype=np.float64)
    if flow.ndim != 3 or flow.shape[0] != 2:
        raise ValueError(f"flow must be [2, H, W], got {flow.shape}")
    u, v = flow
    mag = np.hypot(u, v)
    top = max_magnitude if max_magnitude is not None else max(float(mag.max()), 1e-12)
    hue = (np.arctan2(v, u) / (2 * np.pi)) % 1.0
    hsv = np.stack([hue, np.ones_like(hue), np.clip(mag / top, 0, 1)], axis=-1)
    return hsv_to_rgb(hsv)
