"""Checkpoints: round trip, atomic writes, and exact resume."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

import deepnotes.train.checkpoint as C
from deepnotes.data.text import TokenWindows
from deepnotes.train import TrainConfig, Trainer
from tests.train.tiny import tiny_lm


def trained(tmp_path, steps=3, **kw):
    cfg = TrainConfig(steps=steps, warmup=2, progress=False, ckpt_dir=str(tmp_path), **kw)
    tr = Trainer(tiny_lm(dropout=0.1), cfg, TokenWindows(torch.randint(0, 32, (999,)), 4, 16))
    tr.fit()
    return tr


def test_round_trip_restores_everything(tmp_path, seed):
    tr = trained(tmp_path)
    path = C.find_latest(tmp_path)
    assert path.name == "step-00000003" and (tmp_path / "latest").read_text().strip() == path.name
    sd = C.load_weights(path / "model.safetensors")
    assert sd["head.weight"] is sd["embed.weight"]  # tied weights stored once, re-tied
    expected_rng = torch.get_rng_state()
    expected_py, expected_np = random.random(), np.random.rand()

    tr2 = Trainer(tiny_lm(dropout=0.1), tr.cfg, TokenWindows(torch.randint(0, 32, (999,)), 4, 16))
    torch.manual_seed(12345)
    tr2.load(str(tmp_path))
    assert tr2.step == 3 and tr2.tokens == tr.tokens and tr2.history == tr.history
    for (n, a), b in zip(tr.module.state_dict().items(), tr2.module.state_dict().values()):
        assert torch.equal(a, b), n
    sa, sb = tr.optimizer.state_dict(), tr2.optimizer.state_dict()
    for i in sa["state"]:
        for k in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(sa["state"][i][k], sb["state"][i][k])
    assert tr2.scheduler.state_dict() == tr.scheduler.state_dict()
    assert tr2.train_batches.position == 3
    assert torch.equal(torch.get_rng_state(), expected_rng)
    assert (random.random(), np.random.rand()) == (expected_py, expected_np)


def test_crash_mid_write_keeps_previous_latest(tmp_path, monkeypatch, seed):
    tr = trained(tmp_path, steps=2)
    good = C.find_latest(tmp_path)

    def torn_save(obj, path):  # write half a file, then die
        with open(path, "wb") as f:
            f.write(b"\x80\x02partial")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(C.torch, "save", torn_save)
    tr.step = 3
    with pytest.raises(KeyboardInterrupt):
        tr.save()
    monkeypatch.undo()
    assert C.find_latest(tmp_path) == good
    assert sorted(os.listdir(tmp_path)) == ["latest", good.name]  # no torn directory left
    state = C.load_checkpoint(tmp_path, model=tiny_lm(dropout=0.1))
    assert state["step"] == 2


def test_find_latest_falls_back_to_newest_complete(tmp_path, seed):
    trained(tmp_path, steps=4, ckpt_interval=2, keep_checkpoints=3)
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-00000002", "step-00000004"]
    (tmp_path / "latest").write_text("step-00000099\n")  # stale pointer
    assert C.find_latest(tmp_path).name == "step-00000004"
    (tmp_path / "step-00000004" / "meta.json").unlink()  # incomplete directory
    assert C.find_latest(tmp_path).name == "step-00000002"
    assert C.find_latest(tmp_path / "nothing") is None
    with pytest.raises(ValueError, match="no complete checkpoint"):
        C.load_checkpoint(tmp_path / "nothing", model=tiny_lm())


def test_keep_prunes_old_checkpoints(tmp_path, seed):
    trained(tmp_path, steps=6, ckpt_interval=1, keep_checkpoints=2)
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-00000005", "step-00000006"]


@pytest.mark.parametrize("optimizer", ["adamw", "adamw-scratch"])
def test_resume_continues_exactly(tmp_path, optimizer, seed):
    """fp32 on CPU: interrupted-and-resumed losses equal the uninterrupted run's, bit for bit.

    Dropout (RNG), gradient accumulation, warm-up + cosine (scheduler), clipping, AdamW
    moments and the data position all have to come back for this to hold.
    """
    tokens = torch.randint(0, 32, (3000,))
    cfg = dict(steps=10, warmup=3, lr=3e-3, grad_accum=2, optimizer=optimizer, progress=False,
               seed=seed % 1000)  # fmt: skip

    def run(ckpt_dir, crash_after=None, resume=""):
        torch.manual_seed(seed)
        model = tiny_lm(dropout=0.1)
        data = TokenWindows(tokens, 4, 24, seed=seed)
        batches = data
        if crash_after is not None:

            class Crashing:
                def __init__(self):
                    self.n = 0

                def __next__(self):
                    self.n += 1
                    if self.n > crash_after:
                        raise RuntimeError("power cut")
                    return next(data)

                state_dict, load_state_dict = data.state_dict, data.load_state_dict

            batches = Crashing()
        c = TrainConfig(ckpt_dir=str(ckpt_dir), ckpt_interval=4, resume=resume, **cfg)
        return Trainer(model, c, batches)

    full = run(tmp_path / "a").fit()
    crashing = run(tmp_path / "b", crash_after=2 * 6 + 1)  # dies during step 7
    with pytest.raises(RuntimeError, match="power cut"):
        crashing.fit()
    assert C.find_latest(tmp_path / "b").name == "step-00000004"
    torch.manual_seed(seed + 1)  # a different init: everything must come from the checkpoint
    resumed = run(tmp_path / "b", resume="auto")
    hist = resumed.fit()
    assert resumed.resumed_from.endswith("step-00000004")
    assert [h["loss"] for h in hist] == [h["loss"] for h in full]
    assert [h["step"] for h in hist] == list(range(1, 11))
    final_a = C.load_weights(C.find_latest(tmp_path / "a") / "model.safetensors")
    final_b = C.load_weights(C.find_latest(tmp_path / "b") / "model.safetensors")
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)
