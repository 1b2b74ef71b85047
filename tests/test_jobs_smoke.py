"""Every registered experiment and benchmark suite runs end to end at its smoke budget."""

from __future__ import annotations

import json

import pytest

from deepnotes import jobs

jobs.discover()
ALL = [*jobs.EXPERIMENTS.items(), *jobs.SUITES.items()]


@pytest.mark.parametrize("name,job", ALL, ids=[f"{j.kind}:{n}" for n, j in ALL])
def test_job_smoke(name, job, tmp_path):
    cfg = job.make_config("smoke")
    rec = jobs.run_job(job, cfg, out=tmp_path, budget="smoke", quiet=True)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["name"] == name and saved["table"] == json.loads(json.dumps(saved["table"]))
    assert rec["plots"], "every job writes at least one plot"


def test_recorded_command_leaves_out_the_output_folder():
    argv = ["bench", "mixers", "--out", "runs/x", "--workers", "2", "--out=runs/y"]
    assert jobs.recorded_command(argv) == "deepnotes bench mixers --workers 2"
    # quoted so that it can be typed back: an empty list value, a value with a space
    argv = ["run", "s4-diagnose", "--variants", "", "--corpus", "my text.txt"]
    want = "deepnotes run s4-diagnose --variants '' --corpus 'my text.txt'"
    assert jobs.recorded_command(argv) == want
