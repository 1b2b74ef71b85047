"""`deepnotes run receptive-field`: theoretical, measured and effective receptive fields.

1. For AlexNet, VGG16, ResNet-18/50 (both ResNet-50 stride placements) and our own CNNs, the
   fx walk gives every layer's receptive field r, jump j and start; the last layer's r is
   then measured by backpropagation through a constant-weight copy (it must be equal).
2. The effective receptive field (Luo et al. 2016) of a plain 3x3 CNN on upsampled digits,
   at random init and after a short training: |d y_centre / d x| averaged over test digits,
   its Gaussian fit, and the half-width holding 95% of the gradient mass against the
   theoretical half-width (r - 1) / 2.
3. The ERF's growth with depth for random ReLU stacks (Luo et al.: ~ sqrt(n), while the
   theoretical field grows as n).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.jobs import Context, Result, experiment
from deepnotes.layers.upsample import interpolate
from deepnotes.utils.io import atomic_write_json
from deepnotes.vision.networks import NETWORKS, DigitsCNN, SRNet
from deepnotes.vision.receptive_field import (
    effective_receptive_field,
    gaussian_fit_r2,
    mass_radius,
    measure_receptive_field,
    module_rf_table,
)


@dataclass
class RFConfig:
    networks: str = "alexnet,vgg16,resnet18,resnet50,resnet50_v1"  # standard nets in the table
    input_size: int = 224  # input size for the per-layer table (sizes only; r does not depend)
    measure_width: float = 0.25  # channel multiplier of the measured copies (r is width-free)
    depth: int = 8  # 3x3 conv layers of the digits CNN (theoretical r = 2 depth + 1)
    channels: int = 16  # its width
    scale: int = 3  # digits are 8x8, upsampled bilinearly to 8 scale
    steps: int = 200  # training steps (Adam, batch below)
    batch: int = 64  # training batch
    lr: float = 2e-3  # Adam step
    erf_images: int = 256  # test digits averaged into each ERF map
    sweep_depths: str = "2,4,8,16,32"  # depths of random ReLU stacks for the ERF-vs-depth curve
    sweep_channels: int = 16  # their width
    sweep_size: int = 96  # their (random-noise) input size
    sweep_samples: int = 8  # random inputs (and inits) averaged per depth


def _digits(scale: int, device):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    x = interpolate(x, scale_factor=scale, mode="bilinear")
    x = (x - 0.5) / 0.5
    y = torch.tensor(d.target)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(y), generator=g)
    n_test = len(y) // 4
    te, tr = perm[:n_test], perm[n_test:]
    return x[tr].to(device), y[tr].to(device), x[te].to(device), y[te].to(device)


def _erf_summary(erf: torch.Tensor, r: int) -> dict:
    sigma, r2 = gaussian_fit_r2(erf.sum(0).cpu())
    rad = mass_radius(erf.cpu(), 0.95)
    return {"sigma": sigma, "gauss_r2": r2, "radius95": rad, "ratio": rad / ((r - 1) / 2)}


def _table_rows(cfg, ctx):
    rows, layers, curves = [], {}, {}
    own = {
        "digits-cnn (ours)": (lambda **kw: DigitsCNN(cfg.depth, cfg.channels), None, "formula"),
        "espcn trunk (ours, LR px)": (lambda **kw: SRNet(2).features, None, "formula"),
    }
    named = {n: NETWORKS[n] for n in cfg.networks.split(",") if n}
    for name, (build, published, source) in ctx.progress({**named, **own}.items(), desc="nets"):
        full = build()
        size = 8 * cfg.scale if name.startswith("digits") else cfg.input_size
        size = 64 if name.startswith("espcn") else size
        h, _ = module_rf_table(full, (size, size))
        small = build(width=cfg.measure_width) if name in NETWORKS else full
        t0 = time.perf_counter()
        (mh, mw), _ = measure_receptive_field(small)
        last = h[-1]
        row = {
            "network": name,
            "last layer": last.name,
            "rf": last.rf,
            "measured": mh if mh == mw else f"{mh}x{mw}",
            "published": published if published is not None else "",
            "jump": last.jump,
            "start": last.start,
            "size": last.size,
            "source": source,
            "measure_s": round(time.perf_counter() - t0, 2),
        }
        if name == "vgg16":
            row["conv5_3"] = next(r.rf for r in h if r.name.endswith("conv5_3"))
        rows.append(row)
        layers[name] = [[r.name, r.kind, r.rf, r.jump, r.start, r.size] for r in h]
        curves[name] = [r.rf for r in h if ".downsample" not in r.name and r.kind != "add"]
    return rows, layers, curves


def _train(net, xtr, ytr, xte, yte, cfg, ctx) -> float:
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    g = torch.Generator(device="cpu").manual_seed(ctx.seed)
    for _ in ctx.progress(range(cfg.steps), desc="train digits-cnn"):
        idx = torch.randint(0, len(ytr), (cfg.batch,), generator=g).to(xtr.device)
        loss = F.cross_entropy(net(xtr[idx]), ytr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float((net(xte).argmax(-1) == yte).float().mean())


def _sweep(cfg, ctx):
    out = []
    for n in ctx.progress([int(d) for d in cfg.sweep_depths.split(",")], desc="ERF vs depth"):
        radii = []
        for s in range(cfg.sweep_samples):
            torch.manual_seed(1000 * n + s)
            layers = []
            for i in range(n):
                layers += [nn.Conv2d(1 if i == 0 else cfg.sweep_channels, cfg.sweep_channels, 3,
                                     padding=1), nn.ReLU()]  # fmt: skip
            net = nn.Sequential(*layers).to(ctx.device)
            x = torch.randn(1, 1, cfg.sweep_size, cfg.sweep_size, device=ctx.device)
            radii.append(effective_receptive_field(net, x).cpu())
        erf = torch.stack(radii).mean(0)
        sigma, r2 = gaussian_fit_r2(erf.sum(0))
        out.append({"depth": n, "theory_radius": n, "radius95": mass_radius(erf, 0.95),
                    "sigma": sigma, "gauss_r2": r2})  # fmt: skip
    return out


@experiment(
    "receptive-field",
    "receptive fields of AlexNet/VGG16/ResNets (formula = gradient) and the effective RF",
    RFConfig,
    presets={
        "smoke": {
            "networks": "alexnet,vgg16",
            "measure_width": 1 / 32,
            "depth": 3,
            "steps": 5,
            "batch": 16,
            "erf_images": 16,
            "sweep_depths": "2,4",
            "sweep_size": 24,
            "sweep_samples": 1,
            "channels": 4,
            "sweep_channels": 4,
        },
        "gpu": {
            "measure_width": 1.0,
            "depth": 10,
            "channels": 64,
            "steps": 3000,
            "batch": 128,
            "erf_images": 540,
            "sweep_depths": "2,4,8,16,32,64",
            "sweep_size": 192,
            "sweep_channels": 64,
            "sweep_samples": 32,
        },
    },  # fmt: skip
)
def run_receptive_field(cfg: RFConfig, ctx: Context) -> Result:
    rows, layers, curves = _table_rows(cfg, ctx)
    bad = [r["network"] for r in rows if r["measured"] != r["rf"]]
    if bad:
        raise AssertionError(f"measured receptive field differs from the formula: {bad}")

    xtr, ytr, xte, yte = _digits(cfg.scale, ctx.device)
    torch.manual_seed(ctx.seed)
    net = DigitsCNN(cfg.depth, cfg.channels).to(ctx.device)
    r = module_rf_table(net, (xtr.shape[-2], xtr.shape[-1]))[0][-1].rf
    probe = xte[: cfg.erf_images]
    erf_init = effective_receptive_field(net.features, probe).cpu()
    acc = _train(net, xtr, ytr, xte, yte, cfg, ctx)
    erf_trained = effective_receptive_field(net.features, probe).cpu()
    s_init, s_tr = _erf_summary(erf_init, r), _erf_summary(erf_trained, r)
    sweep = _sweep(cfg, ctx)

    _plot_erf(ctx, erf_init, erf_trained, s_init, s_tr, r, acc, sweep)
    _plot_curves(ctx, curves)
    # fit radius95 ~ a n^b and sigma ~ a n^b on the sweep (Luo et al.: b = 1/2 for sigma)
    d = np.array([s["depth"] for s in sweep], float)
    slopes = {}
    for key in ("radius95", "sigma"):
        v = np.array([max(s[key], 1e-9) for s in sweep], float)
        slopes[key] = float(np.polyfit(np.log(d), np.log(v), 1)[0]) if len(d) > 1 else float("nan")
    slope = slopes["radius95"]
    atomic_write_json(ctx.out / "rf_layers.json", layers)
    return Result(
        metrics={
            "vgg16_pool5": next((r_["rf"] for r_ in rows if r_["network"] == "vgg16"), None),
            "vgg16_conv5_3": next(
                (r_.get("conv5_3") for r_ in rows if r_["network"] == "vgg16"), None
            ),  # fmt: skip
            "alexnet_pool5": next((r_["rf"] for r_ in rows if r_["network"] == "alexnet"), None),
            "all_measured_equal_formula": not bad,
            "digits_cnn_rf": r,
            "digits_cnn_test_accuracy": acc,
            "erf_init": s_init,
            "erf_trained": s_tr,
            "erf_vs_depth": sweep,
            "erf_radius_depth_exponent": slope,
            "erf_sigma_depth_exponent": slopes["sigma"],
        },
        table=rows,
        columns=[
            "network",
            "last layer",
            "rf",
            "measured",
            "published",
            "jump",
            "start",
            "size",
            "conv5_3",
            "source",
            "measure_s",
        ],  # fmt: skip
        notes=[
            "rf = formula from the fx walk at the last layer before the head; measured = extent "
            "of the non-zero input gradient of one central unit (constant weights, avg pools, "
            f"fp64, width x{cfg.measure_width:g}); start = centre of unit 0 in input pixels",
            f"ERF of the digits CNN (r = {r}): 95% of the gradient mass within a half-width of "
            f"{s_init['radius95']:.1f} px at init and {s_tr['radius95']:.1f} px trained, against "
            f"{(r - 1) / 2:.0f} px theoretical; Gaussian fit R^2 {s_init['gauss_r2']:.3f} / "
            f"{s_tr['gauss_r2']:.3f}",
            f"random ReLU stacks: ERF radius95 grows as depth^{slope:.2f}, its Gaussian sigma "
            f"as depth^{slopes['sigma']:.2f} (Luo et al.: 0.5; theoretical field: depth^1); "
            "per-layer tables in rf_layers.json",
        ],
    )


def _plot_erf(ctx, erf_init, erf_trained, s_init, s_tr, r, acc, sweep):
    from deepnotes.utils.plot import log_ticks

    fig, axes = ctx.figure(1, 4, figsize=(17, 5.0), gridspec_kw={"width_ratios": [1, 1, 1.2, 1.2]})
    h, w = erf_init.shape
    c = (h // 2, w // 2)
    half = (r - 1) / 2
    panels = (
        (axes[0], erf_init, f"random init, 95% radius {s_init['radius95']:.1f}"),
        (axes[1], erf_trained, f"trained (acc {acc:.2f}), 95% radius {s_tr['radius95']:.1f}"),
    )
    for ax, erf, title in panels:
        im = ax.imshow((erf / erf.max()).numpy(), cmap="magma", vmin=0, vmax=1)
        ax.add_patch(_rect(ctx, c, half))
        ax.set_title(f"ERF, {title}", fontsize=10)
        ax.set_xlabel("input x (px)")
        ax.set_ylabel("input y (px)")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label="|dy/dx| / max")
    ax = axes[2]
    xs = np.arange(w)
    for erf, name, col in ((erf_init, "init", "tab:blue"), (erf_trained, "trained", "tab:red")):
        p = erf.sum(0).double()
        p = p / p.sum()
        mu = float((p * torch.arange(w)).sum())
        sig = gaussian_fit_r2(p)[0]
        g = np.exp(-0.5 * ((xs - mu) / sig) ** 2)
        ax.plot(xs, p.numpy(), "o", color=col, ms=4, label=f"{name} (column sums)")
        ax.plot(xs, g * float(p @ torch.tensor(g)) / float(g @ g), "-", color=col, alpha=0.6,
                label=f"{name} Gaussian fit")  # fmt: skip
    ax.axvspan(c[1] - half, c[1] + half, color="grey", alpha=0.15, label=f"theoretical RF ({r})")
    ax.set_xlabel("input x (px)")
    ax.set_ylabel("share of gradient mass")
    ax.set_title("ERF profile (column sums)", fontsize=10)
    ax.set_ylim(0, ax.get_ylim()[1])
    # below the axes: inside, the legend would hide the peak or the theoretical band
    ax.legend(fontsize=8.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    ax = axes[3]
    d = [s["depth"] for s in sweep]
    ax.plot(d, [s["theory_radius"] for s in sweep], "k--o", label="theoretical half-width n")
    ax.plot(d, [s["radius95"] for s in sweep], "r-o", label="ERF 95% half-width")
    ax.plot(d, [s["sigma"] for s in sweep], "b-s", label="ERF Gaussian sigma")
    ref = sweep[-1]["sigma"] / np.sqrt(d[-1])
    ax.plot(d, [ref * np.sqrt(x) for x in d], ":", color="grey", label="~ sqrt(n)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    log_ticks(ax, "x", at=d)
    log_ticks(ax, "y", at=[2.0**k for k in range(-3, 10)])
    ax.set_ylim(min(s["sigma"] for s in sweep) / 1.3, 1.3 * max(s["theory_radius"] for s in sweep))
    ax.set_xlabel("depth n (3x3 conv + ReLU, random init)")
    ax.set_ylabel("half-width or sigma (px)")
    ax.set_title("ERF vs depth", fontsize=10)
    ax.grid(alpha=0.3, which="major")
    ax.legend(fontsize=8.5)
    ctx.savefig(fig, "erf_maps.png")


def _rect(ctx, c, half):
    from matplotlib.patches import Rectangle

    return Rectangle((c[1] - half - 0.5, c[0] - half - 0.5), 2 * half + 1, 2 * half + 1,
                     fill=False, ec="cyan", ls="--", lw=1.2, label="theoretical RF")  # fmt: skip


def _plot_curves(ctx, curves):
    from deepnotes.utils.plot import log_ticks

    fig, ax = ctx.figure(figsize=(8, 4.5))
    for name, rfs in curves.items():
        if "ours" in name:
            continue
        ax.plot(range(1, len(rfs) + 1), rfs, marker=".", label=f"{name} ({rfs[-1]})")
    ax.set_yscale("log")
    log_ticks(ax, "y")
    ax.grid(alpha=0.3, which="major")
    ax.set_xlabel("conv / pool layer along the main path")
    ax.set_ylabel("receptive field (input px)")
    ax.set_title("theoretical receptive field per layer (= gradient-measured at the last layer)")
    ax.legend(fontsize=9, title="network (final RF, px)", title_fontsize=9)
    ctx.savefig(fig, "rf_per_layer.png")
