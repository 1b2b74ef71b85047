"""The FLASH mixer under both scalings: forward == reference == decoding, padding, errors."""

from __future__ import annotations

import pytest
import torch

import deepnotes.mixers as M
from deepnotes.mixers.gau import FLASH_SCALING
from tests.helpers import assert_close


def flash(causal, scaling, chunk_size=8):
    m = M.build("gau_flash", 16, causal=causal, qk_dim=12, chunk_size=chunk_size,
                gamma_init_std=1.0, scaling=scaling)  # fmt: skip
    return m.double().eval()


@pytest.mark.parametrize("scaling", ["paper", "position"])
@pytest.mark.parametrize("causal", [True, False])
def test_forward_reference_and_padding(scaling, causal, seed):
    m = flash(causal, scaling)
    x = torch.randn(2, 27, 16, dtype=torch.float64)
    with torch.no_grad():
        assert_close(m(x), m.reference(x), what=f"{scaling} causal={causal}")
        mask = torch.ones(2, 27, dtype=torch.bool)
        mask[1, 19:] = False  # right padding == the truncated sequence
        y = m(x, mask)
        assert_close(y[1, :19], m(x[1:, :19])[0], what="padding equals truncation")
        assert_close(y, m.reference(x, mask), what="masked reference")


@pytest.mark.parametrize("scaling", ["paper", "position"])
def test_decoding_equals_forward(scaling, seed):
    m = flash(True, scaling, chunk_size=4)
    x = torch.randn(1, 11, 16, dtype=torch.float64)
    state, outs = m.init_state(1), []
    with torch.no_grad():
        for t in range(11):
            y, state = m.step(x[:, t], state)
            outs.append(y)
        assert_close(torch.stack(outs, 1), m(x), what=f"{scaling} step")


def test_scalings_differ_and_default(seed):
    assert M.build("gau_flash", 8, causal=True, qk_dim=4).scaling == FLASH_SCALING
    a, b = flash(True, "paper"), flash(True, "position")
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 20, 16, dtype=torch.float64)
    assert not torch.allclose(a(x), b(x))
    with pytest.raises(ValueError, match="scaling must be one of"):
        M.build("gau_flash", 8, causal=True, scaling="chunk")
