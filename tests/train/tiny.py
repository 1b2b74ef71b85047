"""A tiny configuration of the real LM for the training tests (fast on one CPU core)."""

from __future__ import annotations

from deepnotes.models.lm import LM, LMConfig


def tiny_lm(vocab=32, d=32, layers=2, dropout=0.0, mixer="softmax", max_len=256, **kw) -> LM:
    """LM with byte-free small vocab; `kw` goes to LMConfig (e.g. ffn, norm, positions)."""
    cfg = LMConfig(vocab_size=vocab, d_model=d, n_layers=layers, max_len=max_len, mixer=mixer,
                   dropout=dropout, **kw)  # fmt: skip
    return LM(cfg)
