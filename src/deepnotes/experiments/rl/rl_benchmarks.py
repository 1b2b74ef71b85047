"""`deepnotes run rl-benchmarks`: A2C, TRPO and DDPG on gymnasium classic control, with
Stable-Baselines3 / sb3-contrib as peers on the same seeds, budgets and evaluation protocol.

Tasks (targets from the issue; budgets and hyperparameters from rl-baselines3-zoo
hyperparams/{a2c,trpo,ddpg}.yml, used for both implementations):
- a2c-cartpole:  A2C  CartPole-v1, 5e5 steps, target final return >= 475
- trpo-cartpole: TRPO CartPole-v1, 1e5 steps, target >= 475
- ddpg-pendulum: DDPG Pendulum-v1, 2e4 steps, target >= -200 (zoo: -152 +- 94)
- trpo-pendulum: TRPO Pendulum-v1, 1e5 steps, target >= -250

Protocol: each (task, implementation, seed) run is evaluated every `eval_every` env steps
with `eval_episodes` deterministic episodes on fixed evaluation seeds; training time excludes
evaluation time. "final" is the last evaluation; time-to-threshold is the first evaluation at
or above the target. Ours and the peer run alternately, seed by seed, so that the load of a
shared machine falls on both alike. Each finished run is saved under out/runs/ (atomically);
rerunning with the same --out skips finished runs and resumes ours from out/ckpt/.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepnotes.jobs import Context, Result, experiment
from deepnotes.rl import a2c, ddpg, trpo
from deepnotes.rl.peers import sb3_available, train_sb3
from deepnotes.rl.recorder import Recorder, eval_seed
from deepnotes.utils.env import package_version, threads
from deepnotes.utils.io import atomic_write_json


@dataclass(frozen=True)
class Task:
    algo: str
    env_id: str
    steps: int
    threshold: float
    ours: dict[str, Any]  # overrides of the algorithm's config dataclass
    sb3: dict[str, Any]  # kwargs of the SB3 / sb3-contrib model (rl-zoo)
    eval_every: int


TASKS: dict[str, Task] = {
    # rl-zoo a2c.yml CartPole-v1: n_envs 8, ent_coef 0; everything else SB3 A2C defaults.
    "a2c-cartpole": Task(
        "a2c", "CartPole-v1", 500_000, 475.0, {}, {"n_envs": 8, "ent_coef": 0.0}, 20_000
    ),
    # rl-zoo trpo.yml CartPole-v1.
    "trpo-cartpole": Task(
        "trpo",
        "CartPole-v1",
        100_000,
        475.0,
        {},
        {
            "n_envs": 2,
            "n_steps": 512,
            "batch_size": 512,
            "cg_damping": 1e-3,
            "gae_lambda": 0.98,
            "gamma": 0.99,
            "learning_rate": 1e-3,
            "n_critic_updates": 20,
        },
        5_000,
    ),
    # rl-zoo ddpg.yml Pendulum.
    "ddpg-pendulum": Task(
        "ddpg",
        "Pendulum-v1",
        20_000,
        -200.0,
        {},
        {
            "gamma": 0.98,
            "buffer_size": 200_000,
            "learning_starts": 10_000,
            "noise_std": 0.1,
            "gradient_steps": -1,
            "train_freq": (1, "episode"),
            "learning_rate": 1e-3,
            "policy_kwargs": {"net_arch": [400, 300]},
        },
        1_000,
    ),
    # rl-zoo trpo.yml Pendulum-v1 (n_envs 2, n_steps 1024, gamma 0.9, 15 critic updates,
    # gSDE); ours uses a plain Gaussian policy (no gSDE) and sb3-contrib's other defaults.
    "trpo-pendulum": Task(
        "trpo",
        "Pendulum-v1",
        100_000,
        -250.0,
        {
            "n_steps": 1024,
            "gamma": 0.9,
            "gae_lambda": 0.95,
            "vf_epochs": 15,
            "vf_batch": 128,
            "cg_damping": 0.1,
        },
        {
            "n_envs": 2,
            "n_steps": 1024,
            "gamma": 0.9,
            "n_critic_updates": 15,
            "use_sde": True,
            "sde_sample_freq": 4,
        },
        5_000,
    ),
}

MODULES = {
    "a2c": (a2c, a2c.A2CConfig),
    "trpo": (trpo, trpo.TRPOConfig),
    "ddpg": (ddpg, ddpg.DDPGConfig),
}


@dataclass
class RLBenchConfig:
    tasks: list[str] = field(default_factory=lambda: list(TASKS))  # which tasks to run
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # the issue asks for >= 3
    peers: bool = True  # run SB3 / sb3-contrib too (skipped with a note if not installed)
    steps: int = 0  # override every task's budget (0 = the task's own); for quick runs
    eval_every: int = 0  # override the evaluation interval (0 = the task's own)
    eval_episodes: int = 10  # deterministic evaluation episodes per point
    threads: int = 1  # torch threads: 1 keeps runs comparable on a shared CPU


def _budget(task: Task, cfg: RLBenchConfig) -> tuple[int, int, dict, dict]:
    """(steps, eval_every, our overrides, sb3 kwargs), scaled when `cfg.steps` is set.

    On-policy budgets are cut to whole rollouts so both implementations stop at the same step.
    """
    steps = cfg.steps or task.steps
    ours, peer = dict(task.ours), dict(task.sb3)
    if task.algo == "ddpg" and cfg.steps:
        start = min(task.sb3["learning_starts"], steps // 2)
        ours["learning_starts"] = peer["learning_starts"] = start
    if task.algo in ("a2c", "trpo"):
        module, cfg_cls = MODULES[task.algo]
        base = dataclasses.replace(cfg_cls(), **ours)
        per_iter = base.n_steps * base.n_envs
        steps = max(1, steps // per_iter) * per_iter
    every = cfg.eval_every or min(task.eval_every, max(steps // 4, 1))
    return steps, every, ours, peer


def _run_ours(task: Task, seed: int, steps: int, every: int, overrides: dict, cfg, ctx) -> Recorder:
    module, cfg_cls = MODULES[task.algo]
    acfg = cfg_cls(
        env_id=task.env_id,
        seed=seed,
        total_steps=steps,
        eval_every=every,
        eval_episodes=cfg.eval_episodes,
        **overrides,
    )
    name = _run_name(task, "ours", seed)
    recorder = Recorder(
        task.env_id,
        every,
        cfg.eval_episodes,
        eval_seed(seed),
        threshold=task.threshold,
        progress_path=ctx.out / "progress" / f"{name}.json",
        label=name,
    )
    _, recorder = module.train(
        acfg, recorder, checkpoint=ctx.out / "ckpt" / f"{name}.pt", resume=True
    )
    return recorder


def _run_name(task: Task, impl: str, seed: int) -> str:
    return f"{task.algo}-{task.env_id}-{impl}-seed{seed}"


def _summary(rows: list[dict], threshold: float) -> dict:
    finals = [r["final"] for r in rows]
    reached = [r for r in rows if r["steps_to_threshold"] is not None]
    return {
        "final_mean": float(np.mean(finals)),
        "final_std": float(np.std(finals)),
        "reached": f"{len(reached)}/{len(rows)}",
        "steps_to_threshold_mean": (
            float(np.mean([r["steps_to_threshold"] for r in reached])) if reached else None
        ),
        "time_to_threshold_s_mean": (
            float(np.mean([r["time_to_threshold_s"] for r in reached])) if reached else None
        ),
        "train_time_s_mean": float(np.mean([r["train_time_s"] for r in rows])),
        "target_met": bool(np.mean(finals) >= threshold),
    }


def plot_curves(ctx: Context, runs: dict, tasks: list[str]) -> None:
    """Eval return against env steps (top) and wall time (bottom), one column per task;
    `runs[(task, impl, seed)] = {"curve": [{"step", "time_s", "eval_return"}, ...]}`."""
    from deepnotes.utils.plot import short_ticks

    n = len(tasks)
    fig, axes = ctx.figure(2, n, figsize=(4.2 * n, 6.4), squeeze=False)
    for j, name in enumerate(tasks):
        task = TASKS[name]
        for k, impl in enumerate(("ours", "sb3")):
            curves = [r["curve"] for (t, i, _), r in runs.items() if t == name and i == impl]
            if not curves:
                continue
            for row, key in ((0, "step"), (1, "time_s")):
                ax = axes[row][j]
                label = "deepnotes" if impl == "ours" else "SB3"
                for c, curve in enumerate(curves):
                    x = [p[key] for p in curve]
                    y = [p["eval_return"] for p in curve]
                    ax.plot(x, y, color=f"C{k}", alpha=0.8, lw=1.2, label=None if c else label)
        for row, xlabel in ((0, "env steps"), (1, "training wall time (s, shared CPU)")):
            ax = axes[row][j]
            ax.axhline(task.threshold, color="k", ls="--", lw=0.8, label="target")
            ax.set(title=f"{task.algo.upper()} {task.env_id}", xlabel=xlabel, ylabel="eval return")
            short_ticks(ax, "x")  # 500000 -> 500k: six-digit step ticks collide
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    ctx.savefig(fig, "rl_benchmarks.png")


@experiment(
    "rl-benchmarks",
    "A2C / TRPO / DDPG on CartPole and Pendulum over seeds, beside SB3 / sb3-contrib",
    RLBenchConfig,
    presets={
        "smoke": {
            "tasks": ["a2c-cartpole", "ddpg-pendulum"],
            "seeds": [0],
            "steps": 250,
            "eval_every": 125,
            "eval_episodes": 1,
        },
        "full": {},
    },
)
def run(cfg: RLBenchConfig, ctx: Context) -> Result:
    with threads(cfg.threads):
        return _run(cfg, ctx)


def _run(cfg: RLBenchConfig, ctx: Context) -> Result:
    unknown = sorted(set(cfg.tasks) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; valid: {sorted(TASKS)}")
    ok, peer_note = sb3_available()
    notes = [
        "final = mean deterministic return of the last evaluation "
        f"({cfg.eval_episodes} episodes, fixed evaluation seeds), averaged over seeds",
        "wall times exclude evaluation, use torch with "
        f"{cfg.threads} thread(s) and were measured on a CPU shared with other jobs: noisy",
    ]
    if cfg.peers and not ok:
        notes.append(f"SB3 peers skipped: {peer_note}")
    impls = ["ours", *(["sb3"] if cfg.peers and ok else [])]
    jobs = [(t, i, s) for t in cfg.tasks for s in cfg.seeds for i in impls]
    runs: dict = {}
    bar = ctx.progress(total=len(jobs), desc="rl runs")
    for name, impl, seed in jobs:
        task = TASKS[name]
        steps, every, ours, peer = _budget(task, cfg)
        path = ctx.out / "runs" / f"{_run_name(task, impl, seed)}.json"
        if path.exists() and json.loads(path.read_text())["steps_budget"] == steps:
            runs[(name, impl, seed)] = json.loads(path.read_text())
            bar.update(1)
            continue
        if impl == "ours":
            rec = _run_ours(task, seed, steps, every, ours, cfg, ctx)
        else:
            prog = ctx.out / "progress" / f"{_run_name(task, impl, seed)}.json"
            rec = train_sb3(
                task.algo, task.env_id, seed, steps, peer, every, cfg.eval_episodes,
                task.threshold, prog,
            )  # fmt: skip
        n_steps, t_steps = rec.time_to_threshold()
        record = {
            "task": name,
            "impl": impl,
            "seed": seed,
            "steps_budget": steps,
            "final": rec.final_return(),
            "steps_to_threshold": n_steps,
            "time_to_threshold_s": t_steps,
            "train_time_s": rec.train_time,
            "curve": rec.curve,
        }
        atomic_write_json(path, record)
        runs[(name, impl, seed)] = record
        bar.update(1)
        ctx.log(f"{name} {impl} seed {seed}: final {record['final']:.1f} "
                f"({rec.train_time:.0f} s training)")  # fmt: skip
    bar.close()

    table, metrics = [], {}
    for name in cfg.tasks:
        task = TASKS[name]
        for impl in impls:
            rows = [r for (t, i, _), r in runs.items() if t == name and i == impl]
            s = _summary(rows, task.threshold)
            metrics[f"{name}/{impl}"] = s
            tts = s["time_to_threshold_s_mean"]
            sts = s["steps_to_threshold_mean"]
            table.append(
                {
                    "task": name,
                    "impl": "deepnotes" if impl == "ours" else "SB3",
                    "steps": rows[0]["steps_budget"],
                    "seeds": len(rows),
                    "final (mean+-std)": f"{s['final_mean']:.1f} +- {s['final_std']:.1f}",
                    "target": f">= {task.threshold:g}",
                    "met": "yes" if s["target_met"] else "NO",
                    "reached": s["reached"],
                    "steps to target": "-" if sts is None else f"{sts:.0f}",
                    "time to target (s)": "-" if tts is None else f"{tts:.1f}",
                    "train time (s)": f"{s['train_time_s_mean']:.1f}",
                    "per seed": ", ".join(f"{r['final']:.1f}" for r in rows),
                }
            )
    metrics["versions"] = {
        "gymnasium": package_version("gymnasium"),
        "stable-baselines3": package_version("stable-baselines3"),
        "sb3-contrib": package_version("sb3-contrib"),
    }
    # per-run numbers in the metrics; the learning curves (plot data) in curves.json
    metrics["runs"] = {
        f"{t}/{i}/seed{s}": {k: v for k, v in r.items() if k != "curve"}
        for (t, i, s), r in runs.items()
    }
    atomic_write_json(
        ctx.out / "curves.json", {f"{t}/{i}/seed{s}": r["curve"] for (t, i, s), r in runs.items()}
    )
    plot_curves(ctx, runs, cfg.tasks)
    return Result(metrics=metrics, table=table, notes=notes)
