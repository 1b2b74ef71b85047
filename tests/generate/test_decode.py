"""Stepped / cached decoding equals recomputing the full sequence, for every mixer that
decodes, inside the real LM."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import deepnotes.mixers as M
from deepnotes.generate import generate, state_nbytes
from deepnotes.models.lm import LM, LMConfig
from tests.helpers import assert_close
from tests.mixers.cases import KWARGS

STEPPERS = [n for n in M.names() if M.get(n).supports_causal and M.get(n).supports_step]
VOCAB = 37


def lm(name: str, d: int = 64, layers: int = 2, max_len: int = 128) -> LM:
    kw = dict(KWARGS.get(name, {}))
    heads = kw.pop("n_heads", None)
    kw.pop("max_len", None)
    cfg = LMConfig(vocab_size=VOCAB, d_model=d, n_layers=layers, max_len=max_len, mixer=name,
                   mixer_kwargs=kw, n_heads=heads)  # fmt: skip
    return LM(cfg).double().eval()


def test_every_decoding_mixer_is_covered():
    assert {"softmax", "linear"} <= set(STEPPERS)


@pytest.mark.parametrize("name", STEPPERS)
def test_step_logits_equal_full_forward(name, seed):
    model = lm(name)
    tokens = torch.randint(0, VOCAB, (2, 45))
    with torch.no_grad():
        full = model(tokens)
        state = model.init_state(2)
        steps = []
        for t in range(tokens.shape[1]):
            logits, state = model.step(tokens[:, t], state)
            steps.append(logits)
    assert_close(torch.stack(steps, 1), full, what=f"{name} stepped logits")


@pytest.mark.parametrize("name", STEPPERS)
def test_cached_decoding_equals_recompute(name, seed):
    model = lm(name)
    prompt = torch.randint(0, VOCAB, (3, 7))
    greedy = generate(model, prompt, 25, temperature=0)
    assert greedy.shape == (3, 32) and torch.equal(greedy[:, :7], prompt)
    assert torch.equal(greedy, generate(model, prompt, 25, temperature=0, use_cache=False))
    # sampling draws the same random numbers on both paths, so the texts agree too
    kw = dict(temperature=0.8, top_k=20, top_p=0.9)
    a = generate(model, prompt, 25, generator=torch.Generator().manual_seed(seed), **kw)
    b = generate(model, prompt, 25, generator=torch.Generator().manual_seed(seed),
                 use_cache=False, **kw)  # fmt: skip
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", STEPPERS)
def test_state_memory_per_token(name, seed):
    """Recurrent states stay bounded as the text grows; only KV caches (state_grows) grow.

    A state may breathe within a bounded window (FLASH's open chunk, a sliding window's
    ring buffer), so "bounded" means: the last 100 steps never need more bytes than the
    first 100 did.
    """
    model = lm(name, max_len=256)
    tokens = torch.randint(0, VOCAB, (2, 200))
    sizes = []
    with torch.no_grad():
        state = model.init_state(2)
        for t in range(200):
            _, state = model.step(tokens[:, t], state)
            sizes.append(state_nbytes(state))
    if M.get(name).state_grows:
        assert sizes[-1] > max(sizes[:100])
    else:
        assert 0 < max(sizes[100:]) <= max(sizes[:100])


class NoStep(nn.Module):
    """A causal model without a decoding state: generate must fall back to recomputing."""

    def __init__(self, inner: LM) -> None:
        super().__init__()
        self.inner = inner
        self.cfg = inner.cfg

    def forward(self, tokens):
        return self.inner(tokens)


def test_fallback_recompute_and_context_crop(seed):
    inner = lm("softmax")
    prompt = torch.randint(0, VOCAB, (2, 5))
    out = generate(NoStep(inner), prompt, 12, temperature=0)  # use_cache=True, but no step
    assert torch.equal(out, generate(inner, prompt, 12, temperature=0))
    # past max_len the recompute path slides its window instead of failing
    long = torch.randint(0, VOCAB, (1, 127))
    assert generate(NoStep(inner), long, 4, temperature=0).shape == (1, 131)


def test_generate_restores_mode_and_checks_input():
    model = lm("softmax").train()
    generate(model, torch.zeros(1, 1, dtype=torch.long), 2)
    assert model.training
    with pytest.raises(ValueError, match="prompt"):
        generate(model, torch.zeros(3, dtype=torch.long), 2)


def test_past_the_position_table_falls_back_to_a_window(seed):
    """Learned positions end at max_len: generation past it recomputes over the last window."""
    model = lm("linear")  # steppable, but with a 128-entry learned position table
    prompt = torch.randint(0, VOCAB, (1, 120))
    out = generate(model, prompt, 20, temperature=0)
    assert torch.equal(out, generate(NoStep(model), prompt, 20, temperature=0))
