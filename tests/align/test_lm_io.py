"""Saved base LMs reload with equal outputs (tied weights, BPE tokenizer, Medusa heads)."""

from __future__ import annotations

import torch

from deepnotes.align.lm_io import load_lm, module_meta, save_lm, save_module
from deepnotes.data.lm_tokenizers import BPETokenizer, ByteTokenizer
from deepnotes.generate.medusa import MedusaHeads
from deepnotes.models.lm import LM, LMConfig


def test_roundtrip(tmp_path):
    tok = BPETokenizer.train(
        ["In the beginning God created the heaven and the earth."] * 5,
        vocab_size=270,
        min_frequency=1,
    )
    model = LM(
        LMConfig(
            vocab_size=tok.vocab_size,
            d_model=16,
            n_layers=2,
            n_heads=2,
            max_len=40,
            positions="rotary",
            ffn="swiglu",
        )
    ).eval()
    save_lm(model, tok, tmp_path / "lm")
    again, tok2 = load_lm(tmp_path / "lm")
    x = torch.randint(0, tok.vocab_size, (2, 11))
    assert torch.equal(again(x), model(x))
    assert again.head.weight is again.embed.weight  # still tied
    assert tok2.encode("God created") == tok.encode("God created")
    save_lm(model, ByteTokenizer(), tmp_path / "byte")
    assert isinstance(load_lm(tmp_path / "byte")[1], ByteTokenizer)
    heads = MedusaHeads(16, tok.vocab_size, 3)
    save_module(heads, tmp_path / "h.safetensors", {"n_heads": 3})
    assert module_meta(tmp_path / "h.safetensors") == {"n_heads": 3}
