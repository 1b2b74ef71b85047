"""SeqModel: padding never reaches the prediction."""

from __future__ import annotations

import pytest
import torch

from deepnotes.models.seqmodel import SeqModel, SeqModelConfig
from tests.helpers import assert_close


@pytest.mark.parametrize("mixer", ["softmax", "s4d"])
def test_padding_does_not_change_the_prediction(mixer, seed):
    torch.manual_seed(seed)
    cfg = SeqModelConfig(vocab_size=11, n_classes=5, d_model=24, n_layers=2, mixer=mixer,
                         max_len=80)  # fmt: skip
    model = SeqModel(cfg).double().eval()
    T, pad = 63, 17
    x = torch.randint(1, 11, (3, T))
    padded = torch.cat([x, torch.zeros(3, pad, dtype=torch.long)], 1)
    mask = padded != 0
    ref = model(x, torch.ones_like(x, dtype=torch.bool))
    out = model(padded, mask)
    assert_close(out, ref, dtype=torch.float64)
    # and the padding tokens' content is irrelevant
    noisy = padded.clone()
    noisy[:, T:] = torch.randint(1, 11, (3, pad))
    assert_close(model(noisy, mask), ref, dtype=torch.float64)
