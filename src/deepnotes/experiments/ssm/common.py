"""Shared pieces of the sequence-classification experiments (recall, listops): one training
run through `Trainer.fit` under an optional wall-clock cap, and the results-table rows."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from deepnotes.train import TrainConfig, Trainer
from deepnotes.utils.io import atomic_write_json
from deepnotes.utils.pool import map_runs


@dataclass
class FitResult:
    steps: int = 0  # optimizer steps taken
    seconds: float = 0.0  # wall time in training steps
    stopped_early: bool = False  # hit max_seconds before tcfg.steps
    history: list[dict[str, float]] = field(default_factory=list)  # step, loss, lr, ...
    final: dict[str, float] = field(default_factory=dict)  # eval_fn at the end


def fit_task(
    model: nn.Module,
    tcfg: TrainConfig,
    batches,
    *,
    loss_fn: Callable | None = None,
    eval_fn: Callable[[nn.Module], dict] | None = None,
    max_seconds: float | None = None,
    log_every: int = 10,
) -> FitResult:
    """Train for tcfg.steps or until `max_seconds` of training, then evaluate once.

    batches: as for `Trainer` (a zero-argument callable giving a tuple of tensors works);
    loss_fn(model, batch) -> loss or (loss, metrics); default: the LM loss. The caller's
    random stream is kept (no reseeding).
    """
    cfg = dataclasses.replace(
        tcfg, log_interval=log_every, eval_interval=0, max_seconds=max_seconds or 0.0
    )
    trainer = Trainer(model, cfg, batches, eval_fn=eval_fn, loss_fn=loss_fn)
    trainer.fit(reseed=False)
    return FitResult(
        steps=trainer.step, seconds=trainer.elapsed, stopped_early=trainer.stopped_early,
        history=trainer.history, final=trainer.last_eval,
    )  # fmt: skip


# the columns fit_row / failed_row add to a run's own (mixer, task, ...)
RUN_COLUMNS = ["acc", "eval_loss", "steps", "train_s", "step_ms", "capped", "status"]


def fit_row(row: dict, fit: FitResult) -> dict:
    """A results-table row for one finished run: accuracy, eval loss, steps and timing."""
    return {
        **row, "acc": fit.final["acc"], "eval_loss": fit.final["loss"], "steps": fit.steps,
        "train_s": round(fit.seconds, 1), "step_ms": round(1000 * fit.seconds / fit.steps, 1),
        "capped": fit.stopped_early, "status": "ok",
    }  # fmt: skip


def failed_row(row: dict, error: Exception) -> dict:
    """A results-table row for a run that raised (jobs run with strict=False)."""
    status = f"error: {type(error).__name__}: {error}"[:200]
    return {**row, "acc": None, "eval_loss": None, "steps": 0, "train_s": 0.0,
            "step_ms": None, "capped": False, "status": status}  # fmt: skip


def collect_rows(ctx, fn: Callable, calls: list[tuple], workers: int, desc: str,
                 label: Callable[[dict], str]) -> list[dict]:  # fmt: skip
    """Run fn(*call) for every call over `workers` processes; return the rows as they come.

    After each row, OUT/rows.json is rewritten atomically (a kill loses only the runs in
    flight) and the progress bar shows `label(row)`.
    """
    rows: list[dict] = []
    bar = ctx.progress(total=len(calls), desc=desc)
    for _, row in map_runs(fn, calls, workers):
        rows.append(row)
        atomic_write_json(ctx.out / "rows.json", rows)
        bar.set_postfix_str(label(row))
        bar.update(1)
    bar.close()
    return rows


def failed_labels(rows: list[dict], *keys: str) -> list[str]:
    """Labels ("mixer task width") of the rows whose run raised (`failed_row`)."""
    return [
        " ".join(str(r[k]) for k in keys)
        for r in rows
        if str(r.get("status", "")).startswith("error")
    ]
