"""Every init scheme: the measured std of each weight matches its formula."""

from __future__ import annotations

import math

import pytest
import torch

from deepnotes.layers.init import INIT_SCHEMES, init_std
from deepnotes.models.lm import LM, LMConfig

D, L, H = 128, 3, 4  # head_dim 32
K = D // H


def expected(scheme: str, fan_in: int, fan_out: int) -> float:
    return {
        "normal": 0.02,
        "lecun": 1 / math.sqrt(fan_in),
        "t5": 1 / math.sqrt(fan_in),
        "kaiming": math.sqrt(2 / fan_in),
        "xavier": math.sqrt(2 / (fan_in + fan_out)),
    }[scheme]


def check_std(w: torch.Tensor, sigma: float, what: str) -> None:
    """Sample std within 6 standard errors (SE of a sample std = sigma / sqrt(2 n))."""
    n = w.numel()
    s = w.detach().double().std().item()
    assert abs(s - sigma) <= 6 * sigma / math.sqrt(2 * n), f"{what}: std {s:.5f} vs {sigma:.5f}"
    assert abs(w.detach().double().mean().item()) <= 6 * sigma / math.sqrt(n), f"{what}: mean"


@pytest.mark.parametrize("scheme", INIT_SCHEMES)
@pytest.mark.parametrize("scaled", [True, False])
def test_lm_init_std(scheme, scaled, seed):
    cfg = LMConfig(
        d_model=D,
        n_layers=L,
        n_heads=H,
        init=scheme,
        scaled_residual_init=scaled,
        tie_weights=False,
        attention_scale=1.0 if scheme == "t5" else None,
        bias=True,
    )
    m = LM(cfg)
    r = 1 / math.sqrt(2 * L) if scaled else 1.0
    emb = 0.02 if scheme == "normal" else 1 / math.sqrt(D)
    check_std(m.embed.weight, emb, "token embedding")
    check_std(m.pos.weight, emb, "position embedding")
    check_std(m.head.weight, expected(scheme, D, 256), "head")
    for i, b in enumerate(m.blocks):
        qkv = b.mixer.qkv.weight
        base = expected(scheme, D, 3 * D)
        q_scale = 1 / math.sqrt(K) if scheme == "t5" else 1.0
        check_std(qkv[:D], base * q_scale, f"block {i} W_q")
        check_std(qkv[D:], base, f"block {i} W_k, W_v")
        check_std(b.mixer.out.weight, expected(scheme, D, D) * r, f"block {i} W_o")
        check_std(b.ffn.w_in.weight, expected(scheme, D, 4 * D), f"block {i} ffn w_in")
        check_std(b.ffn.w_out.weight, expected(scheme, 4 * D, D) * r, f"block {i} ffn w_out")
        assert torch.count_nonzero(b.ffn.w_in.bias) == 0
        assert torch.equal(b.norm1.weight, torch.ones(D))


def test_t5_keeps_qk_variance_at_one(seed):
    """T5's init without 1/sqrt(d) gives the same Var(q.k) ~ 1 as the scaled form."""
    m = LM(LMConfig(d_model=256, n_layers=1, n_heads=2, init="t5", attention_scale=1.0))
    x = torch.randn(4096, 256)
    q, k, _ = m.blocks[0].mixer.qkv(x).chunk(3, -1)
    s = (q[:, :128] * k[:, :128]).sum(-1)  # one head, unit-variance input
    assert 0.85 < s.var().item() < 1.15


def test_t5_needs_unscaled_attention():
    with pytest.raises(ValueError, match="attention_scale=1.0"):
        LM(LMConfig(d_model=32, n_layers=1, init="t5"))


def test_unknown_scheme():
    with pytest.raises(ValueError, match="unknown init scheme"):
        init_std("orthogonal", 4, 4)
    with pytest.raises(ValueError, match="LMConfig.init"):
        LM(LMConfig(d_model=32, n_layers=1, init="orthogonal"))
