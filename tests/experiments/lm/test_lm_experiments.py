"""Pieces of the LM experiments: q.k statistics, attention entropy, arena selection/resume,
the MFU formula and the baseline GPT. (Each job also runs at its smoke budget in
tests/test_jobs_smoke.py.)"""

from __future__ import annotations

import math

import pytest
import torch

import deepnotes.mixers as M
from deepnotes import jobs
from deepnotes.bench.lm.lm_mfu import flops_per_token
from deepnotes.experiments.lm import arena
from deepnotes.experiments.lm.attention_scaling import attention_entropy, qk_stats
from deepnotes.models.gpt_baseline import GPT, GPTConfig
from deepnotes.models.lm import LM, LMConfig


def test_qk_variance_matches_theory(seed):
    gen = torch.Generator().manual_seed(seed)
    for d in (64, 256):
        rows = {r["case"]: r for r in qk_stats(d, 8192, 64, gen)}
        for case, r in rows.items():
            # the variance of a variance estimate of products of Gaussians: a few percent
            assert abs(r["var_qk"] / r["theory"] - 1) < 0.3, (d, case, r)
        assert rows["iid N(0,1), no scale"]["theory"] == d
        assert rows["T5 init, no scale"]["theory"] == pytest.approx(1.0)
        # saturation: unscaled rows are far more peaked than scaled ones
        assert rows["fan-in init, no scale"]["entropy"] < rows["fan-in init, 1/sqrt(d)"]["entropy"]


def test_attention_entropy_limits(seed):
    cfg = LMConfig(vocab_size=30, d_model=32, n_layers=2, n_heads=2, max_len=20)
    model = LM(cfg).eval()
    x = torch.randint(0, 30, (2, 20))
    for b in model.blocks:
        b.mixer.scale = 1e-9  # scores ~ 0: uniform rows over the t + 1 allowed keys
    e = attention_entropy(model, x)
    assert e["attn_entropy"] == pytest.approx(e["attn_entropy_uniform"], rel=1e-5)
    expected = sum(math.log(t + 1) for t in range(1, 20)) / 19
    assert e["attn_entropy_uniform"] == pytest.approx(expected)
    for b in model.blocks:
        b.mixer.scale = 1e6  # scores huge: one-hot rows
    e = attention_entropy(model, x)
    assert e["attn_entropy"] < 0.05 and e["attn_max_p"] > 0.98


def test_arena_selects_causal_mixers():
    cfg = arena.ArenaConfig()
    names = arena.select_mixers(cfg)
    assert "softmax" in names
    assert all(M.get(n).supports_causal for n in names)
    assert names == [n for n in M.names() if M.get(n).supports_causal]
    assert "softmax" not in arena.select_mixers(arena.ArenaConfig(exclude=["softmax"]))
    with pytest.raises(ValueError, match="unknown mixer"):
        arena.select_mixers(arena.ArenaConfig(mixers=["nope"]))


def test_arena_resume_reuses_finished_mixers(tmp_path, monkeypatch):
    job = jobs.EXPERIMENTS.get("arena")
    cfg = job.make_config("smoke", mixers=["softmax"])
    jobs.run_job(job, cfg, out=tmp_path, budget="smoke", quiet=True)
    saved = (tmp_path / "mixers" / "softmax.json").read_text()
    calls = []

    def stub(name, *a, **k):
        calls.append(name)
        row = {"mixer": name, "val_bpb": 123.0, "steps": 2, "train_s": 0.0, "status": "ok"}
        return {"row": row, "history": [], "sample": ""}

    monkeypatch.setattr(arena, "run_mixer", stub)
    rec = jobs.run_job(job, cfg, out=tmp_path, budget="smoke", quiet=True, resume=True)
    assert calls == [] and rec["table"][0]["mixer"] == "softmax"
    assert rec["table"][0]["val_bpb"] != 123.0
    assert (tmp_path / "mixers" / "softmax.json").read_text() == saved
    # a changed config invalidates the saved result
    cfg2 = job.make_config("smoke", mixers=["softmax"], lr=1e-4)
    rec = jobs.run_job(job, cfg2, out=tmp_path, budget="smoke", quiet=True, resume=True)
    assert calls == ["softmax"] and rec["table"][0]["val_bpb"] == 123.0


def test_mfu_flops_formula():
    # GPT-2 small: N ~ 124M (tied head, no position table) -> ~855 MFLOP per token at T=1024
    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = GPT(GPTConfig())
        ours = LM(LMConfig(vocab_size=50304, d_model=768, n_layers=12, n_heads=12, max_len=1024))
    n = model.num_params(non_embedding=True)
    assert 123_000_000 < n < 125_000_000
    fpt = flops_per_token(n, 12, 12, 64, 1024)
    assert fpt == 6 * n + 12 * 12 * 12 * 64 * 1024
    # same matmul shapes; ours has no biases
    assert 0 < n - ours.num_params(non_embedding=True) < 200_000


def test_baseline_gpt_learns(seed):
    from deepnotes.models.gpt_baseline import configure_optimizer, make_train_step

    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=32, block_size=16, n_layer=1, n_head=2, n_embd=32))
    step = make_train_step(model, configure_optimizer(model, lr=3e-3), dtype=torch.float32,
                           compile=False)  # fmt: skip
    x = torch.randint(0, 32, (4, 16))
    losses = [float(step(x, x)) for _ in range(30)]  # copy task: learnable
    assert losses[-1] < 0.5 * losses[0]
