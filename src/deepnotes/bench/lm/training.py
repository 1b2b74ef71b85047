"""`deepnotes bench training`: precision modes and optimizers on the same LM and data.

Each variant "precision/optimizer" trains the byte-level LM on the embedded corpus from the
same initial weights and batches, and reports training tokens/s, the final training loss,
validation bits per byte, fp16 skipped steps and final loss scale, peak memory (CUDA), and
the RMS of the decayed weights (Adam + L2 decays large-gradient weights less than AdamW).
A second table times one optimizer step on the model's parameters: torch AdamW (fused on
CUDA, foreach elsewhere) against the from-scratch loops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from deepnotes.data.text import load_text
from deepnotes.jobs import Context, Result, suite
from deepnotes.models.lm import LM, LMConfig
from deepnotes.train.lm import lm_eval_fn
from deepnotes.train.optim import build_optimizer, param_groups
from deepnotes.train.trainer import TrainConfig, Trainer
from deepnotes.utils.io import atomic_write_json
from deepnotes.utils.plot import MARKERS, log_if_wide, log_ticks
from deepnotes.utils.timing import time_ms


@dataclass
class TrainingBenchConfig:
    variants: list[str] = field(
        default_factory=lambda: [
            "fp32/adamw", "bf16/adamw", "fp16/adamw", "fp32/adamw-scratch", "fp32/adam-scratch",
        ]
    )  # precision/optimizer[/weight_decay] (the decay defaults to weight_decay)  # fmt: skip
    corpus: str = "kjv"  # kjv | stdlib | a text path
    steps: int = 150  # optimizer steps per variant
    batch_size: int = 8  # sequences per step
    seq_len: int = 128  # tokens per sequence
    d_model: int = 128  # LM width
    n_layers: int = 2  # LM depth
    lr: float = 2e-3  # peak learning rate (small models tolerate more)
    weight_decay: float = 0.1  # AdamW decay (L2 coefficient for adam-scratch)
    warmup: int = 20  # warm-up steps
    eval_batches: int = 8  # validation batches at the end
    compile: bool = False  # torch.compile (GPU)
    step_repeat: int = 5  # repeats when timing one optimizer step (CPU)


def _decayed_rms(model: torch.nn.Module) -> float:
    group = param_groups(model, 1.0)[0]["params"]
    sq = sum(float(p.detach().float().square().sum()) for p in group)
    return (sq / sum(p.numel() for p in group)) ** 0.5


def plot_training(ctx, curves: dict[str, tuple[list, list]], title: str) -> None:
    """Training loss per variant: curves = {variant: (steps, losses in nats/byte)}."""
    fig, ax = ctx.figure(figsize=(7, 4))
    for i, (v, (x, y)) in enumerate(curves.items()):
        # one colour and marker each; markers staggered between variants tell apart the
        # curves that coincide (same arithmetic, different precision or implementation)
        every = max(1, len(x) // 10)
        ax.plot(x, y, color=f"C{i % 10}", marker=MARKERS[i % len(MARKERS)], ms=4, lw=1.2,
                label=v, markevery=(i * every // len(curves), every))  # fmt: skip
    ax.set(xlabel="step", ylabel="training loss (nats/byte)", title=title)
    if log_if_wide(ax, [v for _, y in curves.values() for v in y], "y", decades=1.0):
        log_ticks(ax, "y")  # a loss spanning decades: plain labels at 1-2-5 or decades
    ax.legend()
    ax.grid(alpha=0.3)
    ctx.savefig(fig, "training.png")


@suite(
    "training",
    "fp32/bf16/fp16 and AdamW/Adam+L2 on the same LM: tokens/s, loss, bits per byte",
    TrainingBenchConfig,
    presets={
        "smoke": {"steps": 3, "d_model": 32, "seq_len": 32, "batch_size": 2, "warmup": 1,
                  "eval_batches": 1, "variants": ["fp32/adamw", "fp16/adam-scratch"],
                  "step_repeat": 1},
        "gpu": {"steps": 600, "d_model": 768, "n_layers": 12, "seq_len": 512, "batch_size": 32,
                "lr": 6e-4, "warmup": 60, "eval_batches": 20,
                "variants": ["fp32/adamw", "bf16/adamw", "fp16/adamw", "bf16/adamw-scratch",
                             "bf16/adamw/0", "bf16/adam-scratch", "bf16/adam-scratch/0.0001"]},
    },
)  # fmt: skip
def bench_training(cfg: TrainingBenchConfig, ctx: Context) -> Result:
    device = ctx.device
    data = load_text(cfg.corpus, seed=ctx.seed)
    lm_cfg = LMConfig(vocab_size=data.vocab_size, d_model=cfg.d_model, n_layers=cfg.n_layers,
                      max_len=cfg.seq_len)  # fmt: skip
    rows, curves = [], {}
    for variant in ctx.progress(cfg.variants, desc="variants"):
        precision, optimizer, *rest = variant.split("/")
        wd = float(rest[0]) if rest else cfg.weight_decay
        torch.manual_seed(ctx.seed)
        model = LM(lm_cfg).to(device)
        tcfg = TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, seq_len=cfg.seq_len,
                           lr=cfg.lr, warmup=cfg.warmup, weight_decay=wd,
                           optimizer=optimizer, precision=precision, compile=cfg.compile,
                           log_interval=max(1, cfg.steps // 50), seed=ctx.seed,
                           progress=False)  # fmt: skip
        batches = data.train_batches(cfg.batch_size, cfg.seq_len, seed=ctx.seed, device=device)
        evalf = lm_eval_fn(data, batch_size=cfg.batch_size, seq_len=cfg.seq_len,
                           max_batches=cfg.eval_batches)  # fmt: skip
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        tr = Trainer(model, tcfg, batches, eval_fn=evalf)
        hist = tr.fit()
        s = tr.summary()
        tail = hist[-max(1, len(hist) // 10) :]
        # steady-state throughput: leave out the first 10% of steps (allocator, cuBLAS and
        # autotuning warm-up)
        first = hist[len(hist) // 10] if len(hist) >= 10 else hist[0]
        dt = hist[-1]["time"] - first["time"]
        tps = (hist[-1]["tokens"] - first["tokens"]) / dt if dt > 0 else s["tokens_per_s"]
        row = {
            "variant": variant, "weight_decay": wd, "tokens_per_s": tps,
            "train_loss": sum(h["loss"] for h in tail) / len(tail),
            "val_bpb": s.get("val_bpb"), "skipped": tr.skipped,
            "loss_scale": tr.precision.scale, "decayed_rms": _decayed_rms(model),
        }  # fmt: skip
        if device.type == "cuda":
            row["peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        rows.append(row)
        curves[variant] = ([h["step"] for h in hist], [h["loss"] for h in hist])

    # one optimizer step, alone, on the same parameters with random gradients
    step_rows = []
    model = LM(lm_cfg).to(device)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    for name in ("adamw", "adamw-scratch", "adam-scratch"):
        opt = build_optimizer(model, name, lr=1e-4, weight_decay=cfg.weight_decay)
        ms = time_ms(opt.step, device, repeat=cfg.step_repeat)
        step_rows.append({"optimizer": name, "step_ms": ms})
    n_params = model.num_params()

    title = f"LM d={cfg.d_model} L={cfg.n_layers} T={cfg.seq_len} B={cfg.batch_size}"
    # the plot's data beside results.json, so scripts/replot.py can redraw it
    atomic_write_json(ctx.out / "curves.json", {"title": title, "curves": curves})
    plot_training(ctx, curves, title)
    metrics = {"params": n_params}
    for r in step_rows:
        metrics[f"step_ms_{r['optimizer']}"] = r["step_ms"]
    base = next((r for r in rows if r["variant"] == "fp32/adamw"), None)
    for r in rows:
        if base is not None:
            r["speedup_vs_fp32"] = r["tokens_per_s"] / base["tokens_per_s"]
    return Result(
        metrics=metrics,
        table=rows,
        columns=[
            "variant",
            "tokens_per_s",
            "speedup_vs_fp32",
            "train_loss",
            "val_bpb",
            "skipped",
            "loss_scale",
            "decayed_rms",
            "peak_mb",
        ],  # fmt: skip
        notes=[
            f"optimizer step alone ({n_params:,} params): "
            + ", ".join(f"{r['optimizer']} {r['step_ms']:.3g} ms" for r in step_rows),
            "same initial weights and batches for every variant"
            + ("" if device.type == "cuda" else "; CPU timings on a shared machine are noisy"),
        ],
    )
