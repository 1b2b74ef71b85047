"""Timing and peak memory of a callable, on CPU or CUDA.

CUDA times come from device events (`triton.testing.do_bench`, median) after warm-up; CPU
times are the median of wall-clock repeats. Peak memory is the largest number of bytes the
call allocated beyond what was live before it: `torch.cuda.max_memory_allocated` on CUDA, and
the profiler's allocation trace ("Total Allocated") on CPU, which torch's CPU allocator does
not otherwise expose.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
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


@contextlib.contextmanager
def _native_output_silenced():
    """Send the C++ side's stdout/stderr to /dev/null: the profiler's Kineto backend logs
    `profiler_start` / `CPUAllocator` lines there on every run, which no Python setting
    reaches. Python's own streams are flushed first, so nothing of ours is lost."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


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

    with (
        _native_output_silenced(),
        profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof,
    ):
        fn()
    with tempfile.TemporaryDirectory() as d, _native_output_silenced():
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
