"""DETR: sine positions, equality with transformers' DetrForObjectDetection, DETR-R50 count."""

from __future__ import annotations

import pytest
import torch

from deepnotes.models.detr import Detr, DetrConfig, detr_r50, sine_position_encoding
from deepnotes.models.resnet import ResNetConfig
from deepnotes.vision.detr_loss import SetCriterion
from deepnotes.vision.matcher import HungarianMatcher
from tests.helpers import assert_close, rel_rms

transformers = pytest.importorskip("transformers", reason="transformers is the DETR peer")


def _tiny_hf(layer_type="basic", **kw):
    from transformers import DetrConfig as HfDetrConfig
    from transformers import DetrForObjectDetection
    from transformers import ResNetConfig as HfResNetConfig

    bc = HfResNetConfig(
        embedding_size=8, hidden_sizes=[16, 24], depths=[1, 2], layer_type=layer_type,
        out_features=["stage2"],
    )  # fmt: skip
    cfg = dict(
        use_timm_backbone=False, use_pretrained_backbone=False, backbone_config=bc, d_model=16,
        encoder_layers=2, decoder_layers=3, encoder_ffn_dim=20, decoder_ffn_dim=20,
        encoder_attention_heads=2, decoder_attention_heads=2, num_queries=7, num_labels=3,
    )  # fmt: skip
    hf = DetrForObjectDetection(HfDetrConfig(**{**cfg, **kw})).eval()
    with torch.no_grad():  # random everything, batch-norm statistics included
        for name, t in hf.state_dict().items():
            if name.endswith("running_var"):
                t.uniform_(0.5, 2.0)
            elif t.is_floating_point():
                t.normal_(0, 0.3)
    return hf


def test_sine_positions_equal_transformers():
    from transformers.models.detr.modeling_detr import DetrSinePositionEmbedding

    mask = torch.ones(2, 5, 7, dtype=torch.bool)
    mask[1, 3:, :] = False
    mask[1, :, 4:] = False
    ref = DetrSinePositionEmbedding(24 // 2, normalize=True)(
        shape=(2, 24, 5, 7), device="cpu", dtype=torch.float32, mask=mask
    )
    assert_close(sine_position_encoding(mask, 24), ref.flatten(2).transpose(1, 2))


@pytest.mark.parametrize("layer_type", ["basic", "bottleneck"])
def test_logits_and_boxes_equal_transformers(layer_type):
    from deepnotes.models.loaders import detr_from_transformers

    hf = _tiny_hf(layer_type)
    ours = detr_from_transformers(hf, aux_loss=True).eval()
    x = torch.randn(2, 3, 67, 50)
    pixel_mask = torch.ones(2, 67, 50, dtype=torch.long)
    pixel_mask[1, 40:, :] = 0  # the second image is padded at the bottom and right
    pixel_mask[1, :, 33:] = 0
    with torch.no_grad():
        ref = hf(x, pixel_mask=pixel_mask)
        out = ours(x, pixel_mask.bool())
        assert_close(out["logits"], ref.logits, what="logits")
        assert_close(out["pred_boxes"], ref.pred_boxes, what="boxes")
        assert len(out["aux_outputs"]) == 2  # auxiliary heads do not change the final output
        # a perturbed weight shows up: the comparison is not blind
        # (the whole matrix, not one row: one row's change could fall under 1e-3 for some seeds)
        ours.decoder[-1].cross_attn.v_proj.weight.add_(
            0.5 * torch.randn_like(ours.decoder[-1].cross_attn.v_proj.weight)
        )
        assert rel_rms(ours(x, pixel_mask.bool())["logits"], ref.logits) > 1e-3


def test_set_loss_on_model_outputs_equals_transformers():
    from deepnotes.models.loaders import detr_from_transformers

    hf = _tiny_hf()
    ours = detr_from_transformers(hf).eval()
    x = torch.randn(2, 3, 64, 64)
    labels = [
        {
            "class_labels": torch.tensor([0, 2]),
            "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.1], [0.6, 0.5, 0.3, 0.4]]),
        },
        {"class_labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.5, 0.5]])},
    ]  # fmt: skip
    with torch.no_grad():
        ref = hf(x, labels=labels)
        crit = SetCriterion(3, HungarianMatcher(1, 5, 2), eos_coef=0.1)
        losses = crit(ours(x), labels)
    for k in ("loss_ce", "loss_bbox", "loss_giou", "cardinality_error"):
        assert_close(losses[k], ref.loss_dict[k], what=k)
    assert_close(crit.weighted_total(losses), ref.loss)


def test_detr_r50_counts_match_paper_and_transformers():
    from transformers import DetrConfig as HfDetrConfig
    from transformers import DetrForObjectDetection
    from transformers import ResNetConfig as HfResNetConfig

    with torch.device("meta"):
        ours = Detr(detr_r50())
        hf = DetrForObjectDetection(
            HfDetrConfig(
                use_timm_backbone=False,
                use_pretrained_backbone=False,
                num_labels=91,
                backbone_config=HfResNetConfig(out_features=["stage4"]),
            )  # fmt: skip
        )
    trainable = sum(p.numel() for p in ours.parameters() if p.requires_grad)
    # The paper's 41.3M counts trainable parameters: DETR freezes the stem and layer1.
    assert round(trainable / 1e6, 1) == 41.3
    # transformers holds the same tensors (its frozen-layer rule differs, so compare totals)
    total = sum(p.numel() for p in ours.parameters())
    assert total == sum(p.numel() for p in hf.parameters()) == 41_524_768


def test_attention_maps_gradients_and_errors():
    bb = ResNetConfig(
        stem_width=8,
        widths=(8, 16),
        depths=(1, 1),
        bottleneck=False,
        frozen_bn=False,
        train_from_stage=0,
    )
    cfg = DetrConfig(
        num_classes=4,
        num_queries=5,
        d_model=16,
        n_heads=2,
        enc_layers=1,
        dec_layers=2,
        ffn_dim=24,
        backbone=bb,
    )
    m = Detr(cfg)
    x = torch.randn(2, 3, 40, 33)
    out = m(x, return_attn=True)
    h, w = out["feature_size"]
    assert out["cross_attn"].shape == (2, 2, 5, h * w)
    assert torch.allclose(out["cross_attn"].sum(-1), torch.ones(2, 2, 5))
    assert out["pred_boxes"].min() >= 0 and out["pred_boxes"].max() <= 1
    targets = [
        {"class_labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3]])}
    ] * 2
    crit = SetCriterion(4)
    crit.weighted_total(crit(out, targets)).backward()
    assert all(p.grad is not None for p in m.parameters())
    with pytest.raises(ValueError, match="images"):
        m(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match="divisible"):
        DetrConfig(d_model=30, n_heads=4)


def test_coco_map_by_hand_and_duplicate_rate():
    pytest.importorskip("pycocotools", reason="pycocotools (the [vision] extra) computes COCO AP")
    from deepnotes.vision.boxes import box_xyxy_to_cxcywh
    from deepnotes.vision.metrics import coco_map, duplicate_rate

    gt_xyxy = torch.tensor([[0.2, 0.2, 0.6, 0.6]], dtype=torch.float64)
    # the prediction lies inside the truth: IoU = (0.4 * 0.24) / (0.4 * 0.4) = 0.6
    pred_xyxy = torch.tensor([[0.2, 0.2, 0.6, 0.44]], dtype=torch.float64)
    targets = [{"class_labels": torch.tensor([1]), "boxes": box_xyxy_to_cxcywh(gt_xyxy)}]
    preds = [
        {
            "scores": torch.tensor([0.9]),
            "labels": torch.tensor([1]),
            "boxes": box_xyxy_to_cxcywh(pred_xyxy),
        }
    ]
    m = coco_map(preds, targets, (100, 100))
    # IoU 0.6 passes the thresholds 0.50, 0.55, 0.60 of the ten: AP = 3/10
    assert m["AP50"] == pytest.approx(1.0) and m["AP75"] == pytest.approx(0.0)
    assert m["AP"] == pytest.approx(0.3)
    perfect = [
        {"scores": torch.tensor([0.9]), "labels": torch.tensor([1]), "boxes": targets[0]["boxes"]}
    ]
    assert coco_map(perfect, targets, (100, 100))["AP"] == pytest.approx(1.0)
    wrong_class = [{**perfect[0], "labels": torch.tensor([0])}]
    assert coco_map(wrong_class, targets, (100, 100))["AP"] == pytest.approx(0.0)
    b = targets[0]["boxes"]
    dup = [{"scores": torch.tensor([0.9, 0.8, 0.7, 0.2]), "labels": torch.tensor([1, 1, 2, 1]),
            "boxes": torch.cat([b, b, b, b])}]  # fmt: skip
    assert duplicate_rate(dup) == pytest.approx(1 / 3)  # the 0.8 copy; other label; low score


def test_experiment_batches_equal_the_scenes_they_index():
    """The training loop's gathered batch (optionally mirrored) equals the indexed scenes."""
    from deepnotes.data.scenes import make_scenes
    from deepnotes.experiments.vision.detr import _DeviceScenes

    scenes = make_scenes(9, size=32, max_objects=4, seed=int(torch.randint(0, 10**6, ())))
    idx = torch.tensor([4, 0, 4, 8, 2])
    for flip in (False, True):
        images, targets = _DeviceScenes(scenes, torch.device("cpu")).batch(idx, flip)
        want = scenes.images[idx]
        assert torch.equal(images, want.flip(-1) if flip else want)
        for i, t in zip(idx.tolist(), targets, strict=True):
            box = scenes.targets[i]["boxes"].clone()
            if flip:
                box[:, 0] = 1 - box[:, 0]
            assert torch.equal(t["class_labels"], scenes.targets[i]["class_labels"])
            assert torch.equal(t["boxes"], box)
