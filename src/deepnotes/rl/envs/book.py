"""State values as printed in the books, row by row (row 0 at the top), for comparison.

Zhao, *Mathematical Foundations of Reinforcement Learning* (2025), Figure 3.4 (optimal values,
gamma 0.9, r_boundary = r_forbidden = -1, r_target = 1) and its variants in Section 3.5
(gamma 0.5; r_forbidden -10). Sutton & Barto, *Reinforcement Learning: An Introduction*
(2nd ed., 2018), Figure 3.2 (equiprobable random policy, gamma 0.9), Figure 3.5 (optimal
values, gamma 0.9) and Figure 4.1 (equiprobable random policy, gamma 1, k = infinity).
The books print one decimal (Figure 4.1: integers), which is what these arrays hold;
`matches_printed` checks values against them to that precision.
"""

from __future__ import annotations

import numpy as np

ZHAO_FIG_3_4 = np.array(
    [
        [5.8, 5.6, 6.2, 6.5, 5.8],
        [6.5, 7.2, 8.0, 7.2, 6.5],
        [7.2, 8.0, 10.0, 8.0, 7.2],
        [8.0, 10.0, 10.0, 10.0, 8.0],
        [7.2, 9.0, 10.0, 9.0, 8.1],
    ]
)

ZHAO_GAMMA_0_5 = np.array(
    [
        [0.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.1],
        [0.0, 0.0, 2.0, 0.1, 0.1],
        [0.0, 2.0, 2.0, 2.0, 0.2],  # exact value 0.25 at (3, 4): printed 0.2
        [0.0, 1.0, 2.0, 1.0, 0.5],
    ]
)

ZHAO_R_FORBIDDEN_10 = np.array(
    [
        [3.5, 3.9, 4.3, 4.8, 5.3],
        [3.1, 3.5, 4.8, 5.3, 5.9],
        [2.8, 2.5, 10.0, 5.9, 6.6],
        [2.5, 10.0, 10.0, 10.0, 7.3],
        [2.3, 9.0, 10.0, 9.0, 8.1],
    ]
)

SB_FIG_3_2 = np.array(
    [
        [3.3, 8.8, 4.4, 5.3, 1.5],
        [1.5, 3.0, 2.3, 1.9, 0.5],
        [0.1, 0.7, 0.7, 0.4, -0.4],
        [-1.0, -0.4, -0.4, -0.6, -1.2],
        [-1.9, -1.3, -1.2, -1.4, -2.0],
    ]
)

SB_FIG_3_5 = np.array(
    [
        [22.0, 24.4, 22.0, 19.4, 17.5],
        [19.8, 22.0, 19.8, 17.8, 16.0],
        [17.8, 19.8, 17.8, 16.0, 14.4],
        [16.0, 17.8, 16.0, 14.4, 13.0],
        [14.4, 16.0, 14.4, 13.0, 11.7],
    ]
)

SB_FIG_4_1 = np.array(
    [
        [0.0, -14.0, -20.0, -22.0],
        [-14.0, -18.0, -20.0, -20.0],
        [-20.0, -20.0, -18.0, -14.0],
        [-22.0, -20.0, -14.0, 0.0],
    ]
)


def matches_printed(v: np.ndarray, printed: np.ndarray, decimals: int = 1) -> np.ndarray:
    """Elementwise: does `v` round to `printed` at `decimals` places? A value exactly halfway
    (Zhao's 0.25, printed 0.2) is accepted either way: |v - printed| <= 0.5 * 10^-decimals."""
    v = np.asarray(v, np.float64).reshape(printed.shape)
    return np.abs(v - printed) <= 0.5 * 10.0**-decimals + 1e-9
