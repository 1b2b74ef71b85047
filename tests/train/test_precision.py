"""Mixed precision: autocast dtypes, and fp16 loss scaling skipping steps on inf."""

from __future__ import annotations

import copy

import pytest
import torch

from deepnotes.data.text import TokenWindows
from deepnotes.train import Precision, TrainConfig, Trainer
from deepnotes.train.lm import lm_loss
from tests.helpers import assert_close
from tests.train.tiny import tiny_lm


def batch(seed, vocab=32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, vocab, (4, 17), generator=g)
    return x, torch.randint(0, vocab, (4, 17), generator=g)


@pytest.mark.parametrize("mode,dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_autocast_runs_matmuls_low_and_loss_stays_close(mode, dtype, seed):
    model = tiny_lm()
    x, y = batch(seed)
    prec = Precision(mode, "cpu")
    with prec.autocast():
        assert model.head(torch.randn(2, 32)).dtype == dtype
        loss, _ = lm_loss(model, (x, y))
    ref, _ = lm_loss(model, (x, y))
    assert loss.dtype == torch.float32  # the loss is computed from fp32 logits
    assert_close(loss, ref, dtype=dtype, what=f"{mode} loss")
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights


def test_fp16_inf_gradient_skips_step_and_halves_scale(seed):
    model = tiny_lm()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    prec = Precision("fp16", "cpu", init_scale=2.0**10)
    before = copy.deepcopy(model.state_dict())

    loss, _ = lm_loss(model, batch(seed))
    prec.backward(loss)
    model.blocks[0].ffn.w_in.weight.grad[3, 5] = float("inf")  # an overflowed gradient
    prec.unscale_(opt)
    assert bool(prec.step(opt)) is False
    assert prec.scale == 2.0**9  # halved
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed on a skipped step"
    assert not opt.state  # the optimizer never ran: no moments, no step count

    opt.zero_grad()
    loss, _ = lm_loss(model, batch(seed + 1))
    prec.backward(loss)
    prec.unscale_(opt)
    assert bool(prec.step(opt)) is True
    assert prec.scale == 2.0**9  # unchanged until growth_interval clean steps
    assert not torch.equal(model.embed.weight, before["embed.weight"])


def test_fp16_scale_grows_after_clean_steps(seed):
    model = tiny_lm()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    prec = Precision("fp16", "cpu", init_scale=8.0, growth_interval=3)
    for i in range(3):
        opt.zero_grad()
        prec.backward(lm_loss(model, batch(seed + i))[0])
        prec.step(opt)
    assert prec.scale == 16.0


def test_scaled_gradients_equal_fp32_gradients_after_unscale(seed):
    """Scaling is exact in binary floating point: S = 2^k multiplies and divides exactly."""
    a = tiny_lm()
    b = copy.deepcopy(a)
    x, y = batch(seed)
    prec = Precision("fp16", "cpu", init_scale=2.0**12)
    opt = torch.optim.SGD(a.parameters(), lr=0.0)
    # fp16 scaler without fp16 autocast: gradients differ from fp32 only by the exact scale
    prec.backward(lm_loss(a, (x, y))[0])
    prec.unscale_(opt)
    lm_loss(b, (x, y))[0].backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa.grad, pb.grad), name


def test_trainer_counts_skipped_steps(seed):
    """An inf loss at step 3 in fp16: the trainer skips it, halves the scale, continues."""
    model = tiny_lm()
    calls = {"n": 0}

    def loss_fn(m, b):
        calls["n"] += 1
        loss, metrics = lm_loss(m, b)
        return (loss * float("inf") if calls["n"] == 3 else loss), metrics

    cfg = TrainConfig(steps=5, precision="fp16", grad_clip=1.0, progress=False)
    tr = Trainer(model, cfg, TokenWindows(torch.randint(0, 32, (400,)), 4, 16, seed=seed), None,
                 loss_fn)  # fmt: skip
    hist = tr.fit()
    assert tr.skipped == 1 and hist[-1]["skipped"] == 1
    assert [h["loss_scale"] for h in hist] == [65536.0, 65536.0, 32768.0, 32768.0, 32768.0]


def test_bad_precision_name():
    with pytest.raises(ValueError, match="fp32, bf16, fp16"):
        Precision("fp8")
