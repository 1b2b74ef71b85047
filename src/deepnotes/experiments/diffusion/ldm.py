"""`deepnotes run ldm`: class-conditional latent diffusion on scikit-learn digits.

Stable Diffusion's recipe at toy scale (Rombach et al. 2022):
1. train a KL autoencoder on the digits (upsampled from 8x8 to `image_size`), and set the
   latent scaling factor s = 1 / std(z) on the training set, as SD did;
2. train a UNet with cross-attention to eps-predict noised latents s z, conditioned on the
   class name ("seven") encoded by a small character-level Transformer; the condition is
   replaced by the encoding of "" with probability `p_uncond` (classifier-free guidance);
3. sample with DDIM at guidance w in {0, 1, 2, 4, 7.5}.

Evaluation, with a small CNN classifier trained separately on the real training digits:
- accuracy of the classifier on the samples of each requested class (fidelity);
- the Fréchet distance between Gaussian fits of the classifier's penultimate features of
  the samples and of held-out real digits (realism and diversity). This is a Fréchet
  distance in a digit classifier's feature space, *not* Inception FID; its floor is the same
  distance between two real sets of the same size, reported as `real_vs_real_fd`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.diffusion.pipeline import LatentDiffusion, NoiseSchedule, diffusion_loss
from deepnotes.jobs import Context, Result, experiment
from deepnotes.models.diffusion.cond import CondEncoderConfig, ConditionEncoder
from deepnotes.models.diffusion.unet import UNet, UNetConfig
from deepnotes.models.diffusion.vae import AutoencoderKL, VAEConfig

CLASS_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@dataclass
class LDMConfig:
    image_size: int = 16  # digits are upsampled from 8x8 to this (GPU preset: 32)
    vae_channels: tuple[int, ...] = (16, 32)  # VAE widths; latent side = image_size / 2^(n-1)
    latent_channels: int = 4  # Cz, as in SD
    kl_weight: float = 1e-4  # weight of KL(q(z|x) || N(0, I)) per pixel next to the MSE
    vae_steps: int = 200  # autoencoder training steps
    unet_channels: tuple[int, ...] = (32, 32)  # UNet widths per latent resolution
    unet_attn: tuple[bool, ...] = (False, True)  # cross-attention at that resolution?
    unet_heads: int = 4  # attention heads in the UNet's transformer blocks
    d_context: int = 32  # width of the class-name condition sequence
    unet_steps: int = 600  # latent UNet (+ condition encoder) training steps
    p_uncond: float = 0.1  # condition dropout for classifier-free guidance (Ho & Salimans: 0.1-0.2)
    batch_size: int = 32  # images per step for all three networks
    lr: float = 2e-3  # AdamW learning rate (cosine-decayed) for VAE and UNet
    classifier_steps: int = 400  # steps of the separately trained evaluation classifier
    guidance: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0, 7.5)  # w values to sample at
    samples_per_class: int = 16  # generated digits per class and guidance value
    sample_steps: int = 20  # DDIM steps (eta = 0)
    beta_schedule: str = "linear"  # noise schedule over 1000 steps: "linear" or "scaled_linear"
    test_fraction: float = 0.2  # held-out real digits (classifier test, Fréchet reference)
    grid_per_class: int = 6  # samples shown per class in the grids
    seed_data: int = 0  # seed of the train/test split


def load_digit_images(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn digits as images [N, 1, size, size] in [-1, 1] and labels [N]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.clamp(0, 1) * 2 - 1, torch.tensor(d.target, dtype=torch.long)


class DigitClassifier(nn.Module):
    """x: [B, 1, H, W] -> logits [B, 10]; `features` gives the 64-d penultimate layer."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
        )  # fmt: skip
        self.fc = nn.Linear(64 * 16, 64)
        self.head = nn.Linear(64, 10)

    def features(self, x):
        return F.relu(self.fc(self.conv(x).flatten(1)))

    def forward(self, x):
        return self.head(self.features(x))


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) of Gaussian fits to features [N, D]."""
    from scipy import linalg

    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    # ReLU features have dead dimensions: a tiny ridge keeps sqrtm well defined
    s1, s2 = s1 + 1e-6 * np.eye(len(s1)), s2 + 1e-6 * np.eye(len(s2))
    covmean = linalg.sqrtm(s1 @ s2)  # no `disp`: recent scipy removed it
    covmean = (covmean[0] if isinstance(covmean, tuple) else covmean).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def _batches(n, bs, steps, gen):
    for _ in range(steps):
        yield torch.randint(0, n, (bs,), generator=gen)


def _optim(params, lr, steps):
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    return opt, sched


def _train_classifier(cfg, x, y, ctx, gen):
    clf = DigitClassifier().to(ctx.device)
    opt, sched = _optim(clf.parameters(), 3e-3, cfg.classifier_steps)
    for idx in ctx.progress(_batches(len(x), cfg.batch_size, cfg.classifier_steps, gen),
                            total=cfg.classifier_steps, desc="classifier"):  # fmt: skip
        xb = x[idx]
        # small random shifts make the classifier judge shapes, not exact pixel positions
        shift = tuple(torch.randint(-1, 2, (2,), generator=gen).tolist())
        loss = F.cross_entropy(clf(torch.roll(xb, shift, dims=(2, 3))), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return clf.eval()


def _train_vae(cfg, x, ctx, gen):
    vae = AutoencoderKL(
        VAEConfig(
            in_channels=1,
            latent_channels=cfg.latent_channels,
            block_channels=cfg.vae_channels,
            norm_groups=8,
        )  # fmt: skip
    ).to(ctx.device)
    opt, sched = _optim(vae.parameters(), cfg.lr, cfg.vae_steps)
    losses = []
    for idx in ctx.progress(_batches(len(x), cfg.batch_size, cfg.vae_steps, gen),
                            total=cfg.vae_steps, desc="VAE"):  # fmt: skip
        xb = x[idx]
        post = vae.encode(xb)
        rec = vae.decode(post.sample(gen if ctx.device.type == "cpu" else None))
        mse = F.mse_loss(rec, xb)
        loss = mse + cfg.kl_weight * post.kl().mean() / xb[0].numel()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(mse.detach())  # no per-step host sync on the GPU
    return vae.eval(), torch.stack(losses).tolist()


def _train_unet(cfg, z_mean, z_std, y, ctx, gen, ac):
    dev = ctx.device
    unet = UNet(
        UNetConfig(
            in_channels=cfg.latent_channels,
            out_channels=cfg.latent_channels,
            block_channels=cfg.unet_channels,
            attn_blocks=cfg.unet_attn,
            layers_per_block=1,
            n_heads=cfg.unet_heads,
            d_context=cfg.d_context,
            norm_groups=8,
        )  # fmt: skip
    ).to(dev)
    enc = ConditionEncoder(CondEncoderConfig(d_model=cfg.d_context, n_heads=4)).to(dev)
    ids, mask = enc.tokenizer(CLASS_NAMES + [""])  # row 10 = the unconditional prompt
    ids, mask = ids.to(dev), mask.to(dev)
    params = list(unet.parameters()) + list(enc.parameters())
    opt, sched = _optim(params, cfg.lr, cfg.unet_steps)
    g_dev = gen if dev.type == "cpu" else torch.Generator(dev).manual_seed(1)
    losses = []
    for idx in ctx.progress(_batches(len(y), cfg.batch_size, cfg.unet_steps, gen),
                            total=cfg.unet_steps, desc="latent UNet"):  # fmt: skip
        z0 = z_mean[idx] + z_std[idx] * torch.randn(z_mean[idx].shape, generator=g_dev, device=dev)
        labels = y[idx]
        drop = torch.rand(len(idx), generator=g_dev, device=dev) < cfg.p_uncond
        labels = torch.where(drop, torch.full_like(labels, 10), labels)
        context = enc(ids, mask)[labels]  # [B, L, D]: one encoder pass over the 11 prompts
        loss = diffusion_loss(unet, z0, context, ac, g_dev)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.detach())
    return unet.eval(), enc.eval(), torch.stack(losses).tolist()


def _grid_image(imgs: torch.Tensor, rows: int, cols: int) -> np.ndarray:
    """imgs: [rows*cols, 1, H, W] in [-1, 1] -> one [rows*(H+1), cols*(W+1)] array."""
    H, W = imgs.shape[-2:]
    out = np.full((rows * (H + 1), cols * (W + 1)), 0.3, dtype=np.float32)  # grey lines
    a = ((imgs[:, 0].cpu().numpy() + 1) / 2).clip(0, 1)
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        out[r * (H + 1) : r * (H + 1) + H, c * (W + 1) : c * (W + 1) + W] = a[i]
    return out


@experiment(
    "ldm",
    "class-conditional latent diffusion on digits: VAE + cross-attention UNet + guidance sweep",
    LDMConfig,
    presets={
        "smoke": dict(
            image_size=8,
            vae_channels=(8, 16),
            vae_steps=3,
            unet_channels=(16, 16),
            unet_heads=2,
            d_context=16,
            unet_steps=3,
            classifier_steps=3,
            guidance=(0.0, 2.0),
            samples_per_class=2,
            sample_steps=2,
            batch_size=16,
            grid_per_class=2,
        ),
        "gpu": dict(
            image_size=32,
            vae_channels=(32, 64, 64),
            vae_steps=600,
            unet_channels=(64, 128),
            unet_attn=(True, True),
            unet_heads=4,
            d_context=64,
            unet_steps=2000,
            classifier_steps=600,
            samples_per_class=50,
            sample_steps=50,
            batch_size=256,
            lr=1e-3,
            grid_per_class=10,
        ),
    },  # fmt: skip
)
def run_ldm(cfg: LDMConfig, ctx: Context) -> Result:
    if cfg.image_size % (2 ** (len(cfg.vae_channels) - 1)):
        raise ValueError("image_size must be divisible by the VAE's downsampling factor")
    if not 0 <= cfg.p_uncond < 1:
        raise ValueError(f"p_uncond must be in [0, 1), got {cfg.p_uncond}")
    dev = ctx.device
    gen = torch.Generator().manual_seed(ctx.seed)
    x, y = load_digit_images(cfg.image_size)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg.seed_data))
    n_test = int(len(x) * cfg.test_fraction)
    te, tr = perm[:n_test], perm[n_test:]
    x_tr, y_tr, x_te, y_te = x[tr].to(dev), y[tr].to(dev), x[te].to(dev), y[te].to(dev)

    clf = _train_classifier(cfg, x_tr, y_tr, ctx, gen)
    vae, vae_losses = _train_vae(cfg, x_tr, ctx, gen)
    with torch.no_grad():
        clf_acc = (clf(x_te).argmax(1) == y_te).float().mean().item()
        post_tr = vae.encode(x_tr)
        vae_test_mse = F.mse_loss(vae(x_te), x_te).item()
        recon_acc = (clf(vae(x_te)).argmax(1) == y_te).float().mean().item()
    # SD's scaling factor: make the diffusion model's latents unit-variance
    s = 1.0 / post_tr.mean.std().item()
    vae.cfg.scaling_factor = s
    lin = cfg.beta_schedule == "linear"  # DDPM's 1e-4..0.02, else SD's 0.00085..0.012
    schedule = NoiseSchedule(
        beta_schedule=cfg.beta_schedule,
        beta_start=1e-4 if lin else 0.00085,
        beta_end=0.02 if lin else 0.012,
    )
    ac = schedule.alphas_cumprod().to(dev)
    unet, enc, unet_losses = _train_unet(cfg, s * post_tr.mean, s * post_tr.std, y_tr, ctx, gen, ac)

    ld = LatentDiffusion(unet, vae, schedule)
    n = cfg.samples_per_class
    labels = torch.arange(10, device=dev).repeat_interleave(n)
    with torch.no_grad():
        ctx_all = enc.encode(CLASS_NAMES + [""])
        feats_te = clf.features(x_te).cpu().numpy()
        # the floor: real training digits vs the held-out ones, at the generated set's size
        m = min(10 * n, len(x_tr))
        fd_real = frechet_distance(clf.features(x_tr[:m]).cpu().numpy(), feats_te)
    latent = cfg.image_size // vae.cfg.downsample
    rows, grids = [], {}
    for w in ctx.progress(cfg.guidance, desc="guidance sweep"):
        g = torch.Generator(dev).manual_seed(1234)
        with torch.no_grad():
            imgs = ld.sample(ctx_all[labels], ctx_all[10:11].expand(len(labels), -1, -1),
                             guidance_scale=w, num_steps=cfg.sample_steps, steps_offset=0,
                             latent_size=(latent, latent), generator=g).clamp(-1, 1)  # fmt: skip
            pred = clf(imgs).argmax(1)
            fd = frechet_distance(clf.features(imgs).cpu().numpy(), feats_te)
        per_class = [(pred[labels == c] == c).float().mean().item() for c in range(10)]
        rows.append({"guidance_w": w, "class_accuracy": (pred == labels).float().mean().item(),
                     "worst_class_accuracy": min(per_class), "classifier_fd": fd,
                     "pixel_std": imgs.std().item()})  # fmt: skip
        k = min(cfg.grid_per_class, n)
        grids[w] = imgs.view(10, n, *imgs.shape[1:])[:, :k].reshape(10 * k, *imgs.shape[1:])

    _plot_tradeoff(ctx, rows, clf_acc, fd_real)
    _plot_grids(ctx, grids, min(cfg.grid_per_class, n))
    _plot_training(ctx, vae_losses, unet_losses, x_te[:8], vae)
    best = max(rows, key=lambda r: r["class_accuracy"])
    return Result(
        metrics={
            "classifier_test_accuracy": clf_acc,
            "vae_test_mse": vae_test_mse,
            "classifier_accuracy_on_vae_reconstructions": recon_acc,
            "latent_scaling_factor": s,
            "latent_shape": [cfg.latent_channels, latent, latent],
            "real_vs_real_fd": fd_real,
            "final_unet_loss": float(np.mean(unet_losses[-50:])),
            **{f"accuracy_w{r['guidance_w']:g}": r["class_accuracy"] for r in rows},
            **{f"fd_w{r['guidance_w']:g}": r["classifier_fd"] for r in rows},
            "best_guidance_for_accuracy": best["guidance_w"],
        },  # fmt: skip
        table=rows,
        columns=[
            "guidance_w",
            "class_accuracy",
            "worst_class_accuracy",
            "classifier_fd",
            "pixel_std",
        ],
        notes=[
            "classifier_fd is a Fréchet distance in a small digit classifier's 64-d feature "
            "space (not Inception FID); real_vs_real_fd is its floor at the same sample size",
            f"{n} samples per class and w; DDIM with {cfg.sample_steps} steps, eta = 0",
        ],
    )


def _plot_tradeoff(ctx, rows, clf_acc, fd_real):
    ws = [r["guidance_w"] for r in rows]
    fig, (a1, a2) = ctx.figure(1, 2, figsize=(10, 4))
    a1.plot(ws, [r["class_accuracy"] for r in rows], "o-", label="all classes")
    a1.plot(ws, [r["worst_class_accuracy"] for r in rows], "s--", label="worst class")
    a1.axhline(clf_acc, color="gray", ls=":", label=f"real held-out digits ({clf_acc:.2f})")
    a1.set_xlabel("guidance scale w")
    a1.set_ylabel("classifier accuracy on samples")
    a1.set_ylim(0, 1.02)
    a1.legend(fontsize=8)
    a1.set_title("fidelity: does the sample show its class?")
    a2.plot(ws, [r["classifier_fd"] for r in rows], "o-", color="tab:red", label="samples vs real")
    a2.axhline(fd_real, color="gray", ls=":", label=f"real vs real ({fd_real:.2f})")
    a2.set_xlabel("guidance scale w")
    a2.set_ylabel("Fréchet distance (classifier features)")
    a2.set_title("realism + diversity (lower is better)")
    a2.legend(fontsize=8)
    ctx.savefig(fig, "guidance_tradeoff.png")


def _plot_grids(ctx, grids, k):
    ws = list(grids)
    # a panel's width follows its k columns of digits, so 10 per class are not shrunk to fit
    fig, axes = ctx.figure(1, len(ws), figsize=((0.3 * k + 0.5) * len(ws) + 0.5, 3.9))
    axes = np.atleast_1d(axes)
    for ax, w in zip(axes, ws, strict=True):
        ax.imshow(_grid_image(grids[w], 10, k), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"w = {w:g}")
        H = grids[w].shape[-1] + 1
        ax.set_yticks([H * c + H / 2 - 1 for c in range(10)], [str(c) for c in range(10)])
        ax.set_xticks([])
    axes[0].set_ylabel("requested class")
    ctx.savefig(fig, "samples_per_class.png")


def _plot_training(ctx, vae_losses, unet_losses, x_show, vae):
    from deepnotes.utils.plot import log_ticks

    fig, (a1, a2, a3) = ctx.figure(
        1, 3, figsize=(14, 3.8), gridspec_kw={"width_ratios": [1, 1, 1.5]}
    )
    a1.semilogy(vae_losses)
    a1.set_xlabel("VAE step")
    a1.set_ylabel("reconstruction MSE")
    a1.set_title("autoencoder")
    a2.plot(unet_losses, alpha=0.4, label="per step")
    k = max(1, len(unet_losses) // 50)
    sm = np.convolve(unet_losses, np.ones(k) / k, mode="valid")
    a2.plot(np.arange(len(sm)) + k - 1, sm, color="k", label=f"mean of {k} steps")
    a2.set_yscale("log")  # the first steps' loss is 20x the plateau
    log_ticks(a2, "y")
    a2.legend(fontsize=8)
    a2.set_xlabel("UNet step")
    a2.set_ylabel("noise-prediction MSE")
    a2.set_title("latent diffusion")
    with torch.no_grad():
        pair = torch.cat([x_show, vae(x_show).clamp(-1, 1)])
    a3.imshow(_grid_image(pair, 2, len(x_show)), cmap="gray_r", vmin=0, vmax=1)
    a3.set_yticks([])
    a3.set_xticks([])
    a3.set_title("held-out digits (top) and VAE reconstructions")
    ctx.savefig(fig, "training.png")
