"""Independent runs spread over worker processes.

A small model leaves a GPU idle between kernel launches, so several processes sharing it
finish a sweep sooner than one process running the models in turn; on a CPU each worker
gets its share of the cores. `map_runs` runs the calls; `shareable` / `shared` hand a large
object (a data set) to every worker once instead of pickling it into each call.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import torch


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)
    os.environ["DEEPNOTES_NO_PROGRESS"] = "1"


def map_runs(fn: Callable, calls: list[tuple], workers: int = 1) -> Iterator[tuple[int, Any]]:
    """Yield (i, fn(*calls[i])) for every call, in order of completion.

    workers <= 1 runs them here, in order. Otherwise a pool of `workers` spawned processes
    (spawn, not fork: CUDA cannot be used in a forked child) each with cpu_count // workers
    threads; `fn` must then be a module-level function and its arguments picklable.
    """
    if workers <= 1 or len(calls) <= 1:
        for i, args in enumerate(calls):
            yield i, fn(*args)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=mp.get_context("spawn"),
        initializer=_init_worker,
        initargs=(threads,),
    ) as pool:
        futures = {pool.submit(fn, *args): i for i, args in enumerate(calls)}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()


_LOADED: dict[str, Any] = {}  # path -> object, per process


@contextlib.contextmanager
def shareable(obj: Any, workers: int):
    """`obj` itself for one worker; else the path of a temporary torch.save of it, which
    `shared` loads once per process (large tensors are not pickled into every call)."""
    if workers <= 1:
        yield obj
        return
    with tempfile.TemporaryDirectory(prefix="deepnotes-") as tmp:
        path = os.path.join(tmp, "data.pt")
        torch.save(obj, path)
        yield path


def shared(obj_or_path: Any) -> Any:
    """The object behind `shareable`'s value."""
    if not isinstance(obj_or_path, str):
        return obj_or_path
    if obj_or_path not in _LOADED:
        _LOADED[obj_or_path] = torch.load(obj_or_path, weights_only=True)
    return _LOADED[obj_or_path]
