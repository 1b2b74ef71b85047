"""The visual-QA generator: seeded, many native sizes, answers that match the pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from deepnotes.data.vqa import (
    COLOURS,
    EOS,
    IMG,
    PAD,
    QTYPES,
    SIZES,
    VQAConfig,
    VQAGenerator,
    build_sequence,
    collate,
    decode,
    encode,
)


def colour_mask(img: torch.Tensor, colour: str) -> np.ndarray:
    rgb = torch.tensor(COLOURS[colour])[:, None, None]
    return ((img - rgb).abs().max(0).values < 1e-6).numpy()


def only(qtype: str, seed: int = 3, **kw) -> VQAGenerator:
    return VQAGenerator(VQAConfig(qtypes=(qtype,), distractors=(0, 0), **kw), seed=seed)


def test_seeded_and_deterministic():
    a = VQAGenerator(VQAConfig(scale=0.5), seed=11).samples(6)
    b = VQAGenerator(VQAConfig(scale=0.5), seed=11).samples(6)
    c = VQAGenerator(VQAConfig(scale=0.5), seed=12).samples(6)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.image, y.image) and x.question == y.question and x.answer == y.answer
    assert any(not torch.equal(x.image, y.image) for x, y in zip(a, c, strict=True))


def test_native_sizes_aspect_ratios_and_types():
    samples = VQAGenerator(VQAConfig(), seed=0).samples(120)
    sizes = {s.size for s in samples}
    assert (56, 392) in sizes and (336, 336) in sizes and sizes <= set(SIZES)
    assert max(s.aspect for s in samples) == 7.0
    assert {s.qtype for s in samples} == set(QTYPES)
    assert 0.2 < np.mean([s.small for s in samples]) < 0.6
    for s in samples:
        assert s.image.shape == (3, *s.size) and s.image.dtype == torch.float32
        assert 0 <= s.image.min() and s.image.max() <= 1


def test_count_answers_match_the_objects():
    for s in only("count").samples(15):
        kind_pixels = ~np.isclose(s.image.numpy(), 0.12, atol=0.2).all(0)
        _, n = ndimage.label(kind_pixels)
        assert n == int(s.answer[0]), (s.question, s.answer)


def test_colour_position_and_larger_answers_match_the_pixels():
    for s in only("colour").samples(10):
        assert colour_mask(s.image, s.answer[0]).any()
    for s in only("position").samples(15):
        ys, xs = np.nonzero(colour_mask(s.image, s.question[3]))
        H, W = s.size
        centre = {"left": xs.mean() / W, "right": xs.mean() / W}.get(s.answer[0], ys.mean() / H)
        assert (centre < 0.5) == (s.answer[0] in ("left", "top"))
    for s in only("larger").samples(15):
        c1, c2 = s.question[4], s.question[8]
        n1, n2 = colour_mask(s.image, c1).sum(), colour_mask(s.image, c2).sum()
        assert s.answer[0] == (c1 if n1 > n2 else c2)


def test_small_objects_are_small():
    for s in only("colour", small_frac=1.0).samples(10):
        ys, xs = np.nonzero(colour_mask(s.image, s.answer[0]))
        assert s.small and np.ptp(ys) + 1 < 10 and np.ptp(xs) + 1 < 10


def test_read_draws_the_digit_string():
    for s in only("read").samples(8):
        assert all(w.isdigit() for w in s.answer) and 3 <= len(s.answer) <= 5
        white = (s.image > 0.9).all(0).numpy()
        _, n = ndimage.label(white)
        assert n >= len(s.answer)  # every digit is at least one blob (some, like 0, one)


def test_read_font_dot_sizes_follow_the_config():
    """At scale 0.5, digit_dot 4 px gives 2-px dots (a 6 x 10 glyph), small_digit_dot 2 px
    gives 1-px dots (3 x 5); one digit per question, so the white box is the glyph."""
    gen = only("read", scale=0.5, digit_len=(1, 1), digit_dot=(4, 4), small_digit_dot=2.0,
               small_frac=0.5)  # fmt: skip
    seen = set()
    for s in gen.samples(12):
        ys, xs = np.nonzero((s.image > 0.9).all(0).numpy())
        k = 1 if s.small else 2
        assert len(s.answer) == 1 and (np.ptp(ys) + 1, np.ptp(xs) + 1) == (5 * k, 3 * k)
        seen.add(k)
    assert seen == {1, 2}


def test_sequence_layout_and_answer_mask():
    s = VQAGenerator(VQAConfig(scale=0.5), seed=1).sample()
    ids, mask = build_sequence(s, 5)
    assert ids.count(IMG) == 5 and ids[-1] == EOS
    assert decode([i for i, m in zip(ids, mask, strict=True) if m]) == [*s.answer, "<eos>"]
    samples = VQAGenerator(VQAConfig(scale=0.5), seed=2).samples(3)
    x, m = collate(samples, [4, 7, 2])
    assert x.shape[0] == 3 and (x == IMG).sum(1).tolist() == [4, 7, 2]
    assert (x[m] != PAD).all() and m.sum() == sum(len(t.answer) + 1 for t in samples)
    with pytest.raises(ValueError, match="vocabulary"):
        encode(["zebra"])


def test_bad_config():
    with pytest.raises(ValueError, match="question types"):
        VQAGenerator(VQAConfig(qtypes=("poetry",)))
    with pytest.raises(ValueError, match="scale"):
        VQAGenerator(VQAConfig(scale=0.0))
    with pytest.raises(ValueError, match="digit_len"):
        VQAGenerator(VQAConfig(digit_len=(0, 2)))
    with pytest.raises(ValueError, match="digit_dot"):
        VQAGenerator(VQAConfig(digit_dot=(3.0, 2.0)))
