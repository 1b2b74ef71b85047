"""Load transformers' Swin (`SwinForImageClassification` / `SwinModel`) weights into ours.

Works on a live transformers model or on a plain state dict (e.g. read with safetensors from
a downloaded checkpoint). Both key layouts are understood: transformers 5.x
(`attention.q_proj`, `attention.o_proj`, `mlp.fc1`) and the older one that hub checkpoints
use (`attention.self.query`, `attention.output.dense`, `intermediate.dense`, `output.dense`).
"""

from __future__ import annotations

import re

from torch import Tensor

from deepnotes.models.swin import Swin, SwinConfig

_BLOCK_RENAMES = [
    ("layernorm_before.", "norm1."),
    ("layernorm_after.", "norm2."),
    (
        "attention.relative_position_bias.relative_position_bias_table",
        "attn.relative_position_bias_table",
    ),
    ("attention.self.relative_position_bias_table", "attn.relative_position_bias_table"),
    ("attention.q_proj.", "attn.attn.q_proj."),
    ("attention.k_proj.", "attn.attn.k_proj."),
    ("attention.v_proj.", "attn.attn.v_proj."),
    ("attention.o_proj.", "attn.attn.out_proj."),
    ("attention.self.query.", "attn.attn.q_proj."),
    ("attention.self.key.", "attn.attn.k_proj."),
    ("attention.self.value.", "attn.attn.v_proj."),
    ("attention.output.dense.", "attn.attn.out_proj."),
    ("intermediate.dense.", "mlp.fc1."),
    ("output.dense.", "mlp.fc2."),
]


def swin_config_from_transformers(hf_config, **overrides) -> SwinConfig:
    """Our SwinConfig from a transformers `SwinConfig` (no absolute position embeddings)."""
    if getattr(hf_config, "use_absolute_embeddings", False):
        raise ValueError("absolute position embeddings (use_absolute_embeddings) are not supported")
    if getattr(hf_config, "hidden_act", "gelu") != "gelu":
        raise ValueError(f"only the exact GELU is supported, got {hf_config.hidden_act!r}")
    size = hf_config.image_size
    patch = hf_config.patch_size
    kw = dict(
        image_size=size if isinstance(size, int) else size[0],
        patch_size=patch if isinstance(patch, int) else patch[0],
        in_chans=hf_config.num_channels,
        embed_dim=hf_config.embed_dim,
        depths=tuple(hf_config.depths),
        num_heads=tuple(hf_config.num_heads),
        window_size=hf_config.window_size,
        mlp_ratio=hf_config.mlp_ratio,
        qkv_bias=hf_config.qkv_bias,
        num_classes=getattr(hf_config, "num_labels", 0),
        layer_norm_eps=hf_config.layer_norm_eps,
    )
    return SwinConfig(**{**kw, **overrides})


def swin_state_dict_from_transformers(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a transformers Swin state dict to our keys (drops the fixed index buffers)."""
    out = {}
    for key, v in sd.items():
        k = key.removeprefix("swin.")
        if k.endswith("relative_position_index") or k.startswith("pooler"):
            continue
        k = k.replace("embeddings.patch_embeddings.projection.", "patch_embed.proj.")
        k = k.replace("embeddings.norm.", "patch_embed.norm.")
        k = re.sub(r"^encoder\.layers\.(\d+)\.", r"stages.\1.", k)
        if ".blocks." in k:
            for old, new in _BLOCK_RENAMES:
                if old in k:
                    k = k.replace(old, new)
                    break
        k = re.sub(r"^layernorm\.", "norm.", k)
        k = re.sub(r"^classifier\.", "head.", k)
        out[k] = v
    return out


def swin_from_transformers(hf_model, **overrides) -> Swin:
    """Build our Swin with the config and weights of a transformers Swin model.

    hf_model: `SwinForImageClassification` or `SwinModel` (then no head: num_classes=0).
    """
    cfg = swin_config_from_transformers(hf_model.config, **overrides)
    if not hasattr(hf_model, "classifier"):
        cfg.num_classes = 0
    model = Swin(cfg)
    model.load_state_dict(swin_state_dict_from_transformers(hf_model.state_dict()), strict=True)
    return model
