"""Train the LM on a text corpus: `python -m deepnotes.train [options]`.

Single process:    python -m deepnotes.train --data kjv --steps 2000 --device cuda
Several GPUs:      torchrun --standalone --nproc_per_node 8 -m deepnotes.train --distributed fsdp
Resume after a stop: the same command with --ckpt-dir DIR --resume auto.

Every LMConfig and TrainConfig field is an option (`--d-model 512`, `--precision bf16`,
`--grad-accum 4` ...); --batch-size is the global batch over all processes. Writes
`results.json` (history, summary, configs, a generated sample) to --out on rank 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from deepnotes.config import add_config_arguments, overrides_from_args
from deepnotes.data.text import load_text
from deepnotes.generate import generate
from deepnotes.models.lm import LM, LMConfig
from deepnotes.train.distributed import cleanup_distributed, setup_distributed
from deepnotes.train.lm import lm_eval_fn
from deepnotes.train.trainer import TrainConfig, Trainer
from deepnotes.utils.env import device_name, versions
from deepnotes.utils.io import atomic_write_json


def parse(argv: list[str] | None = None):
    first_line = __doc__.split("\n")[0]
    p = argparse.ArgumentParser(prog="python -m deepnotes.train", description=first_line)
    p.add_argument("--data", default="kjv", help="kjv | stdlib | a UTF-8 file or directory")
    p.add_argument("--tokenizer", default="byte", help="byte | bpe | a tokenizers .json file")
    p.add_argument("--bpe-vocab", type=int, default=4096, help="BPE vocabulary size")
    p.add_argument("--val-fraction", type=float, default=0.05, help="documents held out")
    p.add_argument("--eval-batches", type=int, default=20, help="validation batches per eval")
    p.add_argument("--sample-tokens", type=int, default=200, help="tokens generated at the end")
    p.add_argument("--device", default="auto", help="cpu | cuda | auto (torchrun: local GPU)")
    p.add_argument("--out", default=None, help="directory for results.json")
    add_config_arguments(p, TrainConfig)
    add_config_arguments(p, LMConfig)
    args = p.parse_args(argv)
    values = overrides_from_args(args)
    names = lambda cls: {f.name for f in dataclasses.fields(cls)}
    train_kw = {k: v for k, v in values.items() if k in names(TrainConfig)}
    lm_kw = {k: v for k, v in values.items() if k in names(LMConfig)}
    if isinstance(lm_kw.get("mixer_kwargs"), str):
        lm_kw["mixer_kwargs"] = json.loads(lm_kw["mixer_kwargs"])
    return args, TrainConfig(**train_kw), lm_kw


def main(argv: list[str] | None = None) -> int:
    args, cfg, lm_kw = parse(argv)
    info = setup_distributed()
    device = info.device if info.enabled or args.device == "auto" else torch.device(args.device)
    data = load_text(args.data, args.tokenizer, val_fraction=args.val_fraction, seed=cfg.seed,
                     vocab_size=args.bpe_vocab)  # fmt: skip
    lm_kw = {"max_len": max(cfg.seq_len, lm_kw.get("max_len", 0)), **lm_kw}
    lm_cfg = LMConfig(**{**lm_kw, "vocab_size": data.vocab_size})
    torch.manual_seed(cfg.seed)
    model = LM(lm_cfg).to(device)
    batches = data.train_batches(cfg.batch_size, cfg.seq_len, device=device, rank=info.rank,
                                 world_size=info.world_size)  # fmt: skip
    # every rank scores the same validation windows as a single process would: smaller
    # batches (memory), proportionally more of them
    eval_bs = max(1, cfg.batch_size // info.world_size)
    eval_fn = lm_eval_fn(data, batch_size=eval_bs, seq_len=cfg.seq_len,
                         max_batches=args.eval_batches * (cfg.batch_size // eval_bs))  # fmt: skip
    trainer = Trainer(model, cfg, batches, eval_fn=eval_fn)
    try:
        history = trainer.fit()
        sample = None
        if args.sample_tokens > 0 and not (info.enabled and cfg.distributed == "fsdp"):
            prompt = data.val[: min(32, cfg.seq_len)].long()[None].to(device)
            out = generate(trainer.module, prompt, args.sample_tokens, temperature=0.8, top_k=50,
                           generator=torch.Generator(device).manual_seed(cfg.seed))  # fmt: skip
            sample = data.tokenizer.decode(out[0].tolist())
        if info.is_main:
            summary = trainer.summary()
            record = {
                "summary": summary, "history": history, "sample": sample,
                "train_config": dataclasses.asdict(cfg), "lm_config": dataclasses.asdict(lm_cfg),
                "data": data.describe(), "world_size": info.world_size,
                "device": str(device), "device_name": device_name(device),
                "versions": versions(),
                "command": " ".join(["python -m deepnotes.train", *sys.argv[1:]]),
            }  # fmt: skip
            for k, v in summary.items():
                print(f"{k}: {v}")
            if sample is not None:
                print(f"sample: {sample!r}")
            if args.out:
                atomic_write_json(Path(args.out) / "results.json", record)
    finally:
        cleanup_distributed()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
