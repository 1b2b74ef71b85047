"""Mamba mixer beyond the battery: padding skips steps, the dt initialisation survives model
initialisation, constant decoding state."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import deepnotes.mixers as M
from tests.helpers import assert_close


def build(causal, **kw):
    return M.build("mamba", 24, causal=causal, d_state=4, **kw).double().eval()


@pytest.mark.parametrize("causal", [True, False])
def test_padding_equals_truncation(causal, seed):
    """Right padding: real outputs equal those of the unpadded sequence (both directions)."""
    m = build(causal)
    x = torch.randn(2, 40, 24, dtype=torch.float64)
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[:, 27:] = False
    with torch.no_grad():
        assert_close(m(x, mask)[:, :27], m(x[:, :27]))


def test_padded_hole_is_skipped(seed):
    """A padded step leaves the state unchanged: a hole in the middle is invisible to later
    outputs except through the short conv window, which sees zeros there."""
    m = build(True, d_conv=1)  # no conv window: outputs after the hole see no trace of it
    x = torch.randn(1, 30, 24, dtype=torch.float64)
    mask = torch.ones(1, 30, dtype=torch.bool)
    mask[:, 10:15] = False
    keep = mask[0]
    with torch.no_grad():
        assert_close(m(x, mask)[:, keep], m(x[:, keep]))


def test_dt_init_range_and_survives_lm_init():
    from deepnotes.models.lm import LM, LMConfig

    lm = LM(LMConfig(vocab_size=11, d_model=32, n_layers=2, max_len=16, mixer="mamba"))
    for block in lm.blocks:
        dt = F.softplus(block.mixer.dt_proj[0].bias)
        assert dt.min() >= 1e-4 and dt.max() <= 0.1 + 1e-6
        assert dt.max() / dt.min() > 5  # log-uniform spread, not re-drawn to a constant


def test_lm_keeps_mambas_own_linear_init():
    """As in mamba_ssm: the block's Linears keep torch's default init (uniform with
    std 1/sqrt(3 fan_in)), not the LM's normal(0.02); out_proj is still depth-scaled."""
    from deepnotes.models.lm import LM, LMConfig

    d, L = 64, 3
    lm = LM(LMConfig(vocab_size=11, d_model=d, n_layers=L, max_len=16, mixer="mamba"))
    for block in lm.blocks:
        m = block.mixer
        for lin in (m.in_proj, m.x_proj[0]):
            w = lin.weight.detach()
            bound = 1 / w.shape[1] ** 0.5  # kaiming_uniform(a = sqrt 5) bound
            assert w.abs().max() <= bound + 1e-6
            assert float(w.std()) == pytest.approx(bound / 3**0.5, rel=0.1)  # not 0.02
        w = m.out_proj.weight.detach()
        bound = 1 / w.shape[1] ** 0.5 / (2 * L) ** 0.5  # default init / sqrt(2 L)
        assert w.abs().max() <= bound + 1e-6 and w.abs().max() > 0.8 * bound


def test_state_is_constant_size(seed):
    m = build(True)
    state = m.init_state(3, dtype=torch.float64)
    shapes = (state.conv.shape, state.h.shape)
    for _ in range(6):
        _, state = m.step(torch.randn(3, 24, dtype=torch.float64), state)
    assert (state.conv.shape, state.h.shape) == shapes == ((3, 48, 4), (3, 48, 4))


def test_step_fp32(seed):
    m = M.build("mamba", 24, causal=True, d_state=4).eval()
    x = torch.randn(2, 20, 24)
    with torch.no_grad():
        y = m(x)
        state = m.init_state(2)
        ys = []
        for t in range(20):
            y_t, state = m.step(x[:, t], state)
            ys.append(y_t)
    assert_close(torch.stack(ys, 1), y, tol=1e-5)


def test_bad_options():
    with pytest.raises(ValueError, match="d_state must be a positive int"):
        M.build("mamba", 8, causal=True, d_state=0)
    with pytest.raises(ValueError, match="dt_min"):
        M.build("mamba", 8, causal=True, dt_min=0.5, dt_max=0.1)
