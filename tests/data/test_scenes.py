"""The offline detection-scene generator: deterministic, tight boxes, valid ranges."""

from __future__ import annotations

import pytest
import torch

from deepnotes.data.scenes import SHAPES, make_scenes
from deepnotes.vision.boxes import box_cxcywh_to_xyxy


def test_deterministic_given_seed_and_different_across_seeds():
    a, b = make_scenes(6, seed=3), make_scenes(6, seed=3)
    assert torch.equal(a.images, b.images)
    assert all(torch.equal(x["boxes"], y["boxes"]) for x, y in zip(a.targets, b.targets))
    assert not torch.equal(a.images, make_scenes(6, seed=4).images)


@pytest.mark.parametrize("size", [64, (48, 80), 37])
def test_boxes_are_tight_around_the_drawn_shapes(size):
    s = make_scenes(20, size=size, max_objects=3, noise=0.0, seed=int(torch.randint(0, 10**6, ())))
    H, W = s.images.shape[-2:]
    for img, t in zip(s.images, s.targets, strict=True):
        n = len(t["class_labels"])
        assert 1 <= n <= 3 and t["boxes"].shape == (n, 4)
        assert t["class_labels"].min() >= 0 and t["class_labels"].max() < len(SHAPES)
        xyxy = box_cxcywh_to_xyxy(t["boxes"]) * torch.tensor([W, H, W, H])
        assert (
            xyxy.min() >= -1e-4
            and (xyxy[:, 2] <= W + 1e-4).all()
            and (xyxy[:, 3] <= H + 1e-4).all()
        )
        # with no noise, every pixel off the background colour lies inside some box
        background = img.view(3, -1).mode(dim=1).values
        fg = (img - background[:, None, None]).abs().sum(0) > 1e-6
        inside = torch.zeros(H, W, dtype=torch.bool)
        for x0, y0, x1, y1 in xyxy.round().long().tolist():
            inside[y0:y1, x0:x1] = True
            # tight: the shape touches all four sides of its box
            assert fg[y0:y1, x0].any() and fg[y0:y1, x1 - 1].any()
            assert fg[y0, x0:x1].any() and fg[y1 - 1, x0:x1].any()
        assert not (fg & ~inside).any()


def test_classes_all_appear_and_bad_arguments_raise():
    s = make_scenes(60, num_classes=3, seed=0)
    seen = torch.cat([t["class_labels"] for t in s.targets]).unique().tolist()
    assert seen == [0, 1, 2]
    assert s.images.dtype == torch.float32 and 0 <= s.images.min() and s.images.max() <= 1
    with pytest.raises(ValueError, match="min_objects"):
        make_scenes(2, min_objects=3, max_objects=2)
    with pytest.raises(ValueError, match="num_classes"):
        make_scenes(2, num_classes=9)
