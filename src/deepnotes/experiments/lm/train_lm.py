"""`deepnotes run train-lm`: train the decoder LM on a text corpus with the shared `Trainer`.

    deepnotes run train-lm --data kjv --steps 2000 --device cuda --precision bf16
    torchrun --standalone --nproc_per_node 8 -m deepnotes run train-lm --distributed fsdp
    resume after a stop: the same command with --out DIR --resume

Checkpoints go to --ckpt-dir (default OUT/checkpoints, every --ckpt-interval steps and at the
end); --resume continues from the newest one.

Every `LMConfig` field (model) and `TrainConfig` field (optimisation, precision, checkpoints,
distribution) is an option, next to the data fields below; --batch-size is the global batch
over all processes (`vocab_size` is set by the tokenizer). Under torchrun every process
trains and rank 0 alone writes results.json, history.json and the loss plot.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import torch

from deepnotes.data.text import load_text
from deepnotes.generate import generate
from deepnotes.jobs import Context, Result, experiment
from deepnotes.models.lm import LM, LMConfig
from deepnotes.train.distributed import cleanup_distributed, setup_distributed
from deepnotes.train.lm import lm_eval_fn
from deepnotes.train.trainer import TrainConfig, Trainer
from deepnotes.utils.io import atomic_write_json


@dataclass
class TrainLMConfig(TrainConfig, LMConfig):
    data: str = "kjv"  # kjv | stdlib | a UTF-8 file or directory of .txt files
    tokenizer: str = "byte"  # byte | bpe | a saved tokenizers .json file
    bpe_vocab: int = 4096  # BPE vocabulary size (tokenizer bpe)
    val_fraction: float = 0.05  # share of documents held out for validation
    max_docs: int | None = None  # first documents of the corpus only (quick runs)
    eval_batches: int = 20  # validation batches per evaluation
    sample_tokens: int = 200  # tokens generated at the end (0 = none)


# a tiny model for a few steps on 40 chapters: runs in seconds on a CPU
SMOKE = dict(d_model=32, n_layers=1, steps=4, batch_size=2, seq_len=32, warmup=1,
             eval_batches=2, sample_tokens=8, max_docs=40, progress=False)  # fmt: skip


def _split(cfg: TrainLMConfig) -> tuple[TrainConfig, dict]:
    """The TrainConfig part and the LMConfig fields of a TrainLMConfig."""
    values = dataclasses.asdict(cfg)
    train = TrainConfig(**{f.name: values[f.name] for f in dataclasses.fields(TrainConfig)})
    lm_kw = {f.name: values[f.name] for f in dataclasses.fields(LMConfig)}
    if isinstance(lm_kw["mixer_kwargs"], str):  # from the command line, as JSON
        lm_kw["mixer_kwargs"] = json.loads(lm_kw["mixer_kwargs"])
    return train, lm_kw


@experiment(
    "train-lm",
    "train the decoder LM on a corpus (any mixer; bf16/fp16; checkpoints; DDP/FSDP by torchrun)",
    TrainLMConfig,
    presets={"smoke": SMOKE},
    resumable=True,
)
def run(cfg: TrainLMConfig, ctx: Context) -> Result:
    tcfg, lm_kw = _split(cfg)
    if tcfg.ckpt_dir is None:
        tcfg.ckpt_dir = str(ctx.out / "checkpoints")
    tcfg.resume = "auto" if ctx.resume else ""
    info = setup_distributed()
    device = info.device if info.enabled else ctx.device
    try:
        data = load_text(cfg.data, cfg.tokenizer, val_fraction=cfg.val_fraction, seed=cfg.seed,
                         vocab_size=cfg.bpe_vocab, max_docs=cfg.max_docs)  # fmt: skip
        lm_kw["max_len"] = max(cfg.seq_len, lm_kw["max_len"])
        lm_cfg = LMConfig(**{**lm_kw, "vocab_size": data.vocab_size})
        torch.manual_seed(cfg.seed)
        model = LM(lm_cfg).to(device)
        batches = data.train_batches(tcfg.batch_size, tcfg.seq_len, device=device,
                                     rank=info.rank, world_size=info.world_size)  # fmt: skip
        # every rank scores the same validation windows as a single process would: smaller
        # batches (memory), proportionally more of them
        eval_bs = max(1, tcfg.batch_size // info.world_size)
        n_eval = cfg.eval_batches * (tcfg.batch_size // eval_bs)
        eval_fn = lm_eval_fn(data, batch_size=eval_bs, seq_len=tcfg.seq_len, max_batches=n_eval)
        trainer = Trainer(model, tcfg, batches, eval_fn=eval_fn)
        history = trainer.fit()
        sample = None
        if cfg.sample_tokens > 0 and not (info.enabled and tcfg.distributed == "fsdp"):
            prompt = data.val[: min(32, tcfg.seq_len)].long()[None].to(device)
            out = generate(trainer.module, prompt, cfg.sample_tokens, temperature=0.8, top_k=50,
                           generator=torch.Generator(device).manual_seed(cfg.seed))  # fmt: skip
            sample = data.tokenizer.decode(out[0].tolist())
        summary = trainer.summary()
    finally:
        cleanup_distributed()
    if info.is_main:
        atomic_write_json(ctx.out / "history.json", history)
        _plot(ctx, history)
    notes = [f"resumed from {trainer.resumed_from}"] if trainer.resumed_from else []
    if sample is not None:
        notes.append(f"sample: {json.dumps(sample, ensure_ascii=False)[:300]}")
    row = {k: summary.get(k) for k in ("steps", "tokens", "final_loss", "val_loss", "val_bpb",
                                       "tokens_per_s", "params")}  # fmt: skip
    return Result(
        metrics={**summary, "world_size": info.world_size, "data": data.describe(),
                 "lm_config": dataclasses.asdict(lm_cfg), "sample": sample},
        table=[row], notes=notes,
    )  # fmt: skip


def _plot(ctx: Context, history: list[dict]) -> None:
    fig, ax = ctx.figure(figsize=(6.5, 4))
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], lw=1, label="train")
    ev = [h for h in history if "val_loss" in h]
    ax.plot([h["step"] for h in ev], [h["val_loss"] for h in ev], "o-", ms=4, label="validation")
    ax.set(xlabel="step", ylabel="loss (nats / token)", title="train-lm")
    ax.grid(alpha=0.3)
    ax.legend()
    ctx.savefig(fig, "loss.png")
