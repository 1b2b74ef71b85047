"""The mixer battery: every registered mixer against its definition, causality, step
decoding, padding, gradients and bad inputs."""

from __future__ import annotations

import pytest
import torch

import deepnotes.mixers as M
from tests.helpers import assert_close
from tests.mixers.cases import GRADCHECK_KWARGS, KWARGS

NAMES = M.names()


def modes(name):
    cls = M.get(name)
    return [c for c in (True, False) if (cls.supports_causal if c else cls.supports_noncausal)]


def params(names=NAMES, step_only=False, causal_only=False):
    out = []
    for n in names:
        cls = M.get(n)
        if step_only and not cls.supports_step:
            continue
        for c in modes(n):
            if causal_only and not c:
                continue
            out.append(pytest.param(n, c, id=f"{n}-{'causal' if c else 'bidir'}"))
    return out


def make(name, d, causal, dtype=torch.float64, **extra):
    m = M.build(name, d, causal=causal, **{**KWARGS.get(name, {}), **extra})
    return m.to(dtype).eval()


def test_registry_lists_core_mixers():
    for n in ["softmax"]:
        assert n in NAMES


def test_unknown_mixer_lists_valid_names():
    with pytest.raises(ValueError, match="valid names: .*softmax"):
        M.build("no-such-mixer", 8, causal=True)


@pytest.mark.parametrize("name,causal", params())
@pytest.mark.parametrize("T,D", [(1, 64), (63, 60), (128, 64)])
def test_matches_reference_fp64(name, causal, T, D, seed):
    m = make(name, D, causal)
    x = torch.randn(2, T, D, dtype=torch.float64)
    with torch.no_grad():
        assert_close(m(x), m.reference(x), what=f"{name} forward vs reference")


@pytest.mark.parametrize("name,causal", params())
def test_padding_mask(name, causal, seed):
    """Padded positions do not influence real ones, and their outputs are zero."""
    D, T = 64, 37
    m = make(name, D, causal)
    x = torch.randn(2, T, D, dtype=torch.float64)
    mask = torch.ones(2, T, dtype=torch.bool)
    mask[0, 30:] = False  # right padding
    mask[1, 21:] = False
    with torch.no_grad():
        y = m(x, mask)
        x2 = torch.where(mask[..., None], x, torch.randn_like(x) * 3)
        y2 = m(x2, mask)
        assert_close(y2[mask], y[mask], what="real outputs after changing padding")
        assert torch.count_nonzero(y[~mask]) == 0
        assert_close(y, m.reference(x, mask), what=f"{name} masked forward vs reference")


@pytest.mark.parametrize("name,causal", params(causal_only=True))
def test_causal_bit_exact(name, causal, seed):
    """Changing inputs after position t leaves outputs at <= t bit-for-bit unchanged."""
    D, T = 64, 70
    m = make(name, D, True, dtype=torch.float32)
    x = torch.randn(2, T, D)
    with torch.no_grad():
        y = m(x)
        for t in (0, 31, T - 2):
            x2 = x.clone()
            x2[:, t + 1 :] = torch.randn_like(x2[:, t + 1 :])
            y2 = m(x2)
            assert torch.equal(y[:, : t + 1], y2[:, : t + 1]), f"{name} leaks future at t={t}"


@pytest.mark.parametrize("name,causal", params(step_only=True, causal_only=True))
@pytest.mark.parametrize("T", [1, 45])
def test_step_equals_forward(name, causal, T, seed):
    D = 64
    m = make(name, D, True)
    x = torch.randn(3, T, D, dtype=torch.float64)
    with torch.no_grad():
        y = m(x)
        state = m.init_state(3, device=x.device, dtype=x.dtype)
        ys = []
        for t in range(T):
            y_t, state = m.step(x[:, t], state)
            ys.append(y_t)
    assert_close(torch.stack(ys, 1), y, what=f"{name} step vs forward")


@pytest.mark.parametrize("name,causal", params())
def test_gradcheck(name, causal, seed):
    D = 16
    kw = GRADCHECK_KWARGS.get(name, {})
    m = make(name, D, causal, **kw)
    x = torch.randn(1, 9, D, dtype=torch.float64, requires_grad=True)
    params_ = [p for p in m.parameters() if p.requires_grad][:2]
    assert torch.autograd.gradcheck(lambda x, *p: m(x), (x, *params_), eps=1e-6, atol=1e-5)


# ------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("name", NAMES)
def test_bad_rank(name):
    m = make(name, 16, modes(name)[0])
    with pytest.raises(ValueError, match="rank 3"):
        m(torch.randn(4, 16, dtype=torch.float64))


@pytest.mark.parametrize("name", NAMES)
def test_bad_width(name):
    m = make(name, 16, modes(name)[0])
    with pytest.raises(ValueError, match="width"):
        m(torch.randn(2, 5, 12, dtype=torch.float64))


@pytest.mark.parametrize("name", NAMES)
def test_dtype_mismatch(name):
    m = make(name, 16, modes(name)[0])
    with pytest.raises(ValueError, match="dtype mismatch"):
        m(torch.randn(2, 5, 16, dtype=torch.float32))


@pytest.mark.parametrize("name", NAMES)
def test_length_over_max_len(name):
    m = make(name, 16, modes(name)[0], max_len=8)
    m(torch.randn(1, 8, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match="exceeds max_len = 8"):
        m(torch.randn(1, 9, 16, dtype=torch.float64))


@pytest.mark.parametrize("name", [n for n in NAMES if not M.get(n).supports_causal])
def test_causal_request_rejected(name):
    with pytest.raises(ValueError, match="cannot be causal"):
        M.build(name, 16, causal=True, **KWARGS.get(name, {}))


@pytest.mark.parametrize("name", NAMES)
def test_bad_mask(name):
    m = make(name, 16, modes(name)[0])
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    with pytest.raises(ValueError, match="mask must have shape"):
        m(x, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask must be bool"):
        m(x, torch.ones(2, 5))
