"""The four upsampling layers of `torch.nn`, written out in plain PyTorch.

- nearest / nearest-exact and bilinear (both `align_corners`): interpolation, no parameters.
  Output pixel i along an axis of length n_in -> n_out reads the source coordinate
      align_corners=False:  x = (i + 1/2) n_in / n_out - 1/2   (pixel centres line up)
      align_corners=True:   x = i (n_in - 1) / (n_out - 1)     (corner pixels line up)
  Bilinear takes the two neighbours floor(x), floor(x) + 1 with weights 1 - (x - floor x) and
  x - floor x (x clamped at 0 like torch); nearest-exact takes floor(x + 1/2) = floor((i+1/2)
  n_in/n_out), and torch's legacy "nearest" takes floor(i n_in / n_out).
- PixelShuffle (sub-pixel convolution, Shi et al. 2016): a conv makes C r^2 channels at low
  resolution, then [B, C r^2, H, W] -> [B, C, H r, W r] by out[c, h r + i, w r + j] =
  in[c r^2 + i r + j, h, w]. ICNR init (Aitken et al. 2017) copies one kernel to all r^2
  sub-pixels, so at init it equals nearest upsampling after a conv: no checkerboard.
- Transposed convolution: each input pixel scatters a weighted copy of the kernel onto the
  output at stride s: out[h s + a - p, w s + b - p] += x[h, w] w[a, b]. Where k is not a
  multiple of s the copies overlap unevenly: the checkerboard (Odena et al. 2016).
"""

from __future__ import annotations

import math

import torch
from torch import nn

_MODES = ("nearest", "nearest-exact", "bilinear")


def _out_size(n_in: int, size: int | None, scale: float | None) -> tuple[int, float]:
    """(n_out, source pixels per output pixel), as torch computes them."""
    if size is not None:
        return size, n_in / size
    return int(math.floor(n_in * scale)), 1.0 / scale


def _axis_coords(n_in, n_out, ratio, mode, align_corners, device, dtype):
    i = torch.arange(n_out, device=device, dtype=dtype)
    if mode == "nearest":
        return torch.clamp(torch.floor(i * ratio), max=n_in - 1).long(), None
    if mode == "nearest-exact":
        return torch.clamp(torch.floor((i + 0.5) * ratio), max=n_in - 1).long(), None
    if align_corners:
        x = i * ((n_in - 1) / (n_out - 1)) if n_out > 1 else torch.zeros_like(i)
    else:
        x = torch.clamp((i + 0.5) * ratio - 0.5, min=0.0)
    x0 = torch.clamp(torch.floor(x), max=n_in - 1)
    lam = x - x0
    x0 = x0.long()
    x1 = torch.clamp(x0 + 1, max=n_in - 1)
    return (x0, x1), lam


def interpolate(
    x: torch.Tensor,
    size: int | tuple[int, int] | None = None,
    scale_factor: float | tuple[float, float] | None = None,
    mode: str = "nearest",
    align_corners: bool = False,
) -> torch.Tensor:
    """x: [B, C, H, W] -> [B, C, H', W'], separably along H then W (matches F.interpolate)."""
    if x.dim() != 4:
        raise ValueError(f"x must be [B, C, H, W], got shape {tuple(x.shape)}")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if (size is None) == (scale_factor is None):
        raise ValueError("give exactly one of size and scale_factor")
    if align_corners and mode != "bilinear":
        raise ValueError("align_corners only applies to bilinear")
    sizes = (size, size) if isinstance(size, int) or size is None else tuple(size)
    scales = (
        (scale_factor, scale_factor)
        if scale_factor is None or isinstance(scale_factor, (int, float))
        else tuple(scale_factor)
    )
    if any(s is not None and s <= 0 for s in (*sizes, *scales)):
        raise ValueError(f"size and scale_factor must be positive, got {size}, {scale_factor}")
    out = x
    for axis, (sz, sc) in enumerate(zip(sizes, scales, strict=True)):
        dim = 2 + axis
        n_in = x.shape[dim]
        n_out, ratio = _out_size(n_in, sz, sc)
        idx, lam = _axis_coords(n_in, n_out, ratio, mode, align_corners, x.device, torch.float64)
        if lam is None:
            out = out.index_select(dim, idx)
        else:
            shape = [1, 1, 1, 1]
            shape[dim] = n_out
            lam = lam.to(x.dtype).view(shape)
            out = out.index_select(dim, idx[0]) * (1 - lam) + out.index_select(dim, idx[1]) * lam
    return out


def pixel_shuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    """x: [B, C r^2, H, W] -> [B, C, H r, W r]; out[c, h r + i, w r + j] = x[c r^2 + i r + j]."""
    if x.dim() != 4 or x.shape[1] % (r * r):
        raise ValueError(f"x must be [B, C*{r * r}, H, W], got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    x = x.reshape(b, c // (r * r), r, r, h, w)  # [B, C, i, j, H, W]
    return x.permute(0, 1, 4, 2, 5, 3).reshape(b, c // (r * r), h * r, w * r)


def pixel_unshuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    """The inverse: x: [B, C, H r, W r] -> [B, C r^2, H, W]."""
    b, c, hr, wr = x.shape
    if hr % r or wr % r:
        raise ValueError(f"H and W must be multiples of {r}, got shape {tuple(x.shape)}")
    x = x.reshape(b, c, hr // r, r, wr // r, r).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, c * r * r, hr // r, wr // r)


def conv_transpose2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
    output_padding: int = 0,
) -> torch.Tensor:
    """Transposed convolution as scatter-add, one kernel tap at a time.

    x: [B, Cin, H, W]; weight: [Cin, Cout, k, k] (torch's ConvTranspose2d layout).
    Returns [B, Cout, (H-1) s - 2p + k + op, (W-1) s - 2p + k + op].
    """
    if x.dim() != 4 or weight.dim() != 4 or weight.shape[0] != x.shape[1]:
        raise ValueError(f"x [B, Cin, H, W] and weight [Cin, Cout, k, k] don't fit: "
                         f"{tuple(x.shape)}, {tuple(weight.shape)}")  # fmt: skip
    if output_padding >= stride and output_padding > 0:
        raise ValueError(f"output_padding ({output_padding}) must be < stride ({stride})")
    b, _, h, w = x.shape
    cout, kh, kw = weight.shape[1:]
    full_h, full_w = (h - 1) * stride + kh + output_padding, (w - 1) * stride + kw + output_padding
    out = x.new_zeros(b, cout, full_h, full_w)
    for a in range(kh):
        for c in range(kw):
            tap = torch.einsum("bihw,io->bohw", x, weight[:, :, a, c])
            out[
                :, :, a : a + (h - 1) * stride + 1 : stride, c : c + (w - 1) * stride + 1 : stride
            ] += tap
    out = out[:, :, padding : full_h - padding, padding : full_w - padding]
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def icnr_(weight: torch.Tensor, r: int, init=nn.init.kaiming_normal_) -> torch.Tensor:
    """ICNR (Aitken et al. 2017) in place: weight [C r^2, Cin, k, k] gets one kernel per
    output channel c, shared by its r^2 sub-pixels (rows c r^2 .. c r^2 + r^2 - 1)."""
    if weight.shape[0] % (r * r):
        raise ValueError(f"weight's out channels {weight.shape[0]} not a multiple of {r * r}")
    base = torch.empty(weight.shape[0] // (r * r), *weight.shape[1:], dtype=weight.dtype)
    init(base)
    with torch.no_grad():
        weight.copy_(base.repeat_interleave(r * r, dim=0))
    return weight


class Upsample(nn.Module):
    """nn.Upsample's behaviour: x: [B, C, H, W] -> [B, C, H s, W s]."""

    def __init__(self, scale_factor: float, mode: str = "nearest", align_corners: bool = False):
        super().__init__()
        self.scale_factor, self.mode, self.align_corners = scale_factor, mode, align_corners

    def forward(self, x):
        return interpolate(x, scale_factor=self.scale_factor, mode=self.mode,
                           align_corners=self.align_corners)  # fmt: skip


class SubPixelConv(nn.Module):
    """Conv to C_out r^2 channels, then pixel shuffle: x [B, Cin, H, W] -> [B, Cout, H r, W r]."""

    def __init__(self, cin: int, cout: int, r: int, kernel: int = 3, icnr: bool = True):
        super().__init__()
        self.r = r
        self.conv = nn.Conv2d(cin, cout * r * r, kernel, padding=kernel // 2)
        if icnr:
            icnr_(self.conv.weight, r)
            nn.init.zeros_(self.conv.bias)

    def forward(self, x):
        return pixel_shuffle(self.conv(x), self.r)


class TransposedConvUp(nn.Module):
    """Learned x r upsampling by one transposed conv (kernel r + 1 by default: uneven overlap,
    Odena et al.'s checkerboard case); x: [B, Cin, H, W] -> [B, Cout, H r, W r]."""

    def __init__(self, cin: int, cout: int, r: int, kernel: int | None = None):
        super().__init__()
        k = r + 1 if kernel is None else kernel
        # (H-1) r - 2p + k + op = H r  <=>  k - r = 2p - op
        p, op = (k - r + 1) // 2, (k - r + 1) // 2 * 2 - (k - r)
        self.stride, self.padding, self.output_padding = r, p, op
        self.weight = nn.Parameter(torch.empty(cin, cout, k, k))
        self.bias = nn.Parameter(torch.zeros(cout))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x):
        return conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                self.output_padding)  # fmt: skip


class ResizeConv(nn.Module):
    """Odena et al.'s fix: nearest (or bilinear) resize, then a conv at high resolution."""

    def __init__(self, cin: int, cout: int, r: int, kernel: int = 3, mode: str = "nearest"):
        super().__init__()
        self.up = Upsample(r, mode)
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2)

    def forward(self, x):
        return self.conv(self.up(x))


def checkerboard_energy(y: torch.Tensor, r: int) -> torch.Tensor:
    """Share of an image's (non-DC) spectral energy on the stride-frequency lattice.

    y: [..., H, W] with H, W multiples of r. The 2-D DFT bins (u H / r, v W / r), (u, v) != 0,
    hold exactly the r-periodic part of y (the means of its r^2 polyphase components); a
    transposed conv with uneven overlap puts energy there. Returns [...] in [0, 1].
    """
    h, w = y.shape[-2:]
    if h % r or w % r:
        raise ValueError(f"H, W = {h}, {w} must be multiples of r = {r}")
    y = y.double()
    y = y - y.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(y).abs() ** 2
    lattice = power[..., :: h // r, :: w // r]
    return lattice.sum(dim=(-2, -1)) / power.sum(dim=(-2, -1)).clamp_min(1e-300)


__all__ = [
    "interpolate", "pixel_shuffle", "pixel_unshuffle", "conv_transpose2d", "icnr_", "Upsample",
    "SubPixelConv", "TransposedConvUp", "ResizeConv", "checkerboard_energy",
]  # fmt: skip
