"""`deepnotes run base-lm`: the BPE-tokenised softmax LM on the KJV that the decoding and
alignment experiments start from.

Trains `deepnotes.models.lm.LM` (softmax attention, rotary positions, pre-norm, SwiGLU) with
the shared `Trainer`, then saves the weights as safetensors, the tokenizer and the config in
`OUT/base-lm/` (reload with `deepnotes.align.lm_io.load_lm(path)`; `medusa`, `dpo` and the
`medusa` bench take it with --base).

    deepnotes run base-lm --budget gpu --device cuda --out OUT/base    # ~3 min on an H200
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import torch

from deepnotes.align.lm_io import save_lm
from deepnotes.data.text import load_text
from deepnotes.generate import generate
from deepnotes.jobs import Context, Result, experiment
from deepnotes.models.lm import LM, LMConfig
from deepnotes.train import TrainConfig, Trainer
from deepnotes.train.lm import lm_eval_fn


@dataclass
class BaseLMConfig:
    bpe_vocab: int = 1024  # BPE vocabulary (trained on the training chapters only)
    d_model: int = 64  # residual width
    n_layers: int = 2  # blocks
    n_heads: int = 2  # attention heads
    seq_len: int = 64  # training window (tokens)
    batch_size: int = 16  # windows per step
    steps: int = 400  # optimizer steps
    lr: float = 2e-3  # peak learning rate (small models take a large one)
    warmup: int = 40  # linear warm-up steps
    precision: str = "fp32"  # fp32 | bf16
    compile: bool = False  # torch.compile the model (GPU)
    max_seconds: float = 0.0  # wall-clock cap on training (0 = none)
    max_docs: int | None = None  # first chapters of the KJV only (quick runs)
    eval_batches: int = 20  # validation batches at the end
    sample_tokens: int = 60  # greedy sample length printed at the end


def train_base(cfg: BaseLMConfig, ctx: Context):
    """Train the base LM; returns (model, tokenizer, data, trainer, history)."""
    data = load_text("kjv", "bpe", vocab_size=cfg.bpe_vocab, seed=ctx.seed, max_docs=cfg.max_docs)
    lm_cfg = LMConfig(
        vocab_size=data.vocab_size,
        d_model=cfg.d_model,
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
        max_len=max(cfg.seq_len, 512),
        mixer="softmax",
        positions="rotary",
        norm="rmsnorm",
        ffn="swiglu",
    )
    torch.manual_seed(ctx.seed)
    model = LM(lm_cfg).to(ctx.device)
    tcfg = TrainConfig(
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        seq_len=cfg.seq_len,
        lr=cfg.lr,
        warmup=min(cfg.warmup, cfg.steps // 2),
        precision=cfg.precision,
        compile=cfg.compile,
        max_seconds=cfg.max_seconds,
        log_interval=max(1, cfg.steps // 100),
        seed=ctx.seed,
        progress=not ctx.quiet,
    )
    batches = data.train_batches(cfg.batch_size, cfg.seq_len, device=ctx.device)
    eval_fn = lm_eval_fn(
        data, batch_size=cfg.batch_size, seq_len=cfg.seq_len, max_batches=cfg.eval_batches
    )
    trainer = Trainer(model, tcfg, batches, eval_fn=eval_fn)
    history = trainer.fit()
    return model.eval(), data.tokenizer, data, trainer, history


@experiment(
    "base-lm",
    "BPE softmax LM on the KJV, saved as safetensors + tokenizer for Medusa / DPO",
    BaseLMConfig,
    presets={
        "smoke": {
            "bpe_vocab": 300,
            "d_model": 32,
            "n_layers": 1,
            "n_heads": 2,
            "seq_len": 32,
            "batch_size": 4,
            "steps": 3,
            "warmup": 1,
            "max_docs": 30,
            "eval_batches": 2,
            "sample_tokens": 8,
        },
        "gpu": {
            "bpe_vocab": 8192,
            "d_model": 512,
            "n_layers": 8,
            "n_heads": 8,
            "seq_len": 256,
            "batch_size": 64,
            "steps": 4000,
            "lr": 1e-3,
            "warmup": 200,
            "precision": "bf16",
            "max_seconds": 150.0,
            "eval_batches": 50,
        },
    },
)
def run(cfg: BaseLMConfig, ctx: Context) -> Result:
    model, tok, data, trainer, history = train_base(cfg, ctx)
    folder = save_lm(model, tok, ctx.out / "base-lm")
    summary = trainer.summary()
    prompt = torch.tensor([tok.encode("And God said")], device=ctx.device)
    sample = tok.decode(generate(model, prompt, cfg.sample_tokens, temperature=0)[0].tolist())
    fig, ax = ctx.figure(figsize=(6.5, 4))
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], lw=1, label="train")
    ev = [h for h in history if "val_loss" in h]
    ax.plot([h["step"] for h in ev], [h["val_loss"] for h in ev], "o", label="validation")
    ax.set(xlabel="step", ylabel="loss (nats / BPE token)", title="base LM on the KJV")
    ax.grid(alpha=0.3)
    ax.legend()
    ctx.savefig(fig, "base_lm_loss.png")
    row = {
        k: summary.get(k)
        for k in ("steps", "final_loss", "val_loss", "val_bpb", "tokens_per_s", "params")
    }
    return Result(
        metrics={
            **summary,
            "weights": f"OUT/{folder.name}",  # relative: no machine path in the results
            "data": data.describe(),
            "lm_config": dataclasses.asdict(model.cfg),
            "sample": sample,
        },
        table=[row],
        notes=[f"weights: OUT/{folder.name}", f"greedy sample: {json.dumps(sample)[:200]}"],
    )
