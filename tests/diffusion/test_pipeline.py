"""Guided latent sampling equals diffusers' StableDiffusionPipeline; CFG and dropout pieces."""

from __future__ import annotations

import pytest
import torch

from deepnotes.diffusion.pipeline import (
    LatentDiffusion,
    NoiseSchedule,
    diffusion_loss,
    drop_condition,
    guided_eps,
)
from deepnotes.models.loaders.diffusers import unet_from_diffusers, vae_from_diffusers
from tests.helpers import assert_close

diffusers = pytest.importorskip("diffusers")


def _peers(seed):
    torch.manual_seed(seed)
    unet = diffusers.UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=12,
        attention_head_dim=2,
        norm_num_groups=8,
    ).eval()
    vae = diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
    ).eval()
    return unet, vae


@pytest.mark.parametrize("sampler,w,steps", [("ddim", 7.5, 6), ("ddim", 1.0, 5), ("ddpm", 3.0, 4)])
def test_pipeline_equals_stable_diffusion(sampler, w, steps):
    unet, vae = _peers(seed=steps)
    sched_kw = dict(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        steps_offset=1,
    )
    if sampler == "ddim":  # SD v1's DDIM settings
        scheduler = diffusers.DDIMScheduler(set_alpha_to_one=False, **sched_kw)
    else:
        scheduler = diffusers.DDPMScheduler(**sched_kw)
    # no text encoder, tokenizer or safety checker: the pipeline takes prompt embeddings
    pipe = diffusers.StableDiffusionPipeline(
        vae=vae,
        text_encoder=None,
        tokenizer=None,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    cond, uncond = torch.randn(2, 5, 12), torch.randn(2, 5, 12)
    ref = pipe(
        prompt_embeds=cond,
        negative_prompt_embeds=uncond,
        guidance_scale=w,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(11),
        output_type="pt",
    ).images
    ld = LatentDiffusion(unet_from_diffusers(unet).eval(), vae_from_diffusers(vae).eval())
    img = ld.sample(
        cond,
        uncond,
        guidance_scale=w,
        num_steps=steps,
        sampler=sampler,
        latent_size=(8, 8),
        generator=torch.Generator().manual_seed(11),
    )
    assert ref.shape == img.shape == (2, 3, 16, 16)
    assert_close((img / 2 + 0.5).clamp(0, 1), ref, what=f"{sampler} image")


def test_guidance_combines_cond_and_uncond():
    unet, _ = _peers(seed=1)
    ours = unet_from_diffusers(unet).eval()
    z, t = torch.randn(3, 4, 6, 6), torch.tensor([10, 500, 990])
    c, u = torch.randn(3, 4, 12), torch.randn(3, 4, 12)
    with torch.no_grad():
        e_c, e_u = ours(z, t, c), ours(z, t, u)
        for w in (0.0, 1.0, 2.5, 7.5):
            assert_close(guided_eps(ours, z, t, c, u, w), e_u + w * (e_c - e_u), what=f"w={w}")


def test_drop_condition_rate_and_values():
    g = torch.Generator().manual_seed(0)
    cond, uncond = torch.randn(4000, 3, 2), torch.randn(1, 3, 2)
    out = drop_condition(cond, uncond, 0.2, g)
    dropped = (out == uncond).all(dim=(1, 2))
    kept = (out == cond).all(dim=(1, 2))
    assert (dropped | kept).all()
    assert abs(dropped.float().mean().item() - 0.2) < 0.03
    with pytest.raises(ValueError, match="dropout"):
        drop_condition(cond, uncond, 1.5)


def test_diffusion_loss_is_noise_regression():
    sched = NoiseSchedule()
    ac = sched.alphas_cumprod()
    z0, ctx = torch.randn(5, 4, 6, 6), torch.randn(5, 3, 12)
    seen = {}

    def unet(z_t, t, c):  # predicts zero: the loss is then E[eps^2] of the drawn noise
        seen["z_t"], seen["t"] = z_t, t
        return torch.zeros_like(z_t)

    loss = diffusion_loss(unet, z0, ctx, ac, torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    t = torch.randint(0, 1000, (5,), generator=g)
    eps = torch.randn(z0.shape, generator=g)
    a = ac[t][:, None, None, None]
    assert torch.equal(seen["t"], t)
    assert_close(seen["z_t"], a.sqrt() * z0 + (1 - a).sqrt() * eps)
    assert_close(loss, eps.square().mean())


def test_sample_input_checks():
    unet, vae = _peers(seed=2)
    ld = LatentDiffusion(unet_from_diffusers(unet), vae_from_diffusers(vae))
    c = torch.randn(1, 5, 12)
    with pytest.raises(ValueError, match="uncond"):
        ld.sample(c, None, guidance_scale=2.0, latent_size=(6, 6))
    with pytest.raises(ValueError, match="sampler"):
        ld.sample(c, c, sampler="euler", latent_size=(6, 6))
    with pytest.raises(ValueError, match="latent_size"):
        ld.sample(c, c)
