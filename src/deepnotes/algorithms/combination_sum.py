"""Combination sum I and II (LeetCode 39 / 40) by depth-first backtracking with pruning.

- `combination_sum(candidates, target)`: every multiset of candidates (each reusable any
  number of times) that sums to target.
- `combination_sum_unique(candidates, target)`: each candidate position used at most once,
  no duplicate combinations even when candidates repeat.

Both sort the candidates and search a tree whose node is (start index, remaining sum,
path). As in the note:
- to avoid the same combination in another order, the next level only considers candidates
  from the current index on (I) or after it (II);
- II skips a candidate equal to its left sibling at the same depth (`i > start and c[i] ==
  c[i-1]`), so equal values are taken as a prefix run: no duplicate combinations;
- pruning: candidates are sorted, so once one exceeds the remaining sum, so do the rest.

Results: each combination ascending, the list in lexicographic order. The search uses an
explicit stack (no recursion limit for long combinations such as target 5000 from [1]).
"""

from __future__ import annotations

from collections.abc import Sequence


def _validate(candidates: Sequence[int], target: int) -> list[int]:
    for c in candidates:
        if isinstance(c, bool) or not isinstance(c, int):
            raise ValueError(f"candidates must be integers, got {c!r}")
        if c <= 0:
            raise ValueError(f"candidates must be positive, got {c}")
    if isinstance(target, bool) or not isinstance(target, int):
        raise ValueError(f"target must be an integer, got {target!r}")
    if target < 0:
        raise ValueError(f"target must be >= 0, got {target}")
    return sorted(candidates)


def _search(c: list[int], target: int, reuse: bool) -> list[list[int]]:
    out: list[list[int]] = []
    # (start, remaining, path); pushed in reverse so they pop in lexicographic order
    stack: list[tuple[int, int, tuple[int, ...]]] = [(0, target, ())]
    while stack:
        start, remaining, path = stack.pop()
        if remaining == 0:
            out.append(list(path))
            continue
        children = []
        for i in range(start, len(c)):
            if c[i] > remaining:
                break  # pruning: sorted, so every later candidate is too large as well
            if not reuse and i > start and c[i] == c[i - 1]:
                continue  # same value at the same depth: would repeat a combination
            children.append((i if reuse else i + 1, remaining - c[i], (*path, c[i])))
        stack.extend(reversed(children))
    return out


def combination_sum(candidates: Sequence[int], target: int) -> list[list[int]]:
    """LeetCode 39: combinations of positive integers (reusable) summing to target.

    Repeated candidates are merged (the problem states they are distinct). target 0 has one
    combination, the empty one.
    """
    return _search(sorted(set(_validate(candidates, target))), target, reuse=True)


def combination_sum_unique(candidates: Sequence[int], target: int) -> list[list[int]]:
    """LeetCode 40: each candidate used at most once; no duplicate combinations."""
    return _search(_validate(candidates, target), target, reuse=False)
