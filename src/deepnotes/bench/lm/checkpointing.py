"""`deepnotes bench checkpointing`: activation memory and step time against depth, with and
without gradient checkpointing (Chen et al. 2016).

For each depth L and strategy, one forward + backward of the LM on a [B, T] batch:
- "none": every block keeps its activations for backward: memory grows by the whole
  per-block activation set A for each added block (~L·A);
- "block": each block is checkpointed (`set_gradient_checkpointing`): only its input, one
  [B, T, D] tensor, is kept, and its internals are recomputed during backward: ~L·BTD + A;
- "sqrt": √L segments of √L blocks (`checkpoint_segments`): ~√L·BTD + √L·A.
Reported: peak memory of forward + backward (above the weights), its growth per added block
from a least-squares line, and the step time relative to "none" (the recompute costs about
one extra forward, so ~1.3x is expected).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from deepnotes.jobs import Context, Result, suite
from deepnotes.models.lm import LM, LMConfig
from deepnotes.train.grad_checkpoint import checkpoint_segments, set_gradient_checkpointing
from deepnotes.utils.timing import peak_memory_bytes, time_ms

STRATEGIES = ("none", "block", "sqrt")


@dataclass
class CheckpointingBenchConfig:
    depths: list[int] = field(default_factory=lambda: [2, 4, 8, 16])  # blocks L
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES))  # none|block|sqrt
    d_model: int = 128  # width (small enough for a CPU core)
    seq_len: int = 256  # T
    batch: int = 4  # B
    mixer: str = "softmax"  # any causal mixer of the LM
    dtype: str = "float32"  # autocast dtype on CUDA: bfloat16 there; float32 = no autocast
    repeat: int = 2  # timed repeats (median) on CPU; CUDA uses do_bench


def _step(model: LM, tokens: torch.Tensor, strategy: str, dtype: torch.dtype):
    """One forward + backward under `strategy`; the loss is next-token cross-entropy."""
    device_type = tokens.device.type
    ctx = torch.autocast(device_type, dtype=dtype, enabled=dtype != torch.float32)
    with ctx:
        if strategy == "sqrt":
            n = len(model.blocks)
            x = model._embed(tokens)
            x = checkpoint_segments(list(model.blocks), x, max(1, round(math.sqrt(n))))
            logits = model.head(x if model.norm is None else model.norm(x))
        else:
            logits = model(tokens)
        loss = F.cross_entropy(logits.float().flatten(0, 1), tokens.roll(-1, 1).flatten())
    loss.backward()
    model.zero_grad(set_to_none=True)


def _measure(model, tokens, strategy, dtype, repeat) -> tuple[int, float]:
    fn = lambda: _step(model, tokens, strategy, dtype)
    fn()  # warm-up (allocator, kernels)
    return peak_memory_bytes(fn, tokens.device), time_ms(fn, tokens.device, repeat=repeat)


def _slope(xs: list[int], ys: list[float]) -> float:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


@suite(
    "checkpointing",
    "activation memory and step time vs depth with/without gradient checkpointing",
    CheckpointingBenchConfig,
    presets={
        "smoke": {"depths": [1, 2], "d_model": 32, "seq_len": 32, "batch": 2, "repeat": 1},
        "gpu": {
            "depths": [2, 4, 8, 12, 16, 24],
            "d_model": 768,
            "seq_len": 1024,
            "batch": 8,
            "dtype": "bfloat16",
        },
    },
)
def bench_checkpointing(cfg: CheckpointingBenchConfig, ctx: Context) -> Result:
    bad = set(cfg.strategies) - set(STRATEGIES)
    if bad:
        raise ValueError(f"unknown strategies {sorted(bad)}; valid: {', '.join(STRATEGIES)}")
    dtype = getattr(torch, cfg.dtype)
    device = ctx.device
    rows = []
    tokens = torch.randint(0, 256, (cfg.batch, cfg.seq_len), device=device)
    bar = ctx.progress(total=len(cfg.depths) * len(cfg.strategies), desc="checkpointing")
    for L in cfg.depths:
        torch.manual_seed(ctx.seed)
        lm_cfg = LMConfig(vocab_size=256, d_model=cfg.d_model, n_layers=L,
                          max_len=cfg.seq_len, mixer=cfg.mixer)  # fmt: skip
        model = LM(lm_cfg).to(device)
        params = sum(p.numel() * p.element_size() for p in model.parameters())
        for strategy in cfg.strategies:
            set_gradient_checkpointing(model.blocks, strategy == "block")
            peak, ms = _measure(model, tokens, strategy, dtype, cfg.repeat)
            rows.append({
                "depth": L, "strategy": strategy, "peak_mb": peak / 2**20,
                "params_mb": params / 2**20, "step_ms": ms,
            })  # fmt: skip
            bar.update(1)
    bar.close()

    base = {r["depth"]: r for r in rows if r["strategy"] == "none"}
    for r in rows:
        if r["depth"] in base:
            r["time_vs_none"] = r["step_ms"] / base[r["depth"]]["step_ms"]
            r["memory_vs_none"] = r["peak_mb"] / base[r["depth"]]["peak_mb"]
    metrics: dict[str, float] = {}
    for s in cfg.strategies:
        pts = [(r["depth"], r["peak_mb"]) for r in rows if r["strategy"] == s]
        metrics[f"mb_per_block_{s}"] = _slope([p[0] for p in pts], [p[1] for p in pts])
    if "none" in cfg.strategies and "block" in cfg.strategies and metrics["mb_per_block_none"]:
        metrics["slope_ratio_block_vs_none"] = (
            metrics["mb_per_block_block"] / metrics["mb_per_block_none"]
        )
    # what "block" must still keep per layer: one [B, T, D] input (the residual stream stays
    # fp32 under autocast) and, by the end of backward, the block's fp32 gradients
    metrics["block_input_mb"] = cfg.batch * cfg.seq_len * cfg.d_model * 4 / 2**20
    by_depth = sorted({(r["depth"], r["params_mb"]) for r in rows})
    metrics["param_mb_per_block"] = _slope([d for d, _ in by_depth], [m for _, m in by_depth])

    _plot(ctx, rows, cfg, str(device))
    notes = [
        "peak_mb = peak allocation during forward + backward above what was live before "
        "(weights excluded; gradients included)",
    ]
    if device.type == "cpu":
        notes.append("CPU timings on a shared machine are noisy; memory figures are not")
    return Result(
        metrics=metrics,
        table=rows,
        columns=["depth", "strategy", "peak_mb", "memory_vs_none", "step_ms", "time_vs_none"],
        notes=notes,
    )


def _plot(ctx: Context, rows: list[dict], cfg, device: str) -> None:
    """Peak memory and step time against depth, one line per checkpointing strategy."""
    fig, axes = ctx.figure(1, 2, figsize=(10, 4))
    for s in dict.fromkeys(r["strategy"] for r in rows):
        pts = [r for r in rows if r["strategy"] == s]
        axes[0].plot([r["depth"] for r in pts], [r["peak_mb"] for r in pts], "o-", label=s)
        axes[1].plot([r["depth"] for r in pts], [r["step_ms"] for r in pts], "o-", label=s)
    axes[0].set(xlabel="depth L (blocks)", ylabel="peak memory of fwd+bwd (MiB)",
                title="peak memory")  # fmt: skip
    axes[1].set(xlabel="depth L (blocks)", ylabel="fwd+bwd time (ms)", title="step time")
    fig.suptitle(f"activation checkpointing: B={cfg.batch} T={cfg.seq_len} D={cfg.d_model} "
                 f"{cfg.dtype}, {device}")  # fmt: skip
    for ax in axes:
        ax.legend(title="checkpointing")
        ax.grid(alpha=0.3)
    ctx.savefig(fig, "checkpointing.png")
