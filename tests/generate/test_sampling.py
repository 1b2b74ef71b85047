"""Temperature, top-k and top-p on hand-made logits, and the sampler's frequencies."""

from __future__ import annotations

import math

import pytest
import torch

from deepnotes.generate import next_token_probs, sample_next, top_k_filter, top_p_filter

INF = float("-inf")


def test_top_k_keeps_the_k_largest():
    z = torch.tensor([[1.0, 3.0, 2.0, 5.0, 4.0], [0.0, -1.0, 7.0, 7.0, 1.0]])
    assert torch.equal(
        top_k_filter(z, 2),
        torch.tensor([[INF, INF, INF, 5.0, 4.0], [INF, INF, 7.0, 7.0, INF]]),
    )
    assert torch.equal(top_k_filter(z, 1)[0], torch.tensor([INF, INF, INF, 5.0, INF]))
    assert torch.equal(top_k_filter(z, 5), z) and torch.equal(top_k_filter(z, 9), z)
    tie = torch.tensor([[2.0, 2.0, 1.0]])  # a tie with the k-th value is kept
    assert torch.equal(top_k_filter(tie, 1), torch.tensor([[2.0, 2.0, INF]]))
    with pytest.raises(ValueError, match="top_k"):
        top_k_filter(z, 0)


def test_top_p_keeps_the_smallest_set_reaching_p():
    # probabilities 0.5, 0.25, 0.125, 0.125 in shuffled order: cumulative 0.5, 0.75, 0.875, 1
    probs = torch.tensor([[0.125, 0.5, 0.125, 0.25]], dtype=torch.float64)
    z = probs.log()
    keep = lambda p: torch.isfinite(top_p_filter(z, p))[0].tolist()
    assert keep(0.3) == [False, True, False, False]  # the top token alone has 0.5 >= 0.3
    assert keep(0.6) == [False, True, False, True]  # 0.5 < 0.6 <= 0.75
    # 0.75 < 0.8 <= 0.875: one of the two 0.125 tokens joins; ties go by index (stable)
    assert keep(0.8) == [True, True, False, True]
    assert keep(1.0) == [True, True, True, True]
    kept = top_p_filter(z, 0.6)
    assert torch.equal(kept[torch.isfinite(kept)], z[0, [1, 3]])  # survivors unchanged
    with pytest.raises(ValueError, match="top_p"):
        top_p_filter(z, 0.0)


def test_top_p_rows_are_independent():
    peaked = torch.tensor([10.0, 0.0, 0.0, 0.0])
    flat = torch.zeros(4)
    out = top_p_filter(torch.stack([peaked, flat]), 0.9)
    assert torch.isfinite(out[0]).sum() == 1  # one token holds > 0.9
    assert torch.isfinite(out[1]).sum() == 4  # uniform: 3 tokens hold only 0.75 < 0.9


def test_probs_apply_temperature_then_filters():
    z = torch.tensor([[2.0, 1.0, 0.0, -1.0]], dtype=torch.float64)
    p = next_token_probs(z, temperature=0.5, top_k=2)
    e = torch.tensor([math.exp(4.0), math.exp(2.0)])
    expected = torch.tensor([[e[0] / e.sum(), e[1] / e.sum(), 0.0, 0.0]])
    assert torch.allclose(p.double(), expected.double(), rtol=1e-6, atol=0)
    assert torch.equal(next_token_probs(z, temperature=0), torch.tensor([[1.0, 0, 0, 0]]))
    # temperature 2 flattens: p ∝ exp(z / 2)
    flat = next_token_probs(z, temperature=2.0)
    assert torch.allclose(flat.double(), torch.softmax(z / 2, -1), rtol=1e-6)


def test_sampler_frequencies_match_probs(seed):
    z = torch.tensor([[1.5, 1.0, 0.2, -0.5, -3.0]]).expand(20000, 5)
    g = torch.Generator().manual_seed(seed)
    tokens = sample_next(z, temperature=0.7, top_k=4, top_p=0.95, generator=g)
    freq = torch.bincount(tokens, minlength=5).double() / tokens.numel()
    expected = next_token_probs(z[:1], temperature=0.7, top_k=4, top_p=0.95)[0].double()
    assert freq[expected == 0].sum() == 0  # filtered tokens never appear
    sd = (expected * (1 - expected) / tokens.numel()).sqrt()
    assert ((freq - expected).abs() <= 5 * sd + 1e-12).all(), (freq, expected)


def test_greedy_and_bad_arguments():
    z = torch.randn(3, 11)
    assert torch.equal(sample_next(z, temperature=0), z.argmax(-1))
    assert torch.equal(sample_next(z, top_k=1), z.argmax(-1))
    with pytest.raises(ValueError, match="temperature"):
        sample_next(z, temperature=-1.0)
