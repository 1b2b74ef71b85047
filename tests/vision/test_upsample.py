"""Upsampling layers against independent implementations: scikit-image's resize and torch.nn."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.layers.upsample import (
    ResizeConv,
    SubPixelConv,
    TransposedConvUp,
    checkerboard_energy,
    conv_transpose2d,
    icnr_,
    interpolate,
    pixel_shuffle,
    pixel_unshuffle,
)
from tests.helpers import assert_close

skt = pytest.importorskip("skimage.transform", reason="scikit-image is the independent peer")

SIZES = [((8, 8), (16, 16)), ((7, 5), (21, 15)), ((13, 11), (31, 40)), ((6, 9), (12, 36))]


def _sk_resize(x: torch.Tensor, out: tuple[int, int], order: int) -> torch.Tensor:
    """scikit-image on every [H, W] plane; mode='edge' replicates the border like torch."""
    planes = [
        skt.resize(p.numpy(), out, order=order, mode="edge", anti_aliasing=False, clip=False)
        for p in x.reshape(-1, *x.shape[-2:])
    ]
    return torch.from_numpy(np.stack(planes)).reshape(*x.shape[:2], *out)


@pytest.mark.parametrize("src,dst", SIZES)
def test_bilinear_equals_skimage_resize_in_fp64(src, dst):
    x = torch.rand(2, 3, *src, dtype=torch.float64)
    ours = interpolate(x, size=dst, mode="bilinear", align_corners=False)
    err = (ours - _sk_resize(x, dst, order=1)).abs().max().item()
    assert err < 1e-12, err


@pytest.mark.parametrize("src,dst", SIZES)
def test_nearest_exact_equals_skimage_resize(src, dst):
    x = torch.rand(2, 3, *src, dtype=torch.float64)
    ours = interpolate(x, size=dst, mode="nearest-exact")
    assert torch.equal(ours, _sk_resize(x, dst, order=0))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("src,dst", SIZES)
def test_interpolate_equals_torch(src, dst, dtype):
    x = torch.randn(2, 3, *src, dtype=dtype)
    for mode, ac in [("nearest", False), ("nearest-exact", False), ("bilinear", False),
                     ("bilinear", True)]:  # fmt: skip
        kw = {"align_corners": ac} if mode == "bilinear" else {}
        ref = F.interpolate(x, size=dst, mode=mode, **kw)
        assert_close(interpolate(x, size=dst, mode=mode, align_corners=ac), ref, what=mode)
    for scale in (2, 3, 4, 1.5, 2.5, 0.5):  # torch maps with 1 / scale, not size ratios
        for mode, ac in [("nearest", False), ("nearest-exact", False), ("bilinear", False),
                         ("bilinear", True)]:  # fmt: skip
            kw = {"align_corners": ac} if mode == "bilinear" else {}
            ref = F.interpolate(x, scale_factor=scale, mode=mode, **kw)
            ours = interpolate(x, scale_factor=scale, mode=mode, align_corners=ac)
            assert_close(ours, ref, what=f"{mode} x{scale}")


def test_align_corners_keeps_the_corners():
    x = torch.randn(1, 1, 5, 7, dtype=torch.float64)
    y = interpolate(x, size=(9, 13), mode="bilinear", align_corners=True)
    for i, j in [(0, 0), (0, -1), (-1, 0), (-1, -1)]:
        assert y[0, 0, i, j] == x[0, 0, i, j]


def test_pixel_shuffle_equals_torch_and_inverts():
    for r, c, h, w in [(2, 3, 5, 7), (3, 1, 4, 4), (4, 2, 3, 6)]:
        x = torch.randn(2, c * r * r, h, w)
        y = pixel_shuffle(x, r)
        assert torch.equal(y, nn.PixelShuffle(r)(x))
        assert torch.equal(pixel_unshuffle(y, r), x)
        assert torch.equal(pixel_unshuffle(y, r), nn.PixelUnshuffle(r)(y))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_conv_transpose_equals_torch(seed, dtype):
    rng = random.Random(seed)
    for _ in range(6):
        k, s = rng.randint(1, 5), rng.randint(1, 4)
        height, width = rng.randint(3, 9), rng.randint(3, 9)
        op = rng.randint(0, s - 1)
        # padding up to k - 1, but leaving an output of at least one pixel:
        # (side - 1) s - 2 p + k + op >= 1
        p = rng.randint(0, min(k - 1, ((min(height, width) - 1) * s + k + op - 1) // 2))
        ref = nn.ConvTranspose2d(3, 5, k, s, p, op).to(dtype)
        x = torch.randn(2, 3, height, width, dtype=dtype)
        ours = conv_transpose2d(x, ref.weight, ref.bias, s, p, op)
        assert_close(ours, ref(x), what=f"k={k} s={s} p={p} op={op}")
        # gradients flow through the scatter form as through torch's kernel
        g = torch.randn_like(ours)
        w = ref.weight.detach().clone().requires_grad_(True)
        (conv_transpose2d(x, w, None, s, p, op) * g).sum().backward()
        ref_w = ref.weight.detach().clone().requires_grad_(True)
        (F.conv_transpose2d(x, ref_w, None, s, p, op) * g).sum().backward()
        assert_close(w.grad, ref_w.grad)


def test_icnr_starts_as_nearest_upsampling_of_a_conv():
    for r in (2, 3):
        layer = SubPixelConv(4, 2, r, kernel=3)
        x = torch.randn(2, 4, 6, 5)
        base = nn.Conv2d(4, 2, 3, padding=1)
        with torch.no_grad():
            base.weight.copy_(layer.conv.weight[:: r * r])
            base.bias.zero_()
        expected = F.interpolate(base(x), scale_factor=r, mode="nearest")
        assert_close(layer(x), expected)
    with pytest.raises(ValueError, match="multiple"):
        icnr_(torch.empty(6, 1, 3, 3), 2)


def test_checkerboard_energy_finds_the_transposed_conv_artefact():
    """A constant input: resize-conv and ICNR sub-pixel give flat maps (energy ~0 on the
    stride lattice away from the border), a k=3, s=2 transposed conv a periodic one."""
    torch.manual_seed(0)
    x = torch.ones(1, 4, 16, 16)
    crop = slice(4, -4)
    with torch.no_grad():
        tc = TransposedConvUp(4, 1, 2)(x)[..., crop, crop]
        sp = SubPixelConv(4, 1, 2)(x)[..., crop, crop]
        rc = ResizeConv(4, 1, 2)(x)[..., crop, crop]
    assert checkerboard_energy(tc, 2).item() > 0.99
    assert checkerboard_energy(sp + 1e-3 * torch.randn_like(sp), 2).item() < 0.5
    assert torch.allclose(sp, sp.mean()) and torch.allclose(rc, rc.mean())
    # on a pure stride-periodic pattern all energy is on the lattice; on noise about 1/r^2
    checker = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).repeat(8, 8)
    assert abs(checkerboard_energy(checker, 2).item() - 1) < 1e-12
    noise = checkerboard_energy(torch.randn(64, 256, 256), 2).mean().item()
    assert abs(noise - 3 / (256 * 256 - 1)) < 1e-5


def test_transposed_conv_up_output_size():
    for r in (2, 3, 4):
        for k in (r, r + 1, 2 * r, r + 3):
            y = TransposedConvUp(2, 3, r, kernel=k)(torch.randn(1, 2, 5, 7))
            assert y.shape == (1, 3, 5 * r, 7 * r)


def test_bad_inputs_raise():
    x = torch.randn(1, 1, 4, 4)
    with pytest.raises(ValueError, match="mode"):
        interpolate(x, size=8, mode="bicubic")
    with pytest.raises(ValueError, match="exactly one"):
        interpolate(x)
    with pytest.raises(ValueError, match="align_corners"):
        interpolate(x, size=8, mode="nearest", align_corners=True)
    with pytest.raises(ValueError, match="B, C, H, W"):
        interpolate(x[0], size=8)
    with pytest.raises(ValueError, match="C\\*4"):
        pixel_shuffle(torch.randn(1, 3, 2, 2), 2)
    with pytest.raises(ValueError, match="output_padding"):
        conv_transpose2d(x, torch.randn(1, 1, 3, 3), stride=2, output_padding=2)
    with pytest.raises(ValueError, match="multiples"):
        checkerboard_energy(torch.randn(5, 6), 2)
