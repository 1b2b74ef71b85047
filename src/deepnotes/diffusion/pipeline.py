"""Latent diffusion: training loss with condition dropout, and guided sampling.

Training (Rombach et al. 2022, eq. 2): encode an image to z0 = s * E(x) (s: the VAE's scaling
factor), draw t ~ U{0..T-1} and eps ~ N(0, I), form z_t = sqrt(a_t) z0 + sqrt(1 - a_t) eps and
regress eps_theta(z_t, t, tau(c)) on eps. With probability p_uncond the condition is replaced
by the unconditional one (the encoding of ""), so that one network learns both
eps(z, c) and eps(z, 0) (Ho & Salimans 2022, Algorithm 1).

Sampling: start from z_T ~ N(0, I) (drawn from the generator first), run DDIM or DDPM steps
(`deepnotes.diffusion.samplers`) on the classifier-free-guided noise

    eps_w = eps(z, 0) + w * (eps(z, c) - eps(z, 0))        (Ho & Salimans 2022, eq. 6)

and decode D(z0 / s). w = 1 is the plain conditional model, w = 0 the unconditional one,
w > 1 trades diversity for fidelity. With the same weights, scheduler settings and
generator this reproduces diffusers' `StableDiffusionPipeline` called with `prompt_embeds`
and `negative_prompt_embeds` (tests/diffusion/test_pipeline.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from deepnotes.diffusion.samplers import beta_schedule, ddim_step, ddpm_step, inference_timesteps


@dataclass
class NoiseSchedule:
    num_train_timesteps: int = 1000  # T
    beta_schedule: str = "scaled_linear"  # "scaled_linear" (SD) or "linear" (DDPM)
    beta_start: float = 0.00085  # beta_1 (SD's value)
    beta_end: float = 0.012  # beta_T (SD's value)

    def alphas_cumprod(self) -> torch.Tensor:
        """a_t = prod_{s<=t} (1 - beta_s): [T] float32."""
        betas = beta_schedule(
            self.beta_schedule, self.num_train_timesteps, self.beta_start, self.beta_end
        )
        return torch.cumprod(1.0 - betas, dim=0)


def drop_condition(
    cond: torch.Tensor, uncond: torch.Tensor, p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Replace each example's condition by the unconditional one with probability p.

    cond: [B, S, D]; uncond: [S, D] or [1, S, D] or [B, S, D] -> [B, S, D].
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"condition dropout p must be in [0, 1], got {p}")
    drop = torch.rand(
        cond.shape[0], generator=generator, device=generator.device if generator else None
    )
    drop = (drop < p).to(cond.device)[:, None, None]
    return torch.where(drop, uncond.expand_as(cond), cond)


def diffusion_loss(
    unet,
    z0: torch.Tensor,
    context: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """E_{t, eps} ||eps - eps_theta(z_t, t, c)||^2, Ho et al. 2020's simple loss.

    z0: [B, C, h, w] scaled latents; context: [B, S, D]. Returns a scalar."""
    B = z0.shape[0]
    dev = z0.device
    t = torch.randint(0, len(alphas_cumprod), (B,), generator=generator, device=dev)
    eps = torch.randn(z0.shape, generator=generator, device=dev, dtype=z0.dtype)
    a = alphas_cumprod.to(dev, z0.dtype)[t][:, None, None, None]
    z_t = a.sqrt() * z0 + (1 - a).sqrt() * eps
    return F.mse_loss(unet(z_t, t, context), eps)


def guided_eps(unet, z, t, cond, uncond, w: float) -> torch.Tensor:
    """eps(z, 0) + w (eps(z, c) - eps(z, 0)); one batched UNet call [uncond; cond] when both are
    needed (w = 1 needs only cond, w = 0 only uncond). z: [B, C, h, w]; cond, uncond: [B, S, D]."""
    if w == 1.0 or uncond is None:
        return unet(z, t, cond)
    if w == 0.0:
        return unet(z, t, uncond)
    t2 = torch.cat([t, t]) if torch.is_tensor(t) and t.ndim == 1 else t
    e_u, e_c = unet(torch.cat([z, z]), t2, torch.cat([uncond, cond])).chunk(2)
    return e_u + w * (e_c - e_u)


class LatentDiffusion:
    """A latent-diffusion sampler: a noise-predicting UNet, a VAE and a noise schedule.

    unet(z [B, C, h, w], t [B] | scalar, context [B, S, D]) -> eps; vae.decode(z) -> image.
    """

    def __init__(self, unet, vae, schedule: NoiseSchedule | None = None, scaling_factor=None):
        self.unet, self.vae = unet, vae
        self.schedule = schedule or NoiseSchedule()
        self.alphas_cumprod = self.schedule.alphas_cumprod()
        self.scaling_factor = (
            vae.cfg.scaling_factor if scaling_factor is None else float(scaling_factor)
        )

    @torch.no_grad()
    def sample(
        self,
        cond: torch.Tensor,
        uncond: torch.Tensor | None = None,
        *,
        guidance_scale: float = 7.5,
        num_steps: int = 50,
        sampler: str = "ddim",
        eta: float = 0.0,
        spacing: str = "leading",
        steps_offset: int = 1,
        final_alpha_cumprod: float | None = None,
        latent_size: tuple[int, int] | None = None,
        latents: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        decode: bool = True,
    ) -> torch.Tensor:
        """cond, uncond: [B, S, D] condition sequences -> images [B, C, H, W] in about [-1, 1]
        (or latents [B, Cz, h, w] with decode=False).

        sampler: "ddim" (eta = 0 deterministic) or "ddpm" (ancestral). spacing/steps_offset:
        the timestep grid (SD v1's schedulers: "leading", offset 1). final_alpha_cumprod: a
        at the step after the last (None = a_0, SD's set_alpha_to_one=False).
        """
        if sampler not in ("ddim", "ddpm"):
            raise ValueError(f"sampler must be 'ddim' or 'ddpm', got {sampler!r}")
        if uncond is not None and uncond.shape != cond.shape:
            raise ValueError(f"uncond {tuple(uncond.shape)} must match cond {tuple(cond.shape)}")
        if guidance_scale != 1.0 and uncond is None:
            raise ValueError("guidance_scale != 1 needs the unconditional sequence `uncond`")
        dev, dtype = cond.device, cond.dtype
        if latents is None:
            if latent_size is None:
                raise ValueError("give latent_size=(h, w) or latents")
        ac = self.alphas_cumprod.to(dev)
        B = cond.shape[0]
        if latents is None:
            shape = (B, self.unet.cfg.in_channels, *latent_size)
            latents = torch.randn(shape, generator=generator, device=dev, dtype=dtype)
        z = latents
        ts = inference_timesteps(
            self.schedule.num_train_timesteps, num_steps, spacing, steps_offset
        ).tolist()
        final = ac[0] if final_alpha_cumprod is None else final_alpha_cumprod
        for i, t in enumerate(ts):
            t_prev = ts[i + 1] if i + 1 < len(ts) else -1
            t_vec = torch.full((B,), t, dtype=torch.long, device=dev)
            eps = guided_eps(self.unet, z, t_vec, cond, uncond, guidance_scale)
            if sampler == "ddim":
                z, _ = ddim_step(
                    eps, t, t_prev, z, ac, eta, final_alpha_cumprod=final, generator=generator
                )
            else:
                z, _ = ddpm_step(eps, t, t_prev, z, ac, generator=generator)
        if not decode:
            return z
        return self.vae.decode(z / self.scaling_factor)
