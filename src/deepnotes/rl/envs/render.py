"""Draw a grid world with its state values and a policy as arrows (matplotlib, PNG).

Forbidden cells are orange, the target cyan, terminal cells grey; jump cells are labelled
with their destination. A policy pi[s, a] is drawn as one arrow per action with length
proportional to its probability, and "stay" as a circle of proportional radius (the
convention of Zhao's figures).
"""

from __future__ import annotations

import os

import numpy as np

from deepnotes.rl.envs.gridworld import MOVES, GridWorld
from deepnotes.utils.io import atomic_write
from deepnotes.utils.plot import pyplot


def draw_grid(
    env: GridWorld,
    values: np.ndarray | None = None,
    policy: np.ndarray | None = None,
    title: str | None = None,
    ax=None,
    agent: int | None = None,
    decimals: int = 1,
    min_prob: float = 0.05,
):
    """Draw `env` on `ax` (a new figure if None); return the axes.

    values: [S] state values written in each cell; policy: [S, A] action probabilities
    (actions below `min_prob` are not drawn, e.g. the exploration mass of epsilon-greedy).
    """
    plt = pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(0.9 * env.cols + 0.6, 0.9 * env.rows + 0.6))
    R, C = env.rows, env.cols
    colors = {}
    for c in env.forbidden:
        colors[c] = "#f5a35c"
    if env.target is not None:
        colors[env.target] = "#5fd3e6"
    for c in env.terminals:
        colors[c] = "#c8c8c8" if c != env.target else "#5fd3e6"
    for r in range(R):
        for c in range(C):
            ax.add_patch(
                plt.Rectangle(
                    (c, r), 1, 1, facecolor=colors.get((r, c), "white"), edgecolor="k", lw=0.8
                )
            )
    for (r, c), (dest, rew) in env.jumps.items():  # where a policy arrow would sit: see below
        y = r + (0.36 if policy is not None and values is not None else 0.2)
        ax.text(c + 0.5, y, f"->{dest} {rew:+g}", fontsize=6.5, ha="center", va="center")
    if values is not None:
        v = np.asarray(values).reshape(-1)
        for s in range(env.n_states):
            r, c = env.cell(s)
            y = r + (0.8 if policy is not None else 0.5)
            ax.text(c + 0.5, y, f"{v[s]:.{decimals}f}", ha="center", va="center", fontsize=8)
    if policy is not None:
        pi = np.asarray(policy)
        for s in range(env.n_states):
            r, c = env.cell(s)
            if env.terminal_mask[s] or (r, c) in env.jumps:  # a jump cell: every action is equal
                continue
            cx, cy = c + 0.5, r + (0.36 if values is not None else 0.5)
            for a in range(env.n_actions):
                p = pi[s, a]
                if p < min_prob:
                    continue
                dr, dc = MOVES[a]
                if (dr, dc) == (0, 0):
                    ax.add_patch(
                        plt.Circle((cx, cy), 0.1 * p + 0.03, fill=False, color="g", lw=1.2)
                    )
                else:
                    L = 0.22 * p
                    ax.arrow(cx, cy, dc * L, dr * L, head_width=0.07, head_length=0.06,
                             length_includes_head=False, color="g", lw=1.0)  # fmt: skip
    if agent is not None:
        r, c = env.cell(agent)
        ax.add_patch(plt.Circle((c + 0.5, r + 0.5), 0.2, color="tab:blue", alpha=0.7))
    ax.set_xlim(0, C)
    ax.set_ylim(R, 0)  # row 0 at the top
    ax.set_aspect("equal")
    ax.set_xticks(np.arange(C) + 0.5, [str(i) for i in range(C)])
    ax.set_yticks(np.arange(R) + 0.5, [str(i) for i in range(R)])
    ax.tick_params(length=0, labelsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def save_grid_png(path: str | os.PathLike, env: GridWorld, values=None, policy=None, title=None):
    """Draw and write a PNG atomically."""
    plt = pyplot()
    ax = draw_grid(env, values, policy, title)
    fig = ax.figure
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120))
    plt.close(fig)
    return path


def grid_rgb_array(env: GridWorld, agent: int | None = None) -> np.ndarray:
    """The grid with the agent as an [H, W, 3] uint8 image (gymnasium's rgb_array mode)."""
    plt = pyplot()
    ax = draw_grid(env, agent=agent)
    fig = ax.figure
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return img
