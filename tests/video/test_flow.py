import numpy as np
import pytest

from deepnotes.video.flow import cached_tvl1_flow, flow_to_rgb, tvl1_flow


def _blob_pair(dx, dy, size=24):
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    rng = np.random.default_rng()
    base = rng.random((size + 8, size + 8)).astype(np.float32)
    from scipy.ndimage import gaussian_filter

    base = gaussian_filter(base, 1.5)
    a = base[4 : 4 + size, 4 : 4 + size]
    b = base[4 - dy : 4 - dy + size, 4 - dx : 4 - dx + size]  # content moves by (+dx, +dy)
    return np.stack([a, b])


def test_tvl1_recovers_a_translation(tmp_path):
    frames = _blob_pair(1, -1)
    flow = tvl1_flow(frames)
    assert flow.shape == (1, 2, 24, 24)
    inner = flow[0, :, 4:-4, 4:-4].reshape(2, -1).mean(1)
    assert abs(inner[0] - 1) < 0.25 and abs(inner[1] + 1) < 0.25
    cached = cached_tvl1_flow(frames, tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 1
    np.testing.assert_array_equal(cached, cached_tvl1_flow(frames, tmp_path))  # from disk
    np.testing.assert_array_equal(cached, flow)


def test_flow_to_rgb_direction_and_magnitude():
    flow = np.zeros((2, 2, 2))
    flow[0, 0, 0] = 1.0  # right -> hue 0 (red) at full value
    flow[1, 0, 1] = 0.5  # down, half magnitude
    rgb = flow_to_rgb(flow)
    assert rgb.shape == (2, 2, 3)
    np.testing.assert_allclose(rgb[0, 0], [1, 0, 0])
    assert rgb[1, 1].max() == 0  # no motion -> black
    assert abs(rgb[0, 1].max() - 0.5) < 1e-12
    with pytest.raises(ValueError):
        flow_to_rgb(np.zeros((3, 2, 2)))
