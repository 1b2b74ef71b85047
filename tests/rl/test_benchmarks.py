"""The benchmark experiment: peers are optional, unknown tasks are errors."""

from __future__ import annotations

import json

import pytest

from deepnotes import jobs
from deepnotes.experiments.rl import rl_benchmarks
from deepnotes.rl.peers import sb3_available


def test_runs_without_peers(tmp_path, monkeypatch):
    monkeypatch.setattr(rl_benchmarks, "sb3_available", lambda: (False, "not installed (test)"))
    job = jobs.EXPERIMENTS.get("rl-benchmarks")
    cfg = job.make_config("smoke", tasks=["a2c-cartpole"], steps=80, eval_every=40)
    rec = jobs.run_job(job, cfg, out=tmp_path, quiet=True)
    assert [r["impl"] for r in rec["table"]] == ["deepnotes"]
    assert any("SB3 peers skipped" in n for n in rec["notes"])
    # a rerun with the same --out reuses the finished runs
    rec2 = jobs.run_job(job, cfg, out=tmp_path, quiet=True)
    a, b = rec["metrics"]["runs"], rec2["metrics"]["runs"]
    assert a.keys() == b.keys()
    for k in a:
        assert a[k]["train_time_s"] == b[k]["train_time_s"]  # not retrained
        assert a[k]["final"] == b[k]["final"]
    curves = json.loads((tmp_path / "curves.json").read_text())
    assert [p["step"] for p in curves["a2c-cartpole/ours/seed0"]] == [0, 40, 80]


def test_unknown_task(tmp_path):
    job = jobs.EXPERIMENTS.get("rl-benchmarks")
    with pytest.raises(ValueError, match="unknown task"):
        jobs.run_job(
            job, job.make_config("smoke", tasks=["ppo-cartpole"]), out=tmp_path, quiet=True
        )


def test_sb3_available_reports():
    ok, msg = sb3_available()
    assert isinstance(ok, bool) and msg
