"""`deepnotes run activations`: one small byte-level LM trained with each FFN activation.

MLP FFNs (ReLU, GELU, SiLU/Swish) against the GLU family (GLU, bilinear, ReGLU, GeGLU,
SwiGLU; Shazeer 2020) at matched parameter count: the GLU hidden width is 2/3 of the MLP's
because a GLU block has three matrices instead of two. Everything else (data, seed, init,
schedule) is identical. Also plots the activations and their derivatives, from the
perceptron's step function to the gates of the GLU family.
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
from deepnotes.layers.activations import derivative, get_activation
from deepnotes.layers.ffn import FFN_KINDS, GLU_KINDS, ffn_hidden
from deepnotes.models.lm import LMConfig, build_lm


@dataclass
class ActivationsConfig:
    ffns: list[str] = field(default_factory=lambda: list(FFN_KINDS))  # FFN kinds to train
    corpus: str = "kjv"  # byte-level text
    mixer: str = "softmax"  # the sequence mixer (same for every run)
    d_model: int = 128  # LM width
    n_layers: int = 2  # LM depth
    ffn_mult: float = 4.0  # MLP hidden = 4 d; GLU hidden = 2/3 of that (equal parameters)
    seq_len: int = 128  # training window
    batch_size: int = 16  # sequences per step
    steps: int = 250  # optimizer steps per run
    lr: float = 2e-3  # AdamW peak lr
    warmup: int = 25  # linear warm-up steps (0 = none)
    eval_every: int = 50  # steps between evaluations
    eval_batches: int = 8  # validation batches per evaluation
    seeds: int = 3  # runs per activation (seeds seed, seed+1, ...): the spread is the noise
    max_docs: int | None = None  # first documents of the corpus only (quick runs)


def plot_activations(ctx: Context) -> None:
    x = torch.linspace(-4, 4, 801, dtype=torch.float64)
    fig, (a, b) = ctx.figure(1, 2, figsize=(11, 4))
    for i, name in enumerate(["step", "sigmoid", "tanh", "relu", "gelu", "silu"]):
        a.plot(x, get_activation(name)(x), color=f"C{i}", label=name)
        b.plot(x, derivative(name, x), color=f"C{i}", label=name)
    a.set(title="activation f(x)\nGLU gates: glu = sigmoid, reglu = relu, geglu = gelu, "
          "swiglu = silu", xlabel="x", ylabel="f(x)", ylim=(-1.5, 4))  # fmt: skip
    b.set(title="derivative f'(x)", xlabel="x", ylabel="f'(x)", ylim=(-0.3, 1.3))
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.axhline(0, color="k", lw=0.5)
        ax.legend(fontsize=9)
    ctx.savefig(fig, "activations.png")


@experiment(
    "activations",
    "the same small LM with ReLU/GELU/SiLU MLPs and every GLU variant at matched parameters",
    ActivationsConfig,
    presets={
        "smoke": {
            "ffns": ["relu", "swiglu"],
            **SMOKE_LM,
            "seeds": 1,
        },
        "gpu": GPU_LM,
    },  # fmt: skip
)
def run(cfg: ActivationsConfig, ctx: Context) -> Result:
    bad = sorted(set(cfg.ffns) - set(FFN_KINDS))
    if bad:
        raise ValueError(f"unknown ffn kinds {bad}; valid: {list(FFN_KINDS)}")
    if cfg.seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {cfg.seeds}")
    plot_activations(ctx)
    data = cached_text(cfg.corpus, cfg.max_docs)
    runs, table = {}, []
    bar = ctx.progress(total=len(cfg.ffns) * cfg.steps * cfg.seeds, desc="training")
    for kind in cfg.ffns:
        lm_cfg = LMConfig(
            vocab_size=data.vocab_size, d_model=cfg.d_model, n_layers=cfg.n_layers,
            max_len=cfg.seq_len, mixer=cfg.mixer, positions="rotary", norm="rmsnorm",
            ffn=kind, ffn_mult=cfg.ffn_mult,
        )  # fmt: skip
        finals, speeds = [], []
        for i in range(cfg.seeds):
            seed = ctx.seed + i  # same seeds (init and data order) for every activation
            model = build_lm(lm_cfg, ctx.device, seed)
            tcfg = train_config(cfg, seed)
            r = train_lm(
                model, data, tcfg, eval_every=cfg.eval_every, eval_batches=cfg.eval_batches,
                bar=bar,
            )  # fmt: skip
            if i == 0:
                runs[kind] = r  # curves of the first seed
            finals.append(r.final)
            speeds.append(r.steady_tokens_per_s)
        losses = torch.tensor([f["val_loss"] for f in finals], dtype=torch.float64)
        ffn_params = sum(p.numel() for b in model.blocks for p in b.ffn.parameters())
        table.append(
            {
                "ffn": kind,
                "family": "GLU" if kind in GLU_KINDS else "MLP",
                "hidden": ffn_hidden(kind, cfg.d_model, cfg.ffn_mult),
                "ffn_params": ffn_params,
                "params": model.num_params(),
                "val_loss": losses.mean().item(),
                "val_loss_std": losses.std().item() if cfg.seeds > 1 else None,
                "val_bpb": sum(f["val_bpb"] for f in finals) / len(finals),
                "seeds": cfg.seeds,
                "val_loss_per_seed": losses.tolist(),
                "tokens_per_s": round(sum(speeds) / len(speeds)),
            }
        )
    bar.close()
    plot_curves(ctx, runs, "loss_curves.png", "FFN activation: byte-level LM on KJV (seed 0)")
    ranked = sorted(table, key=lambda row: row["val_loss"])
    metrics = {f"val_loss[{row['ffn']}]": row["val_loss"] for row in table}
    metrics["best"] = ranked[0]["ffn"]
    notes = [
        f"validation loss: mean over {cfg.seeds} seed(s) (init and data order; the same seeds "
        "for every activation); val_loss_std is the spread between seeds",
        f"ranking by validation loss: {', '.join(r['ffn'] for r in ranked)}",
    ]
    columns = ["ffn", "family", "hidden", "ffn_params", "params", "val_loss", "val_loss_std",
               "val_bpb", "tokens_per_s"]  # fmt: skip
    return Result(metrics=metrics, table=table, notes=notes, columns=columns)
