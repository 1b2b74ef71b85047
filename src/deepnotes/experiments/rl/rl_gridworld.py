"""`deepnotes run rl-gridworld`: the grid-world figures of Zhao and of Sutton & Barto,
reproduced by the Bellman solvers and compared with the printed values, plus the convergence
of value iteration, policy iteration and truncated policy iteration.

Figures: Zhao 3.4 (optimal values, gamma 0.9) and its variants gamma = 0.5 and
r_forbidden = -10; Sutton & Barto 3.2 (random policy), 3.5 (optimal) and 4.1 (4x4, random
policy, gamma = 1, k = infinity). Every printed value must be reproduced to its last decimal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from deepnotes.jobs import Context, Result, experiment
from deepnotes.rl import planning as pl
from deepnotes.rl.envs import book, sutton_barto_4x4, sutton_barto_grid, zhao_grid
from deepnotes.rl.envs.render import draw_grid
from deepnotes.utils.plot import COLORS, MARKERS


@dataclass
class GridFiguresConfig:
    tol: float = 1e-10  # stopping tolerance of the iterative solvers (max |change|)
    trunc_js: list[int] = field(default_factory=lambda: [1, 3, 10, 50])  # truncated-PI sweeps


def figures():
    """(name, env, gamma, kind, printed values, decimals); kind: 'optimal' or 'random'."""
    return [
        ("Zhao Fig 3.4", zhao_grid(), 0.9, "optimal", book.ZHAO_FIG_3_4, 1),
        ("Zhao gamma=0.5", zhao_grid(), 0.5, "optimal", book.ZHAO_GAMMA_0_5, 1),
        ("Zhao r_forbidden=-10", zhao_grid(r_forbidden=-10.0), 0.9, "optimal",
         book.ZHAO_R_FORBIDDEN_10, 1),
        ("S&B Fig 3.2", sutton_barto_grid(), 0.9, "random", book.SB_FIG_3_2, 1),
        ("S&B Fig 3.5", sutton_barto_grid(), 0.9, "optimal", book.SB_FIG_3_5, 1),
        ("S&B Fig 4.1", sutton_barto_4x4(), 1.0, "random", book.SB_FIG_4_1, 0),
    ]  # fmt: skip


def solve(env, gamma: float, kind: str, tol: float) -> dict:
    """Values (and a policy) by every applicable solver; they must agree."""
    P, R, term = env.P, env.R, env.terminal_mask
    term = term if term.any() else None
    if kind == "random":
        pi = np.full((env.n_states, env.n_actions), 1.0 / env.n_actions)
        v_cf = pl.bellman_closed_form(P, R, pi, gamma, term)
        v_it, iters = pl.policy_evaluation(P, R, pi, gamma, tol=tol, terminal=term)
        return {
            "v": v_cf,
            "pi": pi,
            "solvers": {"closed form": (v_cf, 1), "iterative": (v_it, iters)},
        }
    vi = pl.value_iteration(P, R, gamma, tol=tol, terminal=term)
    pi = pl.policy_iteration(P, R, gamma, terminal=term)
    tpi = pl.truncated_policy_iteration(P, R, gamma, 5, tol=tol, terminal=term)
    return {
        "v": pi.v,
        "pi": pi.pi,
        "solvers": {
            "value iteration": (vi.v, vi.iterations),
            "policy iteration": (pi.v, pi.iterations),
            "truncated PI (j=5)": (tpi.v, tpi.iterations),
        },
    }


@experiment(
    "rl-gridworld",
    "Bellman solvers reproduce Zhao's and Sutton & Barto's grid-world figures to the decimal",
    GridFiguresConfig,
    presets={"smoke": {"trunc_js": [1, 10]}},
)
def run(cfg: GridFiguresConfig, ctx: Context) -> Result:
    table, metrics, notes = [], {}, []
    figs = figures()
    fig, axes = ctx.figure(2, 3, figsize=(13, 8.6))
    for ax, (name, env, gamma, kind, printed, dec) in zip(axes.flat, figs, strict=True):
        out = solve(env, gamma, kind, cfg.tol)
        for solver, (v, iters) in out["solvers"].items():
            ok = book.matches_printed(v, printed, dec)
            table.append({
                "figure": name,
                "gamma": gamma,
                "solver": solver,
                "iterations": iters,
                "cells matching book": f"{int(ok.sum())}/{ok.size}",
                "max |v - printed|": f"{np.abs(v.reshape(printed.shape) - printed).max():.4f}",
            })  # fmt: skip
        ok = book.matches_printed(out["v"], printed, dec)
        metrics[name] = {
            "all_cells_match": bool(ok.all()),
            "values": out["v"].reshape(printed.shape),
        }
        policy = out["pi"] if kind == "optimal" else None
        title = name if "gamma" in name else f"{name} (gamma={gamma})"
        draw_grid(env, out["v"], policy, title, ax=ax, decimals=dec)
        if not ok.all():
            notes.append(f"{name}: cells {np.argwhere(~ok).tolist()} differ from the book")
    fig.suptitle("state values (arrows: a greedy optimal policy); orange: forbidden, cyan: "
                 "target, grey: terminal; ->(r, c) +R: every action jumps there with reward R",
                 fontsize=10)  # fmt: skip
    ctx.savefig(fig, "gridworld_figures.png")

    # convergence of VI / truncated PI / PI on Zhao's grid: ||v_k - v*||_inf per iteration
    env = zhao_grid()
    v_star = pl.policy_iteration(env.P, env.R, 0.9).v
    fig, ax = ctx.figure(figsize=(6.5, 4.2))
    runs = {"value iteration": pl.value_iteration(env.P, env.R, 0.9, tol=cfg.tol)}
    for j in cfg.trunc_js:
        runs[f"truncated PI, j={j}"] = pl.truncated_policy_iteration(
            env.P, env.R, 0.9, j, tol=cfg.tol
        )
    runs["policy iteration"] = pl.policy_iteration(env.P, env.R, 0.9)
    for i, (label, r) in enumerate(runs.items()):
        err = [np.abs(h - v_star).max() for h in r.history]
        st = {"color": COLORS[i], "marker": MARKERS[i], "markersize": 3}
        if label == "value iteration":  # wide and pale: truncated PI with j=1 nearly coincides
            st.update(linewidth=5, alpha=0.4, marker=None)
        ax.semilogy(np.arange(1, len(err) + 1), np.maximum(err, 1e-16), label=label, **st)
        metrics[f"iterations/{label}"] = r.iterations
    ax.set(xlabel="outer iteration k", ylabel="max_s |v_k(s) - v*(s)|", xlim=(0, 60),
           title="Zhao's grid, gamma 0.9: VI vs truncated PI vs PI")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ctx.savefig(fig, "planning_convergence.png")
    names = [f[0] for f in figs]
    metrics["all_figures_match"] = all(metrics[n]["all_cells_match"] for n in names)
    notes.append("the book's gamma=0.5 figure prints the exact value 0.25 at row 3, col 4 as 0.2")
    return Result(metrics=metrics, table=table, notes=notes)
