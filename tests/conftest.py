import os
import random

import pytest
import torch

# Each xdist worker gets one core; the suite runs one worker per core.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture
def seed(request) -> int:
    """A fresh seed for every test run, printed on failure so a failure can be replayed.

    Set DEEPNOTES_TEST_SEED to replay one.
    """
    s = int(os.environ.get("DEEPNOTES_TEST_SEED", random.SystemRandom().randrange(2**31)))
    torch.manual_seed(s)
    random.seed(s)
    request.node.user_properties.append(("seed", s))
    return s


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for k, v in item.user_properties:
            if k == "seed":
                rep.sections.append(("seed", f"replay with DEEPNOTES_TEST_SEED={v}"))
