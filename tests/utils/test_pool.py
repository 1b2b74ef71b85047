"""map_runs (in process and over worker processes) and the shared-data helpers."""

import torch

from deepnotes.utils.pool import map_runs, shareable, shared


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
