"""Kimi-VL learns from the pixels: a tiny model on one-object colour questions.

The regression this guards: trained from scratch on our mostly-background canvases, every
image token was dominated by one vector shared by all tokens of all images; the LM learned
the answer prior from the text and never read the image (colour stayed at 1/6). Centring
each image's tokens (`KimiVLConfig.center_image_tokens`) is the fix.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepnotes import jobs
from deepnotes.data.vqa import VQAConfig, VQASample
from deepnotes.experiments.llm.kimi_vl import (
    KimiVLExperimentConfig,
    _batch,
    build_model,
    evaluate,
    generate,
    majority_answer,
    square_round_trip,
)
from deepnotes.job_checks import ConfigError

PRIOR = 1 / 6  # six colours, drawn uniformly


def train_colour(center: bool, seed: int, steps: int = 80):
    """Train a tiny Kimi-VL on 512 one-object colour questions; -> (held-out exact match,
    the same with blank images), both over 192 questions."""
    vqa = VQAConfig(scale=0.5, qtypes=("colour",), distractors=(0, 0), small_frac=0.0)
    train, held_out = generate(vqa, seed, 512), generate(vqa, seed + 1, 192)
    cfg = KimiVLExperimentConfig(
        d_vision=32, vit_layers=1, vit_heads=2, d_lm=48, lm_layers=2, lm_heads=2,
        experts=2, top_k=1, center=center, eval_batch=96,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    rng = np.random.default_rng(seed)
    cpu = torch.device("cpu")
    for _ in range(steps):
        idx = rng.choice(len(train), 32, replace=False)
        ids, imgs, targets = _batch(
            model, [train[i] for i in idx], [train[i].image for i in idx], cpu
        )
        loss, _ = model.loss(ids, imgs, targets, per_sequence=True)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    images = [s.image for s in held_out]
    acc, _, _ = evaluate(model, cfg, held_out, images, cpu)
    blank, _, _ = evaluate(model, cfg, held_out, images, cpu, blank=True)
    return float(acc.mean()), float(blank.mean())


@pytest.mark.parametrize("seed", [0, 1])
def test_tiny_kimi_vl_learns_colour_from_the_image(seed):
    acc, blank = train_colour(center=True, seed=seed)
    assert acc > 0.7, f"held-out colour accuracy {acc:.3f}; the answer prior is {PRIOR:.3f}"
    # the answers come from the pixels: grey images bring it back to about the prior
    assert blank < 0.35, f"accuracy with blank images {blank:.3f}"


def test_without_centring_the_tiny_model_stays_at_the_prior():
    """The failure the centring fixes, shown on the same data, seed and steps."""
    acc, blank = train_colour(center=False, seed=0)
    assert acc < 0.35 and abs(acc - blank) < 0.1, (acc, blank)


@pytest.mark.parametrize(
    "bad",
    [
        {"digit_len": "0,2"},
        {"digit_len": "3"},
        {"digit_dot": "4,2"},
        {"digit_dot": "a,b"},
        {"small_digit_dot": 0.0},
        {"distractors": "2,1"},
        {"small_frac": 1.5},
        {"qtypes": "read,poetry"},
        {"modes": "native,round"},
        {"loss_per": "word"},
        {"pad": "white"},
    ],
)
def test_bad_config_values_are_refused_before_the_run(bad, tmp_path):
    job = jobs.EXPERIMENTS.get("kimi-vl")
    with pytest.raises(ConfigError, match=next(iter(bad)).replace("_", "-")):
        jobs.run_job(job, job.make_config("cpu-native", **bad), out=tmp_path / "x", quiet=True)
    assert not (tmp_path / "x").exists()


def test_majority_answer_is_the_text_only_prior():
    def s(q, a):
        return VQASample(torch.zeros(3, 2, 2), q.split(), a.split(), "read", False, (2, 2))

    train = [s("read the digits ?", "7"), s("read the digits ?", "7"), s("read the digits ?", "1")]
    train += [s("how many circle ?", "2")]
    held = [s("read the digits ?", "7"), s("read the digits ?", "1"), s("how many square ?", "1")]
    assert majority_answer(train, held).tolist() == [True, False, False]


def test_cpu_native_preset_runs_and_pairs_the_two_inputs(tmp_path):
    """The preset at a tiny size: reading only, one paired McNemar test per subset."""
    job = jobs.EXPERIMENTS.get("kimi-vl")
    tiny = dict(n_train=48, n_eval=24, steps=2, batch=8, d_vision=16, vit_heads=2, d_lm=16,
                lm_layers=1, lm_heads=2, eval_batch=24)  # fmt: skip
    rec = jobs.run_job(job, job.make_config("cpu-native", **tiny), out=tmp_path, quiet=True)
    m = rec["metrics"]
    assert "native_read" in m and "native_count" not in m  # only the types asked for
    assert "native_small objects" not in m  # the preset has no small digits
    for k in ("read", "aspect >= 4", "all"):
        pr = m[f"paired_{k}"]
        assert 0 <= pr["mcnemar_p"] <= 1 and pr["native_only"] >= 0 and pr["square_only"] >= 0
        assert m[f"prior_{k}"] is not None
    rows = [r["input"].split(",")[0] for r in rec["table"]]
    assert rows == ["native", "square 112x112", "native model", "answer prior (text only)",
                    "McNemar p"]  # fmt: skip
    assert set(m["by_canvas"]["112x112"]) == {"squeeze", "n", "native", "square", "round trip"}
    assert 0 <= m["paired_round_trip_squeezed canvases"]["mcnemar_p"] <= 1


def test_square_round_trip_keeps_square_canvases_and_blurs_strips():
    """At the square's own size the round trip is the identity; a 28 x 196 strip squeezed
    to 112 x 112 and back loses its 1-px columns."""
    img = (torch.rand(3, 112, 112) * 255).round().to(torch.uint8)
    assert torch.equal(square_round_trip(img, 112), img)
    strip = torch.zeros(3, 28, 196, dtype=torch.uint8)
    strip[:, :, ::2] = 255  # alternating 1-px columns
    back = square_round_trip(strip, 112).float()
    assert back.shape == strip.shape and back.std() < 0.25 * strip.float().std()
