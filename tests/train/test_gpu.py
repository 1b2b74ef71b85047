"""The training machinery on CUDA: fused AdamW, bf16/fp16 autocast, GradScaler, decoding.

Run with `pytest -m gpu tests/train` on a CUDA machine.
"""

from __future__ import annotations

import copy

import pytest
import torch

from deepnotes.data.text import TokenWindows
from deepnotes.generate import generate
from deepnotes.train import Precision, TrainConfig, Trainer, build_optimizer
from deepnotes.train.lm import lm_loss
from tests.helpers import assert_close
from tests.train.tiny import tiny_lm

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]
CUDA = torch.device("cuda")


def test_fused_adamw_matches_the_scratch_loop(seed):
    a = tiny_lm(d=64).to(CUDA)
    b = copy.deepcopy(a)
    fused = build_optimizer(a, "adamw", lr=1e-3, weight_decay=0.1)
    assert fused.defaults.get("fused") is True
    scratch = build_optimizer(b, "adamw-scratch", lr=1e-3, weight_decay=0.1)
    for _ in range(5):
        x = torch.randint(0, 32, (4, 33), device=CUDA)
        for m, opt in ((a, fused), (b, scratch)):
            opt.zero_grad()
            lm_loss(m, (x, x.roll(-1, 1)))[0].backward()
            opt.step()
    for (n, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert_close(pa, pb, tol=1e-5, what=n)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_training_learns(precision, seed):
    model = tiny_lm(vocab=16, d=64).to(CUDA)
    tokens = torch.arange(4000) % 16  # a periodic text: next token = current + 1 (mod 16)
    data = TokenWindows(tokens, 16, 32, seed=seed, device=CUDA)
    cfg = TrainConfig(steps=60, lr=3e-3, warmup=5, precision=precision, progress=False)
    hist = Trainer(model, cfg, data).fit()
    assert hist[-1]["loss"] < 0.1 < hist[0]["loss"]


def test_fp16_inf_skips_on_cuda(seed):
    model = tiny_lm().to(CUDA)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)
    prec = Precision("fp16", CUDA, init_scale=2.0**10)
    before = copy.deepcopy(model.state_dict())
    x = torch.randint(0, 32, (2, 16), device=CUDA)
    with prec.autocast():
        loss, _ = lm_loss(model, (x, x))
    prec.backward(loss)
    model.embed.weight.grad[0, 0] = float("inf")
    prec.unscale_(opt)
    assert bool(prec.step(opt)) is False and prec.scale == 2.0**9
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_cached_decoding_on_cuda(seed):
    model = tiny_lm(vocab=50, d=64, layers=2).to(CUDA).eval()
    prompt = torch.randint(0, 50, (2, 9), device=CUDA)
    stepped = generate(model, prompt, 30, temperature=0)
    assert torch.equal(stepped, generate(model, prompt, 30, temperature=0, use_cache=False))
    with torch.no_grad():
        full = model(stepped)
    assert torch.equal(full.argmax(-1)[:, 8:-1], stepped[:, 9:])  # greedy = forward's argmax
