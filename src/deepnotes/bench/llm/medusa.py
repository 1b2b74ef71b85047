"""`deepnotes bench medusa`: Medusa decoding speed against greedy decoding, batch 1.

Both sides run the same base weights through the same cached forward
(`deepnotes.generate.medusa.forward_cached`): greedy feeds one token per forward, Medusa a
whole candidate tree. Per prompt: tokens/s, tokens per forward (mean accepted length) and
time per forward; the tree overhead is t(tree forward) / t(one-token forward). Medians over
prompts. The library's stepped `generate` (LM.step) is timed beside them.
With `--cuda-graph true` both sides decode over fixed-size KV buffers and replay each
forward as a CUDA graph (`deepnotes.generate.medusa_graph`): at batch 1 this model is bound
by kernel launches, which the graphs remove from greedy decoding and Medusa alike.

    deepnotes bench medusa --budget gpu --device cuda --base OUT/base/base-lm \
        --heads OUT/medusa/medusa_heads.safetensors --out OUT/bench   [--cuda-graph true]
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from deepnotes.align.lm_io import load_lm, module_meta
from deepnotes.data.text import load_text
from deepnotes.generate import generate
from deepnotes.generate.medusa import MedusaHeads, greedy_cached, medusa_generate
from deepnotes.generate.medusa_tree import SPARSE_4, dense_tree, sparse_tree
from deepnotes.jobs import Context, Result, suite
from deepnotes.models.lm import LM, LMConfig


@dataclass
class MedusaBenchConfig:
    base: str = ""  # base LM folder (`deepnotes run base-lm`); "" = a random tiny LM
    heads: str = ""  # medusa_heads.safetensors (`deepnotes run medusa`); "" = untrained heads
    n_prompts: int = 4  # prompts (the median is over these)
    prompt_len: int = 32  # tokens per prompt
    new_tokens: int = 64  # tokens generated per prompt
    dtype: str = "float32"  # float32 | bfloat16 (weights and activations)
    warmup: int = 1  # untimed prompts first (allocator, kernels, CUDA-graph capture)
    cuda_graph: bool = False  # both sides over fixed-size KV buffers, replayed as CUDA graphs


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device):
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


def _setup(cfg: MedusaBenchConfig, ctx: Context):
    if cfg.base:
        model, _ = load_lm(cfg.base, ctx.device)
        val = load_text("kjv", cfg.base.rstrip("/") + "/tokenizer.json").val.long()
    else:
        torch.manual_seed(ctx.seed)
        lm_cfg = LMConfig(
            vocab_size=256, d_model=64, n_layers=2, n_heads=4, max_len=1024, positions="rotary"
        )
        model = LM(lm_cfg).to(ctx.device).eval()
        val = torch.randint(0, 256, (20_000,))
    D, V = model.cfg.d_model, model.cfg.vocab_size
    if cfg.heads:
        from safetensors.torch import load_model

        K = int(module_meta(cfg.heads).get("n_heads", 4))
        heads = MedusaHeads(D, V, K)
        load_model(heads, cfg.heads, device="cpu")
    else:
        heads = MedusaHeads(D, V, 4).init_from_head(model.head.weight.detach().cpu())
    dtype = getattr(torch, cfg.dtype)
    model, heads = model.to(ctx.device, dtype), heads.to(ctx.device, dtype).eval()
    n = cfg.n_prompts + cfg.warmup
    starts = torch.linspace(0, val.numel() - cfg.prompt_len - 1, n).long()
    prompts = [val[s : s + cfg.prompt_len][None].to(ctx.device) for s in starts]
    return model, heads, prompts


@suite(
    "medusa",
    "Medusa vs greedy decoding (same weights, same KV-cache code): tokens/s, accepted length",
    MedusaBenchConfig,
    presets={
        "smoke": {"n_prompts": 1, "prompt_len": 4, "new_tokens": 8, "warmup": 0},
        "gpu": {"n_prompts": 20, "new_tokens": 256, "dtype": "bfloat16", "warmup": 2},
    },
)
@torch.no_grad()
def run(cfg: MedusaBenchConfig, ctx: Context) -> Result:
    model, heads, prompts = _setup(cfg, ctx)
    K = heads.n_heads
    trees = {
        "dense 2^K": dense_tree([2] * K),
        "dense 3-2-1": dense_tree([3, 2, 1, 1][:K]),
        "sparse 18": sparse_tree([p for p in SPARSE_4 if len(p) <= K], topk=[4, 3, 2, 2][:K]),
    }
    n, graph = cfg.new_tokens, cfg.cuda_graph
    greedy = "greedy (cached forward" + (", CUDA graph)" if graph else ")")
    # the library's stepped `generate` is eager only: a reference row in eager runs
    methods = {**({} if graph else {"greedy (LM.step)": None}), greedy: None, **trees}
    per: dict[str, list[dict]] = {m: [] for m in methods}
    for i, p in enumerate(ctx.progress(prompts, desc="prompts")):
        ref, t = _timed(lambda p=p: greedy_cached(model, p, n, cuda_graph=graph), ctx.device)
        rec = {greedy: {"s": t, "forwards": n, "equal": True}}
        if not graph:
            _, t = _timed(lambda p=p: generate(model, p, n, temperature=0), ctx.device)
            rec["greedy (LM.step)"] = {"s": t, "forwards": n, "equal": True}
        for name, tree in trees.items():
            (out, st), t = _timed(
                lambda p=p, tree=tree: medusa_generate(
                    model, heads, p, n, tree=tree, cuda_graph=graph
                ),
                ctx.device,
            )
            rec[name] = {"s": t, "forwards": st.forwards - 1, "equal": torch.equal(out, ref)}
        if i >= cfg.warmup:
            for m, r in rec.items():
                per[m].append(r)
    base_s = statistics.median(r["s"] for r in per[greedy])
    t1 = base_s / n
    rows = []
    for m in methods:
        rs = per[m]
        s = statistics.median(r["s"] for r in rs)
        fw = statistics.median(r["forwards"] for r in rs)
        rows.append(
            {
                "method": m,
                "nodes": trees[m].n_nodes if m in trees else 1,
                "tokens_per_s": round(n / s, 1),
                "speedup": round(base_s / s, 3),
                "mean_accepted_length": round(n / fw, 3),
                "ms_per_forward": round(1e3 * s / fw, 3),
                "tree_overhead": round((s / fw) / t1, 3),
                "equal_to_greedy": f"{sum(r['equal'] for r in rs)}/{len(rs)}",
            }
        )
    title = f"Medusa, batch 1, {cfg.dtype}, {n} new tokens, {ctx.device.type}"
    _plot(ctx, rows, title + (", CUDA graphs" if graph else ""))
    best = max((r for r in rows if r["method"] in trees), key=lambda r: r["speedup"])
    return Result(
        metrics={
            "best_speedup": best["speedup"],
            "best_tree": best["method"],
            "greedy_tokens_per_s": next(r for r in rows if r["method"] == greedy)["tokens_per_s"],
            "greedy_ms_per_token": round(1e3 * t1, 3),
            "cuda_graph": graph and ctx.device.type == "cuda",
            "model_params": sum(p.numel() for p in model.parameters()),
        },
        table=rows,
        columns=[
            "method",
            "nodes",
            "tokens_per_s",
            "speedup",
            "mean_accepted_length",
            "ms_per_forward",
            "tree_overhead",
            "equal_to_greedy",
        ],
        notes=[
            "speedup is against greedy over the same cached forward; tree_overhead = time "
            "of one tree forward / one single-token forward",
            "equal_to_greedy may fall below n/n in bf16: a tree forward and a one-token "
            "forward round differently, and near-ties can flip an argmax",
        ],
    )


def _plot(ctx: Context, rows: list[dict], title: str) -> None:
    """Speed-up over greedy decoding of each method, tokens per forward written on the bar."""
    fig, ax = ctx.figure(figsize=(7.5, 4))
    ax.bar(range(len(rows)), [r["speedup"] for r in rows], color="tab:blue")
    ax.axhline(1.0, color="k", lw=1, ls="--")
    ax.set_xticks(range(len(rows)), [r["method"] for r in rows], fontsize=9, rotation=15)
    for i, r in enumerate(rows):
        ax.text(i, r["speedup"], f"{r['mean_accepted_length']:.2f} tok/fwd", ha="center",
                va="bottom", fontsize=9)  # fmt: skip
    ax.set(ylabel="speed-up over greedy (cached forward)", title=title)
    ax.set_ylim(0, 1.12 * max(r["speedup"] for r in rows))
    ctx.savefig(fig, "medusa_bench.png")
