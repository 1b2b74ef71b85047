"""`deepnotes run upsampling`: x2 / x4 super-resolution on scikit-image's bundled photos.

Four learned upsampling layers share one small ESPCN trunk (`SRNet`): sub-pixel convolution
with ICNR init (ESPCN, Shi et al. 2016), the same without ICNR, a transposed convolution with
kernel r + 1 (uneven overlap) and resize-convolution (Odena et al. 2016). Each is trained
briefly on random patches of the training photos' luma, then evaluated on held-out photos
against cubic interpolation: PSNR and SSIM (skimage.metrics, border of r pixels shaved).

The checkerboard artefact is measured as the share of an output's spectral energy on the
stride-frequency lattice (`checkerboard_energy`): on a flat input at init (where it is pure
artefact), and on the test photos after training (beside the same share of the true image).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from deepnotes.jobs import Context, Result, experiment
from deepnotes.layers.upsample import checkerboard_energy, interpolate
from deepnotes.vision.networks import SRNet

UPS = ("subpixel", "subpixel-noicnr", "transposed", "resize")


@dataclass
class UpsamplingConfig:
    scales: str = "2,4"  # upscaling factors r
    methods: str = ",".join(UPS)  # learned upsampling layers to train (cubic is always there)
    train_images: str = "coffee,chelsea,rocket,coins,moon,brick"  # skimage.data photos
    test_images: str = "camera,astronaut"  # held-out skimage.data photos
    c1: int = 32  # trunk width after the 5x5 conv (ESPCN: 64; halved for a CPU budget)
    c2: int = 32  # trunk width after the 3x3 conv (ESPCN: 32)
    residual: bool = True  # add a bilinear upsample of the input (VDSR-style global skip):
    # converges within a CPU budget; False = ESPCN's direct output
    patch: int = 48  # high-resolution training patch (a multiple of every scale)
    batch: int = 16  # patches per step
    pool: int = 2048  # distinct training patches per scale (drawn once, then sampled)
    steps: int = 400  # Adam steps per model and scale
    lr: float = 2e-3  # Adam step size
    test_crop: int = 0  # > 0: evaluate on the central crop of this size (smoke runs)


def _luma(name: str) -> np.ndarray:
    import skimage.data
    from skimage.color import rgb2gray, rgba2rgb
    from skimage.util import img_as_float64

    im = getattr(skimage.data, name)()
    if im.ndim == 3 and im.shape[-1] == 4:
        im = rgba2rgb(im)
    if im.ndim == 3:
        im = rgb2gray(im)
    return img_as_float64(im)


def _downscale(hr: np.ndarray, r: int) -> np.ndarray:
    from skimage.transform import resize

    h, w = hr.shape
    return resize(hr, (h // r, w // r), order=3, anti_aliasing=True, mode="edge")


def _cubic(lr: np.ndarray, r: int) -> np.ndarray:
    from skimage.transform import resize

    h, w = lr.shape
    return np.clip(resize(lr, (h * r, w * r), order=3, mode="edge", anti_aliasing=False), 0, 1)


class SR(torch.nn.Module):
    """SRNet plus the optional global skip (a bilinear upsample of the input)."""

    def __init__(self, r: int, up: str, cfg: UpsamplingConfig):
        super().__init__()
        self.r, self.residual = r, cfg.residual
        self.net = SRNet(r, up, cfg.c1, cfg.c2)

    def forward(self, x):
        y = self.net(x)
        if self.residual:
            y = y - 0.5 + interpolate(x, scale_factor=self.r, mode="bilinear")
        return y


def _patch_pool(imgs, r, cfg, gen, device):
    """A fixed pool of random HR patches (with flips and transposes) and their LR versions
    (anti-aliased cubic), drawn once per scale so the steps don't pay for resizing."""
    n = max(cfg.batch, min(cfg.pool, cfg.steps * cfg.batch))
    hr, lr = [], []
    for _ in range(n):
        im = imgs[int(gen.integers(len(imgs)))]
        y, x = gen.integers(0, im.shape[0] - cfg.patch), gen.integers(0, im.shape[1] - cfg.patch)
        p = im[y : y + cfg.patch, x : x + cfg.patch]
        if gen.random() < 0.5:
            p = p[:, ::-1]
        if gen.random() < 0.5:
            p = p.T
        p = np.ascontiguousarray(p)
        hr.append(p)
        lr.append(_downscale(p, r))
    t = lambda a: torch.tensor(np.stack(a), dtype=torch.float32, device=device)[:, None]  # noqa: E731
    return t(lr), t(hr)


def _predict(model, lr: np.ndarray, device) -> np.ndarray:
    with torch.no_grad():
        x = torch.tensor(lr, dtype=torch.float32, device=device)[None, None]
        return model(x)[0, 0].clamp(0, 1).double().cpu().numpy()


def _scores(sr, hr, r):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a, b = sr[r:-r, r:-r], hr[r:-r, r:-r]
    return (
        peak_signal_noise_ratio(b, a, data_range=1.0),
        structural_similarity(b, a, data_range=1.0),
    )


def _lattice(img: np.ndarray, r: int) -> float:
    h, w = (np.array(img.shape) - 2 * r) // r * r
    return float(checkerboard_energy(torch.from_numpy(img[r : r + h, r : r + w].copy()), r))


@experiment(
    "upsampling",
    "x2/x4 super-resolution on skimage photos: sub-pixel (ICNR), transposed, resize-conv vs cubic",
    UpsamplingConfig,
    presets={
        "smoke": {
            "scales": "2",
            "methods": "subpixel,transposed",
            "steps": 3,
            "batch": 2,
            "c1": 8,
            "c2": 8,
            "train_images": "coins",
            "test_images": "camera",
            "test_crop": 64,
        },
        "gpu": {"c1": 64, "c2": 32, "steps": 4000, "batch": 64, "lr": 1e-3, "pool": 8192},
    },  # fmt: skip
)
def run_upsampling(cfg: UpsamplingConfig, ctx: Context) -> Result:
    scales = [int(s) for s in cfg.scales.split(",")]
    methods = [m for m in cfg.methods.split(",") if m]
    if any(m not in UPS for m in methods):
        raise ValueError(f"methods must be among {UPS}, got {cfg.methods!r}")
    if any(cfg.patch % r for r in scales):
        raise ValueError(f"patch {cfg.patch} must be a multiple of every scale {scales}")
    train = [_luma(n) for n in cfg.train_images.split(",")]
    tests = {}
    for n in cfg.test_images.split(","):
        im = _luma(n)
        if cfg.test_crop:
            c, (h, w) = cfg.test_crop, im.shape
            im = im[(h - c) // 2 : (h + c) // 2, (w - c) // 2 : (w + c) // 2]
        tests[n] = im
    rows, curves, outputs, init_maps = [], {}, {}, {}
    for r in scales:
        lrs, hrs = {}, {}
        for n, im in tests.items():
            h, w = im.shape[0] // r * r, im.shape[1] // r * r
            hrs[n] = im[:h, :w]
            lrs[n] = _downscale(hrs[n], r)
        for n in tests:
            cub = _cubic(lrs[n], r)
            psnr, ssim = _scores(cub, hrs[n], r)
            outputs[(r, "cubic", n)] = cub
            rows.append(
                {"scale": r, "method": "cubic", "image": n, "psnr": psnr, "ssim": ssim,
                 "lattice": _lattice(cub, r), "lattice_hr": _lattice(hrs[n], r)}
            )  # fmt: skip
        pool_lr, pool_hr = _patch_pool(train, r, cfg, np.random.default_rng(ctx.seed), ctx.device)
        for m in methods:
            torch.manual_seed(ctx.seed)
            model = SR(r, m, cfg).to(ctx.device)
            flat = torch.full((1, 1, 32, 32), 0.5, device=ctx.device)
            with torch.no_grad():
                y0 = model.net(flat)[0, 0, 2 * r : -2 * r, 2 * r : -2 * r].cpu()
            init_maps[(r, m)] = y0.numpy()
            e0 = float(checkerboard_energy(y0 + 1e-12 * torch.randn_like(y0), r))
            gen = torch.Generator().manual_seed(ctx.seed)
            opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
            losses, t0 = [], time.perf_counter()
            for _ in ctx.progress(range(cfg.steps), desc=f"x{r} {m}"):
                idx = torch.randint(0, len(pool_hr), (cfg.batch,), generator=gen).to(ctx.device)
                x, y = pool_lr[idx], pool_hr[idx]
                loss = F.mse_loss(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                losses.append(loss.item())
            train_s = time.perf_counter() - t0
            curves[(r, m)] = losses
            for n in tests:
                sr = _predict(model, lrs[n], ctx.device)
                psnr, ssim = _scores(sr, hrs[n], r)
                outputs[(r, m, n)] = sr
                rows.append({"scale": r, "method": m, "image": n, "psnr": psnr, "ssim": ssim,
                             "lattice": _lattice(sr, r), "lattice_hr": _lattice(hrs[n], r),
                             "lattice_init": e0, "train_s": train_s})  # fmt: skip
    _plot_crops(ctx, outputs, tests, scales, methods, rows)
    _plot_checkerboard(ctx, init_maps, rows, curves, scales, methods)
    mean = {}
    for row in rows:
        mean.setdefault((row["scale"], row["method"]), []).append(row)
    metrics = {
        f"x{r}_{m}": {k: float(np.mean([q[k] for q in v])) for k in ("psnr", "ssim", "lattice")}
        for (r, m), v in mean.items()
    }
    for (r, m), v in mean.items():
        if "lattice_init" in v[0]:
            metrics[f"x{r}_{m}"]["lattice_init"] = v[0]["lattice_init"]
    return Result(
        metrics=metrics,
        table=rows,
        columns=[
            "scale",
            "method",
            "image",
            "psnr",
            "ssim",
            "lattice",
            "lattice_hr",
            "lattice_init",
            "train_s",
        ],  # fmt: skip
        notes=[
            "psnr/ssim on luma in [0, 1], r-pixel border shaved; LR = anti-aliased cubic "
            "downscale; cubic = skimage resize order 3",
            "lattice = share of the output's non-DC spectral energy on the stride-frequency "
            "lattice (the r-periodic part); lattice_hr = the same for the true image; "
            "lattice_init = the upsampler's output on a flat input at init (pure artefact)",
            f"{cfg.steps} Adam steps of {cfg.batch} patches of {cfg.patch} px per model; "
            f"trunk {cfg.c1}/{cfg.c2} channels; residual over bilinear: {cfg.residual}",
        ],
    )


def _plot_crops(ctx, outputs, tests, scales, methods, rows):
    """Per scale: a crop of every output, and of its error against the truth (the periodic
    pattern of an uneven transposed conv shows best in the error)."""
    name = next(iter(tests))
    hr = tests[name]
    c = min(96, hr.shape[0] // 2)
    y0, x0 = (hr.shape[0] - c) // 3, (hr.shape[1] - c) // 2  # camera: the face and hands
    cols = ["hr", "cubic", *methods]
    fig, axes = ctx.figure(2 * len(scales), len(cols), figsize=(2.7 * len(cols), 5.6 * len(scales)))
    axes = np.asarray(axes).reshape(2 * len(scales), len(cols))
    cax = None
    for i, r in enumerate(scales):
        for ax, ax_err, m in zip(axes[2 * i], axes[2 * i + 1], cols, strict=True):
            img = hr if m == "hr" else outputs[(r, m, name)]
            crop = img[y0 : y0 + c, x0 : x0 + c]
            ax.imshow(crop, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.axis("off")
            ax_err.axis("off")
            if m == "hr":  # the truth has no error: its slot holds the error colour bar
                ax.set_title(f"{name}, ground truth ({c} px crop)", fontsize=9)
                cax = ax_err.inset_axes([0.4, 0.05, 0.12, 0.85])
                continue
            err = crop - hr[y0 : y0 + c, x0 : x0 + c]
            im = ax_err.imshow(err, cmap="coolwarm", vmin=-0.15, vmax=0.15, interpolation="nearest")
            if cax is not None:
                fig.colorbar(im, cax=cax, label="output - truth (clipped at 0.15)", extend="both")
                cax = None
            q = next(q for q in rows if (q["scale"], q["method"], q["image"]) == (r, m, name))
            ax.set_title(f"x{r} {m}\n{q['psnr']:.2f} dB, SSIM {q['ssim']:.3f}", fontsize=9)
            ax_err.set_title(f"x{r} {m}: output - truth", fontsize=9)
    ctx.savefig(fig, "sr_crops.png")


def _plot_checkerboard(ctx, init_maps, rows, curves, scales, methods):
    """Top: each upsampler's output at init on a flat input, minus its mean, on one shared
    symmetric colour scale (with its colour bar): a flat output is white, a checkerboard
    shows. Bottom: energy on the stride lattice of the trained models, and training curves."""
    from deepnotes.utils.plot import log_ticks

    r = scales[-1]
    n = max(len(methods), 2)
    ratios = {"height_ratios": [1, 1.15], "width_ratios": [1] * n + [0.07]}  # + colour bar
    fig, axes = ctx.figure(2, n + 1, figsize=(3.4 * n + 1.0, 7.6), gridspec_kw=ratios)
    maps = {m: init_maps[(r, m)][:16, :16] for m in methods}
    maps = {m: y - y.mean() for m, y in maps.items()}
    lim = max(float(np.abs(y).max()) for y in maps.values()) or 1.0
    for ax, m in zip(axes[0], methods, strict=False):
        im = ax.imshow(maps[m], cmap="coolwarm", vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set_title(f"x{r} {m} at init\n(flat input, 16x16 px)", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[0][len(methods) : n]:
        ax.set_visible(False)
    fig.colorbar(im, cax=axes[0][n], label="output - its mean")
    gs = axes[1][0].get_gridspec()
    for ax in axes[1]:
        ax.remove()
    half = n // 2
    ax = fig.add_subplot(gs[1, :half])
    kinds = ["hr", "cubic", *methods]
    width = 0.8 / len(scales)
    for i, s in enumerate(scales):
        vals = []
        for k in kinds:
            sel = [q for q in rows if q["scale"] == s and q["method"] == (k if k != "hr" else
                                                                          "cubic")]  # fmt: skip
            vals.append(np.mean([q["lattice_hr" if k == "hr" else "lattice"] for q in sel]))
        ax.bar(np.arange(len(kinds)) + (i - (len(scales) - 1) / 2) * width, vals, width,
               label=f"x{s}")  # fmt: skip
    ax.set_yscale("log")
    log_ticks(ax, "y")
    ax.set_xticks(range(len(kinds)), ["truth" if k == "hr" else k for k in kinds], rotation=25,
                  ha="right", fontsize=9)  # fmt: skip
    ax.set_ylabel("energy share on the stride lattice")
    ax.set_title("checkerboard energy of the trained models (test photos)", fontsize=10)
    ax.legend(fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    ax = fig.add_subplot(gs[1, half:n])
    for (s, m), losses in curves.items():
        k = max(1, len(losses) // 20)
        sm = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(sm, label=f"x{s} {m}", color=f"C{methods.index(m) % 10}",
                linestyle="-" if s == scales[0] else "--")  # fmt: skip
    ax.set_yscale("log")
    log_ticks(ax, "y")
    ax.set_xlabel("step")
    ax.set_ylabel("training MSE (moving mean)")
    ax.set_title("training (colour = method, dashed = larger scale)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8.5, ncol=2)
    ctx.savefig(fig, "checkerboard.png")
