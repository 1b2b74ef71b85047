"""Synthetic tasks: deterministic from a seed, the documented format, and every answer
computable from the inputs."""

from __future__ import annotations

import random

import pytest
import torch

from deepnotes.data.synthetic import (
    IGNORE,
    LISTOPS_END,
    LISTOPS_OPS,
    PAD,
    induction_heads,
    listops,
    listops_decode,
    listops_eval_tokens,
    listops_tokens,
    listops_tree,
    listops_value,
    mqar,
    selective_copying,
)

GENERATORS = {
    "mqar": lambda seed: mqar(20, 64, 4, 64, seed=seed),
    "selective_copying": lambda seed: selective_copying(20, 48, 6, 10, seed=seed),
    "induction_heads": lambda seed: induction_heads(20, 33, 12, seed=seed),
    "listops": lambda seed: listops(6, 20, 120, seed=seed),
}


@pytest.mark.parametrize("name", GENERATORS)
def test_deterministic_from_seed(name, seed):
    a, b, c = (GENERATORS[name](s) for s in (seed, seed, seed + 1))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not all(u.shape == v.shape and torch.equal(u, v) for u, v in zip(a, c, strict=True))


@pytest.mark.parametrize("T,P,V", [(64, 4, 64), (130, 16, 100), (256, 16, 512)])
def test_mqar_answers_come_from_the_pairs(T, P, V, seed):
    x, y = mqar(16, T, P, V, seed=seed)
    assert x.shape == y.shape == (16, T) and x.dtype == torch.long
    assert x.min() >= 0 and x.max() < V
    for i in range(16):
        keys, values = x[i, 0 : 2 * P : 2], x[i, 1 : 2 * P : 2]
        assert len(set(keys.tolist())) == P  # distinct keys
        assert keys.max() < V // 2 <= values.min()
        lookup = dict(zip(keys.tolist(), values.tolist(), strict=True))
        asked = (y[i] != IGNORE).nonzero().flatten()
        assert len(asked) == P  # one query per pair
        assert asked.min() >= 2 * P
        for t in asked.tolist():
            assert lookup[x[i, t].item()] == y[i, t].item()  # key at t, its value as target


def test_mqar_bad_arguments():
    with pytest.raises(ValueError, match="4 \\* num_pairs"):
        mqar(2, 16, 5)
    with pytest.raises(ValueError, match="even"):
        mqar(2, 17, 2)


def test_selective_copying_targets_are_the_data_in_order(seed):
    T, M, V = 60, 7, 9
    x, y = selective_copying(30, T, M, V, seed=seed)
    assert x.shape == y.shape == (30, T)
    assert torch.all(x[:, T - M :] == V - 1) and torch.all(y[:, : T - M] == IGNORE)
    for i in range(30):
        region = x[i, : T - M]
        data = region[region != 0]
        assert len(data) == M and data.min() >= 1 and data.max() <= V - 2
        assert torch.equal(y[i, T - M :], data)
    # positions are random: the data is not always at the same place
    assert len({tuple((x[i, : T - M] != 0).nonzero().flatten().tolist()) for i in range(30)}) > 1


def test_induction_heads_answer_follows_the_trigger(seed):
    x, y = induction_heads(40, 33, 12, seed=seed)
    trig = 11
    for i in range(40):
        where = (x[i] == trig).nonzero().flatten().tolist()
        assert len(where) == 2 and where[-1] == 32
        assert y[i, -1] == x[i, where[0] + 1]
        assert torch.all(y[i, :-1] == IGNORE)


# ----------------------------------------------------------------------------- ListOps
def python_eval(tokens: list[str]) -> int:
    """Translate to a Python expression and eval it: '[MAX 1 [SM 2 3 ] ]' -> MAX(1,SM(2,3,),)."""
    import statistics

    env = {
        "MIN": lambda *a: min(a),
        "MAX": lambda *a: max(a),
        "MED": lambda *a: int(statistics.median(a)),  # mean of the two middles, floored
        "SM": lambda *a: sum(a) % 10,
    }
    src = "".join(
        t[1:] + "(" if t in LISTOPS_OPS else (")," if t == LISTOPS_END else t + ",") for t in tokens
    )
    return eval(src.rstrip(","), env)  # noqa: S307 - our own generated expression


def test_listops_evaluators_agree(seed):
    rng = random.Random(seed)
    n_ops = 0
    for _ in range(300):
        tree = listops_tree(rng, max_depth=6, max_args=5)
        toks = listops_tokens(tree)
        n_ops += sum(t in LISTOPS_OPS for t in toks)
        v = listops_value(tree)
        assert 0 <= v <= 9
        assert listops_eval_tokens(toks) == v
        assert python_eval(toks) == v
    assert n_ops > 50  # the trees are not all bare digits


def test_listops_known_values():
    assert listops_eval_tokens("[MAX 4 3 [MIN 2 3 ] 1 0 [MED 1 5 8 9 2 ] ]".split()) == 5
    assert listops_eval_tokens("[SM 9 8 [MED 1 2 ] ]".split()) == 8  # 9 + 8 + 1 = 18
    assert listops_eval_tokens("[MED 1 2 3 4 ]".split()) == 2  # median 2.5 -> 2
    with pytest.raises(ValueError, match="unbalanced"):
        listops_eval_tokens("[MAX 1 2".split())


def test_listops_dataset_format(seed):
    x, y = listops(8, 30, 200, seed=seed, max_depth=8)
    assert x.dtype == y.dtype == torch.long and y.shape == (8,)
    lengths = (x != PAD).sum(1)
    assert torch.all((lengths > 30) & (lengths < 200))
    for i in range(8):
        toks = listops_decode(x[i].tolist())
        assert toks[0] in LISTOPS_OPS and toks[-1] == LISTOPS_END
        assert torch.all(x[i, lengths[i] :] == PAD)  # padding only at the end
        assert listops_eval_tokens(toks) == y[i].item()
    x2, _ = listops(8, 30, 200, seed=seed, max_depth=8, pad_to=256)
    assert x2.shape == (8, 256)
