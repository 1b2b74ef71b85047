"""`deepnotes run stochastic-approximation`: the examples of Zhao ch. 6.

1. Incremental mean estimation, w_{k+1} = w_k - (w_k - x_k)/k.
2. Robbins-Monro on g(w) = tanh(w - 1) (w1 = 3, a_k = 1/k), noise-free and noisy.
3. Robbins-Monro on g(w) = w^3 - 5 with N(0, 1) noise, w1 = 0, a_k = 1/k: the literal
   iteration diverges (g' = 3w^2 is unbounded, so RM's condition g' <= c2 fails: w2 ~ 5,
   w3 ~ -55, ...); projected onto [0, 3], where the slope is bounded, it converges to 5^(1/3).
4. GD vs SGD vs mini-batch GD on mean estimation (400 samples uniform in a 20 x 20 square).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from deepnotes.jobs import Context, Result, experiment
from deepnotes.rl import sa

ROOT = 5.0 ** (1.0 / 3.0)


@dataclass
class SAConfig:
    n_iters: int = 5_000  # iterations of each stochastic approximation
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])  # RM noise seeds
    tanh_noise: float = 0.5  # std of the observation noise in the noisy tanh example
    project: list[float] = field(default_factory=lambda: [0.0, 3.0])  # cubic RM interval
    n_samples: int = 400  # samples of the mean-estimation problem
    batch_sizes: list[int] = field(default_factory=lambda: [1, 10, 50])  # MBGD batch sizes
    tolerance: float = 0.05  # |w_n - root| accepted as converged


@experiment(
    "stochastic-approximation",
    "incremental mean, Robbins-Monro (tanh, cubic), GD vs SGD vs mini-batch GD",
    SAConfig,
    presets={"smoke": {"n_iters": 300, "seeds": [0, 1], "n_samples": 100}},
)
def run(cfg: SAConfig, ctx: Context) -> Result:
    table, metrics = [], {}
    fig, axes = ctx.figure(2, 2, figsize=(11, 7.5))

    # 1. incremental mean of N(5, 2^2) samples
    x = np.random.default_rng(ctx.seed).normal(5.0, 2.0, cfg.n_iters)
    w = sa.incremental_mean(x)
    ax = axes[0][0]
    ax.plot(np.arange(1, len(w) + 1), w, label="w_k (incremental mean)")
    ax.axhline(5.0, color="k", ls="--", lw=0.8, label="E[X] = 5")
    ax.set(xscale="log", xlabel="k", ylabel="w_k", title="incremental mean estimation")
    err_mean = abs(w[-1] - x.mean())
    table.append({"problem": "incremental mean", "setting": "X ~ N(5, 4)", "w_n": w[-1],
                  "target": 5.0, "|w_n - target|": abs(w[-1] - 5.0),
                  "converged": abs(w[-1] - 5.0) < cfg.tolerance * 4})  # fmt: skip
    metrics["incremental_mean_vs_sample_mean"] = err_mean

    # 2. RM on tanh(w - 1)
    ax = axes[0][1]
    clean = sa.robbins_monro(sa.tanh_example, 3.0, cfg.n_iters)
    k = np.arange(1, cfg.n_iters + 2)  # w_1 .. w_{n+1}
    ax.plot(k, clean, color="k", label="noise-free")
    finals = []
    for s in cfg.seeds:
        wn = sa.robbins_monro(lambda w, r: sa.tanh_example(w, r, cfg.tanh_noise), 3.0,
                              cfg.n_iters, seed=s)  # fmt: skip
        finals.append(wn[-1])
        label = f"noise {cfg.tanh_noise}, {len(cfg.seeds)} seeds" if len(finals) == 1 else None
        ax.plot(k, wn, color="tab:blue", alpha=0.5, lw=0.8, label=label)
    ax.axhline(1.0, color="k", ls="--", lw=0.8)
    ax.set(xscale="log", xlabel="k", ylabel="w_k", title="RM: tanh(w - 1) = 0, w1 = 3, a_k = 1/k")
    for name, val in [
        ("noise-free", clean[-1]),
        (f"noise {cfg.tanh_noise}, worst of {len(finals)} seeds", finals),
    ]:
        val = np.atleast_1d(val)
        err = float(np.abs(val - 1.0).max())
        val = float(val[np.abs(val - 1.0).argmax()])
        table.append({"problem": "RM tanh(w-1)", "setting": name, "w_n": val, "target": 1.0,
                      "|w_n - target|": err, "converged": err < cfg.tolerance})  # fmt: skip
    metrics["rm_tanh_errors"] = [abs(f - 1.0) for f in finals]

    # 3. RM on w^3 - 5: literal diverges, projected converges
    ax = axes[1][0]
    with np.errstate(over="ignore", invalid="ignore"):
        lit = sa.robbins_monro(sa.cubic_example, 0.0, min(cfg.n_iters, 12), seed=cfg.seeds[0])
    blown = int(np.argmax(~np.isfinite(lit) | (np.abs(lit) > 1e6)))
    finals = []
    for s in cfg.seeds:
        wp = sa.robbins_monro(
            sa.cubic_example, 0.0, cfg.n_iters, seed=s, project=tuple(cfg.project)
        )
        finals.append(wp[-1])
        label = f"projected on {cfg.project}, {len(cfg.seeds)} seeds" if len(finals) == 1 else None
        ax.plot(np.arange(1, len(wp) + 1), wp, color="tab:green", alpha=0.5, lw=0.8, label=label)
    ax.axhline(ROOT, color="k", ls="--", lw=0.8, label="5^(1/3)")
    ax.set(xscale="log", xlabel="k", ylabel="w_k", ylim=(-0.2, 3.2),
           title="RM: w^3 - 5 = 0 with N(0,1) noise, w1 = 0, a_k = 1/k")  # fmt: skip
    table.append({"problem": "RM w^3-5", "setting": "literal (no projection)",
                  "w_n": f"|w_{blown + 1}| > 1e6 (diverged)", "target": ROOT,
                  "|w_n - target|": float("inf"), "converged": False})  # fmt: skip
    errs = [abs(f - ROOT) for f in finals]
    worst = int(np.argmax(errs))
    table.append({"problem": "RM w^3-5",
                  "setting": f"projected on {cfg.project}, worst of {len(finals)} seeds",
                  "w_n": finals[worst], "target": ROOT, "|w_n - target|": errs[worst],
                  "converged": errs[worst] < cfg.tolerance})  # fmt: skip
    metrics["rm_cubic_literal_first_iterates"] = lit[:4]
    metrics["rm_cubic_projected_errors"] = [abs(f - ROOT) for f in finals]

    # 4. GD / SGD / MBGD on mean estimation
    ax = axes[1][1]
    xs = np.random.default_rng(ctx.seed).uniform(-10, 10, size=(cfg.n_samples, 2))
    mean = xs.mean(0)
    w0 = np.array([50.0, 50.0])
    # GD with a_k = 1/k would land on the sample mean at k = 2: a constant 0.1 shows its
    # geometric rate against the 1/sqrt(k m) of the sampled gradients
    curves = {
        "GD, a=0.1": sa.mean_estimation_descent(xs, "gd", cfg.n_iters, w1=w0, a=lambda k: 0.1)
    }
    curves["SGD"] = sa.mean_estimation_descent(xs, "sgd", cfg.n_iters, w1=w0, seed=ctx.seed)
    for m in cfg.batch_sizes:
        if m > 1:
            curves[f"MBGD m={m}"] = sa.mean_estimation_descent(
                xs, "mbgd", cfg.n_iters, m, w1=w0, seed=ctx.seed
            )
    for name, c in curves.items():
        err = np.linalg.norm(c - mean, axis=1)
        ax.loglog(np.arange(1, len(err) + 1), np.maximum(err, 1e-16), label=name, lw=1)  # w_k at k
        table.append({"problem": "mean estimation", "setting": name,
                      "w_n": np.round(c[-1], 3).tolist(),
                      "target": np.round(mean, 3).tolist(), "|w_n - target|": err[-1],
                      "converged": err[-1] < 1.0})  # fmt: skip
        metrics[f"mean_estimation/{name}"] = float(err[-1])
    ax.set(
        xlabel="k", ylabel="||w_k - sample mean||", title="GD vs SGD vs mini-batch GD (a_k = 1/k)"
    )
    for a in axes.flat:
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    ctx.savefig(fig, "stochastic_approximation.png")
    notes = [f"converged means |w_n - target| < {cfg.tolerance} (RM) at the stated seeds",
             "SGD/MBGD with a_k = 1/k average their samples: error ~ 1/sqrt(k m); GD (constant "
             "step 0.1) converges geometrically"]  # fmt: skip
    return Result(metrics=metrics, table=table, notes=notes)
