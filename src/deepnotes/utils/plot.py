"""Matplotlib, imported lazily with a non-interactive backend."""

from __future__ import annotations


def pyplot():
    """Return matplotlib.pyplot using the Agg backend, or raise a clear error if missing."""
    try:
        import matplotlib
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            "plots need matplotlib: pip install 'deepnotes[plot]' (scripts/setup.sh installs it)"
        ) from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
