"""`deepnotes run moe`: a dense LM against Mixture-of-Experts LMs at equal active parameters.

- dense:  every block's FFN has hidden width h = 4 d.
- switch: E experts of hidden h, top-1 (Switch Transformer): each token uses one expert, so
  the active parameters per token equal the dense model's while the total grows ~E-fold.
- top2:   E experts of hidden h / 2, top-2 (GShard / Mixtral style): two half-width experts
  per token, again the dense model's active parameter count.
All use the Switch load-balancing loss and the router z-loss; the expert loads (share of
routing assignments each expert served) are logged during training and plotted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from deepnotes.data.text import cached_text
from deepnotes.experiments.lm.common import (
    GPU_LM,
    SMOKE_LM,
    plot_curves,
    train_config,
    train_lm,
)
from deepnotes.jobs import Context, Result, experiment
from deepnotes.layers.moe import MoE
from deepnotes.models.lm import LMConfig, build_lm
from deepnotes.utils.io import atomic_write_json

VARIANTS = ("dense", "switch", "top2")


@dataclass
class MoEConfig:
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))  # runs to compare
    n_experts: int = 4  # experts per MoE layer
    capacity_factor: float | None = 1.25  # Switch's default; None = dropless
    balance_coef: float = 0.01  # weight of the load-balancing loss (Switch uses 1e-2)
    z_coef: float = 1e-3  # weight of the router z-loss (ST-MoE uses 1e-3)
    moe_every: int = 1  # MoE in every block (2 = every other block, as in Switch)
    corpus: str = "kjv"  # byte-level text
    d_model: int = 128  # LM width
    n_layers: int = 2  # LM depth
    seq_len: int = 128  # training window
    batch_size: int = 16  # sequences per step
    steps: int = 250  # optimizer steps per run
    lr: float = 2e-3  # AdamW peak lr
    warmup: int = 25  # linear warm-up steps (0 = none)
    eval_every: int = 50  # steps between evaluations
    eval_batches: int = 8  # validation batches per evaluation
    log_every: int = 5  # steps between expert-load records
    max_docs: int | None = None  # first documents of the corpus only (quick runs)


def variant_config(name: str, cfg: MoEConfig, vocab: int) -> LMConfig:
    base = dict(
        vocab_size=vocab, d_model=cfg.d_model, n_layers=cfg.n_layers, max_len=cfg.seq_len,
        positions="rotary", norm="rmsnorm", ffn="gelu",
        moe_capacity_factor=cfg.capacity_factor, moe_balance_coef=cfg.balance_coef,
        moe_z_coef=cfg.z_coef, moe_every=cfg.moe_every,
    )  # fmt: skip
    if name == "dense":
        return LMConfig(**base)
    if name == "switch":
        return LMConfig(**base, moe_experts=cfg.n_experts, moe_top_k=1)
    if name == "top2":
        return LMConfig(**base, moe_experts=cfg.n_experts, moe_top_k=2, ffn_mult=2.0)
    raise ValueError(f"unknown variant {name!r}; valid: {VARIANTS}")


def moe_layers(model) -> list[MoE]:
    return [b.ffn for b in model.blocks if isinstance(b.ffn, MoE)]


def record_loads(model, rec: dict) -> None:
    """Add the last training batch's expert loads and drops (averaged over MoE layers)."""
    layers = moe_layers(model)
    if not layers:
        return
    rec["load"] = torch.stack([m.stats["load"] for m in layers]).mean(0).tolist()
    served_total = sum(int(m.stats["served"].sum()) + int(m.stats["dropped"]) for m in layers)
    rec["drop_frac"] = sum(int(m.stats["dropped"]) for m in layers) / max(1, served_total)
    rec["balance_loss"] = float(torch.stack([m.stats["balance_loss"] for m in layers]).mean())


@experiment(
    "moe",
    "dense FFN vs Switch (top-1) and top-2 Mixture of Experts at equal active parameters",
    MoEConfig,
    presets={
        "smoke": {
            "variants": ["dense", "switch"],
            **SMOKE_LM,
            "log_every": 1,
        },
        "gpu": {**GPU_LM, "n_experts": 8, "log_every": 25},
    },  # fmt: skip
)
def run(cfg: MoEConfig, ctx: Context) -> Result:
    data = cached_text(cfg.corpus, cfg.max_docs)
    runs, table = {}, []
    bar = ctx.progress(total=len(cfg.variants) * cfg.steps, desc="training")
    for name in cfg.variants:
        lm_cfg = variant_config(name, cfg, data.vocab_size)
        model = build_lm(lm_cfg, ctx.device, ctx.seed)
        tcfg = train_config(cfg, ctx.seed)
        r = train_lm(
            model, data, tcfg, eval_every=cfg.eval_every, eval_batches=cfg.eval_batches,
            on_step=record_loads, log_every=cfg.log_every, bar=bar,
        )  # fmt: skip
        runs[name] = r
        loads = [h["load"] for h in r.history if "load" in h]
        last = r.history[-1]
        table.append(
            {
                "variant": name,
                "experts": lm_cfg.moe_experts or 1,
                "top_k": lm_cfg.moe_top_k if lm_cfg.moe_experts else 1,
                "params": model.num_params(),
                "active_params": model.num_active_params(),
                "val_loss": r.final.get("val_loss"),
                "val_bpb": r.final.get("val_bpb"),
                "balance_loss": last.get("balance_loss"),
                "drop_frac": last.get("drop_frac"),
                "drop_frac_mean": (
                    sum(h["drop_frac"] for h in r.history if "drop_frac" in h)
                    / max(1, sum("drop_frac" in h for h in r.history))
                    if lm_cfg.moe_experts
                    else None
                ),
                "max_load": max(loads[-1]) if loads else None,
                "tokens_per_s": round(r.steady_tokens_per_s),
            }
        )
    bar.close()
    plot_curves(ctx, runs, "loss_curves.png", "dense vs MoE at equal active parameters")
    moe_runs = {k: r for k, r in runs.items() if any("load" in h for h in r.history)}
    if moe_runs:
        fig, axes = ctx.figure(1, len(moe_runs), figsize=(5.5 * len(moe_runs), 3.8), squeeze=False)
        for ax, (name, r) in zip(axes[0], moe_runs.items(), strict=True):
            hs = [h for h in r.history if "load" in h]
            loads = torch.tensor([h["load"] for h in hs])
            steps = [h["step"] for h in hs]
            labels = [f"expert {e}" for e in range(loads.shape[1])]
            ax.stackplot(steps, loads.T.numpy(), labels=labels)
            ax.axhline(1.0, color="k", lw=0.5)
            ax.set(xlabel="step", ylabel="share of routing assignments served", ylim=(0, 1.02),
                   title=f"{name}: expert load (mean over MoE layers)")  # fmt: skip
        # beside the last panel (the stacks fill every panel); the white gap under 1: dropped
        axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                           title="gap to 1: dropped", title_fontsize=8)  # fmt: skip
        ctx.savefig(fig, "expert_load.png")
    metrics = {f"val_loss[{row['variant']}]": row["val_loss"] for row in table}
    history = {  # per MoE run: [step, drop_frac, balance_loss, load of each expert ...]
        name: [[h["step"], h["drop_frac"], h["balance_loss"], *h["load"]]
               for h in r.history if "load" in h]
        for name, r in moe_runs.items()
    }  # fmt: skip
    atomic_write_json(ctx.out / "expert_load.json", history)
    notes = [
        "active_params counts the experts a token uses (top_k of E); params counts them all",
        "load: share of the N*k routing assignments each expert served in the last training "
        "batch; the gap to 1 at the top of the stacked plot is the dropped share",
        "drop_frac: dropped share of the last training batch; drop_frac_mean: averaged over "
        "the logged batches of the run; the whole history is in expert_load.json",
    ]
    return Result(metrics=metrics, table=table, notes=notes, columns=list(table[0]))
