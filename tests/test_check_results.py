"""scripts/check_results.py: which numbers it compares, which commands it reruns and how."""

from __future__ import annotations

from pathlib import Path

from tests.scripts import load_script


def _mod():
    return load_script("check_results")


def test_differences_ignore_timings_and_catch_changed_figures():
    d = _mod().differences
    old = {"val_loss": 1.708, "train_tok_s": 5e4, "wall_time_s": 3.0, "rows": [{"acc": 0.5}]}
    new = {"val_loss": 1.708, "train_tok_s": 9e4, "wall_time_s": 9.0, "rows": [{"acc": 0.5}]}
    assert d(old, new, 1e-6) == []  # speeds and times differ between any two runs
    new["rows"][0]["acc"] = 0.6
    new["val_loss"] = 1.739
    assert d(old, new, 1e-6) == ["val_loss: 1.708 -> 1.739", "rows.0.acc: 0.5 -> 0.6"]
    assert d({"a": [1, 2]}, {"a": [1]}, 0) == ["a: 2 items, now 1"]
    assert d({"a": 1}, {}, 0) == ["a: missing"]
    assert d({"a": float("nan"), "b": "x"}, {"a": float("nan"), "b": "x"}, 0) == []
    assert d({"a": 1.0}, {"a": 1.0 + 1e-9}, 1e-6) == []


def test_commands_it_reruns_and_how():
    m = _mod()
    assert m.runnable("deepnotes run moe --out runs/moe") is None
    needs = m.runnable("deepnotes run dpo --base OUT/base/base-lm")
    assert needs == "needs an earlier run's output"
    assert m.runnable("python scripts/listops_eval.py --examples 5") == "not a deepnotes job"
    assert m.runnable(None) == "no command recorded"
    args = m.rerun_args("deepnotes run moe --out runs/moe --force --steps 3", Path("T"))
    assert args == ["run", "moe", "--steps", "3", "--out", "T", "--force"]
