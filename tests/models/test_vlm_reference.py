"""Our MoonViT and projector equal transformers' Kimi-K2.5 vision tower and mm_projector
(randomly initialised tiny configs, fp32, 1e-5) after the public loaders map the weights."""

from __future__ import annotations

import pytest
import torch

from deepnotes.models.vlm.loaders import (
    convert_vision_state_dict,
    load_moonvit,
    moonvit_config_from_hf,
    moonvit_from_hf,
    projector_from_hf,
)
from deepnotes.models.vlm.moonvit import MoonViT, cu_seqlens_from_grids
from tests.helpers import assert_close

kimi = pytest.importorskip("transformers.models.kimi_k25.modeling_kimi_k25")
from transformers import Kimi_K25Config, Kimi_K25VisionConfig  # noqa: E402


def hf_vision_config(**kw) -> Kimi_K25VisionConfig:
    base = dict(
        patch_size=14,
        pos_emb_height=6,
        pos_emb_width=6,
        num_attention_heads=2,
        num_hidden_layers=2,
        hidden_size=32,
        intermediate_size=48,
        rope_parameters={"rope_type": "axial", "rope_theta": 10000.0},
    )
    base.update(kw)
    cfg = Kimi_K25VisionConfig(**base)
    cfg._attn_implementation = "eager"
    return cfg


def randomise(module: torch.nn.Module) -> None:
    """Non-trivial values everywhere (LayerNorm gains and biases too)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.normal_(1.0 if name.endswith("norm1.weight") else 0.0, 0.3)


def test_moonvit_equals_kimi_k25_vision_tower(seed):
    hf = kimi.Kimi_K25VisionModel(hf_vision_config()).eval()
    randomise(hf)
    ours = moonvit_from_hf(hf).eval()
    # grids: the table's own 6x6, a 2x14 strip, a 10x4 (needs bicubic up and down)
    images = [torch.randn(3, 84, 84), torch.randn(3, 28, 196), torch.randn(3, 140, 56)]
    patches, grids = ours.prepare(images)
    grid_thw = torch.cat([torch.ones(len(grids), 1, dtype=torch.long), grids], 1)
    with torch.no_grad():
        out = hf(pixel_values=patches, grid_thw=grid_thw)
        mine = ours.forward_patches(patches, grids)
    assert_close(mine, out.last_hidden_state, torch.float32, what="vision tower")
    # their merge (pooler_output [M, 4, D]) is our pixel shuffle
    from deepnotes.models.vlm.projector import pixel_shuffle_merge

    assert_close(pixel_shuffle_merge(mine, grids, 2), out.pooler_output, torch.float32)
    cu = cu_seqlens_from_grids(grids)
    assert cu.tolist() == [0, 36, 64, 104]


def test_projector_equals_kimi_k25_mm_projector(seed):
    vcfg = hf_vision_config()
    cfg = Kimi_K25Config(
        vision_config=vcfg.to_dict(),
        text_config={"model_type": "deepseek_v3", "hidden_size": 24},
        projection_hidden_size=vcfg.hidden_size,
    )
    hf = kimi.Kimi_K25MultimodalProjection(cfg).eval()
    randomise(hf)
    ours = projector_from_hf(hf, d_vision=vcfg.hidden_size).eval()
    grids = torch.tensor([[2, 4], [6, 2]])
    feats = torch.randn(20, vcfg.hidden_size)
    from deepnotes.models.vlm.projector import pixel_shuffle_merge

    with torch.no_grad():
        theirs = hf(pixel_shuffle_merge(feats, grids, 2))  # [M, 1, D_lm] or [M, D_lm]
        mine = ours(feats, grids)
    assert_close(mine, theirs.reshape(mine.shape), torch.float32, what="projector")


def test_loader_config_and_keys():
    cfg = hf_vision_config(num_hidden_layers=1)
    ours = moonvit_config_from_hf(cfg)
    assert (ours.patch_size, ours.d_model, ours.n_heads, ours.pos_h) == (14, 32, 2, 6)
    hf = kimi.Kimi_K25VisionModel(cfg)
    mapped = convert_vision_state_dict(hf.state_dict())
    assert set(mapped) == set(MoonViT(ours).state_dict())
    prefixed = {"model.vision_tower." + k: v for k, v in hf.state_dict().items()}
    load_moonvit(MoonViT(ours), prefixed, prefix="model.vision_tower.")
    with pytest.raises(ValueError, match="unexpected key"):
        convert_vision_state_dict({"layers.0.attn.qkv.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="tanh-GELU"):
        moonvit_config_from_hf(hf_vision_config(hidden_act="relu"))
