"""Boxes, the Hungarian matcher and DETR's set criterion against transformers' own."""

from __future__ import annotations

import pytest
import torch

from deepnotes.vision.boxes import (
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    generalized_box_iou,
)
from deepnotes.vision.detr_loss import SetCriterion
from deepnotes.vision.matcher import HungarianMatcher
from tests.helpers import assert_close

peer = pytest.importorskip(
    "transformers.loss.loss_for_object_detection",
    reason="transformers (the [vision] extra) is the DETR peer",
)


def _random_boxes(n, gen, dtype=torch.float64):
    cxcy = torch.rand(n, 2, generator=gen, dtype=dtype) * 0.8 + 0.1
    wh = torch.rand(n, 2, generator=gen, dtype=dtype) * 0.3 + 0.02
    return torch.cat([cxcy, wh], -1)


def _random_problem(B, Q, C, sizes, gen, dtype=torch.float64):
    outputs = {
        "logits": torch.randn(B, Q, C + 1, generator=gen, dtype=dtype),
        "pred_boxes": _random_boxes(B * Q, gen, dtype).view(B, Q, 4),
    }
    targets = [
        {
            "class_labels": torch.randint(0, C, (n,), generator=gen),
            "boxes": _random_boxes(n, gen, dtype),
        }
        for n in sizes
    ]
    return outputs, targets


def test_box_formats_round_trip_and_iou_by_hand():
    gen = torch.Generator().manual_seed(torch.seed() % 2**31)
    b = _random_boxes(37, gen)
    assert_close(box_xyxy_to_cxcywh(box_cxcywh_to_xyxy(b)), b)
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]], dtype=torch.float64)
    c = torch.tensor([[1.0, 1.0, 3.0, 3.0], [4.0, 0.0, 5.0, 1.0]], dtype=torch.float64)
    iou, _ = box_iou(a, c)
    # overlap 1, union 7; disjoint -> 0
    assert torch.allclose(iou, torch.tensor([[1 / 7, 0.0]], dtype=torch.float64))
    giou = generalized_box_iou(a, c)
    # hull of a and the second box is 5 x 2 = 10, union 5 -> GIoU = 0 - 5/10
    assert torch.allclose(giou, torch.tensor([[1 / 7 - (9 - 7) / 9, -0.5]], dtype=torch.float64))
    with pytest.raises(ValueError, match="xyxy"):
        box_iou(torch.tensor([[1.0, 1.0, 0.0, 2.0]]), a)


def test_giou_equals_transformers():
    gen = torch.Generator().manual_seed(torch.seed() % 2**31)
    a = box_cxcywh_to_xyxy(_random_boxes(23, gen))
    b = box_cxcywh_to_xyxy(_random_boxes(16, gen))
    assert_close(generalized_box_iou(a, b), peer.generalized_box_iou(a, b))
    assert_close(box_iou(a, b)[0], peer.box_iou(a, b)[0])


@pytest.mark.parametrize("costs", [(1.0, 1.0, 1.0), (1.0, 5.0, 2.0), (2.0, 0.0, 0.5)])
def test_matcher_indices_equal_transformers(costs):
    gen = torch.Generator().manual_seed(torch.seed() % 2**31)
    outputs, targets = _random_problem(3, 11, 7, [4, 0, 11], gen)
    ours = HungarianMatcher(*costs)(outputs, targets)
    theirs = peer.HungarianMatcher(*costs)(outputs, targets)
    for (i, j), (pi, pj) in zip(ours, theirs):
        assert torch.equal(i, pi) and torch.equal(j, pj)
    assert [len(i) for i, _ in ours] == [4, 0, 11]


def test_matcher_rejects_all_zero_costs_and_bad_shapes():
    with pytest.raises(ValueError, match="non-zero"):
        HungarianMatcher(0, 0, 0)
    m = HungarianMatcher()
    with pytest.raises(ValueError, match="pred_boxes"):
        m({"logits": torch.randn(1, 3, 4), "pred_boxes": torch.rand(1, 3, 2)}, [{}])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_every_loss_term_equals_transformers(dtype):
    gen = torch.Generator().manual_seed(torch.seed() % 2**31)
    C, Q = 5, 9
    outputs, targets = _random_problem(2, Q, C, [3, 6], gen, dtype)
    aux = [_random_problem(2, Q, C, [], gen, dtype)[0] for _ in range(2)]
    ours = SetCriterion(C, HungarianMatcher(1, 5, 2), eos_coef=0.1)(
        {**outputs, "aux_outputs": aux}, targets
    )
    ref = peer.ImageLoss(
        peer.HungarianMatcher(1, 5, 2), C, 0.1, ["labels", "boxes", "cardinality"]
    ).to(dtype)
    theirs = ref({**outputs, "auxiliary_outputs": aux}, targets)
    assert set(ours) == set(theirs)
    for k in theirs:
        assert_close(ours[k].to(dtype), theirs[k].to(dtype), what=k)


def test_loss_gradients_reach_logits_and_boxes():
    gen = torch.Generator().manual_seed(torch.seed() % 2**31)
    outputs, targets = _random_problem(2, 6, 3, [2, 1], gen)
    for v in outputs.values():
        v.requires_grad_(True)
    crit = SetCriterion(3)
    total = crit.weighted_total(crit(outputs, targets))
    total.backward()
    assert outputs["logits"].grad.abs().sum() > 0 and outputs["pred_boxes"].grad.abs().sum() > 0


def test_criterion_reads_the_costs_back_once_for_all_layers():
    """One host transfer of the costs per call, however many images and decoder layers: the
    matcher must not read each image's (or each layer's) costs back separately."""
    from torch.overrides import TorchFunctionMode

    class CountReads(TorchFunctionMode):
        reads = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "") in ("cpu", "item", "__bool__", "tolist"):
                CountReads.reads += 1
            return func(*args, **(kwargs or {}))

    gen = torch.Generator().manual_seed(torch.seed() % 2**31)
    outputs, targets = _random_problem(6, 8, 4, [1, 3, 0, 5, 2, 8], gen)
    aux = [_random_problem(6, 8, 4, [], gen)[0] for _ in range(3)]
    with CountReads():
        SetCriterion(4)({**outputs, "aux_outputs": aux}, targets)
    assert CountReads.reads == 1


def test_batched_costs_split_into_each_images_matrix():
    """The batch is scored at once; each image's block must be eq. 1 on that image alone."""
    gen = torch.Generator().manual_seed(torch.seed() % 2**31)
    outputs, targets = _random_problem(4, 7, 5, [2, 0, 7, 3], gen)
    costs = HungarianMatcher(1, 5, 2).cost_matrices(outputs, targets)
    for b, (c, t) in enumerate(zip(costs, targets, strict=True)):
        prob = outputs["logits"][b].softmax(-1)
        boxes = outputs["pred_boxes"][b]
        xyxy = box_cxcywh_to_xyxy
        want = (
            -prob[:, t["class_labels"]]
            + 5 * (boxes[:, None] - t["boxes"][None]).abs().sum(-1)
            - 2 * peer.generalized_box_iou(xyxy(boxes), xyxy(t["boxes"]))
        )
        assert c.shape == (7, len(t["boxes"]))
        assert_close(c, want)
