"""`deepnotes run rl-actor-critic`: QAC vs A2C vs off-policy actor-critic on CartPole-v1.

The three actor-critics of the notes, under one budget and evaluation protocol:
- QAC weights the score grad ln pi by the critic's q(s, a) (no baseline): high variance;
- A2C weights it by the advantage q - v, estimated from n-step returns;
- off-policy AC learns pi from a behaviour policy's actions, reweighted by importance
  ratios pi / beta (lagged copy of pi + epsilon-uniform, and the book's uniform beta).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from deepnotes.jobs import Context, Result, experiment
from deepnotes.rl import a2c, off_policy_ac, qac
from deepnotes.utils.env import threads
from deepnotes.utils.io import atomic_write_json

ALGOS = {
    "qac": lambda **kw: (qac, qac.QACConfig(**kw)),
    "a2c": lambda **kw: (a2c, a2c.A2CConfig(**kw)),
    "off-policy-ac": lambda **kw: (off_policy_ac, off_policy_ac.OffPolicyACConfig(**kw)),
    "off-policy-ac-uniform": lambda **kw: (
        off_policy_ac, off_policy_ac.OffPolicyACConfig(behavior="uniform", **kw)),
}  # fmt: skip


@dataclass
class ActorCriticConfig:
    algos: list[str] = field(default_factory=lambda: list(ALGOS))  # which actor-critics
    env_id: str = "CartPole-v1"  # a Discrete-action gymnasium env
    steps: int = 100_000  # env steps per run
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # training seeds
    eval_every: int = 10_000  # env steps between evaluations
    eval_episodes: int = 10  # deterministic evaluation episodes
    threads: int = 1  # torch threads


@experiment(
    "rl-actor-critic",
    "QAC vs A2C vs off-policy actor-critic (importance sampling) on CartPole",
    ActorCriticConfig,
    presets={"smoke": {"steps": 400, "seeds": [0], "eval_every": 200, "eval_episodes": 1}},
)
def run(cfg: ActorCriticConfig, ctx: Context) -> Result:
    with threads(cfg.threads):
        return _run(cfg, ctx)


def _run(cfg: ActorCriticConfig, ctx: Context) -> Result:
    unknown = sorted(set(cfg.algos) - set(ALGOS))
    if unknown:
        raise ValueError(f"unknown algorithm(s) {unknown}; valid: {sorted(ALGOS)}")
    table, metrics, curves = [], {}, {}
    jobs = [(a, s) for a in cfg.algos for s in cfg.seeds]
    for name, seed in ctx.progress(jobs, desc="actor-critic runs"):
        kw = dict(env_id=cfg.env_id, seed=seed, total_steps=cfg.steps,
                  eval_every=cfg.eval_every, eval_episodes=cfg.eval_episodes)  # fmt: skip
        module, acfg = ALGOS[name](**kw)
        _, rec = module.train(acfg)
        curves[(name, seed)] = rec.curve
        ctx.log(f"{name} seed {seed}: final {rec.final_return():.1f}")
        metrics[f"{name}/seed{seed}"] = {
            "final": rec.final_return(),
            "train_time_s": rec.train_time,
        }
    for name in cfg.algos:
        finals = [curves[(name, s)][-1]["eval_return"] for s in cfg.seeds]
        best = [max(c["eval_return"] for c in curves[(name, s)]) for s in cfg.seeds]
        times = [metrics[f"{name}/seed{s}"]["train_time_s"] for s in cfg.seeds]
        table.append({"algorithm": name, "steps": cfg.steps, "seeds": len(cfg.seeds),
                      "final (mean+-std)": f"{np.mean(finals):.1f} +- {np.std(finals):.1f}",
                      "best eval (mean)": f"{np.mean(best):.1f}",
                      "train time (s)": f"{np.mean(times):.1f}"})  # fmt: skip
    _plot(ctx, {f"{a}/seed{s}": c for (a, s), c in curves.items()}, cfg.env_id)
    atomic_write_json(ctx.out / "curves.json", {f"{a}/seed{s}": c for (a, s), c in curves.items()})
    notes = ["wall times: torch single-threaded on a CPU shared with other jobs (noisy)"]
    return Result(metrics=metrics, table=table, notes=notes)


def _plot(ctx: Context, curves: dict[str, list[dict]], env_id: str) -> None:
    """One panel per algorithm: each seed's eval return (thin) and the mean over seeds
    (thick) against env steps. `curves["<algo>/seed<s>"] = [{"step", "eval_return"}, ...]`."""
    from deepnotes.utils.plot import short_ticks

    algos = list(dict.fromkeys(k.rsplit("/seed", 1)[0] for k in curves))
    cols = min(len(algos), 2)
    rows = -(-len(algos) // cols)
    fig, axes = ctx.figure(rows, cols, figsize=(5.2 * cols, 3.4 * rows), sharex=True,
                           sharey=True, squeeze=False)  # fmt: skip
    for k, (ax, name) in enumerate(zip(axes.flat, algos, strict=False)):
        runs = [c for key, c in curves.items() if key.rsplit("/seed", 1)[0] == name]
        for c in runs:
            ax.plot([p["step"] for p in c], [p["eval_return"] for p in c], color=f"C{k}",
                    alpha=0.35, lw=1)  # fmt: skip
        n = min(len(c) for c in runs)
        mean = np.mean([[p["eval_return"] for p in c[:n]] for c in runs], axis=0)
        ax.plot([p["step"] for p in runs[0][:n]], mean, color=f"C{k}", lw=2.2)
        ax.set_title(f"{name}: final {mean[-1]:.0f} (mean of {len(runs)} seeds)", fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(algos) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("env steps")
        short_ticks(ax, "x")  # "100k", not "100000"
    for ax in axes[:, 0]:
        ax.set_ylabel("eval return")
    fig.suptitle(f"actor-critics on {env_id}: thin = one seed, thick = mean over seeds")
    ctx.savefig(fig, "actor_critic.png")
