import torch

from deepnotes.models.video.resnet import VideoResNet, r3d_18, small, tsm_resnet50
from deepnotes.video import count


def _meta_counts(cfg, t, size):
    with torch.device("meta"):
        model, clip = VideoResNet(cfg, t), torch.empty(1, t, 3, size, size)
    return count(model, clip)


def test_r3d_18_reference_counts():
    c = _meta_counts(r3d_18(), 16, 112)
    assert round(c.params / 1e6, 1) == 33.4  # torchvision: 33,371,472
    assert round(c.macs / 1e9, 1) == 40.7  # torchvision's "GFLOPS" (multiply-adds)
    assert c.params == 33_371_472


def test_tsm_resnet50_reference_counts():
    c = _meta_counts(tsm_resnet50(), 8, 224)
    assert round(c.params / 1e6, 1) == 24.3  # TSM paper / mit-han-lab, Kinetics-400 head
    assert round(c.macs / 1e9) == 33  # 8 frames x ResNet-50's 4.1 GMACs
    tsn = tsm_resnet50()
    tsn.shift = "none"
    assert _meta_counts(tsn, 8, 224).flops == c.flops  # the shifts add no FLOPs


def test_counter_matches_hand_count_on_small_models():
    x = torch.randn(1, 8, 3, 20, 20)
    m = VideoResNet(small("tsn", width=4), 8)
    first = m.stem[0]
    hand = 2 * first.weight.numel() * 20 * 20 * 8  # stem conv alone, stride 1, same padding
    assert count(m.stem, x.flatten(0, 1)).flops == hand
    assert count(VideoResNet(small("tsm", width=4), 8), x).flops == count(m, x).flops
