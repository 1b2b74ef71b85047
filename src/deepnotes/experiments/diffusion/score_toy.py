"""`deepnotes run score-toy`: score matching and (annealed) Langevin dynamics on 2-D mixtures.

NCSN's Figure 3 (Song & Ermon 2019): data 1/5 N((-5,-5), I) + 4/5 N((5,5), I), samplers started
uniformly on [-8, 8]^2. Plain Langevin with the exact score keeps every chain in its starting
basin, so about half the samples land in each mode; annealed Langevin over noise levels
sigma_1 > ... > sigma_L mixes at the large levels and recovers the weights 0.2 / 0.8. Both are
run with the exact score and with a small score network learned by multi-level DSM, whose
field is compared with the exact one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from deepnotes.diffusion.samplers import annealed_langevin_dynamics, langevin_dynamics
from deepnotes.diffusion.score_matching import dsm_loss
from deepnotes.diffusion.toy import ncsn_mixture
from deepnotes.experiments.diffusion.common import cpu_score_fn, threads, train_score_net
from deepnotes.jobs import Context, Result, experiment


@dataclass
class ScoreToyConfig:
    n_samples: int = 2000  # chains per sampler (mode-weight SE ~ 0.009 at 2000)
    langevin_steps: int = 1000  # plain Langevin iterations (NCSN Fig. 3 uses 1000)
    langevin_step_size: float = 0.1  # plain Langevin step eps
    sigma_max: float = 20.0  # largest noise level: about the distance between the modes
    sigma_min: float = 0.1  # smallest noise level: well below the modes' unit std
    n_sigmas: int = 10  # geometric noise levels (NCSN uses 10)
    steps_per_sigma: int = 300  # annealed Langevin iterations per level (100 leaves ~0.23)
    anneal_eps: float = 0.002  # step at level i: eps * sigma_i^2 / sigma_min^2
    train_steps: int = 3000  # Adam steps of DSM for the score network
    batch: int = 512  # data per DSM step
    lr: float = 2e-3  # Adam learning rate (cosine-decayed)
    hidden: int = 128  # score-network width (3 hidden layers)


def _frac_low(x: torch.Tensor) -> float:
    """Share of samples in the (-5, -5) mode's half-plane x1 + x2 < 0."""
    return float((x.sum(1) < 0).double().mean())


@experiment(
    "score-toy",
    "score matching and Langevin vs annealed Langevin on 2-D mixtures (NCSN Fig. 3)",
    ScoreToyConfig,
    presets={
        "smoke": {
            "n_samples": 200,
            "langevin_steps": 50,
            "steps_per_sigma": 10,
            "train_steps": 30,
            "batch": 64,
            "hidden": 32,
        },
        "gpu": {"n_samples": 10000, "train_steps": 20000, "batch": 2048, "hidden": 256},
    },
)
def run_score_toy(cfg: ScoreToyConfig, ctx: Context) -> Result:
    if not 0 < cfg.sigma_min < cfg.sigma_max or cfg.n_sigmas < 2:
        raise ValueError("need 0 < sigma_min < sigma_max and n_sigmas >= 2")
    gm = ncsn_mixture()
    sigmas = torch.exp(
        torch.linspace(math.log(cfg.sigma_max), math.log(cfg.sigma_min), cfg.n_sigmas)
    ).double()
    with threads(1 if ctx.device.type == "cpu" else torch.get_num_threads()):
        net, losses = train_score_net(
            lambda net, x, g: dsm_loss(net, x, sigmas.float().to(x.device), generator=g),
            lambda n, g: gm.sample(n, g),
            steps=cfg.train_steps,
            batch=cfg.batch,
            lr=cfg.lr,
            hidden=cfg.hidden,
            device=ctx.device,
            seed=ctx.seed,
            progress=ctx.progress,
        )
        learned = cpu_score_fn(net)
        exact = gm.sigma_score_fn()
        g = torch.Generator().manual_seed(ctx.seed + 1)
        x0 = torch.rand(cfg.n_samples, 2, generator=g, dtype=torch.float64) * 16 - 8
        smin = torch.tensor([cfg.sigma_min], dtype=torch.float64)
        samples, rows = {}, []
        runs = [(s, m) for s in ("exact", "learned") for m in ("Langevin", "annealed Langevin")]
        for score_name, method in ctx.progress(runs, desc="samplers"):
            fn = exact if score_name == "exact" else learned
            if method == "Langevin":
                # Exact: the data score. Learned: the net at sigma_min (data + N(0, sigma_min^2)).
                def data_score(x, fn=fn, score_name=score_name):
                    return gm.score(x) if score_name == "exact" else fn(x, smin)

                x = langevin_dynamics(
                    data_score, x0, cfg.langevin_step_size, cfg.langevin_steps, generator=g
                )
            else:
                x = annealed_langevin_dynamics(
                    fn, x0, sigmas, cfg.anneal_eps, cfg.steps_per_sigma, generator=g
                )
            samples[(score_name, method)] = x
            w = _frac_low(x)
            rows.append(
                {
                    "score": score_name,
                    "sampler": method,
                    "weight_(-5,-5)": round(w, 4),
                    "weight_(5,5)": round(1 - w, 4),
                    "se": round(math.sqrt(w * (1 - w) / cfg.n_samples), 4),
                    "target": "0.2 / 0.8",
                }
            )
        field_err = _field_errors(gm, learned, sigmas)
    _plot_samples(ctx, samples, gm, cfg)
    _plot_fields(ctx, gm, exact, learned, sigmas, losses)
    metrics = {
        f"{s}_{m.split()[0].lower()}_weight_low": r["weight_(-5,-5)"]
        for (s, m), r in zip(samples, rows, strict=True)
    }
    metrics["true_weight_low"] = 0.2
    metrics["dsm_final_loss"] = float(np.mean(losses[-100:])) if losses else float("nan")
    metrics.update({f"score_rel_err_sigma_{k}": v for k, v in field_err.items()})
    return Result(
        metrics=metrics,
        table=rows,
        columns=["score", "sampler", "weight_(-5,-5)", "weight_(5,5)", "se", "target"],
        notes=[
            "weights = share of samples with x1 + x2 < 0; chains start uniform on [-8, 8]^2",
            f"annealed: {cfg.n_sigmas} geometric levels {cfg.sigma_max} -> {cfg.sigma_min}, "
            f"{cfg.steps_per_sigma} steps each, step {cfg.anneal_eps} sigma_i^2 / sigma_min^2",
            "learned plain Langevin uses the network at sigma_min (the data blurred by it)",
            "score_rel_err = sqrt(E||s_net - s||^2 / E||s||^2) over the perturbed data",
        ],
    )


@torch.no_grad()
def _field_errors(gm, learned, sigmas) -> dict[str, float]:
    """Relative RMS error of the learned score on samples of each perturbed distribution."""
    g, out = torch.Generator().manual_seed(123), {}
    for s in (sigmas[0], sigmas[len(sigmas) // 2], sigmas[-1]):
        x = gm.sample(4000, g) + float(s) * torch.randn(4000, 2, generator=g, dtype=torch.float64)
        ref = gm.score(x, torch.ones(4000, dtype=torch.float64), s.expand(4000))
        err = (learned(x, s) - ref).norm() / ref.norm()
        out[f"{float(s):.3g}"] = round(float(err), 4)
    return out


def _plot_samples(ctx: Context, samples, gm, cfg) -> None:
    fig, axes = ctx.figure(2, 3, figsize=(13, 8.4))
    data = gm.sample(cfg.n_samples, torch.Generator().manual_seed(0))
    for row, score_name in enumerate(("exact", "learned")):
        ax = axes[row, 0]
        ax.scatter(*data.T, s=2, alpha=0.4, c="tab:gray")
        ax.set_title(f"data (weights 0.2 / 0.8)\n[row: {score_name} score]")
        for col, method in enumerate(("Langevin", "annealed Langevin"), start=1):
            x = samples[(score_name, method)]
            w = _frac_low(x)
            ax = axes[row, col]
            ax.scatter(*x.T, s=2, alpha=0.4, c="tab:blue" if col == 1 else "tab:green")
            ax.set_title(f"{method}, {score_name} score\nweights {w:.2f} / {1 - w:.2f}")
        for ax in axes[row]:
            ax.set_xlim(-9.5, 9.5)
            ax.set_ylim(-9.5, 9.5)
            ax.set_aspect("equal")
            ax.set_xlabel("x1")
            ax.set_ylabel("x2")
    ctx.savefig(fig, "ncsn_fig3_samples.png")


@torch.no_grad()
def _plot_fields(ctx: Context, gm, exact, learned, sigmas, losses) -> None:
    lin = torch.linspace(-9, 9, 19, dtype=torch.float64)
    X, Y = torch.meshgrid(lin, lin, indexing="xy")
    pts = torch.stack([X.reshape(-1), Y.reshape(-1)], 1)
    levels = (sigmas[-1], sigmas[len(sigmas) // 2])
    fig, axes = ctx.figure(1, 3, figsize=(15, 5.6))
    for ax, s in zip(axes[:2], levels, strict=True):
        sv = s.expand(len(pts))
        # Unit arrows: the score's size spans orders of magnitude, its direction is the point.
        e, lrn = exact(pts, sv), learned(pts, sv)
        e = (e / e.norm(dim=1, keepdim=True)).numpy()
        lrn = (lrn / lrn.norm(dim=1, keepdim=True)).numpy()
        kw = dict(angles="xy", scale_units="xy", scale=1.4, width=0.004)
        ax.quiver(pts[:, 0], pts[:, 1], e[:, 0], e[:, 1], color="k", label="exact", **kw)
        ax.quiver(
            pts[:, 0], pts[:, 1], lrn[:, 0], lrn[:, 1], color="tab:red", label="learned", **kw
        )
        ax.scatter([-5, 5], [-5, 5], c="tab:blue", marker="x", s=60, label="mode centres")
        ax.set_title(f"score direction at noise level sigma = {float(s):.3g}")
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
        ax.set_aspect("equal")
        # below the axes: the arrows fill the whole panel
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, fontsize=9)
    ax = axes[2]
    if losses:
        k = max(1, len(losses) // 100)
        sm = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(np.arange(len(sm)) + k, sm)
    ax.set_xlabel("DSM step")
    ax.set_ylabel("loss (sigma^2-weighted, smoothed)")
    ax.set_title("multi-level denoising score matching")
    ctx.savefig(fig, "score_fields.png")
