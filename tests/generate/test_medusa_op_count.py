"""scripts/medusa_op_count.py: which ops it counts as launches, and the one-graph step's
launches beyond a greedy token (a guard: the step stays lean)."""

from __future__ import annotations

import torch

from tests.scripts import load_script


def _script():
    return load_script("medusa_op_count")


def test_views_are_not_launches():
    oc = _script()
    x = torch.randn(4, 6)
    with oc.OpCounter() as c:
        y = x.view(2, 12).t().transpose(0, 1)[1:]  # views only
        z = y + 1  # one kernel
        z.add_(2)  # one in place
        x.reshape(24).contiguous()  # a view: no copy needed
    assert sum(c.ops.values()) >= 6
    assert dict(c.launching) == {"add": 1, "add_": 1}


def test_the_one_graph_step_adds_few_launches_to_a_greedy_token():
    """Per layer both run the same forward; the step adds a fixed set (one top-k, stacked
    heads, acceptance, a two-op rollback): 28 at any depth and tree size here. The per-head
    loops and per-block rollback it replaced added 81."""
    oc = _script()
    for layers in (1, 3):
        runs = oc.count(vocab=50, d_model=64, layers=layers, prompt_len=5)
        greedy = sum(runs.pop("greedy token").launching.values())
        for name, c in runs.items():
            extra = sum(c.launching.values()) - greedy
            assert 0 < extra <= 30, (layers, name, extra)
