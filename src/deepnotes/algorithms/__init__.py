"""The algorithm notes: maximum gap (bucket sort), combination sum I/II (DFS backtracking),
and computational geometry with EPS-aware comparisons."""

from deepnotes.algorithms.combination_sum import combination_sum, combination_sum_unique
from deepnotes.algorithms.max_gap import maximum_gap, maximum_gap_numpy, maximum_gap_sorted

__all__ = [
    "combination_sum",
    "combination_sum_unique",
    "maximum_gap",
    "maximum_gap_numpy",
    "maximum_gap_sorted",
]
