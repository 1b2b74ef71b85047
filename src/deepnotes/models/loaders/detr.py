"""Load transformers' `DetrForObjectDetection` weights into our `Detr`.

Understands the backbone keys of transformers' own ResNet (`model.backbone.model.embedder...`,
`encoder.stages.i.layers.j.layer.k.convolution`) and of the timm ResNet that hub checkpoints
such as facebook/detr-resnet-50 carry (`model.backbone.conv_encoder.model.layer1.0.conv1`),
and both the 5.x (`self_attn.o_proj`, `mlp.fc1`) and older (`self_attn.out_proj`, `fc1`)
Transformer keys.
"""

from __future__ import annotations

import re

from torch import Tensor

from deepnotes.models.detr import Detr, DetrConfig
from deepnotes.models.resnet import ResNetConfig

_LAYER_RENAMES = [
    ("self_attn_layer_norm.", "norm1."),
    ("encoder_attn_layer_norm.", "norm2."),
    ("encoder_attn.", "cross_attn."),
    ("mlp.fc1.", "ffn.fc1."),
    ("mlp.fc2.", "ffn.fc2."),
    ("fc1.", "ffn.fc1."),
    ("fc2.", "ffn.fc2."),
    (".o_proj.", ".out_proj."),
]


def _backbone_key(k: str) -> str | None:
    """A backbone key (prefix removed) in transformers' or timm's ResNet -> ours."""
    if k.endswith("num_batches_tracked"):
        return None
    # transformers' ResNet
    k = k.replace("embedder.embedder.convolution.", "stem.conv.")
    k = k.replace("embedder.embedder.normalization.", "stem.bn.")
    k = re.sub(r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.", r"stages.\1.\2.", k)
    k = re.sub(r"\.layer\.(\d+)\.convolution\.", r".convs.\1.conv.", k)
    k = re.sub(r"\.layer\.(\d+)\.normalization\.", r".convs.\1.bn.", k)
    k = k.replace(".shortcut.convolution.", ".shortcut.conv.")
    k = k.replace(".shortcut.normalization.", ".shortcut.bn.")
    # timm's ResNet
    k = re.sub(r"^conv1\.", "stem.conv.", k)
    k = re.sub(r"^bn1\.", "stem.bn.", k)
    k = re.sub(r"^layer(\d+)\.", lambda m: f"stages.{int(m.group(1)) - 1}.", k)
    k = re.sub(r"\.conv(\d)\.", lambda m: f".convs.{int(m.group(1)) - 1}.conv.", k)
    k = re.sub(r"\.bn(\d)\.", lambda m: f".convs.{int(m.group(1)) - 1}.bn.", k)
    k = k.replace(".downsample.0.", ".shortcut.conv.").replace(".downsample.1.", ".shortcut.bn.")
    return "backbone." + k


def detr_state_dict_from_transformers(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a transformers DETR state dict to our keys."""
    out = {}
    for key, v in sd.items():
        k = key.removeprefix("model.")
        m = re.match(r"^backbone\.(?:conv_encoder\.)?model\.(.*)$", k)
        if m:
            nk = _backbone_key(m.group(1))
            if nk is not None:
                out[nk] = v
            continue
        if k.startswith("backbone.") and "position_embedding" in k:
            continue  # learned position embeddings are not supported (sine only)
        k = k.replace("input_projection.", "input_proj.")
        k = k.replace("query_position_embeddings.", "query_embed.")
        k = k.replace("decoder.layernorm.", "decoder_norm.")
        k = k.replace("class_labels_classifier.", "class_head.")
        k = k.replace("bbox_predictor.", "box_head.")
        lm = re.match(r"^(encoder|decoder)\.layers\.(\d+)\.(.*)$", k)
        if lm:
            part, idx, rest = lm.groups()
            if part == "encoder":
                rest = rest.replace("final_layer_norm.", "norm2.")
            else:
                rest = rest.replace("final_layer_norm.", "norm3.")
            rest = "." + rest
            for old, new in _LAYER_RENAMES:
                if old in rest:
                    rest = rest.replace(old, new, 1)
                    if old.startswith(("mlp", "fc")) or "layer_norm" in old:
                        break
            k = f"{part}.{idx}{rest}"
        out[k] = v
    return out


def detr_config_from_transformers(hf_config, **overrides) -> DetrConfig:
    """Our DetrConfig from a transformers DetrConfig with a transformers ResNet backbone."""
    if getattr(hf_config, "position_embedding_type", "sine") != "sine":
        raise ValueError("only the sine position encoding is supported")
    if hf_config.encoder_attention_heads != hf_config.decoder_attention_heads:
        raise ValueError("encoder and decoder must have the same number of heads")
    if hf_config.encoder_ffn_dim != hf_config.decoder_ffn_dim:
        raise ValueError("encoder and decoder must have the same feed-forward width")
    bc = hf_config.backbone_config
    if getattr(bc, "model_type", None) != "resnet":
        raise ValueError(
            f"backbone {getattr(bc, 'model_type', bc)!r}: use a transformers ResNetConfig"
        )
    if bc.out_features and bc.out_features[-1] != bc.stage_names[-1]:
        raise ValueError("the backbone must output its last stage")
    backbone = ResNetConfig(
        in_chans=bc.num_channels,
        stem_width=bc.embedding_size,
        widths=tuple(bc.hidden_sizes),
        depths=tuple(bc.depths),
        bottleneck=bc.layer_type == "bottleneck",
        frozen_bn=True,
    )
    kw = dict(
        num_classes=hf_config.num_labels,
        num_queries=hf_config.num_queries,
        d_model=hf_config.d_model,
        n_heads=hf_config.encoder_attention_heads,
        enc_layers=hf_config.encoder_layers,
        dec_layers=hf_config.decoder_layers,
        ffn_dim=hf_config.encoder_ffn_dim,
        dropout=hf_config.dropout,
        aux_loss=hf_config.auxiliary_loss,
        backbone=backbone,
    )
    return DetrConfig(**{**kw, **overrides})


def detr_from_transformers(hf_model, **overrides) -> Detr:
    """Build our Detr with the config and weights of a transformers `DetrForObjectDetection`."""
    model = Detr(detr_config_from_transformers(hf_model.config, **overrides))
    model.load_state_dict(detr_state_dict_from_transformers(hf_model.state_dict()), strict=True)
    return model
