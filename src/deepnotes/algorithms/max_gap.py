"""Maximum gap: the largest difference between neighbours of the sorted array, in O(n).

Bucket (pigeonhole) method, as in the note. With n numbers between lo and hi, the n-1
neighbour gaps add up to hi - lo, so the largest gap is at least the mean (hi - lo) / (n-1).
Make buckets of width

    size = max(1, (hi - lo) // (n - 1))          (integers; (hi - lo) / (n - 1) for floats)

Two numbers in the same bucket differ by less than `size`, which is at most the largest gap,
so the largest gap is always between the maximum of one non-empty bucket and the minimum of
the next non-empty one. Each bucket keeps only its min and max: O(n) time and memory.

- `maximum_gap`: pure Python; integers of any size exactly (Python ints), or floats.
- `maximum_gap_numpy`: the same buckets vectorised with numpy (int64 or float64). Offsets
  from `lo` are taken in uint64, so any int64 range (up to 2^64 - 1) is exact.
- `maximum_gap_sorted`: the O(n log n) reference: sort, then scan neighbours.

For floats the bucket index is computed in floating point; an element within rounding of a
bucket edge can land in the neighbouring bucket, so a float answer is exact unless all gaps
are equal to within rounding (then it can be off by that rounding). Integers are exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _check(nums) -> bool:
    """Validate; True when every value is an integer (then the arithmetic is exact)."""
    if all(type(x) is int for x in nums):
        return True
    for x in nums:
        if isinstance(x, bool) or not isinstance(x, int | float | np.integer | np.floating):
            raise ValueError(f"maximum_gap takes numbers, got {x!r}")
        if isinstance(x, float | np.floating) and not np.isfinite(x):
            raise ValueError(f"maximum_gap takes finite numbers, got {x!r}")
    return all(isinstance(x, int | np.integer) for x in nums)


def maximum_gap_sorted(nums: Sequence[float]) -> float:
    """Sort + scan: max(b - a) over neighbours of sorted(nums); 0 when len(nums) < 2."""
    s = sorted(nums)
    return max((b - a for a, b in zip(s, s[1:], strict=False)), default=0)


def maximum_gap(nums: Sequence[float]) -> float:
    """Largest neighbour gap of sorted(nums) by the bucket method; 0 when len(nums) < 2."""
    nums = list(nums)
    integer = _check(nums)
    n = len(nums)
    if n < 2:
        return 0
    lo, hi = min(nums), max(nums)
    if lo == hi:
        return hi - lo
    if integer:
        lo, hi = int(lo), int(hi)
        size = max(1, (hi - lo) // (n - 1))
        count = (hi - lo) // size + 1
        index = [(int(x) - lo) // size for x in nums]
    else:
        size = (hi - lo) / (n - 1)
        count = n
        # the maximum always goes last, whatever the rounding of (hi - lo) / size
        index = [n - 1 if x == hi else min(int((x - lo) / size), n - 1) for x in nums]
    inf = float("inf")
    bmin, bmax = [inf] * count, [-inf] * count  # empty buckets keep the sentinels
    for x, i in zip(nums, index, strict=True):
        if x < bmin[i]:
            bmin[i] = x
        if x > bmax[i]:
            bmax[i] = x
    best, prev = 0, None
    for lo_i, hi_i in zip(bmin, bmax, strict=True):
        if lo_i == inf:
            continue
        if prev is not None and lo_i - prev > best:
            best = lo_i - prev
        prev = hi_i
    return best


def maximum_gap_numpy(a) -> int | float:
    """The bucket method vectorised: a: int or float array [n] -> Python int or float."""
    a = np.asarray(a)
    if a.ndim != 1:
        raise ValueError(f"maximum_gap_numpy takes a 1-d array, got shape {a.shape}")
    n = a.size
    if n < 2:
        return 0
    if a.dtype.kind in "iu":
        if a.dtype.kind == "u" and a.dtype.itemsize == 8 and int(a.max()) >= 2**63:
            raise ValueError("uint64 values >= 2^63 are not supported; use maximum_gap")
        x = a.astype(np.int64)
        lo, hi = int(x.min()), int(x.max())
        if lo == hi:
            return 0
        size = max(1, (hi - lo) // (n - 1))
        count = (hi - lo) // size + 1
        d = x.view(np.uint64) - np.uint64(lo % 2**64)  # wraps to the exact offset x - lo
        idx = (d // np.uint64(size)).astype(np.int64)
        big = np.iinfo(np.uint64).max
        bmin = np.full(count, big, dtype=np.uint64)
        bmax = np.zeros(count, dtype=np.uint64)
    elif a.dtype.kind == "f":
        d = a.astype(np.float64)
        if not np.isfinite(d).all():
            raise ValueError("maximum_gap_numpy takes finite numbers")
        lo, hi = float(d.min()), float(d.max())
        if lo == hi:
            return 0.0
        idx = np.minimum(((d - lo) * ((n - 1) / (hi - lo))).astype(np.int64), n - 1)
        idx[d == hi] = n - 1  # the maximum always goes last, whatever the rounding
        count = n
        bmin = np.full(count, np.inf)
        bmax = np.full(count, -np.inf)
    else:
        raise ValueError(f"maximum_gap_numpy takes numbers, got dtype {a.dtype}")
    np.minimum.at(bmin, idx, d)
    np.maximum.at(bmax, idx, d)
    used = np.bincount(idx, minlength=count) > 0
    mins, maxs = bmin[used], bmax[used]
    gap = (mins[1:] - maxs[:-1]).max()
    return int(gap) if a.dtype.kind in "iu" else float(gap)
