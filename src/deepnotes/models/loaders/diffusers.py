"""Public loaders: diffusers' `UNet2DConditionModel` and `AutoencoderKL` onto our models.

Each loader reads a diffusers config (a dict or the model's `.config`) into our dataclass
config, renames every state-dict key by a short list of rules, and checks that the two sets of
keys and shapes agree exactly (a `ValueError` names what is missing or left over). Real
Stable Diffusion v1/v2 weights in diffusers format load the same way:

    from diffusers import UNet2DConditionModel
    peer = UNet2DConditionModel.from_pretrained(path_to_sd, subfolder="unet")
    unet = unet_from_diffusers(peer)

or, without diffusers, `unet_from_diffusers((state_dict, config_dict))` with the
`config.json` and safetensors file of the checkpoint's `unet/` folder.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from deepnotes.models.diffusion.unet import UNet, UNetConfig
from deepnotes.models.diffusion.vae import AutoencoderKL, VAEConfig

_ATTN = [  # diffusers' Attention -> our MultiHeadAttention
    (r"\.to_q\.", ".q_proj."),
    (r"\.to_k\.", ".k_proj."),
    (r"\.to_v\.", ".v_proj."),
    (r"\.to_out\.0\.", ".out_proj."),
    # the pre-0.15 names of the VAE's middle attention
    (r"\.query\.", ".q_proj."),
    (r"\.key\.", ".k_proj."),
    (r"\.value\.", ".v_proj."),
    (r"\.proj_attn\.", ".out_proj."),
]

_UNET_RULES = [
    (r"^time_embedding\.linear_1\.", "time_mlp.0."),
    (r"^time_embedding\.linear_2\.", "time_mlp.2."),
    (r"^conv_norm_out\.", "norm_out."),
    (r"^down_blocks\.(\d+)\.resnets\.", r"down.\1.res."),
    (r"^down_blocks\.(\d+)\.attentions\.", r"down.\1.attn."),
    (r"^down_blocks\.(\d+)\.downsamplers\.0\.", r"down.\1.down."),
    (r"^up_blocks\.(\d+)\.resnets\.", r"up.\1.res."),
    (r"^up_blocks\.(\d+)\.attentions\.", r"up.\1.attn."),
    (r"^up_blocks\.(\d+)\.upsamplers\.0\.", r"up.\1.up."),
    (r"^mid_block\.resnets\.0\.", "mid_res1."),
    (r"^mid_block\.resnets\.1\.", "mid_res2."),
    (r"^mid_block\.attentions\.0\.", "mid_attn."),
    (r"\.transformer_blocks\.", ".blocks."),
    (r"\.ff\.net\.0\.proj\.", ".ff.w_in."),
    (r"\.ff\.net\.2\.", ".ff.w_out."),
    *_ATTN,
]

_VAE_RULES = [
    (r"^(encoder|decoder)\.conv_norm_out\.", r"\1.norm_out."),
    (r"^encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.levels.\1.res."),
    (r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.levels.\1.down."),
    (r"^decoder\.up_blocks\.(\d+)\.resnets\.", r"decoder.levels.\1.res."),
    (r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.", r"decoder.levels.\1.up."),
    (r"^(encoder|decoder)\.mid_block\.resnets\.0\.", r"\1.mid.res1."),
    (r"^(encoder|decoder)\.mid_block\.resnets\.1\.", r"\1.mid.res2."),
    (r"^(encoder|decoder)\.mid_block\.attentions\.0\.group_norm\.", r"\1.mid.attn.group_norm."),
    (r"^(encoder|decoder)\.mid_block\.attentions\.0\.", r"\1.mid.attn.attn."),
    *_ATTN,
]


def _rename(key: str, rules) -> str:
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    return key


def unet_key_map(keys) -> dict[str, str]:
    """diffusers UNet2DConditionModel keys -> our UNet keys."""
    return {k: _rename(k, _UNET_RULES) for k in keys}


def vae_key_map(keys) -> dict[str, str]:
    """diffusers AutoencoderKL keys -> our AutoencoderKL keys."""
    return {k: _rename(k, _VAE_RULES) for k in keys}


def _get(cfg: Mapping[str, Any], name: str, default=None):
    return cfg[name] if name in cfg else default


def _require(cfg, name, allowed, default):
    value = _get(cfg, name, default)
    if value not in allowed:
        raise ValueError(f"unsupported diffusers config {name}={value!r}; supported: {allowed}")


def unet_config_from_diffusers(cfg: Mapping[str, Any]) -> UNetConfig:
    """A diffusers UNet2DConditionModel config (dict) -> UNetConfig (SD v1/v2 family only)."""
    cfg = dict(cfg)
    down = list(cfg["down_block_types"])
    up = list(cfg["up_block_types"])
    ok = {"CrossAttnDownBlock2D", "DownBlock2D"}
    if not set(down) <= ok:
        raise ValueError(f"unsupported down_block_types {down}; supported: {sorted(ok)}")
    attn = tuple(t == "CrossAttnDownBlock2D" for t in down)
    mirror = ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)]
    if up != mirror:
        raise ValueError(f"up_block_types {up} must mirror down_block_types ({mirror})")
    _require(cfg, "mid_block_type", ("UNetMidBlock2DCrossAttn",), "UNetMidBlock2DCrossAttn")
    _require(cfg, "act_fn", ("silu",), "silu")
    for name in ("class_embed_type", "addition_embed_type", "encoder_hid_dim", "time_cond_proj_dim",
                 "num_class_embeds", "time_embedding_dim", "timestep_post_act"):  # fmt: skip
        _require(cfg, name, (None,), None)
    _require(cfg, "time_embedding_type", ("positional",), "positional")
    _require(cfg, "resnet_time_scale_shift", ("default",), "default")
    _require(cfg, "center_input_sample", (False,), False)
    _require(cfg, "only_cross_attention", (False,), False)
    _require(cfg, "dual_cross_attention", (False,), False)
    _require(cfg, "conv_in_kernel", (3,), 3)
    _require(cfg, "conv_out_kernel", (3,), 3)
    _require(cfg, "downsample_padding", (1,), 1)
    _require(cfg, "mid_block_scale_factor", (1, 1.0), 1)
    _require(cfg, "resnet_out_scale_factor", (1, 1.0), 1.0)
    _require(cfg, "attention_type", ("default",), "default")
    n = len(down)
    layers = _get(cfg, "layers_per_block", 2)
    if not isinstance(layers, int):
        raise ValueError("layers_per_block must be one int")
    depth = _get(cfg, "transformer_layers_per_block", 1)
    if not isinstance(depth, int):
        if len(set(depth)) != 1:
            raise ValueError(f"transformer_layers_per_block must be uniform, got {depth}")
        depth = depth[0]
    # diffusers' historical naming: `attention_head_dim` holds the number of heads in SD
    # configs, and `num_attention_heads`, when given, overrides it.
    heads = _get(cfg, "num_attention_heads") or _get(cfg, "attention_head_dim", 8)
    heads = heads if isinstance(heads, int) else tuple(heads)
    if not isinstance(heads, int) and len(heads) != n:
        raise ValueError(f"need one head count per block, got {heads}")
    return UNetConfig(
        in_channels=cfg["in_channels"],
        out_channels=cfg["out_channels"],
        block_channels=tuple(cfg["block_out_channels"]),
        attn_blocks=attn,
        layers_per_block=layers,
        n_heads=heads,
        d_context=cfg["cross_attention_dim"],
        transformer_depth=depth,
        norm_groups=_get(cfg, "norm_num_groups", 32),
        norm_eps=_get(cfg, "norm_eps", 1e-5),
        linear_proj=bool(_get(cfg, "use_linear_projection", False)),
        flip_sin_to_cos=bool(_get(cfg, "flip_sin_to_cos", True)),
        freq_shift=float(_get(cfg, "freq_shift", 0)),
    )


def vae_config_from_diffusers(cfg: Mapping[str, Any]) -> VAEConfig:
    """A diffusers AutoencoderKL config (dict) -> VAEConfig."""
    cfg = dict(cfg)
    if set(cfg["down_block_types"]) != {"DownEncoderBlock2D"}:
        raise ValueError(f"unsupported down_block_types {cfg['down_block_types']}")
    if set(cfg["up_block_types"]) != {"UpDecoderBlock2D"}:
        raise ValueError(f"unsupported up_block_types {cfg['up_block_types']}")
    if cfg["in_channels"] != cfg["out_channels"]:
        raise ValueError("in_channels must equal out_channels")
    _require(cfg, "act_fn", ("silu",), "silu")
    _require(cfg, "mid_block_add_attention", (True,), True)
    _require(cfg, "use_quant_conv", (True,), True)
    _require(cfg, "use_post_quant_conv", (True,), True)
    _require(cfg, "shift_factor", (None, 0, 0.0), None)
    return VAEConfig(
        in_channels=cfg["in_channels"],
        latent_channels=cfg["latent_channels"],
        block_channels=tuple(cfg["block_out_channels"]),
        layers_per_block=_get(cfg, "layers_per_block", 1),
        norm_groups=_get(cfg, "norm_num_groups", 32),
        scaling_factor=float(_get(cfg, "scaling_factor", 0.18215)),
    )


def _convert(theirs: Mapping[str, torch.Tensor], key_map, ours: Mapping[str, torch.Tensor]):
    out = {}
    for k, v in theirs.items():
        new = key_map[k]
        if new.endswith(".ff.w_in.weight") or new.endswith(".ff.w_in.bias"):
            # diffusers' GEGLU computes h * gelu(g) with [h | g] = proj(x); ours gelu(a) * b
            # with [a | b] = w_in(x): swap the halves.
            h, g = v.chunk(2, dim=0)
            v = torch.cat([g, h], dim=0)
        target = ours.get(new)
        if target is not None and v.ndim == 4 and target.ndim == 2:
            v = v[:, :, 0, 0]  # 1x1 conv weights of old VAE checkpoints -> Linear
        out[new] = v
    missing = sorted(set(ours) - set(out))
    extra = sorted(set(out) - set(ours))
    if missing or extra:
        raise ValueError(f"key mismatch: missing {missing[:8]} (+{max(0, len(missing) - 8)}), "
                         f"unexpected {extra[:8]} (+{max(0, len(extra) - 8)})")  # fmt: skip
    bad = [
        (k, tuple(out[k].shape), tuple(ours[k].shape))
        for k in ours
        if out[k].shape != ours[k].shape
    ]
    if bad:
        raise ValueError(f"shape mismatch (key, theirs, ours): {bad[:8]}")
    return out


def unet_state_dict_from_diffusers(sd: Mapping[str, torch.Tensor], model: UNet) -> dict:
    """Rename (and check) a diffusers UNet state dict for `model`."""
    return _convert(sd, unet_key_map(sd), model.state_dict())


def vae_state_dict_from_diffusers(sd: Mapping[str, torch.Tensor], model: AutoencoderKL) -> dict:
    """Rename (and check) a diffusers AutoencoderKL state dict for `model`."""
    return _convert(sd, vae_key_map(sd), model.state_dict())


def _split(peer) -> tuple[Mapping[str, torch.Tensor], Mapping[str, Any]]:
    if isinstance(peer, tuple):
        return peer
    return peer.state_dict(), dict(peer.config)


def unet_from_diffusers(peer) -> UNet:
    """A diffusers `UNet2DConditionModel` (or a (state_dict, config dict) pair) -> our UNet."""
    sd, cfg = _split(peer)
    model = UNet(unet_config_from_diffusers(cfg))
    model.load_state_dict(unet_state_dict_from_diffusers(sd, model))
    return model


def vae_from_diffusers(peer) -> AutoencoderKL:
    """A diffusers `AutoencoderKL` (or a (state_dict, config dict) pair) -> our AutoencoderKL."""
    sd, cfg = _split(peer)
    model = AutoencoderKL(vae_config_from_diffusers(cfg))
    model.load_state_dict(vae_state_dict_from_diffusers(sd, model))
    return model
