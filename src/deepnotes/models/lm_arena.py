"""The mixer arena's LM recipe, shared by `deepnotes run arena` and
`deepnotes bench arena-kernels`: its config and budgets, the mixers it trains, and the LM
it builds for each (the same width, depth, norm and FFN for every mixer; rotary positions
where the mixer applies them, else a learned table)."""

from __future__ import annotations

from dataclasses import dataclass, field

import deepnotes.mixers as M
from deepnotes.models.lm import LMConfig, auto_positions


@dataclass
class ArenaConfig:
    mixers: list[str] = field(default_factory=list)  # empty = every causal-capable mixer
    exclude: list[str] = field(default_factory=list)  # mixers to leave out
    corpus: str = "kjv"  # 'kjv' (embedded), 'stdlib', or a UTF-8 file / directory path
    d_model: int = 64  # LM width: small enough for 2 CPU cores
    n_layers: int = 2  # LM depth
    n_heads: int | None = 2  # heads, for mixers that take n_heads (None = mixer default)
    seq_len: int = 128  # training window (bytes)
    batch_size: int = 8  # sequences per step (1k bytes: many small steps suit a tiny budget;
    # with 16 x 100 steps softmax attention was still on the unigram plateau at the end)
    steps: int = 150  # optimizer steps per mixer: the equal budget (154k bytes each). One step
    # of each of the 12 mixers takes ~1.4 s on one thread of a loaded 2-core CPU (S4 ~0.75 s,
    # its kernel costs the same whatever the batch), so ~3.5-4.5 min in all
    lr: float = 3e-3  # AdamW peak lr (small model)
    warmup: int = 15  # linear warm-up steps (0 = none)
    precision: str = "fp32"  # fp32 | bf16 | fp16 (bf16 on GPU)
    eval_every: int = 50  # steps between validation evaluations
    eval_batches: int = 6  # validation batches per evaluation (final one included)
    gen_tokens: int = 48  # tokens decoded for the speed measurement and the sample
    prompt: str = "And God said"  # decoding prompt
    temperature: float = 0.8  # sampling temperature of the sample
    top_k: int | None = 20  # sample from the 20 most likely bytes
    measure_memory: bool = True  # peak memory of one training step (CPU: profiler trace)
    max_total_seconds: float = 340.0  # safety net for all mixers together (CPU: < 6 min);
    # the default budget takes ~4 min on a 2-core CPU, so it does not bind there
    reserve_seconds: float = 10.0  # training time kept for each mixer still to run when the
    # guard binds (so a slow mixer cannot starve the ones after it)
    threads: int = 1  # CPU threads (1 is fastest on a shared 2-core machine); 0 = torch's
    strict: bool = False  # re-raise a mixer's failure instead of recording it in the table
    max_docs: int | None = None  # first documents of the corpus only (quick runs)


# fields that do not change a mixer's result (so resuming ignores them)
NOT_RESULT_FIELDS = ("mixers", "exclude", "max_total_seconds", "reserve_seconds", "strict")


def select_mixers(cfg: ArenaConfig) -> list[str]:
    """The requested mixers, or every causal-capable registered one, minus `exclude`."""
    names = cfg.mixers or M.causal_names()
    for n in [*names, *cfg.exclude]:
        M.get(n)  # unknown names: ValueError listing the valid ones
    bad = [n for n in names if not M.get(n).supports_causal]
    if bad:
        raise ValueError(f"mixers {bad} cannot run causally, so cannot drive a decoder LM")
    return [n for n in names if n not in cfg.exclude]


def lm_config(cfg: ArenaConfig, mixer: str, vocab: int) -> LMConfig:
    n_heads = cfg.n_heads if M.get(mixer).supports_heads else None
    return LMConfig(
        vocab_size=vocab, d_model=cfg.d_model, n_layers=cfg.n_layers,
        max_len=max(cfg.seq_len, len(cfg.prompt.encode()) + cfg.gen_tokens),
        mixer=mixer, n_heads=n_heads, positions=auto_positions(mixer), norm="rmsnorm",
        ffn="swiglu",
    )  # fmt: skip


# budgets (`--budget NAME`): overrides of the ArenaConfig defaults
ARENA_PRESETS: dict[str, dict] = {
    "smoke": {
        "d_model": 16,
        "n_layers": 1,
        "seq_len": 16,
        "batch_size": 2,
        "steps": 2,
        "warmup": 1,
        "eval_every": 2,
        "eval_batches": 1,
        "gen_tokens": 4,
        "measure_memory": False,
        "strict": True,
        "max_docs": 40,
    },
    "gpu": {
        "d_model": 384,
        "n_layers": 4,
        "n_heads": 6,
        "seq_len": 256,
        "batch_size": 32,
        "steps": 300,
        "lr": 1.5e-3,
        "warmup": 30,
        "precision": "bf16",
        "eval_every": 100,
        "eval_batches": 20,
        "gen_tokens": 128,
        "max_total_seconds": 300.0,
    },
}


def arena_config(budget: str = "default", **overrides) -> ArenaConfig:
    """ArenaConfig at a budget ("default", "smoke", "gpu"), with field overrides."""
    if budget != "default" and budget not in ARENA_PRESETS:
        valid = ", ".join(["default", *ARENA_PRESETS])
        raise ValueError(f"unknown arena budget {budget!r}; valid: {valid}")
    return ArenaConfig(**{**ARENA_PRESETS.get(budget, {}), **overrides})
