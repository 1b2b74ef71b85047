"""`deepnotes bench lm-mfu`: training throughput and model FLOPs utilisation (MFU) of a
GPT-2-small-shaped softmax LM, ours against a plain baseline in the same run.

- ours: `deepnotes.models.lm.LM` (softmax mixer through SDPA, no biases) trained by
  `deepnotes.train.Trainer` (bf16 autocast, fused AdamW with parameter groups, gradient
  clipping), with the loss function - model forward plus cross-entropy - under
  `torch.compile`, so the head and the loss fuse into one graph.
- baseline: `deepnotes.models.gpt_baseline`, a minimal nanoGPT-style GPT with SDPA, fused
  AdamW and `torch.compile` of the model (biases, LayerNorm, GELU, as GPT-2).

Both have the same shape (L = 12, H = 12, D = 768, Q = 64, T = 1024, vocab 50304, tied
head) and train on the same random token batches. FLOPs per token follow the PaLM / nanoGPT
convention 6 N + 12 L H Q T (N = parameters without the position table; the attention term
counts the full T x T, causal or not); MFU = tokens/s * FLOPs per token / peak, with the
H100's (and H200's) 989 TFLOP/s dense bf16 peak. Rows for ours may pick the attention
path: SDPA with torch's own backend choice ("sdpa"), SDPA forced to one backend ("flash",
"cudnn", "efficient"), or our FlashAttention-2 Triton kernel ("triton"). The baseline uses
"sdpa". Rows for ours may also compute the head and its loss chunk by chunk
(`LMConfig.fused_ce`, `deepnotes.ops.cross_entropy.linear_cross_entropy`): `ce=["fused"]`
or a row's "+fused" suffix; `peak_mem_gb` then shows what the [B T, vocab] logits cost.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import torch

from deepnotes.jobs import Context, Result, suite
from deepnotes.models import gpt_baseline as G
from deepnotes.models.lm import LM, LMConfig
from deepnotes.train import TrainConfig, Trainer
from deepnotes.utils.env import device_name
from deepnotes.utils.profile import draw_by_kind, profile_steps

# dense bf16 tensor-core peaks (TFLOP/s) by device-name substring
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
SDPA_BACKENDS = ("default", "flash", "cudnn", "efficient")
# attention choices for ours: torch's SDPA (its own backend choice, or one forced backend),
# or "triton" = the softmax mixer's impl="auto", our FlashAttention-2 Triton kernel on CUDA
ATTENTION = ("sdpa", "flash", "cudnn", "efficient", "triton")
# head + loss for ours: "plain" (full logits, fp32 cross-entropy) or "fused" (chunked)
CE = ("plain", "fused")


@dataclass
class LMMFUConfig:
    models: list[str] = field(default_factory=lambda: ["baseline", "ours"])  # rows
    batch_sizes: list[int] = field(default_factory=lambda: [16])  # micro-batch sizes B
    attention: list[str] = field(default_factory=lambda: ["sdpa"])  # ours: see ATTENTION
    ce: list[str] = field(default_factory=lambda: ["plain"])  # ours: head + loss, see CE
    ce_chunk: int = 2048  # rows (tokens) per chunk of the fused head + loss
    # explicit rows "model:batch:attention[+tuned][+fused]" (e.g. "ours:32:cudnn+tuned"),
    # run in this order; empty = every model x batch size x attention x ce. "+tuned" turns
    # on inductor's coordinate-descent tuning of its generated kernels for that row;
    # "+fused" gives ours the chunked head + loss.
    rows: list[str] = field(default_factory=list)
    n_layers: int = 12  # GPT-2 small
    n_heads: int = 12  # GPT-2 small
    d_model: int = 768  # GPT-2 small
    seq_len: int = 1024  # T
    vocab_size: int = 50304  # GPT-2's 50257 padded to a multiple of 64
    norm: str = "layernorm"  # ours: layernorm | rmsnorm
    bias: bool = False  # ours: biases in Linear / LayerNorm (the baseline always has them)
    dtype: str = "bf16"  # autocast dtype: bf16 | fp16 | fp32
    compile: bool = True  # torch.compile (the first steps include the compile)
    warmup: int = 5  # untimed steps (compile, autotuning, allocator warm-up)
    steps: int = 20  # timed optimizer steps
    peak_tflops: float | None = None  # None = from the device name (H100/H200: 989)
    # after each row's timing, torch.profiler over this many more steps: device time per
    # step split by kernel family (matmul, attention, loss, optimizer, ...), 0 = off
    profile_steps: int = 0


def _set_sdpa_backend(name: str) -> None:
    """Allow only the named SDPA backend on CUDA ('default' = torch's own choice)."""
    if name not in SDPA_BACKENDS:
        raise ValueError(f"unknown SDPA backend {name!r}; valid: {', '.join(SDPA_BACKENDS)}")
    b = torch.backends.cuda
    default = name == "default"
    b.enable_flash_sdp(default or name == "flash")
    b.enable_cudnn_sdp(default or name == "cudnn")
    b.enable_mem_efficient_sdp(default or name == "efficient")
    b.enable_math_sdp(default)


def flops_per_token(n_params: int, n_layers: int, n_heads: int, head_dim: int, T: int) -> int:
    """6 N + 12 L H Q T: 6 N for the matmuls with weights (forward 2 N, backward 4 N), plus
    the attention scores and their product with V (PaLM appendix B; nanoGPT estimate_mfu)."""
    return 6 * n_params + 12 * n_layers * n_heads * head_dim * T


def lm_train_loss(model: LM, batch) -> torch.Tensor:
    """Cross-entropy (fp32) + aux loss, as `deepnotes.train.lm_loss`, without the metrics
    dict: compiled, returning `aux.detach()` beside the loss lost the loss's grad_fn
    (torch 2.13)."""
    x, y = batch
    return model.loss(x, y)


def _batches(cfg: LMMFUConfig, B: int, device: torch.device, seed: int):
    g = torch.Generator().manual_seed(seed)
    data = []
    for _ in range(4):  # a few distinct batches, cycled
        w = torch.randint(0, cfg.vocab_size, (B, cfg.seq_len + 1), generator=g)
        data.append((w[:, :-1].contiguous().to(device), w[:, 1:].contiguous().to(device)))
    return data


def _build(
    kind: str, cfg: LMMFUConfig, B: int, device, dtype_name: str, attention: str,
    fused_ce: bool = False,
):  # fmt: skip
    """-> (step function returning the loss tensor, n_params for 6N, model)."""
    if kind == "baseline":
        g = G.GPTConfig(cfg.vocab_size, cfg.seq_len, cfg.n_layers, cfg.n_heads, cfg.d_model)
        model = G.GPT(g).to(device)
        opt = G.configure_optimizer(model)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
        step = G.make_train_step(model, opt, dtype=dtype[dtype_name], compile=cfg.compile)
        data = itertools.cycle(_batches(cfg, B, device, 0))
        return (lambda: step(*next(data))), model.num_params(non_embedding=True), model
    if kind == "ours":
        lm_cfg = LMConfig(
            vocab_size=cfg.vocab_size, d_model=cfg.d_model, n_layers=cfg.n_layers,
            n_heads=cfg.n_heads, max_len=cfg.seq_len, positions="learned", norm=cfg.norm,
            ffn="gelu", bias=cfg.bias, tie_weights=True, init="normal",
            mixer_kwargs={"impl": "auto" if attention == "triton" else "sdpa"},
            fused_ce=fused_ce, fused_ce_chunk=cfg.ce_chunk,
        )  # fmt: skip
        model = LM(lm_cfg).to(device)
        tcfg = TrainConfig(
            steps=10**9, lr=6e-4, warmup=0, weight_decay=0.1, grad_clip=1.0,
            precision=dtype_name, optimizer="adamw", progress=False,
        )  # fmt: skip
        loss_fn = torch.compile(lm_train_loss) if cfg.compile else lm_train_loss
        trainer = Trainer(
            model, tcfg, itertools.cycle(_batches(cfg, B, device, 0)), loss_fn=loss_fn
        )
        return (lambda: trainer.train_step()["loss"]), model.num_params(non_embedding=True), model
    raise ValueError(f"unknown model {kind!r}; valid: baseline, ours")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _profile(step, n: int, device: torch.device) -> dict:
    """n more steps under torch.profiler: time per step by kernel family, top kernels."""

    def run() -> int:
        for _ in range(n):
            step()
        return n

    return profile_steps(device, run, top=10)


def parse_row(spec: str) -> tuple[str, int, str, bool, bool]:
    """'ours:32:cudnn+tuned+fused' -> ('ours', 32, 'cudnn', True, True)."""
    try:
        kind, b, attn = spec.split(":")
        B = int(b)
    except ValueError:
        raise ValueError(f"row {spec!r} is not 'model:batch:attention[+tuned][+fused]'") from None
    attn, *flags = attn.split("+")
    bad = set(flags) - {"tuned", "fused"}
    if bad:
        raise ValueError(f"row {spec!r}: unknown suffix(es) {sorted(bad)}; valid: +tuned, +fused")
    return kind, B, attn, "tuned" in flags, "fused" in flags


def measure(
    kind: str,
    cfg: LMMFUConfig,
    B: int,
    attention: str,
    device: torch.device,
    tuned: bool = False,
    fused_ce: bool = False,
) -> dict:
    import torch._inductor.config as inductor_config

    inductor_config.coordinate_descent_tuning = tuned
    # a row must compile its own graph: the SDPA backend flags are not part of the key of
    # inductor's FX-graph cache, so a cached graph could carry another row's kernel choice
    inductor_config.fx_graph_cache = False
    if attention not in ATTENTION:
        raise ValueError(f"unknown attention {attention!r}; valid: {', '.join(ATTENTION)}")
    if fused_ce and kind != "ours":
        raise ValueError("the fused head + loss is an option of ours, not of the baseline")
    if device.type == "cuda":
        _set_sdpa_backend("default" if attention in ("sdpa", "triton") else attention)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch._dynamo.reset()  # each row compiles its own graphs
    torch.manual_seed(0)
    step, n_params, _model = _build(kind, cfg, B, device, cfg.dtype, attention, fused_ce)
    t0 = time.perf_counter()
    first = step()
    _sync(device)
    first_step_s = time.perf_counter() - t0
    for _ in range(max(0, cfg.warmup - 1)):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(cfg.steps):
        last = step()
    _sync(device)
    secs = time.perf_counter() - t0
    split = _profile(step, cfg.profile_steps, device) if cfg.profile_steps > 0 else None
    tokens_per_s = cfg.steps * B * cfg.seq_len / secs
    fpt = flops_per_token(
        n_params, cfg.n_layers, cfg.n_heads, cfg.d_model // cfg.n_heads, cfg.seq_len
    )
    peak = cfg.peak_tflops
    if peak is None:
        peak = next((v for k, v in PEAK_TFLOPS.items() if k in device_name(device)), None)
    tflops = tokens_per_s * fpt / 1e12
    row = {
        "model": kind,
        "batch": B,
        "attention": attention + ("+tuned" if tuned else ""),
        "ce": "fused" if fused_ce else "plain",
        "shape": f"L{cfg.n_layers} H{cfg.n_heads} D{cfg.d_model} T{cfg.seq_len} V{cfg.vocab_size}",
        "dtype": cfg.dtype,
        "compile": cfg.compile,
        "params_N": n_params,
        "flops_per_token": fpt,
        "step_ms": 1e3 * secs / cfg.steps,
        "tokens_per_s": tokens_per_s,
        "model_tflops": tflops,
        "mfu": tflops / peak if peak else None,
        "first_step_s": first_step_s,
        "loss_first": float(first),
        "loss_last": float(last),
        "peak_mem_gb": torch.cuda.max_memory_allocated(device) / 2**30
        if device.type == "cuda"
        else None,
        "device": device_name(device),
        "status": "ok",
    }
    if split is not None:
        row["profile"] = split
        mm = split["by_kind"].get("matmul")
        if mm:  # 6 N FLOPs a token are the weight matmuls (the head included: it is tied)
            row["matmul_tflops"] = 6 * n_params * B * cfg.seq_len / (mm * 1e-3) / 1e12
    if device.type == "cuda":
        _set_sdpa_backend("default")
    inductor_config.coordinate_descent_tuning = False
    return row


def row_label(r: dict) -> str:
    """A row's name on the plots: model, batch, attention (and fused-ce)."""
    return f"{r['model']} B{r['batch']} {r['attention']}" + (
        " fused-ce" if r.get("ce") == "fused" else ""
    )


def split_figure(rows: list[dict], figure):
    """The profiled rows' step time by kernel family, one stacked bar each (`figure`:
    `ctx.figure` or `plt.subplots`)."""
    rows = [r for r in rows if "profile" in r]
    fig, ax = figure(figsize=(7, 1.6 + 0.5 * len(rows)))
    draw_by_kind(ax, [row_label(r) for r in rows], [r["profile"]["by_kind"] for r in rows])
    ax.set_title(f"One training step by kernel family ({rows[0].get('device', '')})")
    return fig


@suite(
    "lm-mfu",
    "training tokens/s and MFU of a GPT-2-small softmax LM (bf16, compiled) vs a plain "
    "nanoGPT-style baseline",
    LMMFUConfig,
    presets={
        "smoke": {
            "n_layers": 2,
            "n_heads": 2,
            "d_model": 64,
            "seq_len": 64,
            "vocab_size": 256,
            "batch_sizes": [2],
            "warmup": 1,
            "steps": 2,
            "compile": False,
        },
        "gpu": {
            "batch_sizes": [16, 32],
            "attention": ["sdpa", "triton", "cudnn"],
            "warmup": 5,
            "steps": 25,
        },
    },  # fmt: skip
)
def bench_lm_mfu(cfg: LMMFUConfig, ctx: Context) -> Result:
    rows = []
    specs = [parse_row(r) for r in cfg.rows]
    if not specs:
        bad = set(cfg.ce) - set(CE)
        if bad:
            raise ValueError(f"unknown ce {sorted(bad)}; valid: {', '.join(CE)}")
        for B in cfg.batch_sizes:  # baseline and ours side by side at each batch size
            for kind in cfg.models:
                for attn in ["sdpa"] if kind == "baseline" else cfg.attention:
                    for ce in ["plain"] if kind == "baseline" else cfg.ce:
                        specs.append((kind, B, attn, False, ce == "fused"))
    for kind, B, attn, tuned, fused in ctx.progress(specs, desc="lm-mfu"):
        try:
            rows.append(measure(kind, cfg, B, attn, ctx.device, tuned, fused))
        except Exception as err:  # noqa: BLE001 - OOM or a compile failure: record, go on
            status = "out of memory" if isinstance(err, torch.OutOfMemoryError) else "failed"
            last = (str(err).strip().splitlines() or [""])[-1][:200]
            msg = f"{status}: {type(err).__name__}: {last}"
            ce = "fused" if fused else "plain"
            rows.append({"model": kind, "batch": B, "attention": attn, "ce": ce, "status": msg})
            torch._dynamo.reset()
            if ctx.device.type == "cuda":
                torch.cuda.empty_cache()
                _set_sdpa_backend("default")
        ctx.log(f"lm-mfu: {rows[-1]}")
        ctx.save_rows(rows)  # survives a crash or time-out
    done = [r for r in rows if "tokens_per_s" in r]
    metrics: dict = {}
    notes = []
    for B in sorted({r["batch"] for r in done}):
        base = next((r for r in done if r["model"] == "baseline" and r["batch"] == B), None)
        ours = [r for r in done if r["model"] == "ours" and r["batch"] == B]
        if base and ours:
            best = max(ours, key=lambda r: r["tokens_per_s"])
            metrics[f"speedup_vs_baseline_B{B}"] = best["tokens_per_s"] / base["tokens_per_s"]
            for r in ours:
                r["vs_baseline"] = r["tokens_per_s"] / base["tokens_per_s"]
    if done:
        best = max(done, key=lambda r: r["tokens_per_s"])
        metrics["best"] = (
            f"{best['model']} B={best['batch']} attention={best['attention']} ce={best['ce']}"
        )
        metrics["best_tokens_per_s"] = best["tokens_per_s"]
        metrics["best_mfu"] = best["mfu"]
        ours_best = max(
            (r for r in done if r["model"] == "ours"), key=lambda r: r["tokens_per_s"], default=None
        )
        base_best = max(
            (r for r in done if r["model"] == "baseline"),
            key=lambda r: r["tokens_per_s"],
            default=None,
        )
        if ours_best and base_best:
            metrics["ours_best_tokens_per_s"] = ours_best["tokens_per_s"]
            metrics["ours_best_mfu"] = ours_best["mfu"]
            metrics["baseline_best_tokens_per_s"] = base_best["tokens_per_s"]
            metrics["baseline_best_mfu"] = base_best["mfu"]
            metrics["ours_vs_best_baseline"] = ours_best["tokens_per_s"] / base_best["tokens_per_s"]
    notes.append("random tokens: a throughput measurement, not a training run")
    notes.append("FLOPs/token = 6N + 12 L H Q T (N without the position table)")
    fig, ax = ctx.figure(figsize=(7, 3.6))
    labels = [row_label(r) for r in done]
    ax.barh(
        labels,
        [r["tokens_per_s"] / 1e3 for r in done],
        color=["C0" if r["model"] == "ours" else "C7" for r in done],
    )
    for i, r in enumerate(done):
        if r["mfu"] is not None:
            ax.text(
                r["tokens_per_s"] / 1e3, i, f" MFU {100 * r['mfu']:.1f}%", va="center", fontsize=8
            )
    ax.set(
        xlabel="training tokens / s (thousands)",
        title=f"GPT-2 small shape, {cfg.dtype}, T={cfg.seq_len}",
    )
    ctx.savefig(fig, "lm_mfu.png")
    if any("profile" in r for r in done):  # where each profiled row's step goes
        ctx.savefig(split_figure(done, ctx.figure), "lm_mfu_split.png")
    columns = ["model", "batch", "attention", "ce", "params_N", "step_ms", "tokens_per_s",
               "model_tflops", "mfu", "vs_baseline", "matmul_tflops", "peak_mem_gb",
               "first_step_s", "loss_last", "status"]  # fmt: skip
    return Result(metrics=metrics, table=rows, columns=columns, notes=notes)
