"""`deepnotes bench ldm-unet`: our latent-diffusion UNet against diffusers' UNet2DConditionModel.

Both models hold the same weights (ours is loaded from the diffusers model through the public
loader) and run in the same process, dtype and shapes:
- "fwd+bwd": one training step's forward and backward of eps-prediction MSE, batch B;
- "sample step": one guided sampling step's UNet call, under no_grad: the batch of B latents
  doubled for classifier-free guidance (unconditional and conditional halves), as
  StableDiffusionPipeline does.
Reported: median ms, steps/s and ours/diffusers speed (diffusers ms / our ms; > 1 = ours is
faster), plus the relative error between the two outputs as a check that both ran the same
network. The GPU preset is SD v1's UNet (860M parameters) at 64x64 latents in bf16.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from deepnotes.jobs import Context, Result, suite
from deepnotes.layers.attention import MultiHeadAttention
from deepnotes.models.diffusion.unet import UNet
from deepnotes.models.loaders.diffusers import (
    unet_config_from_diffusers,
    unet_state_dict_from_diffusers,
)
from deepnotes.utils.timing import time_ms


@dataclass
class UNetBenchConfig:
    block_channels: list[int] = field(default_factory=lambda: [32, 64])  # SD v1: 320..1280
    attn_blocks: list[bool] = field(default_factory=lambda: [True, False])  # cross-attn levels
    layers_per_block: int = 2  # ResBlocks per level (SD: 2)
    n_heads: int = 4  # heads per transformer block (SD v1: 8)
    d_context: int = 32  # condition width (SD v1: 768)
    context_len: int = 77  # condition tokens (CLIP's 77)
    norm_groups: int = 8  # GroupNorm groups (SD: 32)
    latent_size: int = 16  # latent side (SD v1 at 512 px: 64)
    batch: int = 2  # images per step (the sampling call runs 2x this for guidance)
    dtype: str = "float32"  # float32 | bfloat16 | float16 (weights and inputs)
    repeat: int = 3  # timed repeats on CPU (median); CUDA uses do_bench
    impls: list[str] = field(default_factory=lambda: ["auto", "sdpa"])  # our attention paths


def _peer(cfg: UNetBenchConfig):
    from diffusers import UNet2DConditionModel

    n = len(cfg.block_channels)
    down = ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in cfg.attn_blocks]
    up = ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.attn_blocks)]
    if len(cfg.attn_blocks) != n:
        raise ValueError("attn_blocks needs one flag per entry of block_channels")
    return UNet2DConditionModel(
        sample_size=cfg.latent_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=tuple(cfg.block_channels),
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        layers_per_block=cfg.layers_per_block,
        cross_attention_dim=cfg.d_context,
        attention_head_dim=cfg.n_heads,
        norm_num_groups=cfg.norm_groups,
    )


@suite(
    "ldm-unet",
    "latent-diffusion UNet fwd+bwd and guided sampling step: ours vs diffusers, same weights",
    UNetBenchConfig,
    presets={
        "smoke": {
            "block_channels": [16, 32],
            "latent_size": 8,
            "context_len": 5,
            "repeat": 1,
            "layers_per_block": 1,
        },
        "gpu": {
            "block_channels": [320, 640, 1280, 1280],
            "attn_blocks": [True, True, True, False],
            "n_heads": 8,
            "d_context": 768,
            "norm_groups": 32,
            "latent_size": 64,
            "batch": 4,
            "dtype": "bfloat16",
        },
    },  # fmt: skip
)
def bench_ldm_unet(cfg: UNetBenchConfig, ctx: Context) -> Result:
    dev, dtype = ctx.device, getattr(torch, cfg.dtype)
    torch.manual_seed(ctx.seed)
    with torch.device(dev):  # random init on the device: SD's 860M parameters init fast there
        peer = _peer(cfg)
    with torch.device("meta"):
        ours = UNet(unet_config_from_diffusers(dict(peer.config)))
    sd = unet_state_dict_from_diffusers(peer.state_dict(), ours)
    ours.load_state_dict({k: v.clone() for k, v in sd.items()}, assign=True)
    peer, ours = peer.to(dev, dtype), ours.to(dev, dtype)
    attns = [m for m in ours.modules() if isinstance(m, MultiHeadAttention)]
    B, h = cfg.batch, cfg.latent_size
    x = torch.randn(B, 4, h, h, device=dev, dtype=dtype)
    t = torch.randint(0, 1000, (B,), device=dev)
    c = torch.randn(B, cfg.context_len, cfg.d_context, device=dev, dtype=dtype)
    eps = torch.randn_like(x)
    models = {"diffusers": lambda *a: peer(*a).sample}
    for impl in cfg.impls:

        def run(*a, impl=impl):
            for m in attns:  # our attention path: "auto" (flash_attn) or "sdpa"
                m.impl = impl
            return ours(*a)

        models[f"ours ({impl})"] = run

    with torch.no_grad():
        out_p = models["diffusers"](x, t, c).float()
        rel = {
            name: ((f(x, t, c).float() - out_p).norm() / out_p.norm()).item()
            for name, f in models.items()
            if name != "diffusers"
        }

    def train_step(name):
        module = peer if name == "diffusers" else ours

        def fn():
            loss = torch.nn.functional.mse_loss(models[name](x, t, c).float(), eps.float())
            loss.backward()
            module.zero_grad(set_to_none=True)

        return fn

    x2, t2, c2 = torch.cat([x, x]), torch.cat([t, t]), torch.cat([c, c])

    def sample_step(name):
        def fn():
            with torch.no_grad():
                models[name](x2, t2, c2)

        return fn

    rows = []
    bar = ctx.progress(total=2 * len(models), desc="ldm-unet")
    for op, make in (("fwd+bwd", train_step), ("sample step", sample_step)):
        for name in models:
            fn = make(name)
            fn()  # warm-up
            ms = time_ms(fn, dev, repeat=cfg.repeat)
            rows.append({"op": op, "model": name, "batch": B if op == "fwd+bwd" else 2 * B,
                         "latent": f"4x{h}x{h}", "dtype": cfg.dtype, "ms": ms,
                         "steps_per_s": 1e3 / ms})  # fmt: skip
            bar.update(1)
    bar.close()
    base = {r["op"]: r["ms"] for r in rows if r["model"] == "diffusers"}
    for r in rows:
        r["speed_vs_diffusers"] = base[r["op"]] / r["ms"]
    _plot(ctx, rows, f"UNet {cfg.block_channels}, batch {B}, {cfg.dtype}, {dev.type}")
    n_params = sum(p.numel() for p in ours.parameters())
    metrics: dict[str, float] = {"params": n_params}
    for r in rows:
        if r["model"] != "diffusers":
            op = "fwd_bwd" if r["op"] == "fwd+bwd" else "sample_step"
            metrics[f"speed_{op}_{r['model'][6:-1]}_vs_diffusers"] = r["speed_vs_diffusers"]
    for name, err in rel.items():
        metrics[f"output_rel_error_{name[6:-1]}"] = err
    return Result(
        metrics=metrics,
        table=rows,
        columns=[
            "op",
            "model",
            "batch",
            "latent",
            "dtype",
            "ms",
            "steps_per_s",
            "speed_vs_diffusers",
        ],
        notes=[
            "same weights (loaded through deepnotes.models.loaders.diffusers), same inputs, "
            "same process; speed_vs_diffusers = diffusers ms / ours ms"
        ],  # fmt: skip
    )


def _plot(ctx: Context, rows: list[dict], title: str) -> None:
    """Steps / s of each model, grouped by operation (fwd+bwd, sample step)."""
    ops = list(dict.fromkeys(r["op"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, ax = ctx.figure(figsize=(7, 4))
    width = 0.8 / len(models)
    for i, name in enumerate(models):
        vals = [next(r["steps_per_s"] for r in rows if r["op"] == op and r["model"] == name)
                for op in ops]  # fmt: skip
        ax.bar([j + width * i for j in range(len(ops))], vals, width=width, label=name)
    ax.set_xticks([j + width * (len(models) - 1) / 2 for j in range(len(ops))], ops)
    ax.set_ylabel("steps / s (higher is better)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    ctx.savefig(fig, "ldm_unet_speed.png")
