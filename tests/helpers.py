"""The one shared tolerance helper: relative RMS error with per-dtype thresholds."""

from __future__ import annotations

import torch

# ||a - b|| / ||b|| thresholds. fp64 ~ rounding; fp32 ~1e-5; tf32 ~1e-3; half types ~1e-2.
TOLERANCE = {
    torch.float64: 1e-10,
    torch.float32: 1e-5,
    "tf32": 1e-3,
    torch.bfloat16: 1e-2,
    torch.float16: 1e-2,
}


def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64 (0 when both are exactly zero). NaN anywhere -> inf."""
    a64, b64 = a.detach().double(), b.detach().double()
    if a64.shape != b64.shape:
        raise AssertionError(f"shape mismatch: {tuple(a.shape)} vs {tuple(b.shape)}")
    if not (torch.isfinite(a64).all() and torch.isfinite(b64).all()):
        return float("inf")
    num = (a64 - b64).norm().item()
    den = b64.norm().item()
    if den == 0.0:
        return 0.0 if num == 0.0 else float("inf")
    return num / den


def assert_close(actual, expected, dtype=None, tol: float | None = None, what: str = "") -> None:
    """Assert rel_rms(actual, expected) <= tol (default: TOLERANCE[dtype or actual.dtype])."""
    if tol is None:
        tol = TOLERANCE[dtype if dtype is not None else actual.dtype]
    err = rel_rms(actual, expected)
    assert err <= tol, f"{what} relative RMS error {err:.3e} > {tol:.1e}"
