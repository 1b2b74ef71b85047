"""`deepnotes run medusa`: Medusa-1 heads on a frozen base LM, and their acceptance.

1. Load the base LM (`--base OUT/base/base-lm`, written by `deepnotes run base-lm`) or, with
   no --base, train a small one here.
2. Train K heads on the frozen base (`medusa_loss`: CE of head k on token t + k + 1, weights
   decay^(k-1)), on KJV windows (`data=corpus`) or on the base's own greedy continuations
   (`data=self`, self-distillation). The continuations are decoded once, up front, in large
   batches (`pool`, `gen_batch`): at batch 1..64 a decoding loop is bound by kernel launches,
   so decoding each training batch separately cost minutes on a GPU.
3. Decode held-out prompts greedily with Medusa (dense and sparse trees) and with typical
   acceptance: the mean accepted length (tokens per forward), whether the greedy output
   equals plain greedy decoding, and the wall-time ratio against greedy over the same cached
   forward. Each phase reports progress and its time (`*_s` metrics).
The heads are saved as `OUT/medusa_heads.safetensors` for `deepnotes bench medusa`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from deepnotes.align.lm_io import load_lm, save_lm, save_module
from deepnotes.data.text import load_text
from deepnotes.experiments.llm.base_lm import BaseLMConfig, train_base
from deepnotes.generate.medusa import MedusaHeads, greedy_cached, medusa_generate, medusa_loss
from deepnotes.generate.medusa_tree import SPARSE_4, dense_tree, sparse_tree
from deepnotes.jobs import Context, Result, experiment


@dataclass
class MedusaConfig:
    base: str = ""  # folder from `deepnotes run base-lm` (its base-lm/); "" = train one here
    base_steps: int = 400  # steps of the small base trained when --base is empty
    n_heads: int = 4  # Medusa heads K
    data: str = "self"  # self (the base's greedy continuations, as the paper advises) | corpus
    steps: int = 400  # head training steps
    batch_size: int = 16  # windows per step
    pool: int = 0  # self-distilled sequences decoded up front (0 = steps x batch_size)
    gen_batch: int = 256  # sequences decoded at once for self-distillation (one forward/token)
    seq_len: int = 64  # tokens per window
    lr: float = 1e-3  # Adam learning rate of the heads
    decay: float = 0.8  # loss weight of head k is decay^(k-1)
    n_prompts: int = 6  # held-out prompts decoded
    prompt_len: int = 16  # tokens per prompt
    new_tokens: int = 48  # tokens generated per prompt
    temperature: float = 0.7  # temperature of the typical-acceptance run


def _base(cfg: MedusaConfig, ctx: Context):
    if cfg.base:
        model, tok = load_lm(cfg.base, ctx.device)
        data = load_text("kjv", str(cfg.base).rstrip("/") + "/tokenizer.json", seed=ctx.seed)
        return model, tok, data
    bcfg = BaseLMConfig(steps=cfg.base_steps)
    if cfg.base_steps < 10:  # the smoke preset: a tiny base
        bcfg = BaseLMConfig(
            bpe_vocab=300,
            d_model=32,
            n_layers=1,
            n_heads=2,
            seq_len=32,
            batch_size=4,
            steps=cfg.base_steps,
            warmup=1,
            max_docs=30,
            eval_batches=2,
        )
    model, tok, data, _, _ = train_base(bcfg, ctx)
    save_lm(model, tok, ctx.out / "base-lm")
    return model, tok, data


def _now(device: torch.device) -> float:
    """perf_counter after the device's queued work is done (GPU timings need the sync)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _self_distilled(cfg: MedusaConfig, model, data, ctx: Context) -> torch.Tensor:
    """[pool, seq_len]: the base's greedy continuations of corpus prefixes (seq_len // 4).

    Decoded up front in batches of gen_batch through the cached forward (the prefix in one
    forward, then one forward per token), so a batch of any size costs about seq_len
    forwards: decoding each training batch on its own, token by token, made the GPU preset
    launch-bound for minutes.
    """
    n = max(cfg.pool, cfg.batch_size) if cfg.pool else cfg.steps * cfg.batch_size
    gen_batch = max(1, min(cfg.gen_batch, n))
    windows = data.train_batches(gen_batch, cfg.seq_len, device=ctx.device)
    n_prefix = max(1, cfg.seq_len // 4)
    out = []
    for _ in ctx.progress(range(-(-n // gen_batch)), desc="self-distillation"):
        x, _ = next(windows)
        out.append(greedy_cached(model, x[:, :n_prefix], cfg.seq_len - n_prefix))
    return torch.cat(out)[:n]


def _batches(cfg: MedusaConfig, pool: torch.Tensor | None, data, ctx: Context):
    """Training windows [batch_size, seq_len]: corpus windows (pool None), or shuffled passes
    over the self-distilled pool."""
    if pool is None:
        for x, _ in data.train_batches(cfg.batch_size, cfg.seq_len, device=ctx.device):
            yield x
    g = torch.Generator().manual_seed(ctx.seed)
    while True:
        order = torch.randperm(pool.shape[0], generator=g).to(pool.device)
        for i in range(0, pool.shape[0] - cfg.batch_size + 1, cfg.batch_size):
            yield pool[order[i : i + cfg.batch_size]]


@experiment(
    "medusa",
    "Medusa-1 heads on the frozen base LM: accepted length, lossless check, CPU speed",
    MedusaConfig,
    presets={
        "smoke": {
            "base_steps": 2,
            "n_heads": 2,
            "steps": 3,
            "batch_size": 2,
            "seq_len": 16,
            "n_prompts": 2,
            "prompt_len": 4,
            "new_tokens": 8,
        },
        "gpu": {
            # self-distillation decodes 19200 sequences up front, 1024 at a time (19 x 97
            # launch-bound forwards, seconds); so do training and evaluation
            "steps": 300,
            "batch_size": 64,
            "seq_len": 128,
            "lr": 2e-3,
            "gen_batch": 1024,
            "n_prompts": 20,
            "new_tokens": 128,
        },
    },
)
def run(cfg: MedusaConfig, ctx: Context) -> Result:
    if cfg.data not in ("corpus", "self"):
        raise ValueError(f"data must be corpus or self, got {cfg.data!r}")
    model, tok, data = _base(cfg, ctx)
    for p in model.parameters():
        p.requires_grad_(False)
    D, V = model.cfg.d_model, model.cfg.vocab_size
    heads = MedusaHeads(D, V, cfg.n_heads).to(ctx.device).init_from_head(model.head.weight)
    opt = torch.optim.Adam(heads.parameters(), lr=cfg.lr)
    history, timing = [], {}
    t0 = time.perf_counter()
    pool = _self_distilled(cfg, model, data, ctx) if cfg.data == "self" else None
    timing["self_distillation_s"] = time.perf_counter() - t0
    if pool is not None:
        ctx.log(
            f"self-distillation: {pool.shape[0]} sequences in {timing['self_distillation_s']:.1f} s"
        )
    batches = _batches(cfg, pool, data, ctx)
    t0 = time.perf_counter()
    for _ in ctx.progress(range(cfg.steps), desc="heads"):
        x = next(batches)
        with torch.no_grad():  # the base is frozen: no graph through it
            h = model.hidden(x)
        loss, per_head = medusa_loss(heads, h, x, cfg.decay)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(per_head)
    timing["head_training_s"] = time.perf_counter() - t0
    ce = " / ".join(f"{c:.2f}" for c in history[-1])
    ctx.log(f"heads: {cfg.steps} steps in {timing['head_training_s']:.1f} s, CE {ce}")
    heads.eval()
    save_module(
        heads,
        ctx.out / "medusa_heads.safetensors",
        {"d_model": D, "vocab_size": V, "n_heads": cfg.n_heads},
    )

    # held-out prompts from the validation chapters
    val = data.val.long()
    starts = torch.linspace(0, val.numel() - cfg.prompt_len - 1, cfg.n_prompts).long()
    prompts = [val[s : s + cfg.prompt_len][None].to(ctx.device) for s in starts]
    trees = {
        "dense 2^K": dense_tree([2] * cfg.n_heads),
        "dense 3-2-1": dense_tree([3, 2, 1, 1][: cfg.n_heads]),
        "sparse 18": sparse_tree(
            [p for p in SPARSE_4 if len(p) <= cfg.n_heads], topk=[4, 3, 2, 2][: cfg.n_heads]
        ),
    }
    runs = [(name, temp) for name in trees for temp in (0.0, cfg.temperature)]
    runs = [(name, temp) for name, temp in runs if temp == 0 or name == "dense 2^K"]
    rows = []
    t_start = t0 = _now(ctx.device)
    greedy = [greedy_cached(model, p, cfg.new_tokens) for p in ctx.progress(prompts, desc="greedy")]
    t_greedy = _now(ctx.device) - t0
    ctx.log(f"greedy: {len(prompts)} prompts in {t_greedy:.1f} s")
    for name, temp in ctx.progress(runs, desc="medusa decoding"):
        tree = trees[name]
        acc, equal = [], 0
        t0 = _now(ctx.device)
        for p, ref in zip(prompts, greedy, strict=True):
            out, stats = medusa_generate(
                model, heads, p, cfg.new_tokens, tree=tree, temperature=temp
            )
            acc += [a + 1 for a in stats.accepted]
            equal += int(torch.equal(out, ref))
        dt = _now(ctx.device) - t0
        ctx.log(f"medusa {name} T={temp}: {len(prompts)} prompts in {dt:.1f} s")
        rows.append(
            {
                "tree": name,
                "nodes": tree.n_nodes,
                "acceptance": "greedy" if temp == 0 else f"typical T={temp}",
                "mean_accepted_length": round(sum(acc) / len(acc), 3),
                "equal_to_greedy": f"{equal}/{len(prompts)}",
                "speedup_wall": round(t_greedy / dt, 3),
            }
        )
    timing["decoding_s"] = _now(ctx.device) - t_start
    sample = tok.decode(greedy[0][0, cfg.prompt_len :].tolist())
    _plot(ctx, history, rows)
    best = max(r["mean_accepted_length"] for r in rows if r["acceptance"] == "greedy")
    return Result(
        metrics={
            "final_head_ce": history[-1],
            "best_mean_accepted_length": best,
            "greedy_tokens_per_s": cfg.new_tokens * len(prompts) / t_greedy,
            **{k: round(v, 2) for k, v in timing.items()},
            "heads": "OUT/medusa_heads.safetensors",  # relative: no machine path in results
            "sample": sample,
        },
        table=rows,
        columns=[
            "tree",
            "nodes",
            "acceptance",
            "mean_accepted_length",
            "equal_to_greedy",
            "speedup_wall",
        ],
        notes=[
            "mean accepted length = tokens per decoding forward (1.0 = greedy)",
            f"speedup_wall is the wall time of greedy / Medusa over the same cached forward "
            f"({ctx.device.type}, {next(model.parameters()).dtype}, no warm-up); the speed "
            "figures come from `deepnotes bench medusa`",
        ],
    )


def _plot(ctx: Context, history: list[list[float]], rows: list[dict]) -> None:
    """Left: each head's training cross-entropy (moving mean). Right: tokens per decoding
    forward of each tree and acceptance rule, its value and wall-time speed-up on the bar."""
    fig, (ax, ax2) = ctx.figure(1, 2, figsize=(12, 4.4), gridspec_kw={"width_ratios": [1, 1.1]})
    K = len(history[0])
    for k in range(K):
        ys = [h[k] for h in history]
        w = max(1, len(ys) // 50)
        ys = [
            sum(ys[max(0, i - w) : i + 1]) / len(ys[max(0, i - w) : i + 1]) for i in range(len(ys))
        ]
        ax.plot(ys, label=f"head {k + 1} (token t+{k + 2})")
    ax.set(xlabel="step", ylabel="cross-entropy (nats, moving mean)",
           title="Medusa-1 heads on a frozen base")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    labels = [f"{r['tree']}\n{r['acceptance']}" for r in rows]
    vals = [r["mean_accepted_length"] for r in rows]
    bars = ax2.bar(range(len(rows)), vals, color="tab:green", width=0.6)
    for b, r in zip(bars, rows, strict=True):
        speed = r.get("speedup_wall", r.get("speedup_cpu"))  # speedup_cpu: older results
        speed = f"\n{speed:.2f}x speed" if speed is not None else ""
        ax2.annotate(f"{r['mean_accepted_length']:.2f}{speed}", (b.get_x() + b.get_width() / 2,
                     b.get_height()), xytext=(0, 3), textcoords="offset points", ha="center",
                     va="bottom", fontsize=9)  # fmt: skip
    ax2.axhline(1.0, color="k", lw=1, ls="--", label="greedy: 1 token / forward")
    ax2.set_xticks(range(len(rows)), labels, fontsize=9)
    ax2.set(ylabel="tokens per decoding forward", title="mean accepted length",
            ylim=(0, 1.35 * max(vals)))  # fmt: skip
    ax2.legend(fontsize=9, loc="upper left")
    ctx.savefig(fig, "medusa.png")
