"""Medusa trees from measured head accuracy: calibration, expected length, optimal trees."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from deepnotes.generate import generate
from deepnotes.generate.medusa import MedusaHeads, medusa_generate
from deepnotes.generate.medusa_tree import SPARSE_4, dense_tree, sparse_tree
from deepnotes.generate.medusa_tree_search import (
    expected_accepted_length,
    head_rank_accuracy,
    optimal_paths,
    optimal_tree,
    tree_paths,
)
from deepnotes.models.lm import LM, LMConfig
from tests.helpers import assert_close


def tiny_lm(vocab=29, bias=False):
    cfg = LMConfig(vocab_size=vocab, d_model=24, n_layers=2, n_heads=2, max_len=128,
                   positions="rotary", bias=bias)  # fmt: skip
    return LM(cfg).double().eval()


def random_heads(vocab=29, n_heads=3):
    heads = MedusaHeads(24, vocab, n_heads=n_heads).double()
    for p in heads.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return heads


def random_acc(K, topk, ties=False):
    """[K, topk] with rows summing to < 1; ties=True draws from a few values only."""
    if ties:
        a = torch.randint(0, 3, (K, topk)).double() / 4
        return a / a.sum(1, keepdim=True).clamp(min=1) * 0.95
    a = torch.rand(K, topk, dtype=torch.float64) ** 2
    return a / a.sum(1, keepdim=True) * torch.rand(K, 1, dtype=torch.float64)


def closed_sets(K, topk, size):
    """Every ancestor-closed set of `size` nodes of the full top-k tree of depth K."""
    sets = {frozenset()}
    for _ in range(size):
        grown = set()
        for s in sets:
            for p in [(r,) for r in range(topk)] + [(*q, r) for q in s for r in range(topk)]:
                if len(p) <= K and p not in s:
                    grown.add(s | {p})
        sets = grown
    return sets


def test_best_first_equals_brute_force(seed):
    for K, topk, ties in itertools.product([2, 3], [2, 3], [False, True]):
        acc = random_acc(K, topk, ties)
        for n in range(2, 7):
            paths = optimal_paths(acc, n)
            assert len(paths) == n - 1
            best = max(expected_accepted_length(acc, s) for s in closed_sets(K, topk, n - 1))
            ours = expected_accepted_length(acc, paths)  # also checks the set is closed
            assert_close(torch.tensor(ours), torch.tensor(best), what=f"K={K} k={topk} n={n}")
            assert optimal_paths(acc, n) == paths  # deterministic
            tree, again = optimal_tree(acc, n)
            assert tree.n_nodes == n and again == paths
            assert sorted(tree_paths(tree)) == sorted(paths)


def test_optimal_trees_grow_by_one_node(seed):
    """The best (n + 1)-node tree is the best n-node tree plus one node (nested)."""
    acc = random_acc(4, 5)
    big = optimal_paths(acc, 30)
    for n in range(2, 30):
        assert optimal_paths(acc, n) == big[: n - 1]


def test_expected_length_of_a_dense_tree_is_its_closed_form(seed):
    """Dense [k_1..k_K]: 1 + sum_d prod_{i <= d} (acc[i, 0] + ... + acc[i, k_i - 1])."""
    acc = random_acc(4, 4)
    for ks in ([2, 2, 2, 2], [3, 2, 1], [4], [1, 1, 1, 1], [4, 3, 2, 1]):
        paths = [list(p) for d in range(1, len(ks) + 1)
                 for p in itertools.product(*[range(k) for k in ks[:d]])]  # fmt: skip
        closed = 1 + sum(
            math.prod(float(acc[i, :k].sum()) for i, k in enumerate(ks[:d]))
            for d in range(1, len(ks) + 1)
        )
        assert_close(torch.tensor(expected_accepted_length(acc, paths)), torch.tensor(closed))
        assert sorted(tree_paths(dense_tree(ks))) == sorted(paths)


def test_tree_paths_reads_a_sparse_tree_back():
    paths = [p for p in SPARSE_4]
    assert sorted(tree_paths(sparse_tree(paths, topk=[4, 3, 2, 2]))) == sorted(paths)


def test_rank_accuracy_equals_a_direct_count(seed):
    """Against a position-by-position count: greedy tokens from `generate`, each head read at
    the prefix's last hidden state, its rank by a full sort."""
    model, heads = tiny_lm(), random_heads()
    T0, n, topk = 5, 12, 6
    prompts = torch.randint(0, 29, (3, T0))
    acc = head_rank_accuracy(model, heads, prompts, n, topk=topk, batch_size=2)
    assert acc.shape == (3, topk) and (acc.sum(1) <= 1 + 1e-12).all()
    hits, counts = torch.zeros(3, topk, dtype=torch.float64), torch.zeros(3)
    for prompt in prompts:
        seq = generate(model, prompt[None], n, temperature=0)[0]
        for t in range(T0 - 1, T0 + n):
            with torch.no_grad():
                logits = heads(model.hidden(seq[None, : t + 1])[0, -1])  # [K, V]
            for d in range(3):
                if t + d + 2 < seq.numel():  # head d + 1 predicts token t + d + 2
                    order = logits[d].argsort(descending=True)
                    rank = int((order == seq[t + d + 2]).nonzero())
                    counts[d] += 1
                    if rank < topk:
                        hits[d, rank] += 1
    assert counts.tolist() == [3 * (n - 1), 3 * (n - 2), 3 * (n - 3)]
    assert_close(acc, hits / counts[:, None])
    # a list of [1, T0] prompts gives the same table
    assert_close(head_rank_accuracy(model, heads, list(prompts[:, None]), n, topk=topk), acc)


def test_exact_heads_measure_and_predict_the_accepted_length(monkeypatch):
    """A base whose final norm outputs a constant (weight 0, bias b): greedy repeats one token
    c, and head d is built to rank c at r_d. Then acc[d, r_d] = 1, the optimal (K+1)-node
    tree is the chain r_1, (r_1, r_2), ..., and decoding accepts all K head tokens per step,
    as predicted."""
    torch.manual_seed(0)
    model = tiny_lm(bias=True)
    with torch.no_grad():
        model.norm.weight.zero_()
        model.norm.bias.normal_()
        b, W = model.norm.bias.clone(), model.head.weight.clone()
    c = int((W @ b).argmax())
    ranks = [2, 0, 1]
    heads = MedusaHeads(24, 29, n_heads=3).double()
    with torch.no_grad():
        for head, r in zip(heads.heads, ranks, strict=True):
            head[0].linear.bias.zero_()  # ResBlock(b) = b + SiLU(0) = b
            order = (W @ b).argsort(descending=True).tolist()  # order[0] = c
            perm = list(range(29))
            perm[c], perm[order[r]] = order[r], c  # swap rows: c takes rank r
            head[-1].weight.copy_(W[perm])
    prompts = torch.randint(0, 29, (2, 4))
    acc = head_rank_accuracy(model, heads, prompts, 10, topk=4)
    expect = torch.zeros(3, 4, dtype=torch.float64)
    expect[range(3), ranks] = 1.0
    assert torch.equal(acc, expect)
    tree, paths = optimal_tree(acc, 4)
    assert paths == [[2], [2, 0], [2, 0, 1]]
    assert expected_accepted_length(acc, paths) == 4.0
    out, stats = medusa_generate(model, heads, prompts[:1], 12, tree=tree)
    assert torch.equal(out, generate(model, prompts[:1], 12, temperature=0))
    assert stats.accepted == [3, 3, 3]  # 4 tokens per forward, as predicted
    # one graph a step, launched one step ahead: no step in vain, and within the capacity
    from deepnotes.generate import medusa_graph

    calls = []
    real = medusa_graph.GreedyTreeStep.__call__
    monkeypatch.setattr(medusa_graph.GreedyTreeStep, "__call__",
                        lambda self, *a: calls.append(1) or real(self, *a))  # fmt: skip
    for n in (1, 4, 5, 11, 12, 13, 16):
        calls.clear()
        out, stats = medusa_generate(model, heads, prompts[:1], n, tree=tree, cuda_graph=True,
                                     step_graph=True)  # fmt: skip
        assert torch.equal(out, generate(model, prompts[:1], n, temperature=0))
        assert len(calls) == len(stats.accepted) == math.ceil(n / 4), n


def test_optimal_trees_decode_losslessly(seed):
    model, heads = tiny_lm(), random_heads()
    prompts = torch.randint(0, 29, (4, 3))
    acc = head_rank_accuracy(model, heads, prompts[:2], 16, topk=5)
    for n in (2, 5, 9, 16):
        tree, paths = optimal_tree(acc, n)
        assert tree.n_nodes == n and tree.depth == max(map(len, paths))
        for prompt in prompts[2:]:
            out, stats = medusa_generate(model, heads, prompt[None], 17, tree=tree)
            assert torch.equal(out, generate(model, prompt[None], 17, temperature=0))
            assert stats.forwards == len(stats.accepted) + 1


def test_bad_inputs_raise():
    acc = torch.tensor([[0.5, 0.2], [0.3, 0.1]])
    for bad in (torch.tensor([0.5, 0.2]), torch.zeros(0, 2), torch.tensor([[0.5, 1.2]]),
                torch.tensor([[0.5, -0.1]]), torch.tensor([[0.7, 0.6]]),
                torch.tensor([[float("nan"), 0.1]])):  # fmt: skip
        with pytest.raises(ValueError):
            optimal_paths(bad, 3)
        with pytest.raises(ValueError):
            expected_accepted_length(bad, [[0]])
    for n in (0, 1, -3, 2.5, True, 8):  # 8 > the 6 + 1 nodes of the full top-2, 2-head tree
        with pytest.raises(ValueError):
            optimal_paths(acc, n)
    for paths in ([], [[0], [0]], [[0, 1]], [[2]], [[0], [0, 0], [0, 0, 0]], [[-1]], [[]]):
        with pytest.raises(ValueError):
            expected_accepted_length(acc, paths)
    model, heads = tiny_lm(), random_heads()
    prompts = torch.randint(0, 29, (2, 3))
    with pytest.raises(ValueError):
        head_rank_accuracy(model, heads, prompts, 3)  # 3 heads need 4 new tokens
    with pytest.raises(ValueError):
        head_rank_accuracy(model, heads, prompts, 8, topk=0)
    with pytest.raises(ValueError):
        head_rank_accuracy(model, heads, [torch.zeros(3).long(), torch.zeros(4).long()], 8)
