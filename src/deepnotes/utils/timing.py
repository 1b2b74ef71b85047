"""Timing and peak memory of a callable, on CPU or CUDA.

CUDA times come from device events (`triton.testing.do_bench`, median) after warm-up; CPU
times are the median of wall-clock repeats. Peak memory is the largest number of bytes the
call allocated beyond what was live before it: `torch.cuda.max_memory_allocated` on CUDA, and
the profiler's allocation trace ("Total Allocated") on CPU, which torch's CPU allocator does
not otherwise expose.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(
    fn: Callable[[], object],
    device: torch.device | str = "cpu",
    *,
    warmup: int = 1,
    repeat: int = 5,
    max_seconds: float | None = None,
) -> float:
    """Median milliseconds of `fn()`; repeats stop early once `max_seconds` have been spent."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            from triton.testing import do_bench

            return float(do_bench(fn, warmup=25, rep=100, return_mode="median"))
        except ImportError:
            pass
    for _ in range(warmup):
        fn()
    _sync(device)
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
    return statistics.median(times)


def peak_memory_bytes(fn: Callable[[], object], device: torch.device | str = "cpu") -> int:
    """Peak bytes allocated by one call of `fn()` above the memory live before it."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    peak = 0
    for e in events:
        if e.get("name") == "[memory]":
            args = e.get("args", {})
            if args.get("Device Type", 0) == 0:
                peak = max(peak, int(args.get("Total Allocated", 0)))
    return peak
