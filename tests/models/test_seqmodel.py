"""SeqModel (padding never reaches the prediction), map_runs and the shared-data helpers."""

from __future__ import annotations

import pytest
import torch

from deepnotes.models.seqmodel import SeqModel, SeqModelConfig, map_runs, shareable, shared
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


def test_map_runs_in_process_keeps_order():
    calls = [(2, k) for k in range(5)]
    assert list(map_runs(pow, calls, workers=1)) == [(k, 2**k) for k in range(5)]


def test_map_runs_over_processes_gives_the_same_results():
    calls = [(3, k) for k in range(4)]
    assert dict(map_runs(pow, calls, workers=2)) == {k: 3**k for k in range(4)}


def test_shareable_round_trip(seed):
    g = torch.Generator().manual_seed(seed)
    data = {0: (torch.randint(0, 50, (7, 9), generator=g), torch.randn(7, generator=g))}
    with shareable(data, workers=1) as same:
        assert same is data
    with shareable(data, workers=3) as path:
        assert isinstance(path, str)
        back = shared(path)
        assert torch.equal(back[0][0], data[0][0]) and torch.equal(back[0][1], data[0][1])
