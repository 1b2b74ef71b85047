"""`deepnotes run recall`: which mixers can recall? MQAR and selective copying.

Each mixer drives the same small decoder LM (`deepnotes.models.lm`, n_layers blocks of
mixer + MLP), trained from scratch on each task at two widths, and scored by accuracy on the
asked positions of held-out examples:
- MQAR (Zoology; Arora et al. 2023) at (T, pairs) = (64, 4), (128, 8), (256, 16);
- selective copying (Gu & Dao 2023).
The literature's picture: attention solves MQAR at every width (one lookup), while
fixed-state models need width (state) that grows with the number of pairs; Mamba solves
selective copying, where LTI SSMs (S4) and linear attention lag (Mamba paper, Table 1:
S4 18.3%, Mamba 99.8%).

The CPU default (MQAR (64, 4) only; softmax, linear, s4d, lstm at d = 32 and 64; 1,000
steps of 64; two runs at a time) finishes in about 5 minutes on two cores, long enough for
softmax attention to solve it at d = 64 (0.99) while the fixed-state mixers stay near 1/4.
`--budget gpu` runs all three MQAR settings and selective copying for 7 mixers on one GPU
(bf16, 7 runs at a time, time-capped); measured results and where they differ from the
literature: docs/ssm.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

import deepnotes.mixers as M
from deepnotes.data.batches import random_batches
from deepnotes.data.synthetic import IGNORE, mqar, selective_copying
from deepnotes.experiments.ssm.common import (
    RUN_COLUMNS,
    collect_rows,
    failed_labels,
    failed_row,
    fit_row,
    fit_task,
)
from deepnotes.jobs import Context, Result, experiment
from deepnotes.models.lm import LM, LMConfig, auto_positions
from deepnotes.train import TrainConfig
from deepnotes.utils.pool import shareable, shared

SSM_MIXERS = ("s4d", "s4", "mamba")
# rough relative cost of a training step (measured on CPU and on the H100 arena), to start the
# slowest runs first when several workers share the sweep
COST = {"s4": 4.0, "gru": 3.0, "mamba": 2.0, "strided_sparse": 2.0, "gau_flash": 2.0}


@dataclass
class RecallConfig:
    mixers: list[str] = field(
        default_factory=lambda: ["softmax", "linear", "s4d", "lstm"]
    )  # CPU-affordable set (Mamba's CPU scan costs ~10x a softmax step); --mixers all = all
    widths: list[int] = field(default_factory=lambda: [32, 64])  # the two model widths
    n_layers: int = 2  # blocks (MQAR needs two: one to tag pairs, one to look up)
    mqar_lengths: list[int] = field(default_factory=lambda: [64])  # MQAR T (gpu: 64,128,256)
    mqar_pairs: list[int] = field(default_factory=lambda: [4])  # ... and pairs (gpu: 4,8,16)
    mqar_vocab: int = 64  # keys from the first half, values from the second
    copy_length: int = 64  # selective copying: total length (data region + markers)
    copy_tokens: int = 4  # tokens to copy
    copy_vocab: int = 8  # noise, marker and 6 data symbols
    ssm_state: int = 16  # d_state of s4d / s4 / mamba (Mamba's default N)
    steps: int = 1000  # optimizer steps per run: softmax needs ~600-900 for MQAR (64, 4), d=64
    batch_size: int = 64  # sequences per step (32 was too few for d=32 to learn in 1000)
    lr: float = 1e-3  # AdamW peak learning rate (3e-3 stalled softmax on MQAR)
    weight_decay: float = 0.0  # decoupled weight decay (none: runs are short)
    warmup: int = 50  # linear warm-up steps (0 = none)
    train_examples: int = 20000  # fixed training pool per task (sampled with replacement)
    eval_examples: int = 256  # held-out examples per task
    time_budget_s: float = 0.0  # optional training wall-clock cap of the whole job (0 = none)
    tasks: list[str] = field(default_factory=lambda: ["mqar"])  # task families: mqar, copy
    precision: str = "fp32"  # fp32 | bf16 (autocast, fp32 master weights; the gpu preset)
    workers: int = 2  # runs trained at once in spawned processes (1 = in this process)
    strict: bool = True  # a run that raises stops the job (False: recorded as an error row)


PRESETS = {
    "smoke": {
        "mixers": ["softmax", "mamba"],
        "widths": [16],
        "n_layers": 1,
        "mqar_lengths": [32],
        "mqar_pairs": [2],
        "tasks": ["mqar", "copy"],
        "copy_length": 24,
        "copy_tokens": 4,
        "steps": 3,
        "batch_size": 4,
        "warmup": 1,
        "train_examples": 32,
        "eval_examples": 8,
        "workers": 1,
    },
    "gpu": {  # one H100 in about 5 minutes (docs/ssm.md)
        "mixers": ["softmax", "sliding_window", "linear", "lstm", "s4d", "s4", "mamba"],
        "widths": [64, 128],
        "mqar_lengths": [64, 128, 256],
        "mqar_pairs": [4, 8, 16],
        "tasks": ["mqar", "copy"],
        "mqar_vocab": 64,
        "copy_length": 256,
        "copy_tokens": 16,
        "copy_vocab": 16,
        "steps": 1500,
        "batch_size": 128,
        "lr": 1e-3,
        "weight_decay": 0.0,
        "warmup": 100,
        "train_examples": 50000,
        "eval_examples": 1000,
        "precision": "bf16",
        "workers": 7,
        "time_budget_s": 270.0,
        "strict": False,
    },
}


def task_list(cfg: RecallConfig) -> list[tuple[str, int, callable, int]]:
    """(label, vocab, generator(n, seed) -> (x, y), T) for every task setting."""
    out = []
    if "mqar" in cfg.tasks:
        for T, P in zip(cfg.mqar_lengths, cfg.mqar_pairs, strict=True):
            gen = lambda n, seed, T=T, P=P: mqar(n, T, P, cfg.mqar_vocab, seed=seed)
            out.append((f"mqar T={T} P={P}", cfg.mqar_vocab, gen, T))
    if "copy" in cfg.tasks:
        T, K, V = cfg.copy_length, cfg.copy_tokens, cfg.copy_vocab
        gen = lambda n, seed: selective_copying(n, T, K, V, seed=seed)
        out.append((f"copy T={T} K={K}", V, gen, T))
    if not out:
        raise ValueError(f"recall: no tasks selected from {cfg.tasks}; valid: mqar, copy")
    return out


def chosen_mixers(cfg: RecallConfig) -> list[str]:
    if cfg.mixers == ["all"]:
        return [n for n in M.names() if M.get(n).supports_causal]
    for n in cfg.mixers:
        if not M.get(n).supports_causal:
            raise ValueError(f"recall: mixer {n!r} cannot be causal")
    return list(cfg.mixers)


@torch.no_grad()
def recall_accuracy(model, x: torch.Tensor, y: torch.Tensor, batch: int = 128) -> dict:
    """Accuracy and loss over the asked positions (y != IGNORE)."""
    hits = total = 0
    loss = 0.0
    for i in range(0, x.shape[0], batch):
        logits = model(x[i : i + batch]).float()
        t = y[i : i + batch]
        asked = t != IGNORE
        hits += (logits.argmax(-1)[asked] == t[asked]).sum().item()
        total += asked.sum().item()
        loss += torch.nn.functional.cross_entropy(logits[asked], t[asked], reduction="sum").item()
    return {"acc": hits / total, "loss": loss / total}


def build_lm(cfg: RecallConfig, mixer: str, width: int, vocab: int, T: int) -> LM:
    kw = {"d_state": cfg.ssm_state} if mixer in SSM_MIXERS else {}
    lcfg = LMConfig(
        vocab_size=vocab,
        d_model=width,
        n_layers=cfg.n_layers,
        max_len=T,
        mixer=mixer,
        mixer_kwargs=kw,
        positions=auto_positions(mixer),
        tie_weights=False,  # inputs and outputs are different roles (keys in, values out)
    )
    return LM(lcfg)


@experiment(
    "recall",
    "MQAR and selective copying: accuracy of each mixer at two widths (which mixers recall)",
    RecallConfig,
    presets=PRESETS,
)
def run_recall(cfg: RecallConfig, ctx: Context) -> Result:
    mixers, tasks = chosen_mixers(cfg), task_list(cfg)
    runs = [(m, i, w) for m in mixers for i in range(len(tasks)) for w in cfg.widths]
    # the slowest runs first, so that no worker is left with a long one at the end
    runs.sort(key=lambda r: -COST.get(r[0], 1) * tasks[r[1]][3] * r[2] ** 0.5)
    workers = max(1, min(cfg.workers, len(runs)))
    waves = -(-len(runs) // workers)  # runs per worker, rounded up
    per_run = cfg.time_budget_s / waves if cfg.time_budget_s > 0 else None
    data = {i: task_data(cfg, i, ctx.seed) for i in range(len(tasks))}
    with shareable(data, workers) as data:
        calls = [(cfg, m, i, w, ctx.seed, str(ctx.device), per_run, data) for m, i, w in runs]
        label = lambda r: f"{r['mixer']} {r['task']} d={r['width']} acc={r['acc']}"
        rows = collect_rows(ctx, train_run, calls, workers, "recall", label)
    order = {(m, t[0], w): k for k, (m, t, w) in enumerate(
        (m, t, w) for m in mixers for t in tasks for w in cfg.widths)}  # fmt: skip
    rows.sort(key=lambda r: order[(r["mixer"], r["task"], r["width"])])
    _plot(ctx, rows, mixers, [t[0] for t in tasks], cfg.widths)
    return Result(
        metrics=_metrics(rows, cfg),
        table=rows,
        columns=["mixer", "task", "width", *RUN_COLUMNS],
        failed=failed_labels(rows, "mixer", "task", "width"),
        notes=_notes(rows, cfg, per_run, workers, tasks),
    )


def task_data(cfg: RecallConfig, i: int, seed: int):
    """Training pool and held-out set of task i: (x, y, x_eval, y_eval)."""
    _, _, gen, _ = task_list(cfg)[i]
    x, y = gen(cfg.train_examples, seed * 1000 + 2 * i)
    xv, yv = gen(cfg.eval_examples, seed * 1000 + 2 * i + 1)
    return x, y, xv, yv


def train_run(cfg, mixer, i, width, seed, device, max_seconds, data) -> dict:
    """Train one (mixer, task i, width) from scratch; its table row. data: see `shared`."""
    label, vocab, _, T = task_list(cfg)[i]
    x, y, xv, yv = shared(data)[i]
    row = {"mixer": mixer, "task": label, "width": width}
    try:
        torch.manual_seed(seed)
        model = build_lm(cfg, mixer, width, vocab, T).to(device)
        tcfg = TrainConfig(
            steps=cfg.steps, batch_size=cfg.batch_size, seq_len=T, lr=cfg.lr,
            warmup=cfg.warmup, weight_decay=cfg.weight_decay, precision=cfg.precision,
            seed=seed, progress=False,
        )  # fmt: skip
        batches = random_batches(x, y, batch_size=cfg.batch_size, seed=seed, device=device)
        xv, yv = xv.to(device), yv.to(device)
        score = lambda m: recall_accuracy(m, xv, yv)
        fit = fit_task(model, tcfg, batches, eval_fn=score, max_seconds=max_seconds)
    except Exception as e:  # noqa: BLE001 - strict=False records it in the table
        if cfg.strict:
            raise
        return failed_row(row, e)
    return fit_row(row, fit)


def _acc(rows, mixer, task_prefix, width=None):
    """Worst accuracy of a mixer over the settings of one task family (None if no run)."""
    sel = [r for r in rows if r["mixer"] == mixer and r["task"].startswith(task_prefix)]
    if width is not None:
        sel = [r for r in sel if r["width"] == width]
    return min((r["acc"] for r in sel if r["acc"] is not None), default=None)


def chance(cfg: RecallConfig, label: str) -> float:
    """Accuracy of a uniform guess among the possible answers of a task."""
    if label.startswith("mqar"):
        return 1 / (cfg.mqar_vocab - cfg.mqar_vocab // 2)  # values: the upper half
    return 1 / (cfg.copy_vocab - 2)  # data tokens: all but noise and marker


def _metrics(rows, cfg):
    m = {f"acc/{r['mixer']}/{r['task']}/d{r['width']}": r["acc"] for r in rows}
    w = max(cfg.widths)
    mixers = sorted({r["mixer"] for r in rows})
    m["worst_mqar_acc_at_max_width"] = {k: _acc(rows, k, "mqar", w) for k in mixers}
    m["copy_acc_at_max_width"] = {k: _acc(rows, k, "copy", w) for k in mixers}
    m["chance"] = {t: chance(cfg, t) for t in sorted({r["task"] for r in rows})}
    return m


def _notes(rows, cfg, per_run, workers, tasks):
    w = max(cfg.widths)
    levels = ", ".join(f"{t[0]}: {chance(cfg, t[0]):.3f}" for t in tasks)
    notes = [
        "acc = accuracy on the asked positions of held-out examples; chance (uniform guess "
        f"among the possible answers) = {levels}",
        f"{cfg.steps} steps x {cfg.batch_size} sequences per run, {cfg.precision}; "
        f"{workers} run(s) at a time (step_ms is wall time per step while sharing the "
        "device with the other workers)",
    ]
    if per_run is not None:
        capped = sum(r["capped"] for r in rows)
        notes.append(
            f"time-capped: {per_run:.1f} s of training per run; {capped}/{len(rows)} runs "
            f"stopped before {cfg.steps} steps (see 'steps'): accuracies are not converged"
        )
    errors = [r for r in rows if r["status"] != "ok"]
    if errors:
        notes.append(f"{len(errors)} run(s) failed: " + "; ".join(
            f"{r['mixer']} {r['task']} d={r['width']}: {r['status']}" for r in errors))  # fmt: skip
    att, mam = _acc(rows, "softmax", "mqar", w), _acc(rows, "mamba", "copy", w)
    if att is not None:
        verdict = "solves" if att >= 0.9 else "does NOT solve"
        notes.append(f"literature: attention solves MQAR. measured: softmax {verdict} every "
                     f"MQAR setting at d={w} (worst acc {att:.2f})")  # fmt: skip
    if mam is not None:
        others = {k: _acc(rows, k, "copy", w) for k in ("s4d", "s4", "linear")}
        others = ", ".join(f"{k} {v:.2f}" for k, v in others.items() if v is not None)
        notes.append(f"literature: Mamba solves selective copying, S4 and linear attention "
                     f"lag. measured at d={w}: mamba {mam:.2f}; {others}")  # fmt: skip
    return notes


def _plot(ctx, rows, mixers, tasks, widths):
    from deepnotes.utils.plot import series_styles

    styles = series_styles(mixers)  # each mixer's style of every plot of the project
    fig, axes = ctx.figure(1, len(tasks), figsize=(4.2 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for mixer in mixers:
            pts = sorted(
                (r["width"], r["acc"])
                for r in rows
                if r["mixer"] == mixer and r["task"] == task and r["acc"] is not None
            )
            ax.plot([p[0] for p in pts], [p[1] for p in pts], **styles[mixer], label=mixer)
        ax.set(title=task, xlabel="model width", ylim=(-0.02, 1.02))
        ax.set_xscale("log", base=2)
        ax.set_xticks(widths, [str(w) for w in widths])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy")
    # beside the last panel: inside it the legend hid lines
    axes[0][-1].legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    ctx.savefig(fig, "recall_accuracy_vs_width.png")
