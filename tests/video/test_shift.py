import pytest
import torch

from deepnotes.video import (
    OnlineTemporalShift,
    TemporalShift,
    count,
    inplace_temporal_shift,
    temporal_shift,
    uni_temporal_shift,
)


def loop_shift(x, t, fold_div, uni=False):
    """Independent reference: one frame, one channel at a time (mit-han-lab semantics)."""
    nt, c = x.shape[:2]
    fold = c // fold_div
    out = torch.zeros_like(x)
    for n in range(nt // t):
        for i in range(t):
            for ch in range(c):
                src = i
                if uni:
                    if ch < fold:
                        src = i - 1
                elif ch < fold:
                    src = i + 1
                elif ch < 2 * fold:
                    src = i - 1
                if 0 <= src < t:
                    out[n * t + i, ch] = x[n * t + src, ch]
    return out


@pytest.mark.parametrize(
    "n,t,c,fold_div", [(2, 8, 16, 8), (3, 5, 13, 4), (1, 1, 8, 8), (2, 3, 7, 2)]
)
def test_shift_matches_loop(n, t, c, fold_div):
    x = torch.randn(n * t, c, 3, 5, dtype=torch.float64)
    assert torch.equal(temporal_shift(x, t, fold_div), loop_shift(x, t, fold_div))
    assert torch.equal(uni_temporal_shift(x, t, fold_div), loop_shift(x, t, fold_div, uni=True))


def test_inplace_shift_values_and_gradient():
    t, fold_div = 6, 4
    x = torch.randn(2 * t, 12, 3, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn_like(x)
    ref = temporal_shift(x, t, fold_div)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), x)
    y = inplace_temporal_shift(x.clone(), t, fold_div)
    assert torch.equal(y, ref)
    (g,) = torch.autograd.grad((y * w).sum(), x)
    assert torch.equal(g, g_ref)


def test_online_shift_equals_offline_uni():
    t = 7
    x = torch.randn(3 * t, 16, 4, 4)
    offline = uni_temporal_shift(x, t, 8).view(3, t, 16, 4, 4)
    online = OnlineTemporalShift(8)
    v = x.view(3, t, 16, 4, 4)
    steps = torch.stack([online.step(v[:, i]) for i in range(t)], 1)
    assert torch.equal(steps, offline)
    # causal: changing the future does not change the past
    x2 = x.clone().view(3, t, 16, 4, 4)
    x2[:, 4:] = torch.randn_like(x2[:, 4:])
    off2 = uni_temporal_shift(x2.view(-1, 16, 4, 4), t, 8).view(3, t, 16, 4, 4)
    assert torch.equal(off2[:, :4], offline[:, :4])


def test_shift_has_no_params_and_no_flops():
    conv = torch.nn.Conv2d(16, 16, 3, padding=1, bias=False)
    wrapped = TemporalShift(conv, n_segments=8)
    x = torch.randn(16, 16, 8, 8)
    plain, shifted = count(conv, x), count(wrapped, x)
    assert shifted.params == plain.params == 16 * 16 * 9
    assert shifted.flops == plain.flops == 2 * 16 * 16 * 9 * 8 * 8 * 16
    alone = count(lambda z: temporal_shift(z, 8), x)
    assert alone.flops == 0 and alone.params == 0


def test_shift_rejects_bad_inputs():
    with pytest.raises(ValueError, match="multiple"):
        temporal_shift(torch.randn(10, 8, 2, 2), 4)
    with pytest.raises(ValueError, match="N\\*T, C, H, W"):
        temporal_shift(torch.randn(8, 8, 2), 4)
    with pytest.raises(ValueError, match="fold_div"):
        temporal_shift(torch.randn(8, 8, 2, 2), 4, fold_div=1)
