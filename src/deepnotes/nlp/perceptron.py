"""The perceptron learning rule, with and without a bias.

A perceptron fires when w . x > T. Moving the threshold to the left side gives
w . x + b > 0 with b = -T, and learning b as a weight (on a constant input 1) lets the
separating hyperplane leave the origin. Without b every boundary passes through the origin.

Rule (Rosenblatt), labels y in {-1, +1}: for each sample in turn, if y (w . x + b) <= 0 then

    w <- w + lr * y * x,      b <- b + lr * y   (only with a bias).

If some (w, b) separates the data with margin gamma and |x| <= R, the rule stops after at
most ((R^2 + 1) / gamma^2) updates with a bias (Novikoff). If no hyperplane through the origin
separates the data, the rule without a bias makes at least one mistake in every epoch,
forever; `separable_through_origin` checks that with a linear program.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class PerceptronResult:
    w: np.ndarray  # [D] weights
    b: float  # bias (0 and never updated when bias=False)
    errors: list[int] = field(default_factory=list)  # mistakes in each epoch
    converged: bool = False  # an epoch with no mistake happened

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.where(X @ self.w + self.b > 0, 1, -1)


def train_perceptron(
    X: np.ndarray,
    y: np.ndarray,
    *,
    bias: bool = True,
    lr: float = 1.0,
    max_epochs: int = 100,
    shuffle: np.random.Generator | None = None,
) -> PerceptronResult:
    """X: float [N, D]; y: {-1, +1} [N]. Stops after the first epoch without a mistake."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must be [N, D] and y [N]; got {X.shape} and {y.shape}")
    if not np.isin(y, (-1, 1)).all():
        raise ValueError("labels must be -1 or +1")
    w, b = np.zeros(X.shape[1]), 0.0
    res = PerceptronResult(w, b)
    for _ in range(max_epochs):
        order = shuffle.permutation(len(X)) if shuffle is not None else range(len(X))
        mistakes = 0
        for i in order:
            if y[i] * (X[i] @ w + b) <= 0:
                w = w + lr * y[i] * X[i]
                if bias:
                    b = b + lr * y[i]
                mistakes += 1
        res.errors.append(mistakes)
        if mistakes == 0:
            res.converged = True
            break
    res.w, res.b = w, b
    return res


def separable_through_origin(X: np.ndarray, y: np.ndarray, bias: bool) -> bool:
    """Is there (w, b) with y_i (w . x_i + b) >= 1 for all i (b = 0 when bias=False)?

    Feasibility of this linear program is exactly strict linear separability (scale any
    strict separator up to margin 1). Solved with scipy's HiGHS.
    """
    from scipy.optimize import linprog

    X = np.asarray(X, dtype=np.float64)
    A = X if not bias else np.concatenate([X, np.ones((len(X), 1))], axis=1)
    A_ub = -(np.asarray(y, dtype=np.float64)[:, None] * A)  # -y (w.x + b) <= -1
    res = linprog(
        np.zeros(A.shape[1]),
        A_ub=A_ub,
        b_ub=-np.ones(len(X)),
        bounds=[(None, None)] * A.shape[1],
        method="highs",
    )
    return res.status == 0


def off_origin_data(rng: np.random.Generator, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Two clusters on the same side of the origin: around (1, 1) (label -1) and (3, 3)
    (label +1), plus the pair (1, 1) -> -1 and (3, 3) -> +1 exactly.

    Since (3, 3) = 3 (1, 1), every w gives w . (3, 3) and w . (1, 1) the same sign: no line
    through the origin separates the classes. A line x1 + x2 = 4 does, with margin.
    """
    half = n // 2
    neg = np.array([1.0, 1.0]) + rng.uniform(-0.6, 0.6, size=(half, 2))
    pos = np.array([3.0, 3.0]) + rng.uniform(-0.6, 0.6, size=(half, 2))
    X = np.concatenate([[[1.0, 1.0], [3.0, 3.0]], neg, pos])
    y = np.concatenate([[-1, 1], -np.ones(half, int), np.ones(half, int)])
    return X, y
