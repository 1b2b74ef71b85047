"""The decoder-only LM: shapes, tying, causality, step == forward for every decodable mixer."""

from __future__ import annotations

import pytest
import torch

import deepnotes.mixers as M
from deepnotes.models.lm import LM, LMConfig
from tests.helpers import assert_close
from tests.mixers.cases import KWARGS

CAUSAL = [n for n in M.names() if M.get(n).supports_causal]
DECODABLE = [n for n in CAUSAL if M.get(n).supports_step]


def small(mixer="softmax", **kw) -> LMConfig:
    base = dict(
        vocab_size=50,
        d_model=32,
        n_layers=2,
        max_len=128,
        mixer=mixer,
        mixer_kwargs=dict(KWARGS.get(mixer, {})),
        positions="rotary" if M.get(mixer).supports_rotary else "learned",
    )
    base.update(kw)
    return LMConfig(**base)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        dict(norm="rmsnorm", ffn="swiglu", positions="rotary"),
        dict(norm_position="post", positions="sinusoidal", ffn="relu", tie_weights=False),
        dict(positions="none", ffn="geglu", bias=True, init="xavier"),
        dict(moe_experts=4, moe_top_k=2, moe_every=2, ffn="silu"),
    ],
)
@pytest.mark.parametrize("T", [1, 63])
def test_shapes_and_loss(kw, T, seed):
    m = LM(small(**kw))
    x = torch.randint(0, 50, (3, T))
    logits = m(x)
    assert logits.shape == (3, T, 50) and logits.dtype == torch.float32
    assert m.aux_loss.shape == () and torch.isfinite(m.aux_loss)
    loss = m.loss(x, torch.randint(0, 50, (3, T)))
    loss.backward()
    # (an MoE expert that got no token this batch has no gradient)
    assert all(p.grad is not None for n, p in m.named_parameters() if ".experts." not in n)


def test_weight_tying(seed):
    tied = LM(small(positions="learned"))
    untied = LM(small(positions="learned", tie_weights=False))
    assert tied.head.weight is tied.embed.weight
    assert untied.head.weight is not untied.embed.weight
    assert untied.num_params() - tied.num_params() == 50 * 32
    # non-embedding: tied head counts (it is a matmul weight), untied embedding table does not
    assert tied.num_params(non_embedding=True) == tied.num_params() - 128 * 32
    assert untied.num_params(non_embedding=True) == untied.num_params() - 128 * 32 - 50 * 32
    x = torch.randint(0, 50, (2, 9))
    tied(x).sum().backward()
    assert tied.embed.weight.grad is not None  # one tensor gets both gradients


def test_moe_active_params():
    m = LM(small(moe_experts=4, moe_top_k=1, moe_every=1))
    per_expert = sum(p.numel() for p in m.blocks[0].ffn.experts[0].parameters())
    assert m.num_params() - m.num_active_params() == 2 * 3 * per_expert


@pytest.mark.parametrize("mixer", CAUSAL)
def test_lm_is_causal(mixer, seed):
    """Changing tokens after t leaves every logit at <= t bit-for-bit unchanged."""
    m = LM(small(mixer)).eval()
    T = 40
    x = torch.randint(0, 50, (2, T))
    with torch.no_grad():
        y = m(x)
        for t in (0, 17, T - 2):
            x2 = x.clone()
            x2[:, t + 1 :] = torch.randint(0, 50, (2, T - t - 1))
            assert torch.equal(m(x2)[:, : t + 1], y[:, : t + 1]), f"{mixer} leaks at t={t}"


@pytest.mark.parametrize("mixer", DECODABLE)
@pytest.mark.parametrize("norm_position", ["pre", "post"])
def test_step_equals_forward(mixer, norm_position, seed):
    m = LM(small(mixer, norm_position=norm_position)).double().eval()
    B, T = 2, 23
    x = torch.randint(0, 50, (B, T))
    with torch.no_grad():
        y = m(x)
        state = m.init_state(B)
        steps = []
        for t in range(T):
            logits, state = m.step(x[:, t], state)
            steps.append(logits)
    assert state.t == T
    assert_close(torch.stack(steps, 1), y, what=f"{mixer} step vs forward")


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_step_equals_forward_absolute_positions(positions, seed):
    m = LM(small(positions=positions, moe_experts=3, moe_capacity_factor=None)).double().eval()
    x = torch.randint(0, 50, (2, 17))
    with torch.no_grad():
        y = m(x)
        state, steps = m.init_state(2), []
        for t in range(17):
            logits, state = m.step(x[:, t], state)
            steps.append(logits)
    assert_close(torch.stack(steps, 1), y, what=f"{positions} step vs forward")


def test_padding_does_not_leak(seed):
    m = LM(small()).eval()
    x = torch.randint(0, 50, (2, 30))
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[0, 20:] = False
    with torch.no_grad():
        y = m(x, mask)
        x2 = x.clone()
        x2[0, 20:] = torch.randint(0, 50, (10,))
        assert torch.equal(m(x2, mask)[0, :20], y[0, :20])


def test_gradient_checkpointing_same_gradients(seed):
    torch.manual_seed(seed)
    a = LM(small(moe_experts=2, moe_capacity_factor=None)).double()
    b = LM(small(moe_experts=2, moe_capacity_factor=None, gradient_checkpointing=True)).double()
    b.load_state_dict(a.state_dict())
    x, y = torch.randint(0, 50, (2, 31)), torch.randint(0, 50, (2, 31))
    a.loss(x, y).backward()
    b.loss(x, y).backward()
    for (n, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert_close(pb.grad, pa.grad, what=n)


def test_clear_errors():
    with pytest.raises(ValueError, match="past max_len"):
        LM(small(max_len=16, positions="learned"))(torch.randint(0, 50, (1, 17)))
    with pytest.raises(ValueError, match="integer tokens"):
        LM(small())(torch.randn(1, 5))
    with pytest.raises(ValueError, match="LMConfig.positions"):
        LM(small(positions="alibi"))
    with pytest.raises(ValueError, match="unknown mixer"):
        LM(LMConfig(mixer="nope", d_model=8, n_layers=1))
    non_rotary = [n for n in CAUSAL if not M.get(n).supports_rotary]
    for name in non_rotary[:1]:
        with pytest.raises(ValueError, match="does not support rotary"):
            LM(small(name, positions="rotary"))
    noncausal = [n for n in M.names() if not M.get(n).supports_causal]
    for name in noncausal[:1]:
        with pytest.raises(ValueError, match="cannot be causal"):
            LM(small(name, positions="learned"))
