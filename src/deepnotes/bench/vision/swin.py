"""`deepnotes bench swin`: Swin training throughput, ours vs transformers, same weights.

Both models hold the same weights (ours is loaded from transformers' `SwinForImageClassification`
through the public loader) and train in the same process on the same batch: one step is
forward, cross-entropy, backward and an AdamW update. Our windows go through the shared
attention with the relative-position bias and the shift mask as `attn_bias` (SDPA; the
FlashAttention kernel takes no bias); transformers runs its SDPA path. Reported: median ms
per step, training images/s, and ours/transformers speed (> 1 = ours faster), plus the
relative logit error as a check that both ran the same network. The GPU preset is Swin-T at
224² in bf16 autocast.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from deepnotes.jobs import Context, Result, suite
from deepnotes.models.loaders.swin import swin_from_transformers
from deepnotes.utils.timing import time_ms


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
    repeat: int = 3  # timed repeats on CPU (median); CUDA uses do_bench


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
        },
    },  # fmt: skip
)
def bench_swin(cfg: SwinBenchConfig, ctx: Context) -> Result:
    from transformers import SwinConfig as HfSwinConfig
    from transformers import SwinForImageClassification

    dev = ctx.device
    torch.manual_seed(ctx.seed)
    hc = HfSwinConfig(
        image_size=cfg.image_size, patch_size=cfg.patch_size, embed_dim=cfg.embed_dim,
        depths=list(cfg.depths), num_heads=list(cfg.num_heads), window_size=cfg.window_size,
        num_labels=cfg.num_classes, drop_path_rate=0.0, attn_implementation="sdpa",
    )  # fmt: skip
    peer = SwinForImageClassification(hc).to(dev)
    ours = swin_from_transformers(peer).to(dev)
    x = torch.randn(cfg.batch, 3, cfg.image_size, cfg.image_size, device=dev)
    y = torch.randint(0, cfg.num_classes, (cfg.batch,), device=dev)
    amp = cfg.dtype == "bfloat16"
    if cfg.dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be float32 or bfloat16, got {cfg.dtype!r}")
    forward = {"ours": lambda: ours(x), "transformers": lambda: peer(x).logits}

    with torch.no_grad():
        ours.eval(), peer.eval()
        a, b = forward["ours"]().float(), forward["transformers"]().float()
        rel = ((a - b).norm() / b.norm()).item()
        ours.train(), peer.train()

    def step(name):
        module = ours if name == "ours" else peer
        opt = torch.optim.AdamW(module.parameters(), lr=1e-4)

        def fn():
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                loss = F.cross_entropy(forward[name]().float(), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return fn

    rows = []
    for name in ctx.progress(("ours", "transformers"), desc="swin"):
        fn = step(name)
        fn()  # warm-up
        ms = time_ms(fn, dev, repeat=cfg.repeat)
        rows.append(
            {
                "model": name,
                "batch": cfg.batch,
                "image": f"3x{cfg.image_size}x{cfg.image_size}",
                "dtype": cfg.dtype,
                "ms": ms,
                "images_per_s": cfg.batch * 1e3 / ms,
            }
        )
    speed = rows[1]["ms"] / rows[0]["ms"]
    rows[0]["speed_vs_transformers"], rows[1]["speed_vs_transformers"] = speed, 1.0

    fig, ax = ctx.figure(figsize=(5.5, 4))
    ax.bar([r["model"] for r in rows], [r["images_per_s"] for r in rows], color=["C0", "C1"])
    ax.set_ylabel("training images / s (higher is better)")
    ax.set_title(
        f"Swin C={cfg.embed_dim} {cfg.depths} at {cfg.image_size}², {cfg.dtype}, {dev.type}"
    )
    ctx.savefig(fig, "swin_speed.png")
    return Result(
        metrics={
            "speed_vs_transformers": speed,
            "ours_images_per_s": rows[0]["images_per_s"],
            "transformers_images_per_s": rows[1]["images_per_s"],
            "logits_rel_error_vs_transformers": rel,
            "params": sum(p.numel() for p in ours.parameters()),
        },
        table=rows,
        columns=["model", "batch", "image", "dtype", "ms", "images_per_s", "speed_vs_transformers"],
        notes=[
            "same weights (deepnotes.models.loaders.swin), same batch, same process; "
            "speed_vs_transformers = transformers ms / ours ms"
        ],
    )
