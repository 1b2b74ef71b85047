"""The training loop: schedule, accumulation, clipping, history, evaluation, custom losses."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deepnotes.data.text import TokenWindows
from deepnotes.train import TrainConfig, Trainer, WarmupCosine
from deepnotes.train.lm import evaluate_lm
from tests.helpers import assert_close
from tests.train.tiny import tiny_lm

QUIET = dict(progress=False)


def test_warmup_cosine_shape():
    f = WarmupCosine(warmup=4, total=20, min_ratio=0.1)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == 1.0 and f(20) == pytest.approx(0.1) and f(100) == pytest.approx(0.1)
    mid = 4 + 8  # halfway through the cosine: r + (1 - r) / 2
    assert f(mid) == pytest.approx(0.55)
    assert all(f(s) >= f(s + 1) for s in range(4, 30))
    assert WarmupCosine(0, 10, 0.0, decay="linear")(5) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="decay"):
        WarmupCosine(1, 10, decay="step")


def test_trainer_lr_follows_schedule():
    model = tiny_lm()
    cfg = TrainConfig(steps=6, warmup=2, lr=1e-2, min_lr_ratio=0.0, **QUIET)
    tokens = torch.randint(0, 32, (500,))
    hist = Trainer(model, cfg, TokenWindows(tokens, 4, 16)).fit()
    f = WarmupCosine(2, 6, 0.0)
    assert [h["lr"] for h in hist] == pytest.approx([1e-2 * f(s) for s in range(6)])
    assert [h["step"] for h in hist] == list(range(1, 7))


def test_gradient_accumulation_equals_one_big_batch(seed):
    """k micro-batches of b rows give the gradient of one batch of k*b rows."""
    torch.manual_seed(seed)
    a = tiny_lm(d=24, layers=2).double()
    b = tiny_lm(d=24, layers=2).double()
    b.load_state_dict(a.state_dict())
    x = torch.randint(0, 32, (6, 21))
    y = torch.randint(0, 32, (6, 21))
    micro = [(x[i : i + 2], y[i : i + 2]) for i in range(0, 6, 2)]
    ta = Trainer(a, TrainConfig(grad_accum=3, **QUIET), iter(micro))
    tb = Trainer(b, TrainConfig(grad_accum=1, **QUIET), iter([(x, y)]))
    loss_a, _, n_a = ta.accumulate_gradients()
    loss_b, _, n_b = tb.accumulate_gradients()
    assert n_a == n_b == 6 * 21
    assert_close(loss_a.double(), loss_b.double(), tol=1e-6)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert_close(pa.grad, pb.grad, what=name)


def test_gradient_clipping_caps_the_global_norm(seed):
    model = tiny_lm()
    cfg = TrainConfig(steps=1, grad_clip=1e-3, lr=0.0, warmup=0, **QUIET)
    tr = Trainer(model, cfg, TokenWindows(torch.randint(0, 32, (300,)), 4, 16, seed=seed))
    out = tr.train_step()
    assert out["grad_norm"].item() > 1e-3  # the pre-clip norm is reported
    clipped = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert clipped.item() == pytest.approx(1e-3, rel=1e-4)


def test_fit_learns_and_records_history(seed):
    """A task any working loop learns fast (y = x + 1 mod 16); eval and history fields present."""
    torch.manual_seed(seed)
    model = tiny_lm(vocab=16, d=32, layers=1)

    def batches():
        x = torch.randint(0, 16, (8, 12))
        return x, (x + 1) % 16

    def eval_fn(m):
        x = torch.randint(0, 16, (16, 12))
        return evaluate_lm(m, [(x, (x + 1) % 16)])

    cfg = TrainConfig(steps=60, lr=1e-2, warmup=5, eval_interval=20, log_interval=10, **QUIET)
    tr = Trainer(model, cfg, batches, eval_fn=eval_fn)
    before = tr.evaluate()["val_loss"]
    hist = tr.fit()
    assert [h["step"] for h in hist] == [10, 20, 30, 40, 50, 60]
    assert {"loss", "lr", "tokens", "time", "tokens_per_s", "grad_norm", "ce"} <= set(hist[0])
    assert "val_loss" in hist[1] and "val_loss" not in hist[0] and "val_loss" in hist[-1]
    assert before > 2.0 and hist[-1]["val_loss"] < 0.2  # ln 16 = 2.77 at chance
    assert hist[-1]["val_bpb"] == pytest.approx(hist[-1]["val_loss"] / math.log(2))
    assert hist[-1]["tokens"] == 60 * 8 * 12 and tr.summary()["steps"] == 60


def test_custom_loss_for_classification(seed):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))
    w = torch.randn(5, 3)

    def batches():
        x = torch.randn(32, 5)
        return x, (x @ w).argmax(-1)

    def loss_fn(model, batch):
        x, y = batch
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y)
        return loss, {"acc": (logits.argmax(-1) == y).float().mean()}

    cfg = TrainConfig(steps=150, lr=2e-2, warmup=0, log_interval=50, weight_decay=0.0, **QUIET)
    hist = Trainer(net, cfg, batches, loss_fn=loss_fn).fit()
    assert hist[-1]["acc"] > 0.85 and hist[-1]["tokens"] == 150 * 32  # examples


def test_iterable_is_reiterated_and_bad_config_rejected():
    model = tiny_lm()
    data = [(torch.randint(0, 32, (2, 8)), torch.randint(0, 32, (2, 8)))] * 2
    hist = Trainer(model, TrainConfig(steps=5, **QUIET), data).fit()  # 5 steps over 2 batches
    assert len(hist) == 5
    with pytest.raises(ValueError, match="grad_accum"):
        Trainer(model, TrainConfig(grad_accum=0), data)
    with pytest.raises(ValueError, match="resume path"):
        Trainer(model, TrainConfig(steps=1, resume="/no/such/dir", **QUIET), data).fit()


# ------------------------------------------------------------------ fit's hooks and caps
def _windows():
    return TokenWindows(torch.randint(0, 32, (500,)), 4, 16)


def test_time_cap_stops_evaluates_and_says_so(monkeypatch):
    """With max_seconds the run stops at the first step past the cap, evaluates there and
    sets stopped_early; the clock is faked so the test does not depend on machine speed."""
    import deepnotes.train.trainer as T

    clock = iter(range(0, 10**6, 10))  # every perf_counter call advances 10 "seconds"
    monkeypatch.setattr(T.time, "perf_counter", lambda: next(clock))
    evals = []
    cfg = TrainConfig(steps=50, warmup=1, max_seconds=25.0, log_interval=100, **QUIET)
    tr = Trainer(tiny_lm(), cfg, _windows(), eval_fn=lambda m: evals.append(1) or {"val": 1.0})
    hist = tr.fit()
    assert tr.stopped_early and tr.stop_reason == "time cap"
    assert tr.step < 50 and hist[-1]["step"] == tr.step and hist[-1]["val"] == 1.0
    assert len(evals) == 1 and tr.elapsed > 25.0


def test_stop_fn_ends_the_run_after_a_logged_step():
    cfg = TrainConfig(steps=20, warmup=1, log_interval=2, **QUIET)
    tr = Trainer(tiny_lm(), cfg, _windows(), stop_fn=lambda e: e["step"] >= 6)
    hist = tr.fit()
    assert [h["step"] for h in hist] == [2, 4, 6] and tr.step == 6
    assert tr.stopped_early and tr.stop_reason == "stop_fn"


def test_on_log_adds_fields_before_evaluation_and_eval_names_do_not_clobber():
    order = []

    def on_log(trainer, entry):
        order.append("log")
        entry["extra"] = trainer.step * 10

    def eval_fn(model):
        order.append("eval")
        return {"loss": -1.0, "acc": 0.5}  # "loss" is also the training loss's name

    cfg = TrainConfig(steps=4, warmup=1, log_interval=2, eval_interval=4, **QUIET)
    tr = Trainer(tiny_lm(), cfg, _windows(), eval_fn=eval_fn, on_log=on_log)
    hist = tr.fit()
    assert [h["extra"] for h in hist] == [20, 40]
    assert order == ["log", "log", "eval"]
    assert hist[-1]["eval_loss"] == -1.0 and hist[-1]["loss"] > 0 and hist[-1]["acc"] == 0.5
    assert tr.last_eval == {"loss": -1.0, "acc": 0.5} and not tr.stopped_early


def test_reseed_false_keeps_the_callers_random_stream(seed):
    def run(reseed):
        torch.manual_seed(seed)
        model = tiny_lm(dropout=0.2)
        cfg = TrainConfig(steps=3, warmup=1, seed=123, **QUIET)
        hist = Trainer(model, cfg, TokenWindows(torch.arange(400) % 32, 2, 8, seed=0)).fit(
            reseed=reseed
        )
        return [h["loss"] for h in hist]

    assert run(False) == run(False)  # deterministic given the caller's seed
    assert run(False)[1:] != run(True)[1:]  # reseeding changes the dropout masks
