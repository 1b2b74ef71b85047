"""The command line: list, run/bench contracts, unknown names, config overrides."""

from __future__ import annotations

import json

import pytest

from deepnotes import jobs
from deepnotes.cli import main


def test_list_shows_jobs(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "mixers" in out and "benchmark suites" in out


def test_every_job_module_imports():
    jobs.discover()
    assert jobs.IMPORT_ERRORS == {}


@pytest.mark.parametrize("verb", ["run", "bench"])
def test_unknown_name_exits_nonzero_with_valid_names(verb, capsys):
    assert main([verb, "no-such-thing"]) == 2
    err = capsys.readouterr().err
    assert "valid names" in err
    if verb == "bench":
        assert "mixers" in err


def test_bench_writes_results_and_plot(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "bench",
            "mixers",
            "--budget",
            "smoke",
            "--out",
            str(out),
            "--mixers",
            "softmax",
            "--lengths",
            "16,32",
        ]
    )
    assert code == 0
    rec = json.loads((out / "results.json").read_text())
    assert rec["config"]["mixers"] == ["softmax"] and rec["config"]["lengths"] == [16, 32]
    assert {r["T"] for r in rec["table"]} == {16, 32}
    assert rec["versions"]["torch"] and rec["wall_time_s"] > 0
    assert list(out.glob("*.png"))
    assert "softmax" in capsys.readouterr().out  # the results table


def test_bad_override_is_a_clear_error(capsys):
    assert main(["bench", "mixers", "--budget", "nope"]) == 2
    assert "unknown budget" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "mixers", "--lengths", "a,b"])


def test_every_job_has_a_smoke_budget():
    jobs.discover()
    for reg in (jobs.EXPERIMENTS, jobs.SUITES):
        for name, job in reg.items():
            assert "smoke" in job.presets, f"{name} needs a 'smoke' budget for the test suite"
