"""Small statistical tests for comparing two models on the same examples."""

from __future__ import annotations

import math

import numpy as np


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value (McNemar 1947): under "equally good", each discordant
    pair (one model right, the other wrong) favours a with probability 1/2, so
    p = min(1, 2 P[Binomial(n, 1/2) <= min(only_a, only_b)]), n = only_a + only_b."""
    if only_a < 0 or only_b < 0:
        raise ValueError(f"counts must be >= 0, got {only_a}, {only_b}")
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired(a: np.ndarray, b: np.ndarray) -> dict:
    """a, b: [N] bool, whether models a and b got each of the same N examples right ->
    {"a_only", "b_only": discordant counts, "p": exact McNemar p-value}."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape:
        raise ValueError(f"paired results need the same examples: {a.shape} vs {b.shape}")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    return {"a_only": a_only, "b_only": b_only, "p": mcnemar_exact(a_only, b_only)}
