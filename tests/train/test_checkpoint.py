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


# ----------------------------------------------------------------------------- damage
def _truncate(f):
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _garble(f):
    data = bytearray(f.read_bytes())
    for i in range(0, len(data), 7):  # flip bytes all through the file, headers included
        data[i] ^= 0x5A
    f.write_bytes(bytes(data))


DAMAGE = {"truncate": _truncate, "garble": _garble, "empty": lambda f: f.write_bytes(b"")}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("name", ["model.safetensors", "state.pt", "meta.json"])
def test_damaged_file_named_and_nothing_restored(tmp_path, seed, name, damage):
    tr = trained(tmp_path, steps=2)
    path = C.find_latest(tmp_path)
    DAMAGE[damage](path / name)
    model = tiny_lm(dropout=0.1)
    opt = torch.optim.AdamW(model.parameters())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(C.CheckpointError, match=f"{path / name}.*damaged|{path / name}.*lacks"):
        C.load_checkpoint(path, model=model, optimizer=opt)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert opt.state_dict()["state"] == {}  # the optimizer was not touched either
    del tr


@pytest.mark.parametrize("name", ["model.safetensors", "state.pt", "meta.json"])
def test_resume_falls_back_past_a_damaged_newest(tmp_path, seed, name):
    trained(tmp_path, steps=4, ckpt_interval=2, keep_checkpoints=3)
    newest = tmp_path / "step-00000004"
    _truncate(newest / name)
    with pytest.warns(UserWarning, match=f"skipping damaged.*{name}.*step-00000002"):
        assert C.find_latest(tmp_path).name == "step-00000002"
    assert C.find_latest(tmp_path, check=False) == newest  # existence alone misses it
    cfg = TrainConfig(steps=4, warmup=2, progress=False, ckpt_dir=str(tmp_path), resume="auto")
    tr = Trainer(tiny_lm(dropout=0.1), cfg, TokenWindows(torch.randint(0, 32, (999,)), 4, 16))
    with pytest.warns(UserWarning, match="skipping damaged"):
        tr.fit()
    assert tr.resumed_from.endswith("step-00000002") and tr.step == 4
    _truncate(tmp_path / "step-00000002" / "state.pt")  # every checkpoint damaged: none
    _truncate(tmp_path / "step-00000004" / "state.pt")
    with pytest.warns(UserWarning, match="no usable checkpoint"):
        assert C.find_latest(tmp_path) is None


def test_shape_mismatch_named_before_anything_is_restored(tmp_path, seed):
    trained(tmp_path, steps=2)
    path = C.find_latest(tmp_path)
    wider = tiny_lm(d=48)  # another width: every matrix differs
    before = {k: v.clone() for k, v in wider.state_dict().items()}
    with pytest.raises(C.CheckpointError, match=r"model\.safetensors.*shape"):
        C.load_checkpoint(path, model=wider)
    assert all(torch.equal(before[k], v) for k, v in wider.state_dict().items())
    deeper = tiny_lm(layers=3)
    with pytest.raises(C.CheckpointError, match="missing"):
        C.load_checkpoint(path, model=deeper)
    model = tiny_lm(dropout=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    two_groups = torch.optim.AdamW([{"params": [p]} for p in model.parameters()])
    with pytest.raises(C.CheckpointError, match=r"state\.pt.*parameter groups"):
        C.load_checkpoint(path, model=model, optimizer=two_groups)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_state_without_expected_keys_is_refused(tmp_path, seed):
    trained(tmp_path, steps=2)
    path = C.find_latest(tmp_path)
    state = torch.load(path / "state.pt", weights_only=True)
    del state["rng"]
    torch.save(state, path / "state.pt")
    with pytest.raises(C.CheckpointError, match=r"state\.pt: training state lacks \['rng'\]"):
        C.load_checkpoint(path, model=tiny_lm(dropout=0.1))
    (path / "meta.json").write_text('{"tokens": 3}')
    with pytest.raises(C.CheckpointError, match="meta.json: metadata has no integer 'step'"):
        C.read_checkpoint(path)
