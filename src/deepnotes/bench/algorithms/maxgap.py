"""`deepnotes bench maxgap`: the O(n) bucket method against sorting, n = 10^3 .. 10^6.

Four implementations on the same random int64 data (range +-2^62, so "large ranges"):
- bucket (pure Python)    `maximum_gap`: O(n) interpreted steps;
- sorted + scan (Python)  `maximum_gap_sorted`: C timsort, O(n log n), then a Python scan;
- bucket (numpy)          `maximum_gap_numpy`: the bucket method vectorised;
- np.sort + diff          the O(n log n) numpy one-liner.
Times are medians over repeats; the scaling exponent is the log-log slope over all sizes.
Pure-Python buckets usually lose to C `sorted` despite the better complexity: the constant
factor of the interpreter is larger than log n at these sizes. The table shows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from deepnotes.algorithms import maximum_gap, maximum_gap_numpy, maximum_gap_sorted
from deepnotes.jobs import Context, Result, suite
from deepnotes.utils.fit import power_law_exponent
from deepnotes.utils.timing import time_ms


def _np_sort_diff(a: np.ndarray) -> int:
    return int(np.diff(np.sort(a)).max()) if a.size > 1 else 0


IMPLS = {
    "bucket (pure Python)": ("list", maximum_gap),
    "sorted + scan (Python)": ("list", maximum_gap_sorted),
    "bucket (numpy)": ("array", maximum_gap_numpy),
    "np.sort + diff": ("array", _np_sort_diff),
}


@dataclass
class MaxGapBenchConfig:
    sizes: list[int] = field(
        default_factory=lambda: [1_000, 10_000, 100_000, 300_000, 1_000_000, 3_000_000]
    )  # array lengths n swept
    fit_from: int = 100_000  # exponents from here up: below, call overheads and the CPU caches
    # (the bucket arrays fit in cache up to ~1e4 items) change the cost per item
    high: int = 2**62  # values uniform in [-high, high): a range far beyond n
    repeat: int = 5  # timed repeats per point (median)
    max_seconds: float = 10.0  # stop repeating a point after this long


@suite(
    "maxgap",
    "maximum gap: O(n) bucket method (Python, numpy) vs sorting, n = 1e3..3e6",
    MaxGapBenchConfig,
    presets={"smoke": {"sizes": [100, 1_000, 5_000], "repeat": 2, "fit_from": 100}},
)
def bench_maxgap(cfg: MaxGapBenchConfig, ctx: Context) -> Result:
    rng = np.random.default_rng(ctx.seed)
    rows, metrics = [], {}
    bar = ctx.progress(total=len(cfg.sizes) * len(IMPLS), desc="bench maxgap")
    for n in cfg.sizes:
        a = rng.integers(-cfg.high, cfg.high, size=n, dtype=np.int64)
        as_list = a.tolist()
        want = _np_sort_diff(a)
        for name, (kind, fn) in IMPLS.items():
            x = as_list if kind == "list" else a
            got = fn(x)
            if got != want:
                raise AssertionError(f"{name} gave {got}, expected {want} at n={n}")
            ms = time_ms(
                lambda fn=fn, x=x: fn(x), "cpu", repeat=cfg.repeat, max_seconds=cfg.max_seconds
            )
            rows.append({"impl": name, "n": n, "ms": ms, "ns_per_item": ms * 1e6 / n})
            bar.update(1)
    bar.close()
    baseline = {
        "bucket (pure Python)": "sorted + scan (Python)",
        "bucket (numpy)": "np.sort + diff",
    }
    for r in rows:
        if r["impl"] in baseline:
            base = next(b for b in rows if b["impl"] == baseline[r["impl"]] and b["n"] == r["n"])
            r["time_vs_sort"] = r["ms"] / base["ms"]  # < 1: the bucket method wins
    for name in IMPLS:
        pts = [r for r in rows if r["impl"] == name and r["n"] >= cfg.fit_from]
        metrics[f"{name}/exponent"] = power_law_exponent(
            [r["n"] for r in pts], [r["ms"] for r in pts]
        )
    notes = []
    for n in sorted({cfg.sizes[-1], *[n for n in cfg.sizes if n == 1_000_000]}):
        at = {r["impl"]: r for r in rows if r["n"] == n}
        py, npy = at["bucket (pure Python)"]["time_vs_sort"], at["bucket (numpy)"]["time_vs_sort"]
        metrics[f"n={n}/ms"] = {k: r["ms"] for k, r in at.items()}
        metrics[f"n={n}/python_bucket_over_sorted"] = py
        metrics[f"n={n}/numpy_bucket_over_np_sort"] = npy
        notes.append(
            f"at n={n}: pure-Python bucket takes {py:.2f}x the time of Python sorted+scan; "
            f"numpy bucket {npy:.2f}x that of np.sort+diff (below 1: the bucket method wins)"
        )
    notes += [
        f"scaling exponents: log-log slope of time against n for n >= {cfg.fit_from}",
        "random int64 in [-2^62, 2^62); shared 2-core machine, times are noisy",
    ]
    _plot(ctx, rows, metrics)
    return Result(
        metrics=metrics,
        table=rows,
        columns=["impl", "n", "ms", "ns_per_item", "time_vs_sort"],
        notes=notes,
    )


def _plot(ctx: Context, rows: list[dict], metrics: dict) -> None:
    """Median time against n, log-log, one line per implementation with its fitted slope."""
    from deepnotes.utils.plot import log_ticks

    fig, ax = ctx.figure(figsize=(7, 5))
    for name in dict.fromkeys(r["impl"] for r in rows):
        pts = [r for r in rows if r["impl"] == name]
        p = metrics.get(f"{name}/exponent")
        ax.loglog([r["n"] for r in pts], [r["ms"] for r in pts], marker="o",
                  label=name + (f" (slope {p:.2f})" if p is not None else ""))  # fmt: skip
    log_ticks(ax, "x")
    log_ticks(ax, "y")
    ax.set_xlabel("n (array length)")
    ax.set_ylabel("median time (ms)")
    ax.set_title("maximum gap")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=9)
    ctx.savefig(fig, "maxgap_scaling.png")
