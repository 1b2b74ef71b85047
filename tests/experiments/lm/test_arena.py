"""The arena's equal budget (the time guard binds only as a safety net, and loudly) and the
mixers' agreement between fp32 and bf16 autocast in the arena's LM."""

from __future__ import annotations

import pytest
import torch

from deepnotes import jobs
from deepnotes.experiments.lm import arena
from deepnotes.models.lm import LM
from tests.helpers import assert_close, rel_rms
from tests.scripts import load_script


def _stub_records(monkeypatch, capped: set[str]):
    """Replace run_mixer by a stub that records the cap each mixer is given."""
    caps = {}

    def stub(name, cfg, data, ctx, max_seconds, bar):
        caps[name] = max_seconds
        steps = 1 if name in capped else cfg.steps
        status = f"TIME CAP at step 1/{cfg.steps}" if name in capped else "ok"
        row = {"mixer": name, "val_bpb": 5.0, "steps": steps, "train_s": 0.0, "status": status}
        return {"row": row, "history": [], "sample": ""}

    monkeypatch.setattr(arena, "run_mixer", stub)
    return caps


def test_guard_is_a_safety_net_not_a_share(tmp_path, monkeypatch):
    caps = _stub_records(monkeypatch, capped=set())
    job = jobs.EXPERIMENTS.get("arena")
    names = ["softmax", "linear", "gru"]
    cfg = job.make_config("smoke", mixers=names, max_total_seconds=100.0, reserve_seconds=10.0)
    rec = jobs.run_job(job, cfg, out=tmp_path, budget="smoke", quiet=True)
    # The first mixer may use all but the reserve of the two after it (a per-mixer share
    # would have given it ~33 s and capped a slow mixer on an otherwise idle machine).
    assert 79.0 < caps["softmax"] <= 80.0
    assert 89.0 < caps["linear"] <= 90.0
    assert 99.0 < caps["gru"] <= 100.0
    assert rec["metrics"]["equal_budget"] is True and rec["metrics"]["capped"] == []
    assert not any("UNEQUAL" in n for n in rec["notes"])


def test_capped_mixer_is_reported_loudly(tmp_path, monkeypatch):
    _stub_records(monkeypatch, capped={"linear"})
    job = jobs.EXPERIMENTS.get("arena")
    cfg = job.make_config("smoke", mixers=["softmax", "linear"])
    rec = jobs.run_job(job, cfg, out=tmp_path, budget="smoke", quiet=True)
    assert rec["metrics"]["equal_budget"] is False
    assert rec["metrics"]["capped"] == ["linear"]
    assert rec["notes"][0].startswith("WARNING: UNEQUAL BUDGET") and "linear" in rec["notes"][0]


def test_resume_reuses_finished_mixers_and_reruns_capped_and_failed_ones(tmp_path, monkeypatch):
    ran = []

    def stub(name, cfg, data, ctx, max_seconds, bar):
        ran.append(name)
        first = ran.count(name) == 1
        if name == "gru" and first:
            raise RuntimeError("boom")
        capped = name == "linear" and first
        status = f"TIME CAP at step 1/{cfg.steps}" if capped else "ok"
        row = {"mixer": name, "val_bpb": 5.0, "steps": 1 if capped else cfg.steps,
               "train_s": 0.0, "status": status}  # fmt: skip
        return {"row": row, "history": [], "sample": ""}

    monkeypatch.setattr(arena, "run_mixer", stub)
    job = jobs.EXPERIMENTS.get("arena")
    cfg = job.make_config("smoke", mixers=["softmax", "linear", "gru"], strict=False)
    first = jobs.run_job(job, cfg, out=tmp_path, budget="smoke", quiet=True)
    assert first["failed"] == ["gru"] and first["metrics"]["capped"] == ["linear"]
    second = jobs.run_job(job, cfg, out=tmp_path, budget="smoke", quiet=True, resume=True)
    assert ran == ["softmax", "linear", "gru", "linear", "gru"]  # softmax was not rerun
    reused = {r["mixer"]: r["reused"] for r in second["table"]}
    assert reused == {"softmax": True, "linear": False, "gru": False}
    assert second["metrics"]["reused"] == ["softmax"] and second["failed"] == []
    assert second["resumed"] is True
    assert second["wall_time_total_s"] == first["wall_time_s"] + second["wall_time_s"]
    third = jobs.run_job(job, cfg, out=tmp_path, budget="smoke", quiet=True)  # no --resume
    assert not any(r["reused"] for r in third["table"]) and third["resumed"] is False


def test_default_budget_has_no_binding_cap():
    cfg = arena.ArenaConfig()
    # 12 mixers x ~1.4 s per step (loaded 2-core CPU, docs/lm.md) must fit well inside the
    # guard, which itself must leave the run under 6 minutes.
    assert cfg.steps * 1.4 < 0.75 * cfg.max_total_seconds
    assert cfg.max_total_seconds < 360


@pytest.mark.parametrize("name", ["gau_quad", "gau_flash", "linear", "performer"])
def test_arena_lm_bf16_autocast_matches_fp32(name, seed):
    """The arena's LM computes the same loss and gradients under bf16 autocast as in fp32
    (the H100 arena trains in bf16; a mixer that mishandled autocast, e.g. a normaliser
    summed in bf16 or an op skipped for mixed dtypes, would break this)."""
    cfg = arena.ArenaConfig(d_model=32, n_layers=2, seq_len=48)
    torch.manual_seed(seed)
    model = LM(arena.lm_config(cfg, name, 256))
    x = torch.randint(0, 256, (4, 48))
    y = torch.randint(0, 256, (4, 48))

    def loss_and_grads(autocast: bool):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model.loss(x, y)
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        return loss.detach(), grads

    loss32, g32 = loss_and_grads(False)
    loss16, g16 = loss_and_grads(True)
    assert abs(loss16 - loss32) / loss32 < 2e-3, (float(loss16), float(loss32))
    assert_close(g16, g32, tol=2e-2, what=f"{name}: bf16-autocast vs fp32 gradients")
    assert rel_rms(g16, g32) > 0  # bf16 really ran (its rounding shows)


def test_loss_histories_are_saved_and_redrawn(tmp_path, monkeypatch):
    """curves.json keeps every mixer's history, and scripts/replot.py redraws the two loss
    plots from it (with the same bits/byte as the run's own plots)."""
    import json
    import math
    import shutil

    def stub(name, cfg, data, ctx, max_seconds, bar):
        hist = [{"step": s, "time": 0.1 * s, "loss": 3.0 / s, "val_loss": 3.1 / s} for s in (1, 2)]
        row = {"mixer": name, "val_bpb": 3.1 / 2 / math.log(2), "train_tok_s": 1e3 * len(name),
               "steps": cfg.steps, "train_s": 0.0, "status": "ok"}  # fmt: skip
        return {"row": row, "history": hist, "sample": ""}

    monkeypatch.setattr(arena, "run_mixer", stub)
    job = jobs.EXPERIMENTS.get("arena")
    cfg = job.make_config("smoke", mixers=["softmax", "gru"])
    out = tmp_path / "run"
    jobs.run_job(job, cfg, out=out, budget="smoke", quiet=True)
    curves = json.loads((out / "curves.json").read_text())
    assert sorted(curves) == ["gru", "softmax"] and curves["gru"][1]["val_loss"] == 3.1 / 2

    rp = load_script("replot")
    bench, redrawn = tmp_path / "bench", tmp_path / "redrawn"
    bench.mkdir()
    redrawn.mkdir()
    shutil.copy(out / "results.json", bench / "arena-x.json")
    shutil.copy(out / "curves.json", bench / "arena-x-curves.json")
    res = json.loads((bench / "arena-x.json").read_text())
    written = rp.replot(res, redrawn, "arena-x", path=bench / "arena-x.json")
    names = sorted(p.name for p in written)
    assert names == ["arena-x-bpb_vs_speed.png", "arena-x-loss_vs_step.png",
                     "arena-x-loss_vs_time.png"]  # fmt: skip
    (bench / "arena-x-curves.json").unlink()  # without the side file: the scatter only
    assert [p.name for p in rp.replot(res, redrawn, "arena-x", path=bench / "arena-x.json")] == [
        "arena-x-bpb_vs_speed.png"
    ]
