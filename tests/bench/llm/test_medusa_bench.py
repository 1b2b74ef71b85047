"""`deepnotes bench medusa`: the one-graph-a-step rows, and bad settings caught up front."""

from __future__ import annotations

import pytest

from deepnotes import jobs
from deepnotes.bench.llm.medusa import STEP
from deepnotes.job_checks import ConfigError

JOB = jobs.SUITES.get("medusa")


def test_step_graph_rows_sit_beside_each_tree_and_stay_lossless(tmp_path):
    cfg = JOB.make_config("smoke", cuda_graph=True, step_graph=True, n_prompts=2)
    rec = jobs.run_job(JOB, cfg, out=tmp_path, budget="smoke", quiet=True)
    methods = [r["method"] for r in rec["table"]]
    trees = [m for m in methods if not m.startswith("greedy") and STEP not in m]
    assert trees and [m for m in methods if STEP in m] == [t + STEP for t in trees]
    for r in rec["table"]:
        assert r["equal_to_greedy"] == "2/2", r  # fp32 on the CPU: every output is greedy's
    by = {r["method"]: r for r in rec["table"]}
    for t in trees:  # the same decisions, so the same tokens per forward
        assert by[t]["mean_accepted_length"] == by[t + STEP]["mean_accepted_length"]


def test_step_graph_needs_the_graph_path():
    with pytest.raises(ConfigError, match="--step-graph True: needs --cuda-graph true"):
        JOB.check(JOB.make_config("smoke", step_graph=True))


def test_profile_lists_the_top_ops_per_step_of_greedy_and_the_best_tree(tmp_path):
    cfg = JOB.make_config("smoke", cuda_graph=True, step_graph=True, n_prompts=1, profile=True)
    rec = jobs.run_job(JOB, cfg, out=tmp_path, budget="smoke", quiet=True)
    prof = rec["metrics"]["profile"]
    greedy = next(m for m in prof if m.startswith("greedy"))
    assert set(prof) == {greedy, rec["metrics"]["best_tree"]}
    for m, p in prof.items():
        assert p["steps"] >= 1 and p["cpu_ms_per_step"] > 0 and 0 < len(p["ops"]) <= 12
        assert p["wall_ms_per_step"] >= p["cpu_ms_per_step"] * 0.5  # same run, profiled
        us = [o["us_per_step"] for o in p["ops"]]
        assert us == sorted(us, reverse=True), m
        names = {o["name"] for o in p["ops"]}
        assert any("mm" in k or "linear" in k for k in names), names  # the matrix products
    # a greedy run of n tokens has n steps; a tree run fewer (each accepts >= 1 token)
    assert prof[greedy]["steps"] == cfg.new_tokens
    assert prof[rec["metrics"]["best_tree"]]["steps"] <= cfg.new_tokens


def test_a_failing_profile_keeps_the_timings(tmp_path, monkeypatch):
    import deepnotes.bench.llm.medusa as bench

    def broken(*args):
        raise RuntimeError("CUPTI unavailable\nmore lines")

    monkeypatch.setattr(bench, "_profile", broken)
    cfg = JOB.make_config("smoke", n_prompts=1, profile=True)
    rec = jobs.run_job(JOB, cfg, out=tmp_path, budget="smoke", quiet=True)
    prof = rec["metrics"]["profile"]
    assert all(p == {"error": "RuntimeError: CUPTI unavailable"} for p in prof.values())
    assert len(prof) == 2 and rec["table"]  # the timed rows are there


def test_first_divergence_finds_the_token_and_its_logit_gap(seed):
    """Equal outputs give None; otherwise the first differing new token, the full forward's
    logit gap between greedy's token and the other's there, and which one it picks."""
    import torch

    from deepnotes.bench.llm.medusa import _divergence_note, first_divergence
    from deepnotes.generate import generate
    from deepnotes.models.lm import LM, LMConfig

    model = LM(LMConfig(vocab_size=29, d_model=16, n_layers=1, n_heads=2, max_len=64)).eval()
    prompt = torch.randint(0, 29, (1, 5))
    ref = generate(model, prompt, 8, temperature=0)
    assert first_divergence(model, ref, ref.clone(), 5) is None
    out = ref.clone()
    out[0, 5 + 3] = (int(ref[0, 8]) + 1) % 29  # a different token at new-token index 3
    out[0, 5 + 5] = (int(ref[0, 10]) + 1) % 29  # later differences do not matter
    d = first_divergence(model, ref, out, 5)
    with torch.no_grad():
        logits = model(ref[:, :8])[0, -1]
    assert d["at"] == 3 and d["full_forward_picks"] == "greedy"
    assert d["gap"] == pytest.approx(float(logits[ref[0, 8]] - logits[out[0, 8]]), abs=1e-4)
    assert d["gap"] > 0  # greedy's token is the argmax of the same forward
    assert _divergence_note({}) is None
    note = _divergence_note({"a": [{**d, "prompt": 0}], "b": [{**d, "gap": 0.5}]})
    assert "2 prompt-method pairs" in note and "picks greedy's token 2 times" in note
