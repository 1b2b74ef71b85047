"""`deepnotes run hippo`: HiPPO as online memory of a band-limited signal.

A random band-limited signal (sines of 1..`cycles` periods over the interval, random
amplitudes and phases) is fed sample by sample into the discrete HiPPO recurrence. After the
last sample the state c (N numbers) is decoded back into the whole history with the
measure's polynomial basis, and compared with the signal (relative RMS error).

Two claims of the HiPPO paper (Gu et al. 2020) are checked:
- error falls as the state size N grows (N = 8, 16, 32, 64);
- LegS is timescale-robust: the same signal stretched x`stretch` (so `stretch` times as many
  samples) is remembered as well, since LegS's measure scales with the history. LegT with
  its window fixed to the original length forgets everything older than the window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from deepnotes.jobs import Context, Result, experiment
from deepnotes.ops.ssm.hippo import basis, hippo_online


@dataclass
class HippoConfig:
    length: int = 2000  # samples of the original signal (one time unit each)
    cycles: int = 10  # band limit: sines with 1..cycles periods over the signal
    state_sizes: list[int] = field(default_factory=lambda: [8, 16, 32, 64])  # N values
    stretch: int = 4  # the timescale test stretches the signal by this factor
    method: str = "bilinear"  # discretisation: forward_euler | backward_euler | bilinear | zoh
    plot_n: int = 32  # state size shown in the reconstruction plots


def band_limited(s: torch.Tensor, cycles: int, seed: int) -> torch.Tensor:
    """sum_k a_k sin(2 pi k s + phi_k) / sqrt(K) for k = 1..cycles; s in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(cycles, generator=g, dtype=torch.float64)
    ph = torch.rand(cycles, generator=g, dtype=torch.float64) * 2 * math.pi
    k = torch.arange(1, cycles + 1, dtype=torch.float64)
    return (a * torch.sin(2 * math.pi * k * s[:, None] + ph)).sum(-1) / math.sqrt(cycles)


def reconstruct(f: torch.Tensor, measure: str, N: int, window: int, method: str):
    """Feed f [L] through HiPPO; decode the final state over the full history [L]."""
    L = f.shape[0]
    c = hippo_online(f, measure, N, method=method, theta=window)[-1]
    if measure == "legs":
        return basis("legs", N, torch.arange(1, L + 1, dtype=f.dtype) / L) @ c
    rec = torch.zeros_like(f)  # LegT: nothing is remembered before the window
    w = min(window, L)
    rec[-w:] = (
        basis("legt", N, torch.arange(window - w + 1, window + 1, dtype=f.dtype) / window) @ c
    )
    return rec


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@experiment(
    "hippo",
    "HiPPO LegS/LegT online memory: reconstruction error vs N, and LegS's timescale robustness",
    HippoConfig,
    presets={
        "smoke": {"length": 200, "cycles": 2, "state_sizes": [4, 8], "stretch": 2, "plot_n": 8},
    },
)
def run_hippo(cfg: HippoConfig, ctx: Context) -> Result:
    L, S = cfg.length, cfg.stretch
    s1 = torch.arange(1, L + 1, dtype=torch.float64) / L
    sS = torch.arange(1, S * L + 1, dtype=torch.float64) / (S * L)
    f1, fS = band_limited(s1, cfg.cycles, ctx.seed), band_limited(sS, cfg.cycles, ctx.seed)
    rows, recs = [], {}
    for N in ctx.progress(cfg.state_sizes, desc="hippo N"):
        row = {"N": N}
        for measure in ("legs", "legt"):
            for tag, f in (("", f1), (f"_x{S}", fS)):
                rec = reconstruct(f, measure, N, L, cfg.method)  # LegT window = L samples
                row[f"{measure}{tag}"] = rel_err(rec, f)
                recs[(measure, tag, N)] = rec
        rows.append(row)
    legs = [r["legs"] for r in rows]
    metrics = {
        "legs_error_by_N": dict(zip(map(str, cfg.state_sizes), legs, strict=True)),
        "legs_error_falls_with_N": all(a > b for a, b in zip(legs, legs[1:], strict=False)),
        f"legs_error_ratio_x{S}_over_x1": rows[-1][f"legs_x{S}"] / rows[-1]["legs"],
        f"legt_error_ratio_x{S}_over_x1": rows[-1][f"legt_x{S}"] / rows[-1]["legt"],
    }
    _plot(cfg, ctx, rows, recs, s1, f1, sS, fS)
    return Result(
        metrics=metrics,
        table=rows,
        columns=["N", "legs", "legt", f"legs_x{S}", f"legt_x{S}"],
        notes=[
            "relative RMS error of the whole history decoded from the final state",
            f"x{S}: the same signal stretched {S} times; LegT keeps a window of {L} samples",
            f"discretisation: {cfg.method}",
        ],
    )


def _plot(cfg, ctx, rows, recs, s1, f1, sS, fS):
    S = cfg.stretch
    n = cfg.plot_n if cfg.plot_n in cfg.state_sizes else cfg.state_sizes[-1]
    fig, axes = ctx.figure(1, 3, figsize=(17, 4.5))
    ax = axes[0]
    ax.plot(s1, f1, "k", lw=2, label="signal")
    ax.plot(s1, recs[("legs", "", n)], label=f"LegS N={n}")
    ax.plot(s1, recs[("legt", "", n)], "--", label=f"LegT N={n}")
    ax.set(title="reconstruction from the final state", xlabel="time / length", ylabel="f(t)")
    ax = axes[1]
    ax.plot(sS, fS, "k", lw=2, label=f"signal stretched x{S}")
    ax.plot(sS, recs[("legs", f"_x{S}", n)], label=f"LegS N={n}")
    ax.plot(sS, recs[("legt", f"_x{S}", n)], "--", label=f"LegT N={n}, window {cfg.length}")
    ax.set(title=f"same signal stretched x{S}", xlabel="time / length")
    ax = axes[2]
    Ns = [r["N"] for r in rows]
    # LegS blue, LegT orange as on the left; dotted: the stretched signal
    for key, style, label in (
        ("legs", "C0o-", "LegS"), ("legt", "C1s--", "LegT"),
        (f"legs_x{S}", "C0o:", f"LegS, stretched x{S}"),
        (f"legt_x{S}", "C1s:", f"LegT, stretched x{S}"),
    ):  # fmt: skip
        ax.semilogy(
            Ns, [r[key] for r in rows], style, label=label, mfc="none" if "_x" in key else None
        )
    ax.set(title="relative error vs state size N", xlabel="N", ylabel="relative RMS error")
    ax.set_xscale("log", base=2)
    ax.set_xticks(Ns, [str(v) for v in Ns])
    ax.minorticks_off()
    for a in axes:
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    ctx.savefig(fig, "hippo.png")
