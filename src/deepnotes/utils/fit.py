"""Power-law fits for scaling plots."""

from __future__ import annotations

import math
from collections.abc import Sequence


def power_law_exponent(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of log y against log x (y ~ x^p); None with fewer than 2 points."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    if sxx == 0:
        return None
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx


def extrapolate(xs: Sequence[float], ys: Sequence[float], x_new: float) -> float | None:
    """Predict y at x_new from the last two points' local power law."""
    if len(xs) < 2 or ys[-1] <= 0 or ys[-2] <= 0:
        return None
    p = math.log(ys[-1] / ys[-2]) / math.log(xs[-1] / xs[-2])
    return ys[-1] * (x_new / xs[-1]) ** max(p, 1.0)
