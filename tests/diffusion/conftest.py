import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """These tests use small tensors: one thread avoids thread contention on a busy machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
