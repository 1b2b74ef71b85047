import pytest
import torch

from deepnotes.models.video import (
    LateFusion,
    VideoResNet,
    average_fusion,
    small,
    stack_flow,
    stream,
)
from deepnotes.models.video.two_stream import image_logits
from tests.helpers import assert_close


def _model(kind, t=5, **kw):
    torch.manual_seed(0)
    return VideoResNet(small(kind, n_classes=6, width=8, **kw), t).double().eval()


def test_tsn_is_order_blind_and_tsm_r3d_are_not():
    x = torch.randn(2, 5, 3, 12, 12, dtype=torch.float64)
    rev = x.flip(1)
    assert_close(_model("tsn")(rev), _model("tsn")(x))
    for kind in ("tsm", "r3d", "r2plus1d"):
        m = _model(kind)
        assert (m(rev) - m(x)).abs().max() > 1e-6, kind


def test_online_tsm_frames_do_not_see_the_future():
    m = _model("tsm", shift="online")
    x = torch.randn(1, 5, 3, 12, 12, dtype=torch.float64)
    y = x.clone()
    y[:, 3:] = torch.randn_like(y[:, 3:])
    a, b = m.frame_logits(x), m.frame_logits(y)
    assert torch.equal(a[:, :3], b[:, :3]) and not torch.equal(a[:, 3:], b[:, 3:])
    off = _model("tsm")  # bi-directional: frame 2 sees frame 3
    assert not torch.equal(off.frame_logits(x)[:, 2], off.frame_logits(y)[:, 2])


def test_inplace_placement_shifts_identity_path_too():
    res, inp = _model("tsm"), _model("tsm", shift="inplace")
    inp.load_state_dict(res.state_dict())
    x = torch.randn(2, 5, 3, 12, 12, dtype=torch.float64)
    assert (res(x) - inp(x)).abs().max() > 1e-6
    assert sum(p.numel() for p in res.parameters()) == sum(p.numel() for p in inp.parameters())


@pytest.mark.parametrize("t,size", [(4, 16), (3, 12)])
def test_shapes_and_gradients(t, size):
    for kind in ("tsn", "tsm", "r3d", "r2plus1d"):
        m = VideoResNet(small(kind, n_classes=5, width=4), t)
        x = torch.randn(2, t, 3, size, size)
        out = m(x)
        assert out.shape == (2, 5)
        out.sum().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="T=5"):
        _model("tsn")(torch.randn(1, 4, 3, 8, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="2D"):
        VideoResNet(small("r3d", shift="residual"), 4)
    with pytest.raises(ValueError, match="unknown video model"):
        small("c2d")


def test_two_stream_pieces():
    flow = torch.randn(3, 10, 2, 16, 16)
    s = stack_flow(flow)
    assert s.shape == (3, 20, 16, 16)
    assert torch.equal(s[:, 2], flow[:, 1, 0]) and torch.equal(s[:, 3], flow[:, 1, 1])
    spatial, temporal = stream(3, 4, width=4), stream(20, 4, width=4)
    ps = image_logits(spatial, torch.randn(3, 3, 16, 16)).softmax(-1)
    pt = image_logits(temporal, s).softmax(-1)
    fused = average_fusion(ps, pt)
    assert_close(fused.sum(-1), torch.ones(3))
    assert LateFusion(4)(ps, pt).shape == (3, 4)
    with pytest.raises(ValueError):
        stack_flow(torch.randn(3, 10, 3, 16, 16))
