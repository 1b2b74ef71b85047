"""`deepnotes bench mixers`: a parallel sweep measures the same grid as a serial one."""

from __future__ import annotations

import pytest
import torch

from deepnotes import jobs
from deepnotes.bench.mixers.mixers import MixersBenchConfig, bench_mixers

jobs.discover()


def _run(tmp_path, **kw):
    cfg = jobs.SUITES.get("mixers").make_config("smoke")
    for key, value in kw.items():
        setattr(cfg, key, value)
    ctx = jobs.Context(out=tmp_path, device=torch.device("cpu"), quiet=True)
    return bench_mixers(cfg, ctx)


def test_workers_give_the_same_grid_and_order(tmp_path):
    names = ["linformer", "sliding_window"]
    serial = _run(tmp_path / "a", mixers=names, lengths=[16, 32])
    parallel = _run(tmp_path / "b", mixers=names, lengths=[16, 32], workers=2)
    key = [(r["mixer"], r["T"], r["status"], r.get("causal")) for r in serial.table]
    assert key == [(r["mixer"], r["T"], r["status"], r.get("causal")) for r in parallel.table]
    assert [r["mixer"] for r in parallel.table] == ["linformer"] * 2 + ["sliding_window"] * 2
    assert all(r["fwd_ms"] > 0 and r["peak_mb"] > 0 for r in parallel.table)
    assert set(serial.metrics) == set(parallel.metrics)


def test_bad_worker_count_is_named(tmp_path):
    with pytest.raises(ValueError, match="workers must be >= 1"):
        _run(tmp_path, mixers=["linear"], workers=0)
    assert MixersBenchConfig().workers == 1  # the default stays a single-process sweep
