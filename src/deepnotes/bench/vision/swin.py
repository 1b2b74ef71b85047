"""`deepnotes bench swin`: Swin training throughput, ours vs transformers, same weights.

Both models hold the same weights (ours is loaded from transformers' `SwinForImageClassification`
through the public loader) and train in the same process on the same batch: one step is
forward, cross-entropy, backward and an AdamW update, under the same autocast dtype. Our
windows go through the shared attention with the relative-position bias and the shift mask as
one `attn_bias` (SDPA; the FlashAttention kernel takes no bias); transformers runs its SDPA
path. Rows:
- ours (the fast path), ours with the plain reference path (`SwinConfig.fast=False`: roll,
  window partition, the bias repeated per image), transformers;
- with `--compile`, torch.compile'd copies of ours and of transformers (compile time is
  reported, not timed).

Timing: every model first runs `warmup` untimed steps; then `repeat` rounds each time one
step of every model in turn (so drifting clocks or a neighbour's load hit all alike), with
the device synchronised before and after each step; the table gives the median. Reported:
ms per step, training images/s, and speed against transformers in the same mode (eager or
compiled; > 1 = ours faster), plus the relative logit difference as a check that both ran
the same network. `--profile` also writes a per-op time table of one step of each model.
The GPU preset is Swin-T at 224² in bf16 autocast.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from deepnotes.jobs import Context, Result, suite
from deepnotes.models.loaders.swin import swin_from_transformers


@dataclass
class SwinBenchConfig:
    image_size: int = 64  # input side (Swin-T: 224)
    patch_size: int = 4  # patch side
    embed_dim: int = 32  # C (Swin-T: 96)
    depths: list[int] = field(
        default_factory=lambda: [2, 2, 2]
    )  # blocks per stage (Swin-T: 2-2-6-2)
    num_heads: list[int] = field(
        default_factory=lambda: [2, 4, 8]
    )  # heads per stage (Swin-T: 3-6-12-24)
    window_size: int = 4  # M (Swin-T: 7)
    num_classes: int = 1000  # classifier outputs
    batch: int = 8  # images per step
    dtype: str = "float32"  # float32 | bfloat16 (bf16 = autocast, fp32 weights)
    warmup: int = 1  # untimed steps per model before timing (compiled models compile here)
    repeat: int = 3  # timed rounds, each one step of every model in turn; the median is kept
    reference: bool = True  # also time our plain reference path (SwinConfig.fast=False)
    compile: bool = False  # also time torch.compile'd ours and transformers (extra rows)
    profile: bool = False  # write profile_<model>.txt: per-op times of one step of each model


@suite(
    "swin",
    "Swin training step (fwd+bwd+AdamW) images/s: ours vs transformers, same weights",
    SwinBenchConfig,
    presets={
        "smoke": {
            "image_size": 32,
            "embed_dim": 16,
            "depths": [1, 1],
            "num_heads": [2, 2],
            "batch": 2,
            "repeat": 1,
        },
        "gpu": {
            "image_size": 224,
            "embed_dim": 96,
            "depths": [2, 2, 6, 2],
            "num_heads": [3, 6, 12, 24],
            "window_size": 7,
            "batch": 128,
            "dtype": "bfloat16",
            "warmup": 3,
            "repeat": 10,
        },
    },  # fmt: skip
)
def bench_swin(cfg: SwinBenchConfig, ctx: Context) -> Result:
    from transformers import SwinConfig as HfSwinConfig
    from transformers import SwinForImageClassification

    if cfg.dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be float32 or bfloat16, got {cfg.dtype!r}")
    dev = ctx.device
    torch.manual_seed(ctx.seed)
    hc = HfSwinConfig(
        image_size=cfg.image_size, patch_size=cfg.patch_size, embed_dim=cfg.embed_dim,
        depths=list(cfg.depths), num_heads=list(cfg.num_heads), window_size=cfg.window_size,
        num_labels=cfg.num_classes, drop_path_rate=0.0, attn_implementation="sdpa",
    )  # fmt: skip
    peer = SwinForImageClassification(hc).to(dev)
    modules = {"ours": swin_from_transformers(peer).to(dev)}
    if cfg.reference:
        modules["ours (reference path)"] = swin_from_transformers(peer, fast=False).to(dev)
    modules["transformers"] = peer
    x = torch.randn(cfg.batch, 3, cfg.image_size, cfg.image_size, device=dev)
    y = torch.randint(0, cfg.num_classes, (cfg.batch,), device=dev)
    amp = cfg.dtype == "bfloat16"

    def logits(module):
        out = module(x)
        return out.logits if hasattr(out, "logits") else out

    with torch.no_grad():
        for m in modules.values():
            m.eval()
        a, b = logits(modules["ours"]).float(), logits(peer).float()
        rel = ((a - b).norm() / b.norm()).item()
        for m in modules.values():
            m.train()

    # (row name, mode, module to call, module whose parameters the optimizer updates)
    runs = [(name, "eager", m, m) for name, m in modules.items()]
    if cfg.compile:
        for name in ("ours", "transformers"):
            runs.append(
                (f"{name} (compiled)", "compiled", torch.compile(modules[name]), modules[name])
            )
    steps, failed, warm_s = {}, [], {}
    for name, _, module, owner in runs:
        opt = torch.optim.AdamW(owner.parameters(), lr=1e-4)

        def step(module=module, opt=opt):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                loss = F.cross_entropy(logits(module).float(), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        t0 = time.perf_counter()
        try:
            for _ in range(max(cfg.warmup, 1)):
                step()
            _sync(dev)
        except Exception as e:  # a compiled row that fails is reported, the others still run
            failed.append(name)
            ctx.log(f"swin bench: {name} failed: {type(e).__name__}: {e}")
            continue
        warm_s[name] = time.perf_counter() - t0
        steps[name] = step

    times = {name: [] for name in steps}
    for _ in ctx.progress(range(cfg.repeat), desc="swin rounds"):
        for name, step in steps.items():
            _sync(dev)
            t0 = time.perf_counter()
            step()
            _sync(dev)
            times[name].append((time.perf_counter() - t0) * 1e3)

    rows = []
    for name, mode, _, _ in runs:
        if name not in times:
            continue
        ms = statistics.median(times[name])
        rows.append(
            {
                "model": name,
                "mode": mode,
                "batch": cfg.batch,
                "image": f"3x{cfg.image_size}x{cfg.image_size}",
                "dtype": cfg.dtype,
                "ms": ms,
                "ms_min": min(times[name]),
                "images_per_s": cfg.batch * 1e3 / ms,
                "warmup_s": warm_s[name],
            }
        )
    base = {r["mode"]: r["ms"] for r in rows if r["model"].startswith("transformers")}
    for r in rows:
        r["speed_vs_transformers"] = base[r["mode"]] / r["ms"] if r["mode"] in base else None
    by = {r["model"]: r for r in rows}

    if cfg.profile:
        for name, step in steps.items():
            slug = "".join(c if c.isalnum() else "_" for c in name).strip("_").replace("__", "_")
            _profile(step, dev, ctx.out / f"profile_{slug}.txt")

    fig, ax = ctx.figure(figsize=(1.6 * len(rows) + 2.5, 4))
    colors = ["C1" if r["model"].startswith("transformers") else "C0" for r in rows]
    ax.bar([r["model"].replace(" (", "\n(") for r in rows], [r["images_per_s"] for r in rows],
           color=colors)  # fmt: skip
    ax.set_ylabel("training images / s (higher is better)")
    ax.set_title(
        f"Swin C={cfg.embed_dim} {cfg.depths} at {cfg.image_size}², {cfg.dtype}, {dev.type}"
    )
    ctx.savefig(fig, "swin_speed.png")
    metrics = {
        "speed_vs_transformers": by.get("ours", {}).get("speed_vs_transformers"),
        "ours_images_per_s": by.get("ours", {}).get("images_per_s"),
        "transformers_images_per_s": by.get("transformers", {}).get("images_per_s"),
        "logits_rel_error_vs_transformers": rel,
        "params": sum(p.numel() for p in modules["ours"].parameters()),
    }
    if "ours (reference path)" in by:
        metrics["reference_path_speed_vs_transformers"] = by["ours (reference path)"][
            "speed_vs_transformers"
        ]
    if "ours (compiled)" in by:
        metrics["compiled_speed_vs_transformers_compiled"] = by["ours (compiled)"][
            "speed_vs_transformers"
        ]
    notes = [
        "same weights (deepnotes.models.loaders.swin), same batch, same autocast dtype, same "
        "process; speed_vs_transformers = transformers ms / this row's ms, both eager or "
        "both compiled",
        f"median of {cfg.repeat} interleaved rounds after {max(cfg.warmup, 1)} warm-up steps "
        "per model; warmup_s includes compilation for compiled rows",
    ]
    if cfg.profile:
        notes.append("per-op tables of one step: profile_<model>.txt, by self device time")
    return Result(
        metrics=metrics,
        table=rows,
        columns=[
            "model",
            "mode",
            "batch",
            "image",
            "dtype",
            "ms",
            "ms_min",
            "images_per_s",
            "speed_vs_transformers",
            "warmup_s",
        ],  # fmt: skip
        notes=notes,
        failed=failed,
    )


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _profile(step, dev: torch.device, path) -> None:
    """Write the top ops of one `step()` by self time (device time on CUDA) to `path`."""
    from torch.profiler import ProfilerActivity, profile

    from deepnotes.utils.timing import _native_output_silenced

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    _sync(dev)
    with _native_output_silenced(), profile(activities=acts) as prof:
        step()
        _sync(dev)
    key = "self_device_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    path.write_text(prof.key_averages().table(sort_by=key, row_limit=40, max_name_column_width=70))
