import numpy as np
import pytest
import torch

from deepnotes.data.clips import (
    CLASS_NAMES,
    N_TEMPORAL,
    STREAM_CLASSES,
    _motion,
    action_clips,
    action_stream,
    real_clip,
)


def test_clips_shapes_balance_and_seed():
    x, y = action_clips(36, frames=5, size=20, seed=3)
    assert x.shape == (36, 5, 3, 20, 20) and x.dtype == torch.float32
    assert torch.bincount(y, minlength=len(CLASS_NAMES)).tolist() == [3] * 12
    x2, y2 = action_clips(36, frames=5, size=20, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, action_clips(36, frames=5, size=20, seed=4)[0])


@pytest.mark.parametrize("pair", range(N_TEMPORAL // 2))
def test_temporal_pairs_are_time_reversals(pair):
    """Same draw, paired kinds: the poses run backwards (up to the small camera jitter)."""
    a = _motion(2 * pair, 9, np.random.default_rng(7))
    b = _motion(2 * pair + 1, 9, np.random.default_rng(7))
    np.testing.assert_allclose(a[:, 2:], b[::-1, 2:])
    assert np.abs(a[:, :2] - b[::-1, :2]).max() < 0.2  # jitter only (sd 0.02 each)
    assert np.abs(a[0] - a[-1]).max() > 0.3  # and the motion itself is large


def test_left_moves_left():
    x, y = action_clips(24, frames=6, size=24, seed=0, noise=0.0, classes=(0, 1))
    cols = torch.arange(24.0)
    mass = x.sum(2).sum(2)  # [N, T, W]
    cx = (mass * cols).sum(-1) / mass.sum(-1)
    d = cx[:, -1] - cx[:, 0]
    assert (d[y == 0] < -5).all() and (d[y == 1] > 5).all()


def test_stream_labels_and_segments():
    f, lab = action_stream(400, size=16, seed=2)
    assert f.shape == (400, 3, 16, 16) and lab.shape == (400,)
    assert lab.min() == 0 and lab.max() < len(STREAM_CLASSES)
    change = (lab[1:] != lab[:-1]).nonzero()[:, 0] + 1
    seg = torch.tensor_split(lab, change.tolist())
    for s, nxt in zip(seg, seg[1:]):  # actions alternate with background
        assert (s[0] == 0) != (nxt[0] == 0)
    assert all(8 <= len(s) <= 20 for s in seg[1:-1] if s[0] > 0)
    with pytest.raises(ValueError):
        action_stream(10, action_len=(1, 3))


def test_real_clip_decodes():
    v = real_clip("bikes.mp4", frames=3, size=48)
    assert v.dtype == np.uint8 and v.shape[0] == 3 and min(v.shape[1:3]) == 48 and v.std() > 5
    with pytest.raises(ValueError, match="bundled"):
        real_clip("nope.mp4")
