"""Combination sum I/II against brute-force enumeration."""

from __future__ import annotations

from itertools import combinations, combinations_with_replacement

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepnotes.algorithms import combination_sum, combination_sum_unique


def brute_reuse(cands, target):
    cands = sorted(set(cands))
    out = set()
    if target == 0:
        return [[]]
    for r in range(1, target // min(cands) + 1 if cands else 1):
        for combo in combinations_with_replacement(cands, r):
            if sum(combo) == target:
                out.add(combo)
    return sorted(list(c) for c in out)


def brute_unique(cands, target):
    out = set()
    for r in range(len(cands) + 1):
        for combo in combinations(sorted(cands), r):
            if sum(combo) == target:
                out.add(combo)
    return sorted(list(c) for c in out)


@settings(max_examples=120, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=6, unique=True), st.integers(0, 22))
def test_reuse_equals_brute_force(cands, target):
    got = combination_sum(cands, target)
    assert got == brute_reuse(cands, target)
    assert all(sum(c) == target and c == sorted(c) for c in got)


@settings(max_examples=120, deadline=None)
@given(st.lists(st.integers(1, 8), min_size=0, max_size=10), st.integers(0, 20))
def test_unique_equals_brute_force(cands, target):
    got = combination_sum_unique(cands, target)
    assert got == brute_unique(cands, target)
    assert len({tuple(c) for c in got}) == len(got)  # no duplicates


def test_leetcode_examples():
    assert combination_sum([2, 3, 6, 7], 7) == [[2, 2, 3], [7]]
    assert combination_sum([2, 3, 5], 8) == [[2, 2, 2, 2], [2, 3, 3], [3, 5]]
    assert combination_sum([2], 1) == []
    assert combination_sum_unique([10, 1, 2, 7, 6, 1, 5], 8) == [
        [1, 1, 6], [1, 2, 5], [1, 7], [2, 6],
    ]  # fmt: skip
    assert combination_sum_unique([2, 5, 2, 1, 2], 5) == [[1, 2, 2], [5]]
    assert combination_sum([3, 1], 0) == [[]]


def test_deep_combinations_do_not_hit_the_recursion_limit():
    assert combination_sum([1], 5000) == [[1] * 5000]


def test_bad_input():
    with pytest.raises(ValueError, match="positive"):
        combination_sum([0, 1], 3)
    with pytest.raises(ValueError, match="positive"):
        combination_sum_unique([-2, 1], 3)
    with pytest.raises(ValueError, match=">= 0"):
        combination_sum([1, 2], -1)
    with pytest.raises(ValueError, match="integers"):
        combination_sum([1.5], 3)
