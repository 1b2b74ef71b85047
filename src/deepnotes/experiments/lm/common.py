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
    """Distinct colours: matplotlib's C0..C9 for up to 10 runs, tab20 beyond."""
    if n <= 10:
        return f"C{i}"
    from matplotlib import colormaps

    return colormaps["tab20"](i % 20)


def plot_curves(ctx, runs: dict[str, RunResult], name: str, title: str, x: str = "step") -> None:
    """Training loss (thin) and validation loss (markers) of several runs against `x`."""
    fig, ax = ctx.figure(figsize=(7, 4.2))
    for i, (label, r) in enumerate(runs.items()):
        color = run_color(i, len(runs))
        xs = [h[x] for h in r.history]
        ax.plot(xs, [h["loss"] for h in r.history], color=color, lw=1, alpha=0.6)
        ev = [h for h in r.history if "val_loss" in h]
        ax.plot([h[x] for h in ev], [h["val_loss"] for h in ev], "o-", color=color, ms=3,
                label=label)  # fmt: skip
    ax.set_xlabel({"step": "step", "time": "training time (s)"}.get(x, x))
    ax.set_ylabel("loss (nats / token); line = train, dots = validation")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ctx.savefig(fig, name)
