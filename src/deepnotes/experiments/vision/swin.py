"""`deepnotes run swin`: Swin vs a plain ViT vs Swin without the shift, at equal parameters.

Task: scikit-learn's 8×8 digits, upsampled to 16×16 (×2, bilinear) and pasted on a noisy
24×24 canvas, shifted from the centre by up to `jitter` pixels each way (a fresh shift every
time a training digit is drawn; fixed shifts for the held-out digits), so the strokes fall
on different window borders from image to image. Inputs are standardised (zero mean, unit
variance): without it the LayerNorm after Swin's patch embedding maps the many blank patches
and the faint ones to nearly the same token and training stalls.
Three models get the same optimiser, steps and batch:
- Swin (W-MSA and SW-MSA alternating);
- Swin with the shift off (W-MSA only): the paper's Table 4 ablation (ImageNet: 81.3 vs
  80.2 top-1 for Swin-T with and without the shift);
- a plain ViT with global attention, its width chosen to match Swin's parameter count.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from deepnotes.jobs import Context, Result, experiment
from deepnotes.models.swin import Swin, SwinConfig
from deepnotes.models.vit import ViT, ViTConfig


@dataclass
class SwinExpConfig:
    canvas: int = 24  # side of the canvas the digit is pasted on
    scale: int = 2  # digit upsampling factor (8 -> 16 pixels)
    noise: float = 0.1  # std of the background noise
    jitter: int = 2  # largest shift of the digit from the centre, in pixels (each axis)
    n_test: int = 397  # held-out digits (the last ones of the 1797)
    patch_size: int = 2  # Swin patch side (12×12 tokens at 24²)
    window_size: int = 3  # Swin window M (stage grids 12, 6, 3)
    embed_dim: int = 24  # Swin C (stages C, 2C, 4C; depths 2-2-2)
    vit_patch: int = 3  # ViT patch side (8×8 = 64 tokens at 24²)
    vit_depth: int = 5  # ViT blocks; its width is chosen to match Swin's parameters
    vit_heads: int = 3  # ViT heads
    steps: int = 250  # optimiser steps per model
    batch_size: int = 32  # images per step
    lr: float = 1e-3  # AdamW peak learning rate (warm-up 10%, cosine decay)
    weight_decay: float = 0.05  # AdamW weight decay (the paper's)
    eval_every: int = 50  # steps between test evaluations
    seeds: int = 1  # independent runs per model (different init and data order)
    count_flops: bool = True  # count multiply-adds per image (FlopCounterMode; slow-ish)


def _digits(cfg: SwinExpConfig):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0  # [1797, 1, 8, 8]
    x = F.interpolate(x, scale_factor=cfg.scale, mode="bilinear", align_corners=False)
    y = torch.tensor(d.target)
    n_test = min(cfg.n_test, len(y) - 100)
    return (x[:-n_test], y[:-n_test]), (x[-n_test:], y[-n_test:])


def _paste(digits: torch.Tensor, cfg: SwinExpConfig, gen: torch.Generator) -> torch.Tensor:
    """digits: [n, 1, s, s] -> [n, 1, canvas, canvas], shifted, with noise."""
    n, _, s, _ = digits.shape
    out = cfg.noise * torch.randn(n, 1, cfg.canvas, cfg.canvas, generator=gen)
    centre = (cfg.canvas - s) // 2
    j = min(cfg.jitter, centre)
    offs = centre + torch.randint(-j, j + 1, (n, 2), generator=gen)
    for i, (oy, ox) in enumerate(offs.tolist()):
        out[i, :, oy : oy + s, ox : ox + s] += digits[i]
    return out


def _models(cfg: SwinExpConfig) -> dict:
    sc = SwinConfig(
        image_size=cfg.canvas, patch_size=cfg.patch_size, in_chans=1, embed_dim=cfg.embed_dim,
        depths=(2, 2, 2), num_heads=(2, 4, 8), window_size=cfg.window_size, num_classes=10,
    )  # fmt: skip
    n_swin = sum(p.numel() for p in Swin(sc).parameters())

    def vit(d):
        return ViTConfig(
            image_size=cfg.canvas, patch_size=cfg.vit_patch, in_chans=1, dim=d,
            depth=cfg.vit_depth, heads=cfg.vit_heads, num_classes=10,
        )  # fmt: skip

    # the ViT width (a multiple of 2·heads) whose parameter count is closest to Swin's
    best, best_gap = cfg.vit_heads * 2, float("inf")
    with torch.device("meta"):  # sizes only: no memory, no init
        for d in range(cfg.vit_heads * 2, cfg.vit_heads * 256, cfg.vit_heads * 2):
            gap = sum(p.numel() for p in ViT(vit(d)).parameters()) - n_swin
            if abs(gap) < best_gap:
                best, best_gap = d, abs(gap)
            if gap > 0:
                break
    return {
        "Swin (shifted windows)": lambda: Swin(sc),
        "Swin, no shift (W-MSA only)": lambda: Swin(SwinConfig(**{**sc.__dict__, "shift": False})),
        f"ViT (global attention, d={best})": lambda: ViT(vit(best)),
    }


def _flops_per_image(make, canvas) -> float:
    m = make()  # small models: a real CPU forward of one image is quicker than meta tracing
    fc = FlopCounterMode(display=False)
    with fc, torch.no_grad():
        m(torch.randn(1, 1, canvas, canvas))
    return fc.get_total_flops() / 2  # multiply-adds


@torch.no_grad()
def _accuracy(model, x, y, device, bs=256) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(y), bs):
        correct += (model(x[i : i + bs].to(device)).argmax(-1).cpu() == y[i : i + bs]).sum().item()
    model.train()
    return correct / len(y)


def _train(make, cfg, train, test, paste, seed, ctx: Context, label: str):
    torch.manual_seed(seed)
    model = make().to(ctx.device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = max(1, cfg.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            (s + 1) / warm
            if s < warm
            else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, cfg.steps - warm)))
        ),
    )
    gen = torch.Generator().manual_seed(1000 + seed)
    (xtr, ytr), (xte, yte) = train, test
    curve, losses = [], []
    t0 = time.perf_counter()
    for step in ctx.progress(range(cfg.steps), desc=f"{label} seed {seed}", leave=False):
        idx = torch.randint(0, len(ytr), (cfg.batch_size,), generator=gen)
        xb = paste(xtr[idx], gen).to(ctx.device)
        loss = F.cross_entropy(model(xb), ytr[idx].to(ctx.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            curve.append((step + 1, _accuracy(model, xte, yte, ctx.device)))
    wall = time.perf_counter() - t0
    return {"curve": curve, "loss": losses, "images_per_s": cfg.steps * cfg.batch_size / wall}


@experiment(
    "swin",
    "Swin vs ViT vs Swin without shift at equal parameters on digits pasted in a noisy canvas",
    SwinExpConfig,
    presets={
        "smoke": {
            "steps": 3,
            "batch_size": 8,
            "n_test": 24,
            "eval_every": 2,
            "seeds": 1,
            "count_flops": False,
        },
        "gpu": {
            "canvas": 48,
            "scale": 4,
            "patch_size": 2,
            "window_size": 6,
            "embed_dim": 48,
            "vit_patch": 4,
            "vit_depth": 6,
            "vit_heads": 4,
            "steps": 2000,
            "batch_size": 256,
            "eval_every": 200,
            "seeds": 3,
        },
    },  # fmt: skip
)
def run_swin(cfg: SwinExpConfig, ctx: Context) -> Result:
    if cfg.canvas < 8 * cfg.scale:
        raise ValueError(f"canvas {cfg.canvas} is smaller than the digit ({8 * cfg.scale})")
    train, test = _digits(cfg)
    gen = torch.Generator().manual_seed(12345)
    sample = _paste(train[0][:512], cfg, gen)
    mean, std = sample.mean().item(), sample.std().item()

    def paste(digits, g):  # standardised with the training pixels' mean and std
        return (_paste(digits, cfg, g) - mean) / std

    test = (paste(test[0], gen), test[1])
    rows, runs = [], {}
    for name, make in _models(cfg).items():
        params = sum(p.numel() for p in make().parameters())
        macs = _flops_per_image(make, cfg.canvas) if cfg.count_flops else None
        runs[name] = [
            _train(make, cfg, train, test, paste, ctx.seed + s, ctx, name.split(" (")[0])
            for s in range(cfg.seeds)
        ]
        finals = np.array([r["curve"][-1][1] for r in runs[name]])
        rows.append(
            {
                "model": name,
                "params": params,
                "MFLOPs (MACs) / image": None if macs is None else round(macs / 1e6, 2),
                "test_acc": round(float(finals.mean()), 4),
                "test_acc_std": round(float(finals.std()), 4),
                "final_train_loss": round(
                    float(np.mean([np.mean(r["loss"][-20:]) for r in runs[name]])), 4
                ),
                "train_images_per_s": round(
                    float(np.mean([r["images_per_s"] for r in runs[name]])), 1
                ),
            }
        )
    from deepnotes.utils.plot import log_if_wide, log_ticks

    fig, (ax1, ax2) = ctx.figure(1, 2, figsize=(11, 4.2))
    for name, rs in runs.items():
        steps = [s for s, _ in rs[0]["curve"]]
        acc = np.mean([[a for _, a in r["curve"]] for r in rs], axis=0)
        ax1.plot(steps, acc, marker="o", ms=3, label=name)
        loss = np.mean([r["loss"] for r in rs], axis=0)
        k = max(1, len(loss) // 30)
        ax2.plot(np.convolve(loss, np.ones(k) / k, mode="valid"), label=name)
    ax1.set_xlabel("step")
    ax1.set_ylabel("held-out accuracy")
    ax1.set_title(f"digits on a {cfg.canvas}² canvas ({cfg.seeds} seed(s), mean)")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    ax2.set_xlabel("step")
    ax2.set_ylabel("training cross-entropy (moving mean)")
    if log_if_wide(ax2, [v for line in ax2.get_lines() for v in line.get_ydata()], "y", 1.0):
        log_ticks(ax2, "y")  # a decade or more; under one, a linear axis labels it better
    ax2.set_title("training loss")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    ctx.savefig(fig, "swin_vs_vit.png")
    acc = {r["model"]: r["test_acc"] for r in rows}
    names = list(acc)
    return Result(
        metrics={
            "swin_acc": acc[names[0]],
            "swin_no_shift_acc": acc[names[1]],
            "vit_acc": acc[names[2]],
            "shift_gain": round(acc[names[0]] - acc[names[1]], 4),
        },
        table=rows,
        columns=list(rows[0]),
        notes=[
            "paper (Table 4, ImageNet-1k, Swin-T): shifted windows 81.3 top-1 vs 80.2 without",
            f"equal budget: {cfg.steps} steps of {cfg.batch_size} images for every model",
        ],
    )
