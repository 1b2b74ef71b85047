"""`deepnotes run mc`: Monte Carlo control on Zhao's grid world.

MC Basic for several episode lengths (too short an episode never sees the target, Zhao
section 5.2), then MC Exploring Starts and MC epsilon-greedy, first- and every-visit, with
the book's sample averages; exploring starts also with a constant step size. The plot is the
value error of the greedy policy, max_s |v_pi(s) - v*(s)| (exact, from the model), against
the number of episodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deepnotes.jobs import Context, Result, experiment
from deepnotes.rl import mc
from deepnotes.rl.envs import GridWorld, zhao_grid
from deepnotes.rl.envs.render import draw_grid


@dataclass
class MCConfig:
    grid: str = "zhao"  # "zhao" (5x5 of the book) or "small" (3x3, forbidden centre)
    gamma: float = 0.9  # discount, as in the book
    episodes: int = 20_000  # episodes for exploring starts / epsilon-greedy
    episode_length: int = 20  # steps per episode whose returns update q
    horizon: int = 60  # extra steps so each used return sees >= 60 rewards (0.9^60 ~ 2e-3)
    epsilon: float = 0.1  # epsilon-greedy exploration (Zhao uses 0.1 .. 0.5)
    alpha: float = 0.1  # constant step size of the "ES, alpha" variant
    # episode lengths of MC Basic's sweep
    basic_lengths: list[int] = field(default_factory=lambda: [1, 3, 6, 10, 15, 30, 100])
    eval_every: int = 500  # episodes between exact evaluations of the current policy


def make_grid(name: str) -> GridWorld:
    if name == "zhao":
        return zhao_grid()
    if name == "small":
        return GridWorld(3, 3, forbidden=[(1, 1)], target=(2, 2))
    raise ValueError(f"grid must be 'zhao' or 'small', got {name!r}")


@experiment(
    "mc",
    "MC Basic / exploring starts / epsilon-greedy (first- and every-visit) on the grid world",
    MCConfig,
    presets={
        "smoke": {"grid": "small", "episodes": 300, "eval_every": 100, "basic_lengths": [2, 30]}
    },
)
def run(cfg: MCConfig, ctx: Context) -> Result:
    env = make_grid(cfg.grid)
    table, metrics = [], {}
    for L in ctx.progress(cfg.basic_lengths, desc="MC Basic"):
        r = mc.mc_basic(env, cfg.gamma, L, seed=ctx.seed)
        last = r.history[-1]
        table.append({"method": f"MC Basic, L={L}", "episodes": r.episodes,
                      "value error": round(last["value_error"], 4),
                      "optimal": last["value_error"] < 1e-6})  # fmt: skip
    runs = {
        "ES first-visit": dict(es=True, visit="first", alpha=None),
        "ES every-visit": dict(es=True, visit="every", alpha=None),
        f"ES first-visit, alpha={cfg.alpha}": dict(es=True, visit="first", alpha=cfg.alpha),
        f"eps-greedy first-visit, eps={cfg.epsilon}": dict(es=False, visit="first", alpha=None),
        f"eps-greedy every-visit, eps={cfg.epsilon}": dict(es=False, visit="every", alpha=None),
    }
    results = {}
    for name, kw in ctx.progress(list(runs.items()), desc="MC control"):
        common = dict(episode_length=cfg.episode_length, n_episodes=cfg.episodes,
                      visit=kw["visit"], seed=ctx.seed, eval_every=cfg.eval_every,
                      horizon=cfg.horizon, alpha=kw["alpha"])  # fmt: skip
        if kw["es"]:
            r = mc.mc_exploring_starts(env, cfg.gamma, **common)
        else:
            r = mc.mc_epsilon_greedy(env, cfg.gamma, cfg.epsilon, **common)
        results[name] = r
        last = r.history[-1]
        reached = next((h["episodes"] for h in r.history if h["value_error"] < 1e-6), None)
        row = {"method": name, "episodes": r.episodes,
               "value error": round(last["value_error"], 4),
               "optimal": last["value_error"] < 1e-6,
               "optimal from episode": reached if reached is not None else "-"}  # fmt: skip
        if "eps_value_error" in last:
            row["eps-optimal error"] = round(last["eps_value_error"], 4)
        table.append(row)
        metrics[name] = {"value_error": last["value_error"], "optimal_from_episode": reached}

    fig, ax = ctx.figure(figsize=(7, 4.3))
    # methods often share a curve exactly: later ones dashed and thinner, so none is hidden
    dashes = ["-", "--", "-.", ":", (0, (6, 2, 1, 2))]
    for i, (name, r) in enumerate(results.items()):
        x = [h["episodes"] for h in r.history]
        ax.plot(x, [h["value_error"] for h in r.history], label=name,
                lw=max(2.8 - 0.5 * i, 1.0), ls=dashes[i % len(dashes)])  # fmt: skip
    ax.set(xlabel="episodes", ylabel="max_s |v_greedy(s) - v*(s)|",
           title=f"MC control on the {cfg.grid} grid (gamma {cfg.gamma})")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    ctx.savefig(fig, "mc_value_error.png")

    fig, axes = ctx.figure(1, 2, figsize=(10, 5.6))  # room above the square grids for titles
    for ax, name in zip(axes, [list(results)[0], list(results)[3]], strict=True):
        r = results[name]
        v = (r.pi * r.q).sum(1)
        draw_grid(env, v, r.pi, f"{name}:\nvalues of the q-estimate and the policy", ax=ax)
    fig.suptitle("orange: forbidden, cyan: target; arrows: actions of probability >= 0.05, length "
                 "~ probability; circle: stay", fontsize=10)  # fmt: skip
    ctx.savefig(fig, "mc_policies.png")
    notes = [
        f"episodes of {cfg.episode_length} used steps + {cfg.horizon} steps of horizon for returns",
        "value error is of the greedy policy w.r.t. the estimated q, evaluated exactly",
    ]
    return Result(metrics=metrics, table=table, notes=notes)
