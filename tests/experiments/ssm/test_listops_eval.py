"""scripts/listops_eval.py: the interval and test it reports, and a run over checkpoints."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from deepnotes import jobs
from deepnotes.experiments.ssm.listops import generate, train_mixer
from deepnotes.utils.pool import shareable
from tests.scripts import load_script


def _script():
    return load_script("listops_eval")


def test_wilson_and_mcnemar_against_closed_forms(seed):
    ev = _script()
    lo, hi = ev.wilson(50, 100)  # symmetric around 0.5: 0.5 +- 1.96 sqrt(.25/100) / (1 + z^2/n)
    half = 1.96 * math.sqrt(0.25 / 100 + 1.96**2 / 4e4) / (1 + 1.96**2 / 100)
    assert abs(lo - (0.5 - half)) < 1e-12 and abs(hi - (0.5 + half)) < 1e-12
    n = int(torch.randint(5, 40, ()).item())
    k = int(torch.randint(0, n + 1, ()).item())
    lo, hi = ev.wilson(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    assert ev.mcnemar_exact(0, 0) == 1.0
    assert abs(ev.mcnemar_exact(0, 5) - 2 / 32) < 1e-15  # both tails of Binomial(5, 1/2) at 0
    assert abs(ev.mcnemar_exact(1, 4) - 2 * 6 / 32) < 1e-15
    assert ev.mcnemar_exact(k, n - k) == ev.mcnemar_exact(n - k, k)


def test_scores_the_job_checkpoints(tmp_path, seed):
    """Checkpoints written by the job are found, loaded and scored; a model scored by hand
    on the same fresh set agrees."""
    ev = _script()
    jobs.discover()
    cfg = jobs.EXPERIMENTS.get("listops").make_config("smoke")
    cfg = dataclasses.replace(cfg, ckpt_dir=str(tmp_path), eval_every=2)
    x, y = generate(cfg, cfg.train_examples, 0)
    xv, yv = generate(cfg, cfg.eval_examples, 1)
    with shareable((x, y, xv, yv), 1) as data:
        for name in cfg.mixers:
            train_mixer(cfg, name, 0, "cpu", None, data)
    res = ev.evaluate(tmp_path, "smoke", 40)
    assert [r["mixer"] for r in res["rows"]] == cfg.mixers
    assert all(r["step"] == cfg.steps for r in res["rows"])
    assert len(res["pairs"]) == 1
    p = res["pairs"][0]
    assert 0.0 < p["mcnemar_p"] <= 1.0
    for r in res["rows"]:
        assert r["acc_lo95"] <= r["acc"] <= r["acc_hi95"]


def test_checkpoints_named_one_by_one(tmp_path, seed, capsys):
    """--ckpt LABEL=DIR scores any checkpoint folder; MIXER@TAG tells two runs of one mixer
    apart, and both are compared with every other row."""
    ev = _script()
    jobs.discover()
    cfg = jobs.EXPERIMENTS.get("listops").make_config("smoke")
    name = cfg.mixers[0]
    for run, steps in (("a", cfg.steps), ("b", 2 * cfg.steps)):
        c = dataclasses.replace(cfg, ckpt_dir=str(tmp_path / run), eval_every=2, steps=steps)
        x, y = generate(c, c.train_examples, 0)
        xv, yv = generate(c, c.eval_examples, 1)
        with shareable((x, y, xv, yv), 1) as data:
            train_mixer(c, name, 0, "cpu", None, data)
    out = tmp_path / "eval.json"
    args = ["--budget", "smoke", "--examples", "30", "--out", str(out),
            "--ckpt", f"{name}@short={tmp_path / 'a' / name}",
            "--ckpt", f"{name}@long={tmp_path / 'b' / name}"]  # fmt: skip
    assert ev.main(args) == 0
    res = json.loads(out.read_text())
    assert res["device"] == "cpu" and res["versions"]["revision"] and res["command"]
    assert [(r["mixer"], r["step"]) for r in res["rows"]] == [
        (f"{name}@short", cfg.steps), (f"{name}@long", 2 * cfg.steps)]  # fmt: skip
    assert [(p["a"], p["b"]) for p in res["pairs"]] == [(f"{name}@short", f"{name}@long")]
    for bad, match in ((["--ckpt", "nolabel"], "expected LABEL=DIR"), ([], "give --ckpt-dir"),
                       (["--ckpt", f"mlp@x={tmp_path}"], "must be one of"),
                       (["--ckpt-dir", "x", "--device", "tpu"], "cpu or cuda")):  # fmt: skip
        with pytest.raises(SystemExit):
            ev.main(["--budget", "smoke", *bad])
        assert match in capsys.readouterr().err
