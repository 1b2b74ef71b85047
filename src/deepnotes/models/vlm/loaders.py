"""Load transformers' Kimi-K2.5 vision tower and projector (the MoonViT design) into ours.

transformers >= 5 ships `Kimi_K25ForConditionalGeneration` (model type "kimi_k25"): its
`vision_tower` is MoonViT (patch 14, bicubic learned position grid, axial 2-D RoPE, packed
cu_seqlens attention) and its `mm_projector` is the 2x2-merge MLP. The tensors map one to one:

    vision_tower.patch_embed.proj.*               -> vision.patch_embed.*
    vision_tower.patch_embed.pos_emb.position_embeddings -> vision.pos_table
    vision_tower.layers.i.norm1|norm2.*           -> vision.blocks.i.norm1|norm2.*
    vision_tower.layers.i.attn.q_proj|k_proj|v_proj.* -> vision.blocks.i.attn.(same).*
    vision_tower.layers.i.attn.proj.*             -> vision.blocks.i.attn.out_proj.*
    vision_tower.layers.i.mlp.fc1|fc2.*           -> vision.blocks.i.fc1|fc2.*
    vision_tower.final_layernorm.*                -> vision.final_norm.*
    mm_projector.pre_norm|in_proj|out_proj.*      -> projector.(same).*

Their encoder takes pre-cut patches [N, 3, 14, 14] and grid_thw [n, 3]; `MoonViT.forward_patches`
takes the same patches with grids [n, 2] (t = 1: images; video frames are not supported here).
"""

from __future__ import annotations

import re

import torch

from deepnotes.models.vlm.moonvit import MoonViT, MoonViTConfig
from deepnotes.models.vlm.projector import Projector

_VISION_RULES = [
    (r"patch_embed\.proj\.(weight|bias)", r"patch_embed.\1"),
    (r"patch_embed\.pos_emb\.position_embeddings", "pos_table"),
    (r"layers\.(\d+)\.(norm1|norm2)\.(weight|bias)", r"blocks.\1.\2.\3"),
    (r"layers\.(\d+)\.attn\.(q_proj|k_proj|v_proj)\.(weight|bias)", r"blocks.\1.attn.\2.\3"),
    (r"layers\.(\d+)\.attn\.proj\.(weight|bias)", r"blocks.\1.attn.out_proj.\2"),
    (r"layers\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)", r"blocks.\1.\2.\3"),
    (r"final_layernorm\.(weight|bias)", r"final_norm.\1"),
]


def moonvit_config_from_hf(vision_config) -> MoonViTConfig:
    """A transformers `Kimi_K25VisionConfig` -> our MoonViTConfig."""
    if vision_config.hidden_act not in ("gelu_pytorch_tanh", "gelu_tanh"):
        raise ValueError(f"MoonViT uses tanh-GELU, the config has {vision_config.hidden_act!r}")
    rope = vision_config.rope_parameters or {}
    kh, kw = vision_config.merge_kernel_size
    if kh != kw:
        raise ValueError(f"only square merge kernels are supported, got {kh}x{kw}")
    return MoonViTConfig(
        patch_size=vision_config.patch_size,
        d_model=vision_config.hidden_size,
        n_layers=vision_config.num_hidden_layers,
        n_heads=vision_config.num_attention_heads,
        mlp_hidden=vision_config.intermediate_size,
        pos_h=vision_config.pos_emb_height,
        pos_w=vision_config.pos_emb_width,
        rope_base=float(rope.get("rope_theta", 10000.0)),
        merge=kh,
    )


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def convert_vision_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys of a Kimi_K25VisionModel state dict (no prefix) -> MoonViT keys. Buffers that
    we recompute (the time table, RoPE frequencies) are dropped; anything else unknown raises."""
    out = {}
    for key, value in state.items():
        if key.endswith("time_position_embeddings") or "rotary_emb" in key:
            continue
        for pattern, repl in _VISION_RULES:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, repl, key)] = value
                break
        else:
            raise ValueError(f"unexpected key in the Kimi-K2.5 vision state dict: {key!r}")
    return out


def load_moonvit(model: MoonViT, state: dict[str, torch.Tensor], prefix: str = "") -> MoonViT:
    """Copy a Kimi-K2.5 vision tower's weights (keys under `prefix`, e.g.
    "model.vision_tower.") into model, strictly."""
    model.load_state_dict(convert_vision_state_dict(_strip(state, prefix)), strict=True)
    return model


def load_projector(proj: Projector, state: dict[str, torch.Tensor], prefix: str = "") -> Projector:
    """Copy a Kimi-K2.5 `mm_projector` (keys under prefix, e.g. "model.mm_projector.")."""
    proj.load_state_dict(_strip(state, prefix), strict=True)
    return proj


def moonvit_from_hf(hf_vision) -> MoonViT:
    """Build our MoonViT from a transformers `Kimi_K25VisionModel` with its weights."""
    model = MoonViT(moonvit_config_from_hf(hf_vision.config))
    return load_moonvit(model, hf_vision.state_dict())


def projector_from_hf(hf_projector, d_vision: int, merge: int = 2) -> Projector:
    """Build our Projector from a transformers `Kimi_K25MultimodalProjection`."""
    d_lm = hf_projector.out_proj.out_features
    proj = Projector(d_vision, d_lm, merge, eps=hf_projector.pre_norm.eps)
    return load_projector(proj, hf_projector.state_dict())
