"""Maximum gap: bucket method (pure Python and numpy) against sort + scan."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepnotes.algorithms import maximum_gap, maximum_gap_numpy, maximum_gap_sorted

SETTINGS = settings(max_examples=150, deadline=None)
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@SETTINGS
@given(st.lists(st.integers(min_value=-(10**6), max_value=10**6), max_size=60))
def test_small_ints_equal_sorting(nums):
    want = maximum_gap_sorted(nums)
    assert maximum_gap(nums) == want
    assert maximum_gap_numpy(np.array(nums, dtype=np.int64)) == want


@SETTINGS
@given(st.lists(INT64, min_size=0, max_size=40))
def test_full_int64_range_is_exact(nums):
    want = maximum_gap_sorted(nums)  # Python ints: no overflow
    assert maximum_gap(nums) == want
    assert maximum_gap_numpy(np.array(nums, dtype=np.int64)) == want


@SETTINGS
@given(st.lists(st.integers(min_value=0, max_value=5), max_size=50))
def test_many_duplicates(nums):
    assert maximum_gap(nums) == maximum_gap_sorted(nums)
    assert maximum_gap_numpy(np.array(nums, dtype=np.int64)) == maximum_gap_sorted(nums)


@SETTINGS
@given(st.lists(st.integers(min_value=-(2**200), max_value=2**200), max_size=30))
def test_python_big_ints(nums):
    assert maximum_gap(nums) == maximum_gap_sorted(nums)


@SETTINGS
@given(st.lists(st.floats(-1e9, 1e9, allow_nan=False), max_size=40))
def test_floats_match_sorting(nums):
    want = maximum_gap_sorted(nums)
    # exact unless all gaps tie to within rounding (see the module doc)
    assert maximum_gap(nums) == pytest.approx(want, rel=1e-9, abs=1e-6)
    assert maximum_gap_numpy(np.array(nums)) == pytest.approx(want, rel=1e-9, abs=1e-6)


def test_edge_cases():
    assert maximum_gap([]) == maximum_gap([7]) == 0
    assert maximum_gap([3, 6, 9, 1]) == 3
    assert maximum_gap([10]) == maximum_gap_numpy(np.array([10])) == 0
    assert maximum_gap([5, 5, 5]) == maximum_gap_numpy(np.array([5, 5, 5])) == 0
    assert maximum_gap([1, 10_000_000]) == 9_999_999
    assert maximum_gap_numpy(np.array([-(2**63), 2**63 - 1])) == 2**64 - 1
    assert maximum_gap_numpy(np.array([1, 5, 2], dtype=np.uint8)) == 3


def test_random_large_arrays(seed):
    rng = np.random.default_rng(seed)
    for n in (2, 63, 1000, 100_003):
        a = rng.integers(-(10**12), 10**12, size=n)
        want = int(np.diff(np.sort(a)).max())
        assert maximum_gap_numpy(a) == want
        if n <= 1000:
            assert maximum_gap(a.tolist()) == want


def test_bad_input():
    with pytest.raises(ValueError, match="numbers"):
        maximum_gap([1, "2"])
    with pytest.raises(ValueError, match="finite"):
        maximum_gap([1.0, float("nan")])
    with pytest.raises(ValueError, match="1-d"):
        maximum_gap_numpy(np.zeros((2, 2)))
