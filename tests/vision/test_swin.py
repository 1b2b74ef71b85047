"""Swin: window helpers, the shift mask, equality with transformers, Swin-T counts."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from deepnotes.models.swin import (
    Swin,
    relative_position_index,
    shift_mask,
    swin_b,
    swin_s,
    swin_t,
    swin_tiny_test,
    window_partition,
    window_reverse,
    window_token_index,
)
from tests.helpers import assert_close


def test_window_partition_round_trip():
    x = torch.randn(2, 12, 8, 5)
    w = window_partition(x, 4)
    assert w.shape == (2 * 3 * 2, 16, 5)
    assert torch.equal(w[1], x[0, 0:4, 4:8].reshape(16, 5))  # second window = top row, right
    assert torch.equal(window_reverse(w, 4, 12, 8), x)


def test_relative_position_index_is_the_offset():
    M = 3
    idx = relative_position_index(M)
    for i in range(M * M):
        for j in range(M * M):
            dy, dx = i // M - j // M, i % M - j % M
            assert idx[i, j] == (dy + M - 1) * (2 * M - 1) + (dx + M - 1)


@pytest.mark.parametrize("H,W,M,s", [(8, 8, 4, 2), (12, 6, 3, 1), (14, 14, 7, 3)])
def test_shift_mask_matches_the_unrolled_windows(H, W, M, s):
    # After rolling by -s, token (y', x') came from ((y'+s) % H, (x'+s) % W). Without the roll
    # the shifted windows have borders at s + kM, so a pair may attend iff both tokens fall in
    # the same such window: floor((y - s) / M) equal on each axis.
    mask = shift_mask(H, W, M, s)
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    coords = torch.stack([(ys + s) % H, (xs + s) % W], -1)[None]  # original positions
    win = window_partition(coords, M)  # [nW, M*M, 2]
    region = torch.div(win - s, M, rounding_mode="floor")
    same = (region[:, :, None] == region[:, None, :]).all(-1)
    assert torch.equal(mask == 0, same)
    assert set(mask.unique().tolist()) <= {0.0, -100.0}


@pytest.mark.parametrize("H,W,M,s", [(8, 8, 4, 2), (12, 6, 3, 1), (14, 14, 7, 3), (7, 7, 7, 0)])
def test_window_token_index_is_roll_then_partition(H, W, M, s):
    """The fast path's single gather equals the reference's roll + window_partition (laid out
    token-major: [B, M*M, nW, C])."""
    x = torch.randn(2, H, W, 5)
    ref = window_partition(torch.roll(x, shifts=(-s, -s), dims=(1, 2)), M)  # [B*nW, M*M, C]
    ref = ref.view(2, -1, M * M, 5).transpose(1, 2)
    got = x.view(2, H * W, 5)[:, window_token_index(H, W, M, s)].view(2, M * M, -1, 5)
    assert torch.equal(got, ref)


def test_fast_path_equals_the_reference_path_with_gradients():
    """Fused gather / q-k-v path vs plain roll + partition: outputs and every gradient (fp64,
    training mode, a padded grid: 30² -> stage 1 pads 15 -> 16)."""
    fast = Swin(swin_tiny_test(image_size=30)).double().train()
    with torch.no_grad():
        for p in fast.parameters():
            p.normal_(0, 0.3)
    ref = Swin(swin_tiny_test(image_size=30, fast=False)).double().train()
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(3, 3, 30, 30, dtype=torch.float64)
    outs = [m(x) for m in (fast, ref)]
    assert_close(outs[0], outs[1], what="logits")
    cot = torch.randn_like(outs[0])
    for m, o in zip((fast, ref), outs, strict=True):
        (o * cot).sum().backward()
    for (name, a), b in zip(fast.named_parameters(), ref.parameters(), strict=True):
        if name.endswith("k_proj.bias"):  # softmax ignores a shift per query row: grad is 0
            assert a.grad.abs().max() < 1e-9 and b.grad.abs().max() < 1e-9, name
            continue
        assert_close(a.grad, b.grad, what=f"grad {name}")


def _hf_pair(size, fast=True, **kw):
    transformers = pytest.importorskip("transformers", reason="transformers is the Swin peer")
    from deepnotes.models.loaders import swin_from_transformers

    cfg = dict(image_size=size, patch_size=2, embed_dim=12, depths=[2, 2, 3], num_heads=[2, 3, 4])
    hc = transformers.SwinConfig(**{**cfg, "window_size": 4, "num_labels": 7, **kw})
    hf = transformers.SwinForImageClassification(hc).eval()
    with torch.no_grad():  # every weight random, including the zero-initialised bias tables
        for p in hf.parameters():
            p.normal_(0, 0.5)
    return hf, swin_from_transformers(hf, fast=fast).eval()


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "reference"])
@pytest.mark.parametrize("size", [32, 30])  # 30: stage 1 pads 15 -> 16 tokens
def test_logits_equal_transformers(size, fast):
    hf, ours = _hf_pair(size, fast)
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        assert_close(ours.features(x), hf.swin(x).last_hidden_state, what="features")
        assert_close(ours(x), hf(x).logits, what="logits")


def test_shift_changes_the_output_and_keeps_the_parameters():
    torch.manual_seed(torch.seed() % 2**31)
    a = Swin(swin_tiny_test()).eval()
    b = Swin(swin_tiny_test(shift=False)).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (a(x) - b(x)).abs().max() > 1e-4
    assert [blk.shift for s in a.stages for blk in s.blocks] == [0, 2, 0, 2, 0, 0]


def test_gradients_flow_and_bad_input_raises():
    m = Swin(swin_tiny_test(drop_path=0.1)).train()
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    m(x).square().mean().backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in m.parameters())
    with pytest.raises(ValueError, match="images"):
        m(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match="differ in length"):
        swin_tiny_test(depths=(2, 2))


def _count(cfg):
    with torch.device("meta"):
        m = Swin(cfg)
        x = torch.randn(1, 3, 224, 224)
    fc = FlopCounterMode(display=False)
    with fc:
        m(x)
    # FlopCounterMode counts 2 FLOPs per multiply-add; the paper's figures are multiply-adds.
    return sum(p.numel() for p in m.parameters()), fc.get_total_flops() / 2


@pytest.mark.parametrize(
    "make,params_m,gmacs", [(swin_t, 28.3, 4.5), (swin_s, 49.6, 8.7), (swin_b, 87.8, 15.4)]
)
def test_paper_parameter_and_flop_counts(make, params_m, gmacs):
    n, macs = _count(make())
    assert round(n / 1e6, 1) == params_m
    assert round(macs / 1e9, 1) == gmacs


def test_swin_t_parameters_equal_transformers():
    transformers = pytest.importorskip("transformers", reason="transformers is the Swin peer")
    with torch.device("meta"):
        hf = transformers.SwinForImageClassification(transformers.SwinConfig(num_labels=1000))
    n_hf = sum(p.numel() for p in hf.parameters())
    assert n_hf == _count(swin_t())[0] == 28_288_354


def test_vit_baseline_shapes_and_errors():
    from deepnotes.models.vit import ViT, ViTConfig

    m = ViT(
        ViTConfig(image_size=24, patch_size=3, in_chans=1, dim=30, depth=2, heads=3, num_classes=7)
    )
    assert m(torch.randn(5, 1, 24, 24)).shape == (5, 7)
    with pytest.raises(ValueError, match="expected images"):
        m(torch.randn(5, 1, 20, 20))
    with pytest.raises(ValueError, match="multiple"):
        ViTConfig(image_size=25, patch_size=4)
