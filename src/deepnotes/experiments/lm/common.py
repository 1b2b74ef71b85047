"""Shared pieces of the language-model experiments (arena, attention-scaling, activations,
moe): one training run with periodic evaluation through `Trainer.fit`, and curve plots.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from deepnotes.data.text import TextData
from deepnotes.train import TrainConfig, Trainer, lm_eval_fn

# the "smoke" budget shared by the LM experiments: a tiny model for a few steps on 40 chapters
SMOKE_LM = {
    "d_model": 32,
    "n_layers": 1,
    "seq_len": 32,
    "batch_size": 4,
    "steps": 4,
    "warmup": 1,
    "eval_every": 2,
    "eval_batches": 1,
    "max_docs": 40,
}


def train_config(cfg, seed: int) -> TrainConfig:
    """The TrainConfig of an LM experiment's run: its steps, batch, window, lr, warm-up and
    precision (fp32 where the experiment has none), no progress bar of its own."""
    return TrainConfig(
        steps=cfg.steps, batch_size=cfg.batch_size, seq_len=cfg.seq_len, lr=cfg.lr,
        warmup=cfg.warmup, precision=getattr(cfg, "precision", "fp32"), seed=seed,
        progress=False,
    )  # fmt: skip


# the "gpu" budget the activation and MoE experiments share: 6 x 384 on 256-byte windows
GPU_LM = {
    "d_model": 384,
    "n_layers": 6,
    "seq_len": 256,
    "batch_size": 32,
    "steps": 3000,
    "lr": 1e-3,
    "eval_every": 250,
    "eval_batches": 20,
}


@dataclass
class RunResult:
    """History and totals of one training run."""

    history: list[dict[str, Any]] = field(default_factory=list)  # per logged step
    steps: int = 0
    tokens: int = 0
    train_seconds: float = 0.0  # time in optimizer steps (no evaluation)
    stopped_early: bool = False  # hit the wall-clock cap before cfg.steps
    final: dict[str, float] = field(default_factory=dict)  # last evaluation

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.train_seconds if self.train_seconds > 0 else 0.0

    @property
    def steady_tokens_per_s(self) -> float:
        """Tokens/s after the first ~10% of steps (at most 10): leaves out one-time costs
        such as Triton autotuning and allocator warm-up."""
        if not self.history:
            return 0.0
        warm = max(1, min(10, self.steps // 10))
        first = next((h for h in self.history if h["step"] >= warm), None)
        last = self.history[-1]
        if first is None or last["time"] <= first["time"]:
            return self.tokens_per_s
        return (last["tokens"] - first["tokens"]) / (last["time"] - first["time"])


def train_lm(
    model: nn.Module,
    data: TextData,
    tcfg: TrainConfig,
    *,
    eval_every: int,
    eval_batches: int,
    extra_eval: Callable[[nn.Module, torch.Tensor], dict[str, float]] | None = None,
    on_step: Callable[[nn.Module, dict[str, Any]], None] | None = None,
    max_seconds: float | None = None,
    log_every: int = 1,
    bar=None,
) -> RunResult:
    """Train `model` on `data` for tcfg.steps (or until `max_seconds` of training).

    Evaluates validation loss / bits per byte every `eval_every` steps and at the end;
    `extra_eval(model, x_val)` adds metrics from one validation batch; `on_step(model, rec)`
    may add fields to each logged record (e.g. MoE expert loads). The caller's random stream
    is kept (no reseeding), so a model built from a seed trains the same way every time.
    """
    device = next(model.parameters()).device
    batches = data.train_batches(tcfg.batch_size, tcfg.seq_len, seed=tcfg.seed, device=device)
    val_eval = lm_eval_fn(
        data, batch_size=tcfg.batch_size, seq_len=tcfg.seq_len, max_batches=eval_batches
    )
    x_probe = next(data.val_batches(tcfg.batch_size, tcfg.seq_len, device=device))[0]

    def eval_fn(m: nn.Module) -> dict[str, float]:
        out = val_eval(m)
        if extra_eval is not None:
            out.update(extra_eval(m, x_probe))
        return out

    cfg = dataclasses.replace(
        tcfg, eval_interval=eval_every, log_interval=log_every, max_seconds=max_seconds or 0.0
    )
    on_log = None if on_step is None else (lambda trainer, rec: on_step(model, rec))
    trainer = Trainer(model, cfg, batches, eval_fn=eval_fn, on_log=on_log)
    trainer.fit(reseed=False, bar=bar)
    evals = [h for h in trainer.history if "val_loss" in h]
    skip = ("step", "lr", "time", "tokens_per_s")
    return RunResult(
        history=trainer.history, steps=trainer.step, tokens=trainer.tokens,
        train_seconds=trainer.elapsed, stopped_early=trainer.stopped_early,
        final={k: v for k, v in evals[-1].items() if k not in skip} if evals else {},
    )  # fmt: skip


def run_color(i: int, n: int):
    """Distinct colours by position (kept for callers without names; prefer
    `deepnotes.utils.plot.series_style(name)`, fixed per name across plots)."""
    if n <= 10:
        return f"C{i}"
    from matplotlib import colormaps

    return colormaps["tab20"](i % 20)


def plot_curves(
    ctx, runs: dict[str, RunResult], name: str, title: str, x: str = "step",
    bytes_per_token: float = 1.0,
) -> None:  # fmt: skip
    """Training loss (thin) and validation loss (markers) of several runs against `x`, in
    bits per byte like the tables: nats / ln 2 / bytes_per_token (1 for byte-level LMs).
    Each run keeps its name's style (`series_style`; up to ten runs, unknown names take
    colours no other run has: `few_series_styles`); the legend sits right of the axes,
    where it covers no curve."""
    import math

    from deepnotes.utils.plot import few_series_styles, log_if_wide, log_ticks

    scale = 1.0 / (math.log(2) * bytes_per_token)
    styles = few_series_styles(list(runs))
    fig, ax = ctx.figure(figsize=(8.5 if len(runs) > 6 else 8, 4.6))
    all_x = []
    for label, r in runs.items():
        st = styles[label]
        xs = [h[x] for h in r.history]
        all_x += xs
        ax.plot(xs, [h["loss"] * scale for h in r.history], color=st["color"],
                linestyle=st["linestyle"], lw=0.8, alpha=0.45)  # fmt: skip
        ev = [h for h in r.history if "val_loss" in h]
        ax.plot([h[x] for h in ev], [h["val_loss"] * scale for h in ev], color=st["color"],
                marker=st["marker"], linestyle=st["linestyle"], ms=4, label=label)  # fmt: skip
    if x == "time" and log_if_wide(ax, all_x, "x"):
        log_ticks(ax, "x")  # "0.1", "10" rather than 10^-1, 10^1
    ax.set_xlabel({"step": "step", "time": "training time (s)"}.get(x, x))
    ax.set_ylabel("bits / byte (line: train, markers: validation)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2 if len(runs) > 12 else 1, loc="upper left",
              bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # fmt: skip
    ctx.savefig(fig, name)


def plot_bpb_vs_speed(ctx, rows: list[dict], name: str = "bpb_vs_speed.png") -> None:
    """The arena's quality-vs-speed scatter: rows with "mixer", "train_tok_s", "val_bpb"
    (the table's units), each mixer in its fixed style, labels placed without overlaps."""
    from deepnotes.utils.plot import label_points, log_if_wide, log_ticks, series_styles

    rows = [r for r in rows if r.get("val_bpb") is not None and r.get("train_tok_s")]
    styles = series_styles([r["mixer"] for r in rows])
    fig, ax = ctx.figure(figsize=(7.5, 5))
    xs, ys = [r["train_tok_s"] for r in rows], [r["val_bpb"] for r in rows]
    for r in rows:
        st = styles[r["mixer"]]
        ax.scatter(r["train_tok_s"], r["val_bpb"], color=st["color"], marker=st["marker"], s=40)
    if xs:
        lo, hi = min(xs), max(xs)
        ax.set_xlim(lo / 1.6, hi * 2.2)  # room for labels right of the fastest points
        span = (max(ys) - min(ys)) or 0.1
        ax.set_ylim(min(ys) - 0.12 * span, max(ys) + 0.12 * span)
    if not log_if_wide(ax, xs, "x", decades=1.0):
        ax.set_xscale("log")  # speeds compare as ratios
    log_ticks(ax, "x")  # "20k", "50k" rather than 10^4 alone
    ax.set(xlabel="training tokens / s (log scale)", ylabel="validation bits / byte",
           title="quality vs speed (lower right is better)")  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    label_points(ax, xs, ys, [r["mixer"] for r in rows], clear_px=6,
                 color=[styles[r["mixer"]]["color"] for r in rows])  # fmt: skip
    ctx.savefig(fig, name)
