"""The Temporal Shift Module (Lin, Gan & Han 2019): temporal modelling at 2D cost.

A 2D CNN sees one frame at a time. TSM moves a few channels one step along time before a
convolution, so each 2D conv mixes neighbouring frames for free: the shift is memory movement,
with no parameters and no multiply-adds.

Offline (bi-directional) shift on `x: [N*T, C, H, W]`, fold = C // fold_div:
- channels [0, fold) of frame t take frame t+1's (shift "left"/backward in time);
- channels [fold, 2 fold) of frame t take frame t-1's (shift "right"/forward in time);
- the rest is unchanged; frames shifted in from outside the clip are zeros.
These are the semantics of mit-han-lab's `TemporalShift.shift`.

Online (uni-directional) shift, for streaming: channels [0, fold) of frame t take frame t-1's,
the rest is unchanged. Run frame by frame, it only needs the previous frame's first fold,
kept in a cache (`OnlineTemporalShift`).
"""

from __future__ import annotations

import torch
from torch import nn


def _check(x: torch.Tensor, n_segments: int, fold_div: int) -> None:
    if x.dim() != 4:
        raise ValueError(f"temporal shift expects x: [N*T, C, H, W], got shape {tuple(x.shape)}")
    if n_segments < 1 or x.shape[0] % n_segments:
        raise ValueError(f"batch {x.shape[0]} is not a multiple of n_segments={n_segments}")
    if fold_div < 2:
        raise ValueError(f"fold_div must be >= 2 (two folds are shifted), got {fold_div}")


def temporal_shift(x: torch.Tensor, n_segments: int, fold_div: int = 8) -> torch.Tensor:
    """Bi-directional temporal shift. x: [N*T, C, H, W] -> [N*T, C, H, W] (a new tensor)."""
    _check(x, n_segments, fold_div)
    nt, c, h, w = x.shape
    v = x.view(nt // n_segments, n_segments, c, h, w)
    fold = c // fold_div
    out = torch.zeros_like(v)
    out[:, :-1, :fold] = v[:, 1:, :fold]  # frame t takes frame t+1's
    out[:, 1:, fold : 2 * fold] = v[:, :-1, fold : 2 * fold]  # frame t takes frame t-1's
    out[:, :, 2 * fold :] = v[:, :, 2 * fold :]
    return out.view(nt, c, h, w)


def uni_temporal_shift(x: torch.Tensor, n_segments: int, fold_div: int = 8) -> torch.Tensor:
    """Uni-directional (causal) shift: channels [0, C//fold_div) of frame t take frame t-1's.

    x: [N*T, C, H, W] -> [N*T, C, H, W]. Frame t's output depends on frames <= t only.
    """
    _check(x, n_segments, fold_div)
    nt, c, h, w = x.shape
    v = x.view(nt // n_segments, n_segments, c, h, w)
    fold = c // fold_div
    out = v.clone()
    out[:, 0, :fold] = 0
    out[:, 1:, :fold] = v[:, :-1, :fold]
    return out.view(nt, c, h, w)


def _shift_inplace_(v: torch.Tensor, fold: int, reverse: bool) -> None:
    """Shift v: [N, T, C, H, W] in place; reverse=True applies the adjoint (for gradients)."""
    a, b = (slice(0, fold), slice(fold, 2 * fold))
    back, fwd = (b, a) if reverse else (a, b)
    t = v.shape[1]
    # "back" channels: frame i takes frame i+1's; walk forward so sources are still unread.
    for i in range(t - 1):
        v[:, i, back] = v[:, i + 1, back]
    v[:, t - 1, back] = 0
    # "fwd" channels: frame i takes frame i-1's; walk backward for the same reason.
    for i in range(t - 1, 0, -1):
        v[:, i, fwd] = v[:, i - 1, fwd]
    v[:, 0, fwd] = 0


class InplaceShift(torch.autograd.Function):
    """`temporal_shift` done in the input's own memory (saves one activation copy).

    The shift is a permutation-with-zeros P, so the backward pass is P^T: the same shift with
    the two folds' directions swapped, also done in place on the incoming gradient.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, n_segments: int, fold_div: int) -> torch.Tensor:
        ctx.n_segments, ctx.fold = n_segments, x.shape[1] // fold_div
        v = x.view(x.shape[0] // n_segments, n_segments, *x.shape[1:])
        _shift_inplace_(v, ctx.fold, reverse=False)
        ctx.mark_dirty(x)
        return x

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        g = g.contiguous()
        v = g.view(g.shape[0] // ctx.n_segments, ctx.n_segments, *g.shape[1:])
        _shift_inplace_(v, ctx.fold, reverse=True)
        return g, None, None


def inplace_temporal_shift(x: torch.Tensor, n_segments: int, fold_div: int = 8) -> torch.Tensor:
    """`temporal_shift` in place: x is overwritten and returned. x must be contiguous.

    Saves a copy, but only where nothing else reads x afterwards: never on a residual branch,
    whose identity path needs the unshifted x.
    """
    _check(x, n_segments, fold_div)
    if not x.is_contiguous():
        raise ValueError("in-place temporal shift needs a contiguous x")
    return InplaceShift.apply(x, n_segments, fold_div)


class TemporalShift(nn.Module):
    """Shift, then `net` (mit-han-lab's wrapper around a block's first conv).

    Wrapping the first conv of a residual branch gives the paper's "residual shift": the
    identity path keeps every frame's own features and only the branch mixes time. The
    "in-place shift" placement (shift the block input, main path included) is a choice of the
    block (`models.video.resnet`), not of this wrapper.

    x: [N*T, C, H, W] -> net(shift(x)); `online=True` uses the uni-directional shift.
    """

    def __init__(self, net: nn.Module, n_segments: int, fold_div: int = 8, *, online=False):
        super().__init__()
        self.net, self.n_segments, self.fold_div, self.online = net, n_segments, fold_div, online

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shift = uni_temporal_shift if self.online else temporal_shift
        return self.net(shift(x, self.n_segments, self.fold_div))


class OnlineTemporalShift:
    """Frame-by-frame uni-directional shift with a cache of the previous frame's first fold.

    `step(x_t: [N, C, H, W])` returns frame t's shifted features; calling it for t = 0..T-1
    equals `uni_temporal_shift` on the whole clip exactly (same values, no arithmetic).
    """

    def __init__(self, fold_div: int = 8):
        if fold_div < 2:
            raise ValueError(f"fold_div must be >= 2, got {fold_div}")
        self.fold_div = fold_div
        self.cache: torch.Tensor | None = None

    def reset(self) -> None:
        self.cache = None

    def step(self, x_t: torch.Tensor) -> torch.Tensor:
        if x_t.dim() != 4:
            raise ValueError(f"step expects x_t: [N, C, H, W], got shape {tuple(x_t.shape)}")
        fold = x_t.shape[1] // self.fold_div
        out = x_t.clone()
        out[:, :fold] = 0 if self.cache is None else self.cache
        self.cache = x_t[:, :fold].detach().clone()
        return out
