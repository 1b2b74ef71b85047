"""`deepnotes run sde-toy`: VE vs VP vs sub-VP SDEs on a 2-D mixture (Song et al. 2021).

Data: 8 Gaussians on a ring (exact score at every noise level). For each SDE a small score
network is trained by continuous-time DSM; samples from the exact and the learned score are
graded by the sliced Wasserstein distance (SWD) to fresh data, for three samplers at equal
numbers of score evaluations (NFE):
- Euler-Maruyama on the reverse SDE with N steps (NFE = N);
- PC: reverse-diffusion predictor + one Langevin corrector step, N / 2 steps (NFE = N);
- the probability-flow ODE with RK45 at several tolerances (its NFE is whatever RK45 needs).
Then the likelihood: the data's log-density through the probability-flow ODE (exact trace),
for the exact and the learned scores, against the closed-form mixture density.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.ticker import NullFormatter

from deepnotes.diffusion.likelihood import ode_likelihood
from deepnotes.diffusion.samplers import ode_sampler, pc_sampler
from deepnotes.diffusion.score_matching import sde_dsm_loss
from deepnotes.diffusion.sde import VESDE, VPSDE, subVPSDE
from deepnotes.diffusion.toy import ring_mixture, sliced_wasserstein
from deepnotes.experiments.diffusion.common import cpu_score_fn, threads, train_score_net
from deepnotes.jobs import Context, Result, experiment


@dataclass
class SdeToyConfig:
    n_samples: int = 2000  # samples per sampler run (SWD floor between two data sets ~0.03)
    nfe: str = "10,20,50,100,400"  # score budgets for EM and PC (PC on VP needs N / 2 > 20)
    ode_tols: str = "1e-1,1e-2,1e-3,1e-5"  # RK45 rtol = atol values (1e-5 = score_sde's)
    sigma_max: float = 8.0  # VE's sigma_max: above the ring's diameter (6), per Song & Ermon 2020
    train_steps: int = 3000  # Adam steps of DSM per SDE
    batch: int = 512  # data per DSM step
    lr: float = 2e-3  # Adam learning rate (cosine-decayed)
    hidden: int = 128  # score-network width (3 hidden layers)
    n_ref: int = 10000  # fresh data points the samples are compared with
    n_likelihood: int = 500  # test points for the ODE log-likelihood
    lik_tol: float = 1e-5  # RK45 rtol = atol of the likelihood ODE (score_sde's 1e-5)
    grid: int = 40  # density-figure grid points per axis
    eps: float = 1e-3  # sampling ends at t = eps (score_sde's default)


def _ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",") if v.strip()]


def _floats(s: str) -> list[float]:
    return [float(v) for v in s.split(",") if v.strip()]


def _make_sdes(cfg: SdeToyConfig):
    return {
        "VE": VESDE(sigma_min=0.01, sigma_max=cfg.sigma_max, N=1000),
        "VP": VPSDE(beta_min=0.1, beta_max=20.0, N=1000),
        "sub-VP": subVPSDE(beta_min=0.1, beta_max=20.0, N=1000),
    }


def _with_n(sde, n: int):
    """The same SDE discretised into n steps."""
    if isinstance(sde, VESDE):
        return VESDE(sde.sigma_min, sde.sigma_max, N=n)
    return type(sde)(sde.beta_0, sde.beta_1, N=n)


@experiment(
    "sde-toy",
    "VE vs VP vs sub-VP SDEs on a 2-D mixture: PC vs Euler-Maruyama vs ODE, ODE likelihood",
    SdeToyConfig,
    presets={
        "smoke": {
            "n_samples": 100,
            "nfe": "60",
            "ode_tols": "1e-1",
            "train_steps": 20,
            "batch": 64,
            "hidden": 32,
            "n_ref": 1000,
            "n_likelihood": 5,
            "grid": 5,
            "lik_tol": 1e-2,
        },
        "gpu": {"n_samples": 5000, "train_steps": 10000, "batch": 2048, "hidden": 256},
    },
)
def run_sde_toy(cfg: SdeToyConfig, ctx: Context) -> Result:
    nfes, tols = _ints(cfg.nfe), _floats(cfg.ode_tols)
    if not nfes or min(nfes) < 2 or not tols:
        raise ValueError("nfe needs budgets >= 2 and ode_tols at least one tolerance")
    gm = ring_mixture()
    sdes = _make_sdes(cfg)
    g = torch.Generator().manual_seed(ctx.seed)
    ref = gm.sample(cfg.n_ref, g)
    x_test = gm.sample(cfg.n_likelihood, g)  # the same test points for every model
    floors = [_swd(gm.sample(cfg.n_samples, g), ref) for _ in range(5)]
    floor = float(np.mean(floors))
    rows, curves, nets, lik = [], {}, {}, {}
    with threads(1 if ctx.device.type == "cpu" else torch.get_num_threads()):
        for name, sde in sdes.items():
            ctx.log(f"{name}: training the score network")
            net, _ = train_score_net(
                lambda net, x, g, sde=sde: sde_dsm_loss(net.sde_score_fn(sde), x, sde, generator=g),
                lambda n, g: gm.sample(n, g),
                steps=cfg.train_steps,
                batch=cfg.batch,
                lr=cfg.lr,
                hidden=cfg.hidden,
                device=ctx.device,
                seed=ctx.seed,
            )
            nets[name] = net
            scores = {
                "exact": gm.sde_score_fn(sde),
                "learned": cpu_score_fn(net, lambda t, sde=sde: sde.mean_coeff_std(t)[1]),
            }
            for score_name, score_fn in scores.items():
                for sampler, nfe_or_tol in ctx.progress(
                    [("EM", n) for n in nfes]
                    + [("PC", n) for n in nfes]
                    + [("ODE", t) for t in tols],
                    desc=f"{name} {score_name}",
                ):
                    if sampler == "PC" and isinstance(sde, VPSDE) and nfe_or_tol // 2 <= 20:
                        continue  # DDPM's discretisation needs beta_max / N < 1
                    x, nfe = _sample(sde, score_fn, sampler, nfe_or_tol, cfg, g)
                    swd = _swd(x, ref)
                    curves.setdefault((name, score_name, sampler), []).append((nfe, swd))
                    rows.append(
                        {
                            "sde": name,
                            "score": score_name,
                            "sampler": sampler,
                            "setting": f"tol={nfe_or_tol:g}"
                            if sampler == "ODE"
                            else f"N={nfe_or_tol}",
                            "nfe": nfe,
                            "swd": round(swd, 4),
                        }
                    )
                lik[(name, score_name)] = _nll(sde, score_fn, gm, x_test, cfg.lik_tol)
    _plot_swd(ctx, curves, floor, float(np.std(floors)))
    dens = _plot_density(ctx, gm, sdes, nets, cfg)
    lik_rows = [
        {
            "sde": name,
            "score": s,
            "nll_ode_nats": round(v[0], 4),
            "nll_exact_nats": round(v[1], 4),
            "gap": round(v[0] - v[1], 4),
        }
        for (name, s), v in lik.items()
    ]
    metrics = {
        "swd_floor_data_vs_data": round(floor, 4),
        "swd_floor_sd": round(float(np.std(floors)), 4),
    }
    for r in lik_rows:
        metrics[f"nll_{r['sde']}_{r['score']}"] = r["nll_ode_nats"]
    metrics["nll_exact_density"] = lik_rows[0]["nll_exact_nats"]
    for (name, score_name, sampler), pts in curves.items():
        metrics[f"swd_{name}_{score_name}_{sampler}_best"] = round(min(p[1] for p in pts), 4)
    metrics.update(dens)
    return Result(
        metrics=metrics,
        table=rows + lik_rows,
        columns=[
            "sde",
            "score",
            "sampler",
            "setting",
            "nfe",
            "swd",
            "nll_ode_nats",
            "nll_exact_nats",
            "gap",
        ],
        notes=[
            f"SWD = sliced 2-Wasserstein distance to {cfg.n_ref} fresh data points; "
            f"fresh data sets of {cfg.n_samples} give {floor:.3f} +- {np.std(floors):.3f} "
            "(the floor, 5 draws)",
            "PC on VP is left out below 42 NFE: DDPM's chain needs N > beta_max = 20 steps",
            "EM: N steps of Euler-Maruyama; PC: N/2 steps of reverse diffusion + 1 Langevin "
            "corrector (snr 0.16): both N score evaluations; ODE: RK45 at rtol = atol = tol",
            "NLL: mean -log p(x) in nats over test data, probability-flow ODE with exact trace "
            "from t = 1e-5 and the N(0, I) / N(0, sigma_max^2 I) prior; exact = the mixture's",
        ],
    )


def _swd(x, ref) -> float:
    """SWD with the same 256 directions for every comparison (less noise between rows)."""
    return sliced_wasserstein(x, ref, n_proj=256, generator=torch.Generator().manual_seed(99))


def _sample(sde, score_fn, sampler, setting, cfg, g):
    shape = (cfg.n_samples, 2)
    kw = dict(eps=cfg.eps, generator=g, dtype=torch.float64)
    if sampler == "EM":
        return pc_sampler(
            _with_n(sde, setting), score_fn, shape, predictor="euler_maruyama", corrector=None, **kw
        )
    if sampler == "PC":
        return pc_sampler(
            _with_n(sde, max(setting // 2, 1)),
            score_fn,
            shape,
            predictor="reverse_diffusion",
            corrector="langevin",
            snr=0.16,
            n_steps=1,
            **kw,
        )
    return ode_sampler(sde, score_fn, shape, rtol=setting, atol=setting, **kw)


def _nll(sde, score_fn, gm, x, tol) -> tuple[float, float]:
    logp, _, _ = ode_likelihood(sde, score_fn, x, eps=1e-5, rtol=tol, atol=tol)
    return float(-logp.mean()), float(-gm.log_prob(x).mean())


def _plot_swd(ctx, curves, floor, floor_sd: float | None = None) -> None:
    """SWD against NFE, one panel per SDE. `curves[(sde, score, sampler)] = [(nfe, swd)]`.
    Colour = sampler, and the score is told apart by two cues at once: exact = solid line and
    filled circles, learned = dashed line and open squares (one legend per cue)."""
    from matplotlib.lines import Line2D

    from deepnotes.utils.plot import log_ticks

    fig, axes = ctx.figure(1, 3, figsize=(15, 4.6), sharey=True)
    colors = {"EM": "tab:blue", "PC": "tab:orange", "ODE": "tab:green"}
    score_style = {
        "exact": dict(linestyle="-", marker="o", lw=1.8),
        "learned": dict(linestyle="--", marker="s", markerfacecolor="white", lw=1.4),
    }
    for ax, name in zip(axes, ("VE", "VP", "sub-VP"), strict=True):
        for (sde_name, score_name, sampler), pts in curves.items():
            if sde_name != name:
                continue
            pts = sorted(pts)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colors[sampler], ms=6,
                    markeredgewidth=1.3, **score_style[score_name])  # fmt: skip
        ax.axhline(floor, color="gray", linestyle=":")
        if floor_sd:
            ax.axhspan(floor - floor_sd, floor + floor_sd, color="gray", alpha=0.12, lw=0)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([10, 20, 50, 100, 200, 400], labels=["10", "20", "50", "100", "200", "400"])
        ax.xaxis.set_minor_formatter(NullFormatter())
        log_ticks(ax, "y")
        ax.set_xlabel("score evaluations (NFE)")
        ax.set_title(f"{name} SDE")
        ax.grid(alpha=0.3, which="major")
    axes[0].set_ylabel("sliced Wasserstein distance to data")
    samplers = [Line2D([], [], color=c, lw=3, label=f"{k} sampler") for k, c in colors.items()]
    scores = [
        Line2D([], [], color="k", ms=6, markeredgewidth=1.3, label=f"{k} score", **st)
        for k, st in score_style.items()
    ]
    band = " (band: +- 1 sd)" if floor_sd else ""
    scores.append(Line2D([], [], color="gray", linestyle=":", label=f"data vs data{band}"))
    # two legends, one per cue, in panels whose upper part is mostly empty
    axes[1].legend(handles=samplers, loc="best", fontsize=10)
    axes[2].legend(handles=scores, loc="best", fontsize=10)
    ctx.savefig(fig, "sde_toy_swd_vs_nfe.png")


def _plot_density(ctx, gm, sdes, nets, cfg) -> dict[str, float]:
    """Log-density on a grid: the exact mixture vs the ODE likelihood of each learned model."""
    lin = torch.linspace(-4.5, 4.5, cfg.grid, dtype=torch.float64)
    X, Y = torch.meshgrid(lin, lin, indexing="xy")
    pts = torch.stack([X.reshape(-1), Y.reshape(-1)], 1)
    exact = gm.log_prob(pts).reshape(cfg.grid, cfg.grid).numpy()
    fig, axes = ctx.figure(
        1, 5, figsize=(17, 4.2), gridspec_kw={"width_ratios": [1, 1, 1, 1, 0.05]}
    )
    panels, out = [("exact mixture", exact)], {}
    for name, sde in sdes.items():
        fn = cpu_score_fn(nets[name], lambda t, sde=sde: sde.mean_coeff_std(t)[1])
        lp, _, _ = ode_likelihood(sde, fn, pts, eps=1e-5, rtol=cfg.lik_tol, atol=cfg.lik_tol)
        lp = lp.reshape(cfg.grid, cfg.grid).numpy()
        panels.append((f"{name}: ODE likelihood, learned score", lp))
        p, q = np.exp(exact), np.exp(lp)
        # total variation between the grid densities (cell area cancels after normalising)
        out[f"grid_tv_{name}"] = round(float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum()), 4)
    for ax, (title, z) in zip(axes[:4], panels, strict=True):
        im = ax.imshow(
            np.clip(z, -12, None),
            origin="lower",
            extent=(-4.5, 4.5, -4.5, 4.5),
            vmin=-12,
            vmax=float(exact.max()),
            cmap="viridis",
        )
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
    fig.colorbar(im, cax=axes[4], label="log p(x) (nats, clipped at -12)")
    ctx.savefig(fig, "sde_toy_likelihood.png")
    return out
