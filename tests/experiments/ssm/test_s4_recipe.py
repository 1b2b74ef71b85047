"""S4's ListOps recipe: own optimizer groups for the SSM parameters, post-norm blocks without
an MLP, checkpoint/resume of a listops run, and the s4-diagnose evidence helpers."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import deepnotes.mixers as M
from deepnotes.data.synthetic import listops
from deepnotes.experiments.ssm.listops import (
    ListOpsConfig,
    accuracy,
    build_model,
    check_listops,
    peak_lr,
    ssm_parameters,
    tag_ssm_params,
    train_mixer,
)
from deepnotes.experiments.ssm.s4_diagnose import kernel_len90
from deepnotes.job_checks import ConfigError
from deepnotes.models.seqmodel import SeqModel, SeqModelConfig
from deepnotes.train import TrainConfig, Trainer
from deepnotes.train.optim import param_groups
from deepnotes.utils.pool import shareable
from tests.helpers import assert_close


def tiny(mixer="s4d", **kw):
    cfg = SeqModelConfig(vocab_size=20, n_classes=10, d_model=12, n_layers=2, mixer=mixer,
                         mixer_kwargs={"d_state": 4}, max_len=40, **kw)  # fmt: skip
    return SeqModel(cfg)


def test_untagged_model_keeps_the_two_default_groups(seed):
    groups = param_groups(tiny(), 0.05)
    assert [g["name"] for g in groups] == ["decay", "no_decay"]


def test_ssm_parameters_get_their_own_lr_and_no_decay(seed):
    model = tiny()
    n = tag_ssm_params(model, lr=1e-3)
    names = {id(p): k for k, p in model.named_parameters()}
    tagged = sorted(names[id(p)].split(".")[-1] for p in ssm_parameters(model))
    assert n == len(tagged) == 2 * 4  # log_A_real, A_imag, B, log_dt in each of 2 layers
    assert set(tagged) == {"log_A_real", "A_imag", "B", "log_dt"}  # not C, D, out
    groups = param_groups(model, 0.05)
    own = [g for g in groups if g["name"].startswith("own")]
    assert len(own) == 1 and own[0]["lr"] == 1e-3 and own[0]["weight_decay"] == 0.0
    assert {id(p) for p in own[0]["params"]} == {id(p) for p in ssm_parameters(model)}
    rest = [p for g in groups if not g["name"].startswith("own") for p in g["params"]]
    assert len(rest) + n == len(list(model.parameters()))


def test_mamba_ssm_parameters(seed):
    m = M.build("mamba", 16, causal=False, d_state=4)
    got = {id(p) for p in ssm_parameters(m)}
    assert got == {id(m.A_log), id(m.D), *(id(lin.bias) for lin in m.dt_proj)}


def test_schedule_scales_each_group_from_its_own_peak(seed):
    """The trainer's warm-up/cosine multiplies both lrs: their ratio stays ssm_lr / lr."""
    model = tiny()
    tag_ssm_params(model, lr=1e-3)
    x = torch.randint(1, 20, (8, 40))
    y = torch.randint(0, 10, (8,))

    def loss_fn(m, batch):
        return torch.nn.functional.cross_entropy(m(batch[0]), batch[1])

    cfg = TrainConfig(steps=6, lr=4e-3, warmup=2, min_lr_ratio=0.0, progress=False)
    tr = Trainer(model, cfg, lambda: (x, y), loss_fn=loss_fn)
    for _ in range(3):
        tr.train_step()
        lrs = {g["name"].split(":")[0]: g["lr"] for g in tr.optimizer.param_groups}
        assert lrs["own"] > 0
        assert abs(lrs["decay"] / lrs["own"] - 4.0) < 1e-9


def test_postnorm_without_mlp(seed):
    pre, post = tiny(), tiny(prenorm=False, mlp=False)
    assert len(post.ffns) == 0 and isinstance(post.norm, torch.nn.Identity)
    # the default model's parameters (and checkpoints) are unchanged by the new options
    assert set(pre.state_dict()) == set(tiny(prenorm=True, mlp=True).state_dict())
    x = torch.randint(1, 20, (3, 37))
    mask = torch.ones(3, 37, dtype=torch.bool)
    mask[1, 30:] = False
    assert post(x, mask).shape == (3, 10)
    # post-norm: every block's output is layer-normalised
    h = post.embed(x) + post.pos.weight[:37]
    h = post._residual(h, lambda t: post.mixers[0](t, mask), post.norms1[0])
    assert_close(h.std(-1, unbiased=False), torch.ones(3, 37), tol=1e-4)
    assert h.mean(-1).abs().max() < 1e-5


def test_listops_resume_continues_exactly(tmp_path, seed):
    """A run stopped after its first step and resumed from the checkpoint ends where an
    uninterrupted run ends (batches, optimizer, schedule and weights all restored)."""
    x, y = listops(24, 10, 40, max_depth=3, seed=1, pad_to=40)
    xv, yv = listops(8, 10, 40, max_depth=3, seed=2, pad_to=40)
    cfg = ListOpsConfig(mixers=["s4d"], min_len=10, max_len=40, d_model=12, n_layers=1,
                        ssm_state=4, steps=4, batch_size=4, warmup=1, ssm_lr=3e-3,
                        prenorm=False, mlp="attention", eval_every=2)  # fmt: skip
    rows = {}
    with shareable((x.to(torch.uint8), y, xv.to(torch.uint8), yv), 1) as data:
        rows["straight"] = train_mixer(cfg, "s4d", 0, "cpu", None, data)
        broken = dataclasses.replace(cfg, ckpt_dir=str(tmp_path))
        first = train_mixer(broken, "s4d", 0, "cpu", 1e-9, data)  # capped after 1 step
        rows["resumed"] = train_mixer(broken, "s4d", 0, "cpu", None, data)
    assert first["steps"] == 1 and first["capped"]
    assert rows["resumed"]["resumed_at"] == 1 and rows["resumed"]["steps"] == 4
    losses = {k: [c["loss"] for c in r["curve"]] for k, r in rows.items()}
    assert losses["resumed"][-1] == losses["straight"][-1]
    assert rows["resumed"]["eval_loss"] == rows["straight"]["eval_loss"]


def test_listops_default_builds_the_old_model(seed):
    """Without the recipe fields the listops model is the pre-norm, MLP model as before."""
    model = build_model(ListOpsConfig(d_model=12, n_layers=1, ssm_state=4), "s4d")
    assert model.cfg.prenorm and model.cfg.mlp and len(model.ffns) == 1
    assert [g["name"] for g in param_groups(model, 0.05)] == ["decay", "no_decay"]


def test_kernel_len90_tracks_dt(seed):
    """Short timescales (large dt) give short kernels; S4D's default range long ones."""
    cfg = dict(vocab_size=20, n_classes=10, d_model=8, n_layers=1, mixer="s4d", max_len=300)
    fast = SeqModel(SeqModelConfig(**cfg, mixer_kwargs={"d_state": 8, "dt_min": 0.5,
                                                         "dt_max": 0.5}))  # fmt: skip
    slow = SeqModel(SeqModelConfig(**cfg, mixer_kwargs={"d_state": 8}))
    assert kernel_len90(fast, 300) < 15 < 60 < kernel_len90(slow, 300)


def test_mixer_lr_sets_one_mixers_peak_lr(seed):
    """`mixer_lr` gives one mixer its own peak lr (the others keep `lr`); bad entries are
    refused before the job starts, with the field named."""
    cfg = ListOpsConfig(mixers=["s4d", "softmax"], lr=4e-3, mixer_lr=["softmax=1e-3"])
    assert peak_lr(cfg, "softmax") == 1e-3 and peak_lr(cfg, "s4d") == 4e-3
    check_listops(cfg)
    for bad in (["softmax"], ["softmax=x"], ["softmax=-1"], ["mamba=1e-3"]):
        with pytest.raises(ConfigError, match="--mixer-lr"):
            check_listops(dataclasses.replace(cfg, mixer_lr=bad))


def test_mixer_lr_reaches_the_optimizer(seed):
    """A mixer trained at a vanishing `mixer_lr` (no decay) ends where it started; at `lr`
    it moves."""
    x, y = listops(16, 10, 40, max_depth=3, seed=1, pad_to=40)
    xv, yv = listops(8, 10, 40, max_depth=3, seed=2, pad_to=40)
    cfg = ListOpsConfig(mixers=["softmax"], min_len=10, max_len=40, d_model=12, n_layers=1,
                        steps=3, batch_size=4, warmup=0, lr=1e-2, weight_decay=0.0)  # fmt: skip
    frozen = dataclasses.replace(cfg, mixer_lr=["softmax=1e-30"])
    with shareable((x.to(torch.uint8), y, xv.to(torch.uint8), yv), 1) as data:
        still = train_mixer(frozen, "softmax", 0, "cpu", None, data)
        moved = train_mixer(cfg, "softmax", 0, "cpu", None, data)
    torch.manual_seed(0)  # train_mixer seeds like this before it builds the model
    start = accuracy(build_model(cfg, "softmax").eval(), xv, yv)["loss"]
    assert_close(torch.tensor(still["eval_loss"]), torch.tensor(start), what="frozen run")
    assert abs(moved["eval_loss"] - start) > 1e-3
