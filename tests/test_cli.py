"""The command line: list, run/bench contracts, unknown names, config overrides."""

from __future__ import annotations

import dataclasses
import json
import re

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
    assert "--budget nope: mixers has the budgets default, smoke" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "mixers", "--lengths", "a,b"])


def test_every_job_has_a_smoke_budget():
    jobs.discover()
    for reg in (jobs.EXPERIMENTS, jobs.SUITES):
        for name, job in reg.items():
            assert "smoke" in job.presets, f"{name} needs a 'smoke' budget for the test suite"


# --------------------------------------------------------------------------- bad values
ARENA = ["run", "arena", "--budget", "smoke", "--max-docs", "40"]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--precision", "fp8"], "--precision fp8: must be one of fp32, bf16, fp16"),
        (["--device", "gpu"], "--device gpu: not a device; use cpu, cuda, cuda:N or auto"),
        (["--steps", "-1"], "--steps -1: must be a positive integer"),
        (["--steps", "0"], "--steps 0: must be a positive integer"),
        (["--batch-size", "0"], "--batch-size 0: must be a positive integer"),
        (["--mixers", "nosuch"], "--mixers nosuch: unknown mixer(s) nosuch; valid:"),
        (["--mixers", "linformer"], "cannot run causally"),
        (["--lr", "nan"], "--lr nan: must be a finite number"),
    ],
)
def test_bad_values_fail_first_with_one_line(tmp_path, capsys, args, expected):
    out = tmp_path / "out"
    assert main([*ARENA, *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and expected in err
    assert not out.exists()  # nothing was made before the check


def test_out_that_is_a_file_or_cannot_be_made(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main([*ARENA, "--out", str(f)]) == 2
    assert capsys.readouterr().err.strip() == f"error: --out {f}: is a file, not a folder"
    assert main([*ARENA, "--out", str(f / "sub")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --out {f / 'sub'}: cannot create it") and "\n" not in err


def _stub_arena(monkeypatch, outcome):
    from deepnotes.experiments.lm import arena

    def stub(name, cfg, data, ctx, max_seconds, bar):
        kind = outcome(name)
        if kind == "interrupt":
            raise KeyboardInterrupt
        if kind == "fail":
            raise RuntimeError("broken mixer")
        row = {"mixer": name, "val_bpb": 5.0, "steps": cfg.steps, "train_s": 0.0, "status": "ok"}
        return {"row": row, "history": [], "sample": ""}

    monkeypatch.setattr(arena, "run_mixer", stub)


def test_existing_results_are_refused_unless_resume_or_force(tmp_path, monkeypatch, capsys):
    _stub_arena(monkeypatch, lambda name: "ok")
    out = tmp_path / "out"
    args = [*ARENA, "--mixers", "softmax,gru", "--out", str(out)]
    assert main(args) == 0
    assert main(args) == 2
    assert "already holds results; add --resume" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    rec = json.loads((out / "results.json").read_text())
    assert rec["resumed"] and rec["metrics"]["reused"] == ["softmax", "gru"]
    assert main([*args, "--force"]) == 0
    assert json.loads((out / "results.json").read_text())["resumed"] is False
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main([*ARENA, "--out", str(other), "--force"]) == 2  # not a folder we made
    assert (other / "notes.txt").exists()


@pytest.mark.parametrize("failing, code", [({"softmax", "gru"}, 1), ({"gru"}, 3), (set(), 0)])
def test_exit_status_says_how_many_rows_failed(tmp_path, monkeypatch, capsys, failing, code):
    _stub_arena(monkeypatch, lambda name: "fail" if name in failing else "ok")
    args = [*ARENA, "--mixers", "softmax,gru", "--strict", "false", "--out", str(tmp_path / "o")]
    assert main(args) == code
    if failing:
        assert f"FAILED: {', '.join(sorted(failing, key=['softmax', 'gru'].index))}" in (
            capsys.readouterr().out
        )


def test_ctrl_c_ends_with_one_line_and_the_resume_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DEEPNOTES_NO_PROGRESS", "1")
    _stub_arena(monkeypatch, lambda name: "interrupt" if name == "gru" else "ok")
    out = tmp_path / "o"
    assert main([*ARENA, "--mixers", "softmax,gru", "--out", str(out)]) == 130
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.endswith(
        f"deepnotes run arena --budget smoke --max-docs 40 --mixers softmax,gru --out {out} "
        "--resume"
    )
    assert (out / "mixers" / "softmax.json").exists()  # what finished was kept


# --------------------------------------------------------------------------- --help
def test_help_comes_from_the_config_comments(capsys):
    with pytest.raises(SystemExit):
        main(["run", "arena", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "optimizer steps per mixer: the equal budget" in text  # a field's comment
    assert "[true/false; default: True]" in text  # booleans say how to write them
    assert "[comma-separated list, e.g. a,b; default: (empty)]" in text  # and lists
    assert "exit status: 0 = done; 1 = every row failed" in text


def test_usage_spells_every_field_with_dashes(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "decode", "--help"])
    usage = capsys.readouterr().out.split("options:")[0]
    # equal-length spellings (--kv-heads / --kv_heads) once came out in either order
    flags = re.findall(r"\[(--[\w-]+)", usage)
    assert "--kv-heads" in flags and "--n-splits" in flags
    assert [f for f in flags if "_" in f] == []


def test_budget_help_shows_that_presets_values(capsys):
    with pytest.raises(SystemExit):
        main(["run", "arena", "--budget", "smoke", "--help"])
    smoke = " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit):
        main(["run", "arena", "--help"])
    default = " ".join(capsys.readouterr().out.split())
    assert "[int; default: 2] --d-model" in smoke or "default: 16]" in smoke
    assert "default: 64]" in default and "default: 16]" not in default


# --------------------------------------------------------------------------- output
def test_results_record_revision_threads_cpu_and_file_modes(tmp_path, monkeypatch):
    import os

    _stub_arena(monkeypatch, lambda name: "ok")
    old = os.umask(0o022)
    try:
        out = tmp_path / "o"
        assert main([*ARENA, "--mixers", "softmax", "--threads", "1", "--out", str(out)]) == 0
    finally:
        os.umask(old)
    rec = json.loads((out / "results.json").read_text())
    assert rec["versions"]["torch_threads"] == "1"
    assert rec["versions"]["revision"] and rec["versions"]["cpu"]
    assert rec["command"].startswith("deepnotes") and rec["device"] == "cpu"
    for f in [out / "results.json", *out.glob("*.png"), out / "mixers" / "softmax.json"]:
        assert f.stat().st_mode & 0o777 == 0o644, f


@dataclasses.dataclass
class _Commented:
    a: int = 1  # first line of a's comment
    # a's continuation line

    # the comment above b, which has none of its own
    b: int = 2
    c: list[int] = dataclasses.field(
        default_factory=list
    )  # c's comment after the closing parenthesis


def test_field_comments_trailing_continued_above_and_after_a_call():
    from deepnotes.cli_options import field_comments

    assert field_comments(_Commented) == {
        "a": "first line of a's comment a's continuation line",
        "b": "the comment above b, which has none of its own",
        "c": "c's comment after the closing parenthesis",
    }


def test_save_rows_keeps_partial_rows_without_the_output_path(tmp_path, monkeypatch):
    import sys

    import torch

    out = tmp_path / "run"
    out.mkdir()
    monkeypatch.setattr(sys, "argv", ["deepnotes", "bench", "decode", "--out", str(out)])
    ctx = jobs.Context(out=out, device=torch.device("cpu"))
    path = ctx.save_rows([{"T": 4096, "us": 12.5}])
    saved = json.loads(path.read_text())
    assert saved["rows"] == [{"T": 4096, "us": 12.5}]
    assert saved["command"] == "deepnotes bench decode"
    assert saved["device"] and saved["versions"]


def test_revision_is_the_one_the_run_started_with(tmp_path, monkeypatch):
    """A commit made while a long job runs does not become the job's recorded revision."""
    import deepnotes.jobs as J

    state = {"now": "before"}
    monkeypatch.setattr(J, "code_revision", lambda: state["now"])

    @dataclasses.dataclass
    class Cfg:
        steps: int = 1  # steps

    def fn(cfg, ctx):
        state["now"] = "after"  # the tree moves on while the job runs
        ctx.save_rows([{"row": 1}])  # a bench's partial rows name the start's revision too
        fig, _ = ctx.figure()
        ctx.savefig(fig, "probe.png")
        return J.Result(metrics={"x": 1.0})

    job = J.Job("revision-probe", "experiment", "probe", Cfg, fn, {})
    rec = J.run_job(job, Cfg(), out=tmp_path / "o", quiet=True)
    assert rec["versions"]["revision"] == "before"
    assert (
        json.loads((tmp_path / "o" / "results.json").read_text())["versions"]["revision"]
        == "before"
    )


def test_a_folder_with_only_the_marker_is_empty_and_refusals_name_real_flags(tmp_path):
    from deepnotes import jobs

    out = tmp_path / "stopped"
    jobs.prepare_out(out)  # a run that stops here leaves only the marker behind
    assert [p.name for p in out.iterdir()] == [jobs.MARKER]
    assert jobs.prepare_out(out) == out  # so the same command starts again
    (out / "results.json").write_text("{}")
    with pytest.raises(jobs.OutputError, match="add --resume"):
        jobs.prepare_out(out)
    with pytest.raises(jobs.OutputError) as e:
        jobs.prepare_out(out, resumable=False)  # the job has no --resume: do not suggest it
    assert "--resume" not in str(e.value) and "--force" in str(e.value)
