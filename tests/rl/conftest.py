import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    """RL tests run tiny networks: one torch thread avoids thread contention (and matches
    how the benchmarks run)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
