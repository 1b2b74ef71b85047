"""The KL-regularised autoencoder of latent diffusion (Rombach et al. 2022, sec. 3.1).

The encoder E maps an image x: [B, C, H, W] to a diagonal Gaussian q(z|x) over latents
z: [B, Cz, H/f, W/f] (f = 2^(levels-1)); the decoder D maps z back to an image. Training
minimises reconstruction error plus a small KL(q(z|x) || N(0, I)) weight, which keeps the
latent space near a unit Gaussian without the strong bottleneck of a plain VAE. The
diffusion model then works on s * z, where the `scaling_factor` s makes the latents roughly
unit-variance (SD v1: 0.18215, measured on its training set).

Layout (module names as in Stable Diffusion's checkpoints):
- encoder: conv_in; per level ResBlocks (+ stride-2 Downsample but on the last); a middle of
  ResBlock, single-head spatial self-attention, ResBlock; GroupNorm, SiLU, conv to 2 Cz
  (mean and log-variance); then a 1x1 `quant_conv`;
- decoder: 1x1 `post_quant_conv`; conv_in; the same middle; per level (deepest first)
  ResBlocks (+ nearest x2 Upsample but on the last); GroupNorm, SiLU, conv_out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.layers.attention import MultiHeadAttention
from deepnotes.models.diffusion.blocks import Downsample, ResBlock, Upsample


@dataclass
class VAEConfig:
    in_channels: int = 3  # image channels
    latent_channels: int = 4  # Cz (SD: 4)
    block_channels: tuple[int, ...] = (32, 64)  # width per level; f = 2^(levels-1)
    layers_per_block: int = 1  # encoder ResBlocks per level (decoder: one more)
    norm_groups: int = 8  # GroupNorm groups (SD: 32)
    scaling_factor: float = 0.18215  # s: the diffusion model sees s * z (SD v1's value)

    def __post_init__(self):
        self.block_channels = tuple(self.block_channels)
        for c in self.block_channels:
            if c % self.norm_groups:
                raise ValueError(f"width {c} not divisible by {self.norm_groups} norm groups")

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.block_channels) - 1)


class SpatialSelfAttention(nn.Module):
    """x: [B, C, H, W] -> x + Attn(GroupNorm(x)) over the H*W positions, one head of width C."""

    def __init__(self, c: int, groups: int):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, c, eps=1e-6)
        self.attn = MultiHeadAttention(c, 1, bias=True)

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.group_norm(x).flatten(2).transpose(1, 2)
        h = self.attn(h).transpose(1, 2).reshape(B, C, H, W)
        return x + h


class Middle(nn.Module):
    def __init__(self, c: int, groups: int):
        super().__init__()
        self.res1 = ResBlock(c, c, d_time=None, groups=groups, eps=1e-6)
        self.attn = SpatialSelfAttention(c, groups)
        self.res2 = ResBlock(c, c, d_time=None, groups=groups, eps=1e-6)

    def forward(self, x):
        return self.res2(self.attn(self.res1(x)))


class Encoder(nn.Module):
    """x: [B, C, H, W] -> moments [B, 2 Cz, H/f, W/f] (mean, log-variance)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch, g = cfg.block_channels, cfg.norm_groups
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        self.levels = nn.ModuleList()
        c = ch[0]
        for i, co in enumerate(ch):
            lvl = nn.Module()
            lvl.res = nn.ModuleList()
            for _ in range(cfg.layers_per_block):
                lvl.res.append(ResBlock(c, co, d_time=None, groups=g, eps=1e-6))
                c = co
            lvl.down = Downsample(c, asymmetric_pad=True) if i < len(ch) - 1 else None
            self.levels.append(lvl)
        self.mid = Middle(c, g)
        self.norm_out = nn.GroupNorm(g, c, eps=1e-6)
        self.conv_out = nn.Conv2d(c, 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for lvl in self.levels:
            for rb in lvl.res:
                h = rb(h)
            if lvl.down is not None:
                h = lvl.down(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    """z: [B, Cz, h, w] -> image [B, C, h f, w f]."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch, g = cfg.block_channels[::-1], cfg.norm_groups
        c = ch[0]
        self.conv_in = nn.Conv2d(cfg.latent_channels, c, 3, padding=1)
        self.mid = Middle(c, g)
        self.levels = nn.ModuleList()
        for i, co in enumerate(ch):
            lvl = nn.Module()
            lvl.res = nn.ModuleList()
            for _ in range(cfg.layers_per_block + 1):
                lvl.res.append(ResBlock(c, co, d_time=None, groups=g, eps=1e-6))
                c = co
            lvl.up = Upsample(c) if i < len(ch) - 1 else None
            self.levels.append(lvl)
        self.norm_out = nn.GroupNorm(g, c, eps=1e-6)
        self.conv_out = nn.Conv2d(c, cfg.in_channels, 3, padding=1)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for lvl in self.levels:
            for rb in lvl.res:
                h = rb(h)
            if lvl.up is not None:
                h = lvl.up(h)
        return self.conv_out(F.silu(self.norm_out(h)))


@dataclass
class Posterior:
    """The diagonal Gaussian q(z|x): mean, logvar: [B, Cz, h, w]."""

    mean: torch.Tensor
    logvar: torch.Tensor

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(
            self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype
        )
        return self.mean + self.std * noise

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per example: [B] = 1/2 sum(mu^2 + sigma^2 - 1 - log sigma^2)."""
        return 0.5 * (self.mean**2 + self.logvar.exp() - 1.0 - self.logvar).sum(dim=(1, 2, 3))


class AutoencoderKL(nn.Module):
    """encode(x) -> Posterior; decode(z) -> image; forward(x) = decode(posterior mean)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        cz = cfg.latent_channels
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quant_conv = nn.Conv2d(2 * cz, 2 * cz, 1)
        self.post_quant_conv = nn.Conv2d(cz, cz, 1)

    def encode(self, x: torch.Tensor) -> Posterior:
        if x.ndim != 4 or x.shape[1] != self.cfg.in_channels:
            raise ValueError(f"x must be [B, {self.cfg.in_channels}, H, W], got {tuple(x.shape)}")
        mean, logvar = self.quant_conv(self.encoder(x)).chunk(2, dim=1)
        # the clamp keeps exp(logvar) finite early in training (same bounds as SD's code)
        return Posterior(mean, logvar.clamp(-30.0, 20.0))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 4 or z.shape[1] != self.cfg.latent_channels:
            raise ValueError(
                f"z must be [B, {self.cfg.latent_channels}, h, w], got {tuple(z.shape)}"
            )
        return self.decoder(self.post_quant_conv(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x).mean)
