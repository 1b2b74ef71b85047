"""`deepnotes bench decode`: one decode step's attention against a long KV cache,
flash-decoding (`deepnotes.ops.decode.flash_decode`, split-KV Triton kernels) against SDPA in
the same run.

Each row times one call for q [B, H, 1, D] against a cache [B, H_kv, T, D] whose T keys are
all valid: "sdpa" is `F.scaled_dot_product_attention` on the cache (torch's own backend
choice; KV heads repeated for GQA), "flash_decode" is ours: the kernel (`backend="triton"`)
on CUDA; on CPU SDPA (`"auto"`), so a CPU run only checks that the bench works. The step
reads K and V once, 2 B H_kv T D bytes-per-element, so the figure of merit is the
bandwidth that implies (`read_GBps`), next to the device's copy bandwidth measured in the
same run (`copy_GBps`: a device-to-device copy of a buffer of the same size, read + write counted).
Every row also checks ours against SDPA (`rel_err`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from deepnotes.jobs import Context, Result, suite
from deepnotes.ops.backend import use_triton
from deepnotes.ops.decode import flash_decode
from deepnotes.utils.plot import log_ticks

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass
class DecodeConfig:
    lengths: list[int] = field(
        default_factory=lambda: [4096, 8192, 16384, 32768, 65536]
    )  # KV-cache lengths T
    batch_sizes: list[int] = field(default_factory=lambda: [1, 16])  # B
    n_heads: int = 16  # query heads H
    kv_heads: int | None = None  # KV heads (GQA); None = n_heads
    head_dim: int = 128  # D
    dtype: str = "bf16"  # bf16 | fp16 | fp32
    n_splits: int | None = None  # ours: key slices per row; None = the kernel's choice
    warmup: int = 5  # untimed calls per row
    iters: int = 50  # timed calls per row (the mean is reported)


def _time(fn, iters: int, warmup: int, device: torch.device) -> float:
    """Mean seconds per call of fn()."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    return (time.perf_counter() - t0) / iters


def measure(cfg: DecodeConfig, B: int, T: int, device: torch.device) -> list[dict]:
    """Two rows (sdpa, flash_decode) for batch B and cache length T."""
    dtype = DTYPES[cfg.dtype]
    H, D = cfg.n_heads, cfg.head_dim
    H_kv = cfg.kv_heads or H
    g = torch.Generator(device=device).manual_seed(0)
    q = torch.randn(B, H, 1, D, device=device, dtype=dtype, generator=g)
    k = torch.randn(B, H_kv, T, D, device=device, dtype=dtype, generator=g)
    v = torch.randn(B, H_kv, T, D, device=device, dtype=dtype, generator=g)
    rep = H // H_kv

    def sdpa():
        kk, vv = (k, v) if rep == 1 else (k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1))
        return F.scaled_dot_product_attention(q, kk, vv)

    kernel = use_triton("flash_decode", "auto", (q, k, v))  # CUDA with Triton installed
    backend = "triton" if kernel else "auto"

    def ours():
        return flash_decode(q, k, v, T, n_splits=cfg.n_splits, backend=backend)

    ref = sdpa().float()
    err = ((ours().float() - ref).norm() / ref.norm()).item()
    kv_bytes = 2 * k.numel() * k.element_size()
    rows = []
    for name, fn in (("sdpa", sdpa), ("flash_decode", ours)):
        secs = _time(fn, cfg.iters, cfg.warmup, device)
        rows.append(
            {
                "impl": name,
                "path": ("triton" if kernel else "sdpa") if name == "flash_decode" else "sdpa",
                "batch": B,
                "T": T,
                "shape": f"H{H} Hkv{H_kv} D{D} {cfg.dtype}",
                "us": 1e6 * secs,
                "read_GBps": kv_bytes / secs / 1e9,
                "rel_err": err if name == "flash_decode" else 0.0,
            }
        )
    rows[1]["vs_sdpa"] = rows[0]["us"] / rows[1]["us"]  # > 1: ours is faster
    buf = torch.empty(kv_bytes // 2, dtype=torch.int16, device=device)
    copy_s = _time(lambda: buf.clone(), max(1, cfg.iters // 5), 1, device)
    for r in rows:
        r["copy_GBps"] = 2 * kv_bytes / copy_s / 1e9
    return rows


def _plot(done: list[dict], cfg, ctx: Context) -> None:
    """decode.png: µs per step against T, one colour per batch size, ours solid, SDPA dashed."""
    fig, ax = ctx.figure(figsize=(7, 3.6))
    for i, B in enumerate(cfg.batch_sizes):
        for impl, style in (("sdpa", "--"), ("flash_decode", "-")):
            pts = [r for r in done if r["batch"] == B and r["impl"] == impl]
            ax.plot([r["T"] for r in pts], [r["us"] for r in pts], style, marker="o",
                    color=f"C{i}", label=f"{impl} B={B}")  # fmt: skip
    ax.set(xscale="log", yscale="log", xlabel="KV-cache length T", ylabel="µs per decode step",
           title=f"decode attention, H{cfg.n_heads} D{cfg.head_dim} {cfg.dtype}\n"
                 "solid: flash_decode (ours), dashed: SDPA")  # fmt: skip
    if done:
        log_ticks(ax, "x", at=sorted({r["T"] for r in done}))
        log_ticks(ax, "y")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    ctx.savefig(fig, "decode.png")


@suite(
    "decode",
    "one decode step's attention against a KV cache of T = 4k..64k: flash-decoding (split-KV "
    "Triton) vs SDPA, batch 1 and 16",
    DecodeConfig,
    presets={
        "smoke": {
            "lengths": [64, 200],
            "batch_sizes": [1, 2],
            "n_heads": 2,
            "head_dim": 64,
            "dtype": "fp32",
            "warmup": 1,
            "iters": 2,
        },
    },
)
def bench_decode(cfg: DecodeConfig, ctx: Context) -> Result:
    if cfg.dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {cfg.dtype!r}")
    rows: list[dict] = []
    specs = [(B, T) for B in cfg.batch_sizes for T in cfg.lengths]
    for B, T in ctx.progress(specs, desc="decode"):
        try:
            rows.extend(measure(cfg, B, T, ctx.device))
        except torch.OutOfMemoryError as err:
            rows.append({"batch": B, "T": T, "status": f"out of memory: {str(err)[:120]}"})
            torch.cuda.empty_cache()
        ctx.log(f"decode: {rows[-1]}")
        ctx.save_rows(rows)  # survives a crash or time-out
    done = [r for r in rows if "us" in r]
    metrics: dict = {}
    for r in done:
        if r["impl"] == "flash_decode":
            metrics[f"speedup_B{r['batch']}_T{r['T']}"] = r["vs_sdpa"]
    if done:
        metrics["max_rel_err"] = max(r["rel_err"] for r in done)
    _plot(done, cfg, ctx)
    notes = [
        "one query per row against a full cache; time of the attention call only",
        "read_GBps = K and V bytes / time; copy_GBps = a same-size device copy, read + write",
    ]
    columns = ["impl", "path", "batch", "T", "shape", "us", "vs_sdpa", "read_GBps",
               "copy_GBps", "rel_err", "status"]  # fmt: skip
    return Result(metrics=metrics, table=rows, columns=columns, notes=notes)
