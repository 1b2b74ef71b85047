"""A small sequence classifier around any mixer, and a plain loop to train it on a task.

    tokens [B, T] -> embedding (+ learned positions) -> n_layers x [x + Mixer(Norm(x));
    x + MLP(Norm(x))] -> Norm -> mean over real tokens -> Linear -> logits [B, n_classes]

Unlike the decoder LM (`deepnotes.models.lm`), the mixers may be bidirectional
(causal=False), as Long Range Arena's encoders are. Padding: `mask` [B, T] (True = real)
goes to every mixer and to the pooling, so padded tokens never reach the prediction.

`fit_task` trains any model with `deepnotes.train.Trainer` (AdamW, warm-up + cosine,
gradient clipping, optional bf16 autocast) under an optional wall-clock cap, and evaluates at
the end. `map_runs` spreads independent training runs over worker processes: a model this
small leaves a GPU idle between kernel launches, so several processes sharing it finish a
sweep sooner than one process running the models in turn.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import deepnotes.mixers as M
from deepnotes.layers.ffn import build_ffn
from deepnotes.layers.norms import build_norm
from deepnotes.train import TrainConfig, Trainer


@dataclass
class SeqModelConfig:
    vocab_size: int  # token ids in [0, vocab_size); 0 may be padding
    n_classes: int  # output classes of the pooled head
    d_model: int = 64  # residual width
    n_layers: int = 2  # blocks
    mixer: str = "softmax"  # any name from deepnotes.mixers.names()
    mixer_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to mixers.build
    causal: bool = False  # bidirectional mixers by default (classification sees everything)
    max_len: int = 2048  # size of the learned position table
    positions: bool = True  # learned absolute positions (SSMs and RNNs do not need them)
    ffn: str = "gelu"  # FFN kind (deepnotes.layers.ffn)
    norm: str = "layernorm"  # "layernorm" | "rmsnorm"


class SeqModel(nn.Module):
    """Encoder classifier: forward(tokens [B, T], mask [B, T] bool | None) -> [B, n_classes]."""

    def __init__(self, cfg: SeqModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.embed = nn.Embedding(cfg.vocab_size, d)
        self.pos = nn.Embedding(cfg.max_len, d) if cfg.positions else None
        self.mixers = nn.ModuleList(
            M.build(cfg.mixer, d, causal=cfg.causal, **cfg.mixer_kwargs)
            for _ in range(cfg.n_layers)
        )
        self.norms1 = nn.ModuleList(build_norm(cfg.norm, d) for _ in range(cfg.n_layers))
        self.ffns = nn.ModuleList(build_ffn(cfg.ffn, d) for _ in range(cfg.n_layers))
        self.norms2 = nn.ModuleList(build_norm(cfg.norm, d) for _ in range(cfg.n_layers))
        self.norm = build_norm(cfg.norm, d)
        self.head = nn.Linear(d, cfg.n_classes)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        T = tokens.shape[1]
        if self.pos is not None and T > self.cfg.max_len:
            raise ValueError(f"SeqModel: T = {T} exceeds max_len = {self.cfg.max_len}")
        x = self.embed(tokens)
        if self.pos is not None:
            x = x + self.pos.weight[:T]
        for mix, n1, ffn, n2 in zip(self.mixers, self.norms1, self.ffns, self.norms2, strict=True):
            x = x + mix(n1(x), mask)
            x = x + ffn(n2(x))
        x = self.norm(x)
        if mask is None:
            pooled = x.mean(1)
        else:
            w = mask[..., None].to(x.dtype)
            pooled = (x * w).sum(1) / w.sum(1).clamp(min=1)
        return self.head(pooled)


@dataclass
class FitResult:
    steps: int = 0  # optimizer steps taken
    seconds: float = 0.0  # wall time in training steps
    stopped_early: bool = False  # hit max_seconds before tcfg.steps
    history: list[dict[str, float]] = field(default_factory=list)  # step, loss, lr
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
    loss_fn(model, batch) -> loss or (loss, metrics); default: the LM loss.
    """
    trainer = Trainer(model, tcfg, batches, eval_fn=eval_fn, loss_fn=loss_fn)
    res = FitResult()
    while trainer.step < tcfg.steps:
        t0 = time.perf_counter()
        out = trainer.train_step()
        if trainer.step % log_every == 0 or trainer.step == tcfg.steps:
            loss = float(out["loss"])  # syncs the device
            res.history.append(
                {"step": trainer.step, "loss": loss, "lr": trainer.optimizer.param_groups[0]["lr"]}
            )
        res.seconds += time.perf_counter() - t0
        if max_seconds is not None and res.seconds > max_seconds and trainer.step < tcfg.steps:
            res.stopped_early = True
            break
    res.steps = trainer.step
    res.final = trainer.evaluate()
    return res


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


def sampler(*tensors: torch.Tensor, batch_size: int, seed: int, device=None):
    """A zero-argument callable drawing random batches (with replacement) from tensors."""
    g = torch.Generator().manual_seed(seed)
    n = tensors[0].shape[0]

    def draw():
        idx = torch.randint(n, (batch_size,), generator=g)
        return tuple(t[idx].to(device) for t in tensors)

    return draw


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)
    os.environ["DEEPNOTES_NO_PROGRESS"] = "1"


def map_runs(fn: Callable, calls: list[tuple], workers: int = 1) -> Iterator[tuple[int, Any]]:
    """Yield (i, fn(*calls[i])) for every call, in order of completion.

    workers <= 1 runs them here, in order. Otherwise a pool of `workers` spawned processes
    (spawn, not fork: CUDA cannot be used in a forked child) each with cpu_count // workers
    threads; `fn` must then be a module-level function and its arguments picklable.
    """
    if workers <= 1 or len(calls) <= 1:
        for i, args in enumerate(calls):
            yield i, fn(*args)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=mp.get_context("spawn"),
        initializer=_init_worker,
        initargs=(threads,),
    ) as pool:
        futures = {pool.submit(fn, *args): i for i, args in enumerate(calls)}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()


_LOADED: dict[str, Any] = {}  # path -> object, per process


@contextlib.contextmanager
def shareable(obj: Any, workers: int):
    """`obj` itself for one worker; else the path of a temporary torch.save of it, which
    `shared` loads once per process (large tensors are not pickled into every call)."""
    if workers <= 1:
        yield obj
        return
    with tempfile.TemporaryDirectory(prefix="deepnotes-") as tmp:
        path = os.path.join(tmp, "data.pt")
        torch.save(obj, path)
        yield path


def shared(obj_or_path: Any) -> Any:
    """The object behind `shareable`'s value."""
    if not isinstance(obj_or_path, str):
        return obj_or_path
    if obj_or_path not in _LOADED:
        _LOADED[obj_or_path] = torch.load(obj_or_path, weights_only=True)
    return _LOADED[obj_or_path]
