"""RL checkpoints: a damaged or mismatched file is named, and nothing of the run is touched."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from deepnotes.rl import a2c
from deepnotes.rl.checkpoint import (
    CheckpointError,
    load_checkpoint,
    resume_agent,
    save_agent,
    save_checkpoint,
)


@dataclasses.dataclass
class _Cfg:
    seed: int = 0


class _Envs:
    def __init__(self, n):
        self.envs = [{"state": i} for i in range(n)]


def _parts(width=5):
    net = nn.Linear(3, width)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    net(torch.randn(4, 3)).sum().backward()
    opt.step()  # non-empty moments
    return {"net": net, "opt": opt}


def _saved(tmp_path):
    path = tmp_path / "agent.pt"
    save_agent(path, "toy", _Cfg(), 7, torch.zeros(2), _Envs(2), _parts())
    return path


def _untouched(parts, envs, before):
    assert all(torch.equal(before[k], v) for k, v in parts["net"].state_dict().items())
    assert parts["opt"].state_dict()["state"] == {}
    assert envs.envs == [{"state": -1}, {"state": -2}]


def _fresh(width=5):
    net = nn.Linear(3, width)
    parts = {"net": net, "opt": torch.optim.Adam(net.parameters())}
    envs = _Envs(2)
    envs.envs = [{"state": -1}, {"state": -2}]
    return parts, envs, {k: v.clone() for k, v in net.state_dict().items()}


def test_round_trip(tmp_path, seed):
    path = _saved(tmp_path)
    parts, envs, _ = _fresh()
    state = resume_agent(path, "toy", envs, parts)
    assert state["step"] == 7 and envs.envs == [{"state": 0}, {"state": 1}]
    assert parts["opt"].state_dict()["state"][0]["exp_avg"].shape == (5, 3)


@pytest.mark.parametrize("damage", ["truncate", "garble", "empty"])
def test_damaged_file_is_named_and_nothing_restored(tmp_path, seed, damage):
    path = _saved(tmp_path)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garble":
        for i in range(0, len(data), 11):
            data[i] ^= 0x5A
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    parts, envs, before = _fresh()
    with pytest.raises(CheckpointError, match=f"{path}: damaged checkpoint"):
        resume_agent(path, "toy", envs, parts)
    _untouched(parts, envs, before)


def test_missing_keys_and_shapes_are_named(tmp_path, seed):
    path = _saved(tmp_path)
    parts, envs, before = _fresh(width=6)  # a wider network than the saved one
    with pytest.raises(CheckpointError, match=r"agent\.pt \[net\].*'weight' has shape \(5, 3\)"):
        resume_agent(path, "toy", envs, parts)
    _untouched(parts, envs, before)
    parts, envs, before = _fresh()
    parts["critic"] = nn.Linear(2, 2)
    with pytest.raises(CheckpointError, match=r"lacks \['critic'\]"):
        resume_agent(path, "toy", envs, parts)
    _untouched(parts, envs, before)
    state = load_checkpoint(path)
    del state["envs"]
    save_checkpoint(path, {k: v for k, v in state.items() if k not in ("rng", "format_version")})
    with pytest.raises(CheckpointError, match=r"lacks \['envs'\]"):
        load_checkpoint(path, "toy")


def test_training_loop_refuses_a_damaged_checkpoint(tmp_path):
    cfg = a2c.A2CConfig(total_steps=400, eval_every=200, eval_episodes=1, hidden=(8,),
                        checkpoint_every=200)  # fmt: skip
    ckpt = tmp_path / "a2c.pt"
    a2c.train(dataclasses.replace(cfg, total_steps=200), checkpoint=ckpt)
    assert ckpt.exists()
    ckpt.write_bytes(ckpt.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=str(ckpt)):
        a2c.train(cfg, checkpoint=ckpt, resume=True)
