"""`deepnotes bench arena-kernels`: the arena's LM with each mixer's kernel against its
PyTorch form, measured in the same run.

For each mixer (by default those the arena trains that have a kernel: softmax -> flash_attn,
linear -> chunk_linear_attn, gau_flash -> chunk_gau, mamba -> selective_scan, plus performer,
whose FAVOR+ has none and serves as a control) the LM of the arena at one of its budgets
(`shape`: width, depth, heads, sequence length, batch, precision) is built twice from the
same seed and trained on the same batches, once with `DEEPNOTES_KERNELS=torch` (every op's
PyTorch form) and once with `kernel_backend` ("auto": the Triton kernel on CUDA where its
checks pass; "triton": forced). Per path:
- training tokens/s: forward + backward + clipping + AdamW step of `deepnotes.train.Trainer`
  (the arena's own step), `steps` steps after `warmup` untimed ones (Triton compilation and
  autotuning, allocator), in `rounds` alternating rounds; the median round is reported;
- forward tokens/s: a no-grad forward pass over a [batch, seq_len] batch (what evaluation and
  a full-sequence prefill cost);
- generation tokens/s: the arena's sampler (`deepnotes.generate.generate`, token by token
  through the mixer's `step`);
- the ops that ran and the path each took, recorded at the point where each public op decides
  (`deepnotes.ops.backend.use_triton`), so a kernel that silently falls back shows as "torch";
- the first step's loss and gradient norm of both paths (same weights, same batch): their
  relative differences check that both compute the same model, forward and backward.
Ratios are kernel / torch. Decoding steps one token at a time through each mixer's recurrent
form or KV cache, which none of the four kernels serves, so generation ratios near 1 are
expected; the kernels act in training and full-sequence forward passes.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from deepnotes.data.text import cached_text
from deepnotes.generate import timed_generate
from deepnotes.jobs import Context, Result, suite
from deepnotes.models.lm import build_lm
from deepnotes.models.lm_arena import arena_config, lm_config, select_mixers
from deepnotes.ops.backend import ENV_VAR, interpreting
from deepnotes.train import TrainConfig, Trainer
from deepnotes.utils.env import threads
from deepnotes.utils.io import atomic_write_json

# modules whose public op decides its path through `use_triton` (imported by name there)
_OP_MODULES = (
    "deepnotes.ops.attention.flash",
    "deepnotes.ops.linear_attention.chunk",
    "deepnotes.ops.gau.chunk",
    "deepnotes.ops.ssm.scan",
)


@dataclass
class ArenaKernelsConfig:
    mixers: list[str] = field(
        default_factory=lambda: ["softmax", "linear", "performer", "gau_flash", "mamba"]
    )  # arena mixers to compare (performer has no kernel: a control whose ratio should be ~1)
    shape: str = "gpu"  # the arena budget whose LM and batch shape (and precision) are used
    kernel_backend: str = "auto"  # the kernel side: "auto" (Triton on CUDA) or "triton"
    warmup: int = 5  # untimed training steps per path (compilation, autotuning, allocator)
    steps: int = 20  # timed training steps per path and round
    rounds: int = 3  # alternating torch / kernel rounds; the median round is reported
    fwd_repeat: int = 10  # timed no-grad forward passes per path
    gen_tokens: int | None = None  # decoded tokens per path (None: the arena budget's)
    threads: int = 1  # CPU threads (as the arena); 0 = torch's default


@contextlib.contextmanager
def record_paths(log: Counter) -> Iterator[Counter]:
    """Count (op, "triton" | "torch") each time a public op picks its path, while active."""
    mods = [importlib.import_module(m) for m in _OP_MODULES]
    originals = [m.use_triton for m in mods]

    def recording(orig):
        def use_triton(op, backend, tensors, check=None):
            took = orig(op, backend, tensors, check)
            log[(op, "triton" if took else "torch")] += 1
            return took

        return use_triton

    for m, orig in zip(mods, originals, strict=True):
        m.use_triton = recording(orig)
    try:
        yield log
    finally:
        for m, orig in zip(mods, originals, strict=True):
            m.use_triton = orig


@contextlib.contextmanager
def kernels_env(value: str) -> Iterator[None]:
    """Set $DEEPNOTES_KERNELS (the process-wide default backend) for the block."""
    old = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = old


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def describe_paths(log: Counter) -> str:
    """'flash_attn: triton' (or 'a: torch, b: triton+torch'); 'no kernel op' if none ran."""
    ops: dict[str, list[str]] = {}
    for op, path in sorted(log):
        ops.setdefault(op, []).append(path)
    if not ops:
        return "no kernel op"
    return ", ".join(f"{op}: {'+'.join(sorted(p, reverse=True))}" for op, p in ops.items())


class _Path:
    """One side of the comparison: a model, its trainer and what was measured."""

    def __init__(self, label, backend, acfg, name, data, ctx) -> None:
        self.label, self.backend = label, backend
        self.model = build_lm(lm_config(acfg, name, data.vocab_size), ctx.device, ctx.seed)
        tcfg = TrainConfig(
            steps=10**9, batch_size=acfg.batch_size, seq_len=acfg.seq_len, lr=acfg.lr,
            warmup=acfg.warmup, precision=acfg.precision, seed=ctx.seed, progress=False,
        )  # fmt: skip
        batches = data.train_batches(
            acfg.batch_size, acfg.seq_len, seed=ctx.seed, device=ctx.device
        )
        self.trainer = Trainer(self.model, tcfg, batches)
        self.log: Counter = Counter()
        self.train_tok_s: list[float] = []
        self.first_loss: float | None = None
        self.first_grad_norm: float | None = None

    @contextlib.contextmanager
    def active(self):
        with kernels_env(self.backend), record_paths(self.log):
            yield

    def train(self, n: int, device: torch.device) -> float:
        """n optimizer steps; returns tokens/s."""
        with self.active():
            _sync(device)
            t0 = time.perf_counter()
            tokens0 = self.trainer.tokens
            for _ in range(n):
                out = self.trainer.train_step()
                if self.first_loss is None:  # same weights and batch on both sides
                    self.first_loss = float(out["loss"])
                    self.first_grad_norm = float(out.get("grad_norm", float("nan")))
            _sync(device)
            return (self.trainer.tokens - tokens0) / (time.perf_counter() - t0)


def _forward_tok_s(p: _Path, x: torch.Tensor, repeat: int, device: torch.device) -> float:
    model = p.model.eval()
    with p.active(), torch.no_grad(), p.trainer.precision.autocast():
        model(x)  # warm-up
        _sync(device)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            model(x)
            _sync(device)
            times.append(time.perf_counter() - t0)
    model.train()
    return x.numel() / statistics.median(times)


def _generate_tok_s(p: _Path, acfg, ctx: Context) -> float:
    prompt = torch.tensor([list(acfg.prompt.encode())], device=ctx.device)
    with p.active():
        kw = {"temperature": acfg.temperature, "top_k": acfg.top_k, "seed": ctx.seed}
        timed_generate(p.model, prompt, acfg.gen_tokens, **kw)  # warm-up (and compilations)
        _, secs, _ = timed_generate(p.model, prompt, acfg.gen_tokens, **kw)
    return acfg.gen_tokens / secs


def compare_mixer(name: str, cfg: ArenaKernelsConfig, acfg, data, ctx: Context) -> dict:
    """Both paths of one mixer; returns its table row."""
    dev = ctx.device
    paths = [
        _Path("torch", "torch", acfg, name, data, ctx),
        _Path("kernel", cfg.kernel_backend, acfg, name, data, ctx),
    ]
    for p in paths:
        p.train(cfg.warmup, dev)
    for _ in range(cfg.rounds):
        for p in paths:
            p.train_tok_s.append(p.train(cfg.steps, dev))
    x = next(data.val_batches(acfg.batch_size, acfg.seq_len, device=dev))[0]
    row: dict = {"mixer": name}
    for p in paths:
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
            p.train(1, dev)
            row[f"peak_mb_{p.label}"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
        row[f"train_tok_s_{p.label}"] = round(statistics.median(p.train_tok_s))
        row[f"fwd_tok_s_{p.label}"] = round(_forward_tok_s(p, x, cfg.fwd_repeat, dev))
        row[f"gen_tok_s_{p.label}"] = round(_generate_tok_s(p, acfg, ctx), 1)
    torch_p, kern_p = paths
    row["kernel_path"] = describe_paths(kern_p.log)
    row["torch_path"] = describe_paths(torch_p.log)
    for what in ("train", "fwd", "gen"):
        t, k = row[f"{what}_tok_s_torch"], row[f"{what}_tok_s_kernel"]
        row[f"{what}_speedup"] = round(k / t, 3) if t else None
    a, b = kern_p.first_loss, torch_p.first_loss
    row["first_loss_rel_diff"] = abs(a - b) / abs(b) if b else None
    a, b = kern_p.first_grad_norm, torch_p.first_grad_norm
    row["first_grad_norm_rel_diff"] = abs(a - b) / abs(b) if b else None
    return row


@suite(
    "arena-kernels",
    "the arena LM per mixer with its Triton kernel vs the PyTorch form: train/forward/decode tok/s",
    ArenaKernelsConfig,
    presets={
        "smoke": {"mixers": ["softmax", "linear"], "shape": "smoke", "warmup": 1, "steps": 2,
                  "rounds": 1, "fwd_repeat": 1, "gen_tokens": 4},
        "cpu": {"shape": "default", "warmup": 2, "steps": 5, "rounds": 2, "fwd_repeat": 3},
        "gpu": {},
    },
)  # fmt: skip
def bench_arena_kernels(cfg: ArenaKernelsConfig, ctx: Context) -> Result:
    if cfg.kernel_backend not in ("auto", "triton"):
        raise ValueError(f"kernel_backend must be 'auto' or 'triton', got {cfg.kernel_backend!r}")
    acfg = arena_config(cfg.shape)
    if cfg.gen_tokens is not None:
        acfg.gen_tokens = cfg.gen_tokens
    names = select_mixers(arena_config(mixers=cfg.mixers))
    data = cached_text(acfg.corpus, acfg.max_docs)
    with threads(cfg.threads if ctx.device.type == "cpu" else 0):
        rows = []
        for name in ctx.progress(names, desc="mixers"):
            rows.append(compare_mixer(name, cfg, acfg, data, ctx))
            atomic_write_json(ctx.out / "rows.json", rows)  # partial results survive a kill
    _plot(ctx, rows)
    cpu_note = (
        "CPU: with kernel_backend='auto' both sides run the PyTorch forms (the kernels need "
        "CUDA), so the ratios measure noise on a shared machine"
        if ctx.device.type == "cpu" and not interpreting()
        else "CPU under TRITON_INTERPRET=1: the kernel side runs Triton's interpreter, which is "
        "orders of magnitude slower than compiled code; only the paths and losses mean anything"
        if ctx.device.type == "cpu"
        else f"{ctx.device.type}: kernel side = DEEPNOTES_KERNELS={cfg.kernel_backend}"
    )
    notes = [
        f"LM of the arena's '{cfg.shape}' budget: d_model {acfg.d_model}, {acfg.n_layers} layers, "
        f"batch {acfg.batch_size} x {acfg.seq_len}, {acfg.precision}; training = {cfg.steps} "
        f"steps x {cfg.rounds} alternating rounds after {cfg.warmup} warm-up steps (median "
        f"round); forward = no-grad pass over one batch; generation = {acfg.gen_tokens} tokens "
        "stepped through each mixer's recurrent form or KV cache (no kernel there)",
        cpu_note,
        "speedup = kernel tokens/s / torch tokens/s; first_loss_rel_diff and "
        "first_grad_norm_rel_diff compare the two paths' first training loss and gradient "
        "norm (same weights, same batch: forward and backward agree)",
    ]
    metrics = {}
    for r in rows:
        metrics[f"train_speedup[{r['mixer']}]"] = r["train_speedup"]
        metrics[f"fwd_speedup[{r['mixer']}]"] = r["fwd_speedup"]
    columns = [
        "mixer", "kernel_path", "train_tok_s_torch", "train_tok_s_kernel", "train_speedup",
        "fwd_tok_s_torch", "fwd_tok_s_kernel", "fwd_speedup", "gen_tok_s_torch",
        "gen_tok_s_kernel", "gen_speedup", "first_loss_rel_diff", "first_grad_norm_rel_diff",
        "peak_mb_torch",
        "peak_mb_kernel",
    ]  # fmt: skip
    return Result(metrics=metrics, table=rows, columns=columns, notes=notes)


def _plot(ctx: Context, rows: list[dict]) -> None:
    """Kernel / torch tokens/s per mixer and phase, on a log axis (a ratio of 0.5 is as far
    from 1 as 2 is) with bars drawn from 1 (a slow-down points down), each labelled."""
    from deepnotes.utils.plot import log_ticks

    fig, ax = ctx.figure(figsize=(7.5, 4))
    width = 0.27
    phases = {"train": "training step", "fwd": "forward (no grad)", "gen": "generation"}
    vals = []
    for j, (what, label) in enumerate(phases.items()):
        xs = [i + (j - 1) * width for i in range(len(rows))]
        ys = [r[f"{what}_speedup"] for r in rows]
        bars = ax.bar(xs, [y - 1 if y else float("nan") for y in ys], width, label=label,
                      bottom=1)  # fmt: skip
        ax.bar_label(bars, [f"{y:.2f}" if y and y < 10 else f"{y:.1f}" if y else "" for y in ys],
                     fontsize=7, padding=1)  # fmt: skip
        vals += [y for y in ys if y]
    ax.set_yscale("log")
    lo, hi = min([*vals, 1.0]), max([*vals, 1.0])
    ax.set_ylim(min(lo / 1.5, 0.5), hi * 1.8)  # a labelled tick under 1; room for labels
    log_ticks(ax, "y")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(range(len(rows)), [r["mixer"] for r in rows])
    ax.set(ylabel="tokens/s: kernel / torch (log)", title="arena LM: kernel path vs PyTorch path")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3, axis="y")
    ctx.savefig(fig, "arena_kernels.png")
