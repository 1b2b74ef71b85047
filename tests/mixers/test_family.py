"""Checks of the efficient-attention and RNN mixers beyond the shared battery: padding
invariance, bounded decoding state, linear memory of the sparse patterns, feature redraw,
and the mixer-specific errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import deepnotes.mixers as M
from deepnotes.utils.timing import peak_memory_bytes
from tests.helpers import assert_close
from tests.mixers.cases import KWARGS

FAMILY = [
    "linear",
    "performer",
    "linformer",
    "sliding_window",
    "strided_sparse",
    "gau_quad",
    "gau_flash",
    "lstm",
    "gru",
]


def make(name, d, causal, dtype=torch.float64, **extra):
    m = M.build(name, d, causal=causal, **{**KWARGS.get(name, {}), **extra})
    return m.to(dtype).eval()


def test_family_registered():
    for n in FAMILY:
        assert n in M.names()


@pytest.mark.parametrize("name", [n for n in FAMILY if n != "linformer"])
@pytest.mark.parametrize("causal", [True, False])
def test_right_padding_equals_shorter_sequence(name, causal, seed):
    """A right-padded batch gives the real tokens the outputs of the unpadded sequence.
    (Linformer is excluded: its projection E depends on the padded length by design.)"""
    if not (M.get(name).supports_causal if causal else M.get(name).supports_noncausal):
        pytest.skip(f"{name} has no {'causal' if causal else 'non-causal'} form")
    D, T, n = 32, 40, 29
    m = make(name, D, causal)
    x = torch.randn(1, T, D, dtype=torch.float64)
    mask = torch.zeros(1, T, dtype=torch.bool)
    mask[:, :n] = True
    with torch.no_grad():
        assert_close(m(x, mask)[:, :n], m(x[:, :n]), what=f"{name} padded vs unpadded")


def state_numel(state) -> int:
    if isinstance(state, torch.Tensor):
        return state.numel()
    if isinstance(state, (tuple, list)):
        return sum(state_numel(s) for s in state)
    if dataclasses.is_dataclass(state):
        return sum(state_numel(getattr(state, f.name)) for f in dataclasses.fields(state))
    if hasattr(state, "k") and hasattr(state, "v"):  # KVCache: the live part
        return state.k.numel() + state.v.numel()
    return 0


@pytest.mark.parametrize("name", [n for n in FAMILY if M.get(n).supports_step])
def test_state_growth_matches_flag(name, seed):
    """Bounded mixers: the state after 2N tokens is no larger than its maximum over the first
    N (N covers a window / chunk). Mixers declaring state_grows: the state does grow."""
    D, N = 16, 40
    m = make(name, D, True)
    state = m.init_state(1, dtype=torch.float64)
    sizes = []
    with torch.no_grad():
        for _ in range(2 * N):
            _, state = m.step(torch.randn(1, D, dtype=torch.float64), state)
            sizes.append(state_numel(state))
    if M.get(name).state_grows:
        assert sizes[-1] > sizes[N - 1]
    else:
        assert max(sizes[N:]) <= max(sizes[:N]), sizes


@pytest.mark.parametrize(
    "name,kw,linear",
    [
        ("sliding_window", {"window": 32}, True),
        ("strided_sparse", {"stride": 32}, True),
        ("softmax", {"impl": "math"}, False),  # control: the explicit T x T matrix
    ],
)
def test_sparse_memory_grows_linearly(name, kw, linear, seed):
    """Peak memory of forward + backward at T = 1024, 2048, 4096 with a fixed window: each
    doubling of T at most 2.3x the memory for the sparse patterns (measured about 2.0x),
    while the materialised softmax control grows at least 3x (measured about 3.9x)."""
    torch.set_num_threads(1)
    D = 32
    m = M.build(name, D, causal=True, n_heads=2, **kw)
    peaks = []
    for T in (1024, 2048, 4096):
        x = torch.randn(1, T, D, requires_grad=True)
        peaks.append(peak_memory_bytes(lambda x=x: m(x).square().mean().backward()))
    ratios = [b / a for a, b in zip(peaks, peaks[1:])]
    if linear:
        assert all(r <= 2.3 for r in ratios), (peaks, ratios)
    else:
        assert all(r >= 3.0 for r in ratios), (peaks, ratios)


def test_performer_redraw(seed):
    m = M.build("performer", 32, causal=True, n_heads=2, n_features=16, redraw_interval=2)
    x = torch.randn(1, 10, 32)
    W0 = m.W.clone()
    m.eval()
    for _ in range(3):
        m(x)
    assert torch.equal(m.W, W0), "eval mode must not redraw"
    m.train()
    m(x)
    m(x)
    assert torch.equal(m.W, W0)
    m(x)  # the third training call starts a new interval: fresh features
    assert not torch.equal(m.W, W0)
    W1 = m.W.clone()
    m.redraw_features()
    assert not torch.equal(m.W, W1)
    assert (m.W.norm(dim=1) > 0).all()


def test_linformer_errors_and_short_sequences(seed):
    with pytest.raises(ValueError, match="needs max_len"):
        M.build("linformer", 16, causal=False)
    with pytest.raises(ValueError, match="cannot be causal"):
        M.build("linformer", 16, causal=True, max_len=32)
    m = make("linformer", 16, False, max_len=32, k=8)
    x = torch.randn(2, 20, 16, dtype=torch.float64)
    with torch.no_grad():  # T < max_len uses the first T columns of E and F
        assert m(x).shape == (2, 20, 16)
        assert_close(m(x), m.reference(x), what="short sequence")


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_rnn_mask_and_width_errors(name):
    m = make(name, 16, False)
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    left = torch.ones(2, 6, dtype=torch.bool)
    left[0, :2] = False
    with pytest.raises(ValueError, match="right padding only"):
        m(x, left)
    with pytest.raises(ValueError, match="even d_model"):
        M.build(name, 15, causal=False)


@pytest.mark.parametrize(
    "name,kw,match",
    [
        ("linear", {"chunk_size": 0}, "chunk_size must be positive"),
        ("performer", {"redraw_interval": 0}, "redraw_interval must be positive"),
        ("sliding_window", {"window": 0}, "window must be positive"),
        ("strided_sparse", {"stride": -1}, "stride must be positive"),
        ("gau_flash", {"chunk_size": 0}, "chunk_size must be positive"),
        ("gau_quad", {"qk_dim": 0}, "must be positive"),
    ],
)
def test_bad_hyperparameters(name, kw, match):
    with pytest.raises(ValueError, match=match):
        M.build(name, 16, causal=True, **kw)


def test_strided_pattern_counts():
    """The strided pattern gives query i its last l keys plus every l-th earlier key."""
    from deepnotes.ops.attention.sparse import strided_pattern

    P = strided_pattern(100, 10, causal=True)
    i = 95
    allowed = torch.nonzero(P[i])[:, 0].tolist()
    assert allowed == [*range(5, 86, 10), *range(86, 96)]
