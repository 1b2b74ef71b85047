"""The latent-diffusion UNet and VAE equal diffusers' UNet2DConditionModel / AutoencoderKL."""

from __future__ import annotations

import pytest
import torch

from deepnotes.models.diffusion.cond import CondEncoderConfig, ConditionEncoder
from deepnotes.models.diffusion.unet import UNet, UNetConfig
from deepnotes.models.diffusion.vae import AutoencoderKL, VAEConfig
from deepnotes.models.loaders.diffusers import (
    unet_config_from_diffusers,
    unet_from_diffusers,
    unet_state_dict_from_diffusers,
    vae_from_diffusers,
)
from tests.helpers import assert_close, rel_rms

diffusers = pytest.importorskip("diffusers")

UNET_CONFIGS = {
    # SD v1 layout in miniature: conv projections, one head count for every block
    "sd1-tiny": dict(
        block_out_channels=(32, 64),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=24,
        attention_head_dim=4,
        norm_num_groups=8,
    ),
    # SD v2 layout: linear projections, heads per block, two transformer layers, 3 levels
    "sd2-tiny": dict(
        block_out_channels=(16, 32, 48),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=20,
        attention_head_dim=(2, 4, 4),
        use_linear_projection=True,
        transformer_layers_per_block=2,
        norm_num_groups=8,
    ),
}


def _peer_unet(name, seed=0):
    torch.manual_seed(seed)
    kw = UNET_CONFIGS[name]
    return diffusers.UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, **kw).eval()


@pytest.mark.parametrize("name", list(UNET_CONFIGS))
@pytest.mark.parametrize("hw", [(8, 8), (12, 9)])
def test_unet_equals_diffusers(name, hw):
    peer = _peer_unet(name, seed=hash((name, hw)) % 1000)
    ours = unet_from_diffusers(peer).eval()
    d_ctx = peer.config.cross_attention_dim
    x = torch.randn(3, 4, *hw, requires_grad=True)
    t = torch.randint(0, 1000, (3,))
    ctx = torch.randn(3, 7, d_ctx)
    out = ours(x, t, ctx)
    ref = peer(x, t, ctx).sample
    assert_close(out, ref, what=f"{name} {hw} output")
    (gx,) = torch.autograd.grad(out.square().sum(), x)
    (gx_ref,) = torch.autograd.grad(ref.square().sum(), x)
    assert_close(gx, gx_ref, what="input gradient")


def test_unet_scalar_timestep_and_fp64():
    peer = _peer_unet("sd1-tiny").double()
    ours = unet_from_diffusers(peer).eval().double()
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    ctx = torch.randn(2, 3, 24, dtype=torch.float64)
    with torch.no_grad():
        assert_close(ours(x, 417, ctx), peer(x, 417, ctx).sample, tol=1e-10)


@pytest.mark.parametrize("layers", [1, 2])
def test_vae_equals_diffusers(layers):
    torch.manual_seed(layers)
    peer = diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 32),
        layers_per_block=layers,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=16,
    ).eval()
    ours = vae_from_diffusers(peer).eval()
    assert ours.cfg.scaling_factor == peer.config.scaling_factor
    x = torch.randn(2, 3, 16, 20)
    with torch.no_grad():
        post, ref = ours.encode(x), peer.encode(x).latent_dist
        assert_close(post.mean, ref.mean, what="posterior mean")
        assert_close(post.logvar, ref.logvar, what="posterior logvar")
        assert_close(post.kl(), ref.kl(), what="KL")
        z = torch.randn(2, 4, 5, 3)
        assert_close(ours.decode(z), peer.decode(z).sample, what="decode")
        assert_close(ours(x), peer(x).sample, what="autoencode")


def test_sd_v1_unet_key_mapping_on_meta():
    """Every key of the full SD v1 UNet maps onto ours with the same shape (no weights made)."""
    cfg = dict(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        layers_per_block=2,
        cross_attention_dim=768,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    with torch.device("meta"):
        peer = diffusers.UNet2DConditionModel(**cfg)
        ours = UNet(unet_config_from_diffusers(dict(peer.config)))
    sd = peer.state_dict()
    mapped = unet_state_dict_from_diffusers(sd, ours)  # raises on any missing/extra/shape
    assert len(mapped) == len(sd) == len(ours.state_dict()) == 686
    n_ours = sum(p.numel() for p in ours.parameters())
    n_peer = sum(p.numel() for p in peer.parameters())
    assert n_ours == n_peer == 859_520_964  # SD v1's 860M-parameter UNet
    ours.load_state_dict(mapped, assign=True)


def test_context_mask_ignores_padding_tokens():
    """Masked condition tokens change nothing: padded context == the context without them."""
    unet = UNet(UNetConfig(block_channels=(16, 32), attn_blocks=(True, True), n_heads=2)).eval()
    x, t = torch.randn(2, 4, 6, 6), torch.tensor([3, 700])
    ctx = torch.randn(2, 5, 32)
    padded = torch.cat([ctx, 100 * torch.randn(2, 3, 32)], dim=1)
    mask = torch.arange(8)[None, :].expand(2, -1) < 5
    with torch.no_grad():
        assert_close(unet(x, t, padded, context_mask=mask), unet(x, t, ctx))
        assert rel_rms(unet(x, t, padded), unet(x, t, ctx)) > 1e-3


def test_loader_rejects_unsupported_configs():
    peer = _peer_unet("sd1-tiny")
    bad = dict(peer.config)
    bad["class_embed_type"] = "timestep"
    with pytest.raises(ValueError, match="class_embed_type"):
        unet_config_from_diffusers(bad)
    bad = dict(peer.config)
    bad["up_block_types"] = ("CrossAttnUpBlock2D", "UpBlock2D")
    with pytest.raises(ValueError, match="mirror"):
        unet_config_from_diffusers(bad)
    sd = dict(peer.state_dict())
    sd.pop("conv_in.bias")
    with pytest.raises(ValueError, match="missing"):
        unet_state_dict_from_diffusers(sd, UNet(unet_config_from_diffusers(peer.config)))


def test_unet_and_vae_input_checks():
    with pytest.raises(ValueError, match="attn_blocks"):
        UNetConfig(block_channels=(32, 64), attn_blocks=(True,))
    with pytest.raises(ValueError, match="heads"):
        UNetConfig(block_channels=(32, 64), n_heads=3)
    unet = UNet(UNetConfig())
    with pytest.raises(ValueError, match="context"):
        unet(torch.randn(2, 4, 8, 8), 3, torch.randn(2, 5, 7))
    with pytest.raises(ValueError, match="x must be"):
        unet(torch.randn(2, 3, 8, 8), 3, torch.randn(2, 5, 32))
    vae = AutoencoderKL(VAEConfig(in_channels=1))
    with pytest.raises(ValueError, match="z must be"):
        vae.decode(torch.randn(1, 3, 4, 4))


def test_condition_encoder():
    enc = ConditionEncoder(CondEncoderConfig(d_model=16, n_heads=2, max_len=8)).eval()
    out = enc.encode(["seven", "", "one"])
    assert out.shape == (3, 8, 16) and torch.isfinite(out).all()
    # a real token's state does not depend on another prompt in the batch, nor on padding
    alone = enc.encode(["one"])
    assert_close(out[2:3, :5], alone[:, :5])
    assert not torch.allclose(out[0], out[2])
    with pytest.raises(ValueError, match="longer"):
        enc.encode(["seventeen"])
    with pytest.raises(ValueError, match="alphabet"):
        enc.encode(["7"])
