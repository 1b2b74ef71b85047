"""`Trainer`: the training loop every model in deepnotes shares.

One optimizer step =
    k micro-batches (gradient accumulation): forward under autocast, backward of loss / k
    (DDP/FSDP synchronise gradients on the last micro-batch only)
    -> unscale (fp16) -> clip the global gradient norm -> optimizer step (skipped by the
    fp16 scaler on inf/NaN) -> learning-rate schedule step.
Around it: periodic evaluation, atomic checkpoints every `ckpt_interval` steps, exact resume,
a progress bar with loss / lr / tokens per second, and a history of dicts. `fit` also takes
a wall-clock cap (`max_seconds`), a logging hook (`on_log`, which may add fields to each
history entry) and an early-stop hook (`stop_fn`); every model in the project trains through
it (the LM experiments, the sequence classifiers, the domain models).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from deepnotes.train.checkpoint import find_latest, load_checkpoint, save_checkpoint, unwrap
from deepnotes.train.distributed import all_reduce_mean, dist_info, shard_blocks, wrap_model
from deepnotes.train.grad_checkpoint import set_gradient_checkpointing
from deepnotes.train.lm import lm_loss
from deepnotes.train.optim import build_optimizer
from deepnotes.train.precision import Precision
from deepnotes.train.schedule import WarmupCosine, build_scheduler
from deepnotes.utils.seed import seed_everything


@dataclass
class TrainConfig:
    """Everything the training loop needs; every field is also a CLI flag in experiments."""

    steps: int = 1000  # optimizer steps (the schedule's length)
    batch_size: int = 16  # global sequences per micro-batch (over all ranks); for iterators
    seq_len: int = 256  # tokens per sequence; for building iterators (the loop takes batches)
    lr: float = 3e-4  # peak learning rate, reached at the end of the warm-up
    min_lr_ratio: float = 0.1  # final lr / peak lr of the cosine (GPT-3 used 0.1)
    warmup: int = 100  # linear warm-up steps (0 = none): keeps early Adam steps small
    decay: str = "cosine"  # lr shape after warm-up: cosine | linear | constant
    weight_decay: float = 0.1  # decoupled decay of matrices (not norms/biases/embeddings)
    beta1: float = 0.9  # Adam first-moment decay
    beta2: float = 0.95  # Adam second-moment decay; 0.95 is steadier than 0.999 for LMs
    eps: float = 1e-8  # Adam denominator guard
    optimizer: str = "adamw"  # adamw (torch, fused/foreach) | adamw-scratch | adam-scratch
    grad_clip: float = 1.0  # max global gradient L2 norm (0 = no clipping)
    grad_accum: int = 1  # micro-batches per optimizer step (same gradient as one big batch)
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16 uses a dynamic loss scale)
    tf32: bool = True  # CUDA: fp32 matmuls on TF32 tensor cores (10-bit mantissa), as usual
    grad_checkpointing: bool = False  # recompute each block's activations in backward
    compile: bool = False  # torch.compile the model (GPU speed; slow to start on CPU)
    distributed: str = "ddp"  # ddp | fsdp, used when launched by torchrun with >1 process
    ckpt_dir: str | None = None  # where checkpoints go (None = no checkpoints)
    ckpt_interval: int = 0  # steps between checkpoints (0 = only at the end)
    keep_checkpoints: int = 2  # newest checkpoints kept on disk
    resume: str = ""  # "" = fresh; "auto" = ckpt_dir's latest if any; or a checkpoint path
    eval_interval: int = 0  # steps between evaluations (0 = only at the end)
    max_seconds: float = 0.0  # cap on training time in seconds (0 = none); a capped run
    # evaluates, stops early and says so (`Trainer.stopped_early`)
    log_interval: int = 1  # steps between history entries (each costs a device sync)
    seed: int = 0  # seeds python/numpy/torch at the start of a fresh run
    progress: bool = True  # show a progress bar (also off with DEEPNOTES_NO_PROGRESS=1)


def enable_gradient_checkpointing(model: nn.Module) -> None:
    """The model's own switch if it has one, else checkpoint each of `model.blocks`."""
    if hasattr(model, "set_gradient_checkpointing"):
        model.set_gradient_checkpointing(True)
    elif isinstance(getattr(model, "gradient_checkpointing", None), bool):
        model.gradient_checkpointing = True  # the LM's own per-block switch
    elif shard_blocks(model):
        set_gradient_checkpointing(shard_blocks(model))
    else:
        raise ValueError(
            f"{type(model).__name__} has neither set_gradient_checkpointing() nor a "
            "`blocks` ModuleList to checkpoint"
        )


def _count(batch) -> int:
    """Tokens in a micro-batch: numel of integer inputs (token ids), else examples."""
    x = batch[0]
    return x.numel() if not x.is_floating_point() else x.shape[0]


class Trainer:
    """Train `model` on `train_batches` under `cfg` (see the module docstring).

    train_batches: an iterator, an iterable (re-iterated when exhausted) or a zero-argument
        callable, giving batches (tuples of tensors); moved to the model's device here.
        An object with state_dict()/load_state_dict() (e.g. `TokenWindows`) is saved in
        checkpoints, so a resumed run draws exactly the batches it would have drawn.
    eval_fn(model) -> dict of floats, run under no_grad and autocast.
    loss_fn(model, batch) -> loss or (loss, metrics dict); default: `lm_loss`.
    on_log(trainer, entry): called for each history entry before evaluation; it may add
        fields (e.g. MoE expert loads read from the step just taken).
    stop_fn(entry) -> bool: early stop; True after a logged step ends the run there.
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: TrainConfig,
        train_batches,
        eval_fn: Callable[[nn.Module], dict] | None = None,
        loss_fn: Callable | None = None,
        on_log: Callable[[Trainer, dict], None] | None = None,
        stop_fn: Callable[[dict], bool] | None = None,
    ) -> None:
        if cfg.grad_accum < 1 or cfg.steps < 1:
            raise ValueError(f"steps and grad_accum must be >= 1: {cfg.steps}, {cfg.grad_accum}")
        self.cfg = cfg
        self.info = dist_info()
        self.module = model  # the user's module (weights, aux_loss, checkpoints)
        self.device = next(iter(model.parameters())).device
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
            torch.backends.cudnn.allow_tf32 = cfg.tf32
        if cfg.grad_checkpointing:
            enable_gradient_checkpointing(model)
        wrapped = wrap_model(model, cfg.distributed, self.info)
        self.optimizer = build_optimizer(
            wrapped,
            cfg.optimizer,
            lr=cfg.lr,
            betas=(cfg.beta1, cfg.beta2),
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
        )
        self.wrapped = wrapped  # DDP / FSDP wrapper (or the module itself)
        self.model = torch.compile(wrapped) if cfg.compile else wrapped
        self.precision = Precision(cfg.precision, self.device)
        self.schedule = WarmupCosine(cfg.warmup, cfg.steps, cfg.min_lr_ratio, cfg.decay)
        self.scheduler = build_scheduler(self.optimizer, self.schedule)
        self.train_batches = train_batches
        self._iter = None
        self.eval_fn = eval_fn
        self.loss_fn = loss_fn or lm_loss
        self.on_log = on_log
        self.stop_fn = stop_fn
        self.last_eval: dict[str, float] = {}  # the latest evaluation's metrics
        self.stopped_early = False  # the run ended before cfg.steps
        self.stop_reason: str | None = None  # "time cap" | "stop_fn"
        self.step = 0  # optimizer steps taken
        self.tokens = 0  # tokens (or examples) consumed, over all ranks
        self.elapsed = 0.0  # seconds spent in training steps (not eval or checkpoints)
        self._skipped_before = 0  # fp16 steps skipped before a resume
        self._skipped = torch.zeros((), dtype=torch.long, device=self.device)  # and since
        self.history: list[dict[str, Any]] = []
        self.resumed_from: str | None = None

    # ------------------------------------------------------------------ batches
    def _next_batch(self):
        src = self.train_batches
        if callable(src) and not hasattr(src, "__next__"):
            batch = src()
        elif hasattr(src, "__next__"):
            batch = next(src)
        else:
            if self._iter is None:
                self._iter = iter(src)
            try:
                batch = next(self._iter)
            except StopIteration:
                self._iter = iter(src)
                batch = next(self._iter)
        if isinstance(batch, torch.Tensor):
            batch = (batch,)
        return tuple(t.to(self.device, non_blocking=True) for t in batch)

    # ------------------------------------------------------------------ one step
    def _sync_context(self, last: bool):
        if isinstance(self.wrapped, nn.parallel.DistributedDataParallel) and not last:
            return self.wrapped.no_sync()
        if hasattr(self.module, "set_requires_gradient_sync"):  # FSDP2
            self.module.set_requires_gradient_sync(last)
        return contextlib.nullcontext()

    def accumulate_gradients(self) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
        """Forward/backward over `grad_accum` micro-batches; gradients of the mean loss.

        Returns the mean loss (tensor), mean metrics, and the local token count.
        """
        k = self.cfg.grad_accum
        total = torch.zeros((), device=self.device)
        sums: dict[str, torch.Tensor] = {}
        n = 0
        for i in range(k):
            batch = self._next_batch()
            n += _count(batch)
            with self._sync_context(last=i == k - 1):
                with self.precision.autocast():
                    out = self.loss_fn(self.model, batch)
                loss, metrics = out if isinstance(out, tuple) else (out, {})
                self.precision.backward(loss / k)
            total += loss.detach().float() / k
            for name, v in metrics.items():
                v = v.detach().float() if isinstance(v, torch.Tensor) else torch.tensor(float(v))
                sums[name] = sums.get(name, 0) + v / k
        return total, sums, n

    def train_step(self) -> dict[str, torch.Tensor]:
        """One optimizer step; returns device tensors (loss, grad_norm, metrics)."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss, metrics, n = self.accumulate_gradients()
        out = {"loss": loss, **metrics}
        if self.cfg.grad_clip > 0:
            self.precision.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
            out["grad_norm"] = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
        stepped = self.precision.step(self.optimizer)
        if isinstance(stepped, torch.Tensor):
            self._skipped += (~stepped).long()
        elif not stepped:
            self._skipped += 1
        self.scheduler.step()
        self.step += 1
        self.tokens += n * self.info.world_size
        return out

    # ------------------------------------------------------------------ loop
    @property
    def skipped(self) -> int:
        """Optimizer steps the fp16 scaler skipped (inf/NaN gradients); reading it syncs."""
        return self._skipped_before + int(self._skipped)

    def _progress(self):
        from tqdm.auto import tqdm

        disable = (
            not self.cfg.progress
            or not self.info.is_main
            or os.environ.get("DEEPNOTES_NO_PROGRESS") == "1"
        )
        return tqdm(
            total=self.cfg.steps, initial=self.step, disable=disable, dynamic_ncols=True,
            desc="train", leave=False,
        )  # fmt: skip

    def evaluate(self) -> dict[str, float]:
        if self.eval_fn is None:
            return {}
        was = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), self.precision.autocast():
                self.last_eval = {k: float(v) for k, v in self.eval_fn(self.model).items()}
            return self.last_eval
        finally:
            self.model.train(was)

    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "tokens": self.tokens,
            "elapsed": self.elapsed,
            "skipped": self.skipped,
            "history": self.history,
            "config": asdict(self.cfg),
        }

    def save(self, ckpt_dir: str | None = None):
        """Write a checkpoint of everything needed to continue exactly."""
        target = ckpt_dir or self.cfg.ckpt_dir
        if target is None:
            raise ValueError("no checkpoint directory: set TrainConfig.ckpt_dir")
        state = self.state()
        return save_checkpoint(
            target, self.step, model=self.model, optimizer=self.optimizer,
            scheduler=self.scheduler, precision=self.precision, data=self.train_batches,
            trainer_state=state, keep=self.cfg.keep_checkpoints,
        )  # fmt: skip

    def load(self, path: str) -> None:
        state = load_checkpoint(
            path, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
            precision=self.precision, data=self.train_batches,
        )  # fmt: skip
        self.step, self.tokens = int(state["step"]), int(state["tokens"])
        self.elapsed, self._skipped_before = float(state["elapsed"]), int(state["skipped"])
        self._skipped.zero_()
        self.history = list(state["history"])
        self.resumed_from = state["path"]
        # The schedule follows the current config (e.g. a run extended to more steps): undo
        # LambdaLR restoring the saved multiplier's fields, and set this step's lr from it.
        # With an unchanged config this changes nothing.
        current = WarmupCosine(self.cfg.warmup, self.cfg.steps, self.cfg.min_lr_ratio,
                               self.cfg.decay)  # fmt: skip
        self.schedule.__dict__.update(current.__dict__)
        factor = self.schedule(self.scheduler.last_epoch)
        for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs, strict=True):
            group["lr"] = base * factor

    def _maybe_resume(self) -> bool:
        r = self.cfg.resume
        if not r:
            return False
        if r == "auto":
            if self.cfg.ckpt_dir is None:
                raise ValueError("resume='auto' needs ckpt_dir")
            found = find_latest(self.cfg.ckpt_dir)
            if found is None:
                return False
            r = str(found)
        elif not os.path.exists(r):
            raise ValueError(f"resume path {r!r} does not exist")
        self.load(r)
        return True

    def fit(self, *, reseed: bool = True, bar=None) -> list[dict[str, Any]]:
        """Train until `cfg.steps`, the time cap or `stop_fn`; return the history.

        reseed: seed python/numpy/torch with cfg.seed (+ rank) on a fresh run; False keeps
            the caller's random stream (experiments that seed when they build the model).
        bar: an outer tqdm bar to advance one step at a time instead of the trainer's own.
        """
        cfg = self.cfg
        if self.resumed_from is None and not self._maybe_resume() and reseed:
            seed_everything(cfg.seed + self.info.rank)
        own_bar = bar is None
        bar = self._progress() if own_bar else bar
        acc: dict[str, torch.Tensor] = {}
        n_acc, t_log, tok_log = 0, self.elapsed, self.tokens
        try:
            while self.step < cfg.steps:
                lr = self.optimizer.param_groups[0]["lr"]
                t0 = time.perf_counter()
                out = self.train_step()
                for k, v in out.items():
                    acc[k] = acc.get(k, 0) + v
                n_acc += 1
                last = self.step == cfg.steps
                over = (
                    not last
                    and cfg.max_seconds > 0
                    and self.elapsed + time.perf_counter() - t0 > cfg.max_seconds
                )
                log_now = last or over or self.step % max(1, cfg.log_interval) == 0
                eval_now = self.eval_fn is not None and (
                    last or over or (cfg.eval_interval > 0 and self.step % cfg.eval_interval == 0)
                )
                stop = False
                if log_now or eval_now:
                    if self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)
                    self.elapsed += time.perf_counter() - t0
                    entry = self._log_entry(acc, n_acc, lr, t_log, tok_log)
                    acc, n_acc, t_log, tok_log = {}, 0, self.elapsed, self.tokens
                    if self.on_log is not None:
                        self.on_log(self, entry)
                    if eval_now:  # an eval metric named like a training one gets "eval_"
                        for k, v in self.evaluate().items():
                            entry[f"eval_{k}" if k in entry else k] = v
                    self.history.append(entry)
                    bar.set_postfix(
                        loss=f"{entry['loss']:.4f}", lr=f"{lr:.2e}",
                        tok_s=f"{entry['tokens_per_s']:.3g}",
                    )  # fmt: skip
                    stop = not last and self.stop_fn is not None and bool(self.stop_fn(entry))
                else:
                    self.elapsed += time.perf_counter() - t0
                bar.update(1)
                if cfg.ckpt_dir and (
                    last or over or stop
                    or (cfg.ckpt_interval > 0 and self.step % cfg.ckpt_interval == 0)
                ):  # fmt: skip
                    self.save()
                if over or stop:
                    self.stopped_early = True
                    self.stop_reason = "time cap" if over else "stop_fn"
                    break
        finally:
            if own_bar:
                bar.close()
        return self.history

    def _log_entry(self, acc, n_acc, lr, t_log, tok_log) -> dict[str, Any]:
        """One history entry: means over the steps since the last one, rates, lr, time."""
        rec = {k: all_reduce_mean(v / n_acc).item() for k, v in acc.items()}
        dt = self.elapsed - t_log
        entry = {
            "step": self.step, "lr": lr, "tokens": self.tokens, "time": self.elapsed,
            "tokens_per_s": (self.tokens - tok_log) / dt if dt > 0 else 0.0, **rec,
        }  # fmt: skip
        if not math.isfinite(entry["loss"]):
            entry["diverged"] = True
        if self.precision.scaler.is_enabled():
            entry["loss_scale"] = self.precision.scale
            entry["skipped"] = self.skipped
        return entry

    def summary(self) -> dict[str, Any]:
        """Totals of the run: steps, tokens, seconds, tokens/s, last loss and eval metrics."""
        out: dict[str, Any] = {
            "steps": self.step,
            "tokens": self.tokens,
            "train_seconds": self.elapsed,
            "tokens_per_s": self.tokens / self.elapsed if self.elapsed > 0 else 0.0,
            "skipped_steps": self.skipped,
            "params": sum(p.numel() for p in unwrap(self.module).parameters()),
        }
        if self.history:
            out.update({k: v for k, v in self.history[-1].items() if k.startswith("val_")})
            out["final_loss"] = self.history[-1]["loss"]
        if self.device.type == "cuda":
            out["peak_memory_bytes"] = torch.cuda.max_memory_allocated(self.device)
        return out
