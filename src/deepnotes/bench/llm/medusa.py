"""`deepnotes bench medusa`: Medusa decoding speed against greedy decoding, batch 1.

Both sides run the same base weights through the same cached forward
(`deepnotes.generate.medusa.forward_cached`): greedy feeds one token per forward, Medusa a
whole candidate tree. Per prompt: tokens/s, tokens per forward (mean accepted length) and
time per forward; the tree overhead is t(tree forward) / t(one-token forward). Medians over
prompts. The library's stepped `generate` (LM.step) is timed beside them.
With `--cuda-graph true` both sides decode over fixed-size KV buffers and replay each
forward as a CUDA graph (`deepnotes.generate.medusa_graph`): at batch 1 this model is bound
by kernel launches, which the graphs remove from greedy decoding and Medusa alike.

`--tree-nodes 8,16,...` adds one "optimal N" tree per N (N nodes, the base token included):
the N-node tree with the most expected tokens per forward under the heads' measured rank
accuracy (`deepnotes.generate.medusa_tree_search`, the paper's §3.3.1). The accuracy is
measured on calibration prompts from the last quarter of the validation stream; the timed
prompts come from the first three quarters, so the two never overlap. Every tree's predicted
tokens per forward stands beside the measured one.

    deepnotes bench medusa --budget gpu --device cuda --base OUT/base/base-lm \
        --heads OUT/medusa/medusa_heads.safetensors --out OUT/bench   [--cuda-graph true] \
        [--tree-nodes 4,8,16,32]
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import torch

from deepnotes.align.lm_io import load_lm, module_meta
from deepnotes.data.text import load_text
from deepnotes.generate import generate
from deepnotes.generate.medusa import MedusaHeads, greedy_cached, medusa_generate
from deepnotes.generate.medusa_tree import SPARSE_4, dense_tree, sparse_tree
from deepnotes.generate.medusa_tree_search import (
    expected_accepted_length,
    head_rank_accuracy,
    optimal_tree,
    tree_paths,
)
from deepnotes.job_checks import ConfigError
from deepnotes.jobs import Context, Result, suite
from deepnotes.models.lm import LM, LMConfig
from deepnotes.utils.errors import error_line
from deepnotes.utils.profile import profile_steps

STEP = ", one graph a step"  # the suffix of the rows timed with `step_graph`


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
    # with cuda_graph: also time every tree with its whole step (candidates, tree forward,
    # acceptance, rollback) as one graph, read a step behind ("<tree>, one graph a step")
    step_graph: bool = False
    tree_nodes: list[int] = field(
        default_factory=lambda: [8, 16, 24]
    )  # one "optimal N" tree per N (nodes incl. the base token), from calibration
    calib_prompts: int = 8  # calibration prompts (disjoint from the timed ones), new_tokens each
    calib_topk: int = 10  # ranks measured per head (the deepest an optimal tree may go)
    # after the timings: torch.profiler over one more prompt of greedy and of the fastest
    # tree, the top ops by device time (self, per decoding step): what a tree step adds
    profile: bool = False
    profile_top: int = 12  # ops listed per method in the profile


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
    # timed prompts from the first three quarters of the stream, calibration from the last
    cut = 3 * val.numel() // 4
    n = cfg.n_prompts + cfg.warmup
    starts = torch.linspace(0, cut - cfg.prompt_len - 1, n).long()
    prompts = [val[s : s + cfg.prompt_len][None].to(ctx.device) for s in starts]
    starts = torch.linspace(cut, val.numel() - cfg.prompt_len - 1, cfg.calib_prompts).long()
    calib = torch.stack([val[s : s + cfg.prompt_len] for s in starts]).to(ctx.device)
    return model, heads, prompts, calib


def _optimal_trees(cfg: MedusaBenchConfig, model, heads, calib):
    """Calibrate (acc [K, calib_topk]) and build one optimal tree per --tree-nodes value."""
    if not cfg.tree_nodes:
        return None, {}, {}
    acc = head_rank_accuracy(model, heads, calib, cfg.new_tokens, topk=cfg.calib_topk)
    trees, paths = {}, {}
    for n in sorted(set(cfg.tree_nodes)):
        trees[f"optimal {n}"], paths[f"optimal {n}"] = optimal_tree(acc, n)
    return acc, trees, paths


def _predicted(acc, tree) -> float | None:
    """Expected tokens per forward of `tree` under acc; None if it ranks deeper than acc."""
    if acc is None or tree.depth > acc.shape[0] or max(tree.topk) > acc.shape[1]:
        return None
    return round(expected_accepted_length(acc, tree_paths(tree)), 3)


def check_medusa_bench(cfg: MedusaBenchConfig) -> None:
    """Tree sizes that a tree can have, and step graphs only over the graph path, before
    anything runs."""
    if any(n < 2 for n in cfg.tree_nodes):
        raise ConfigError("tree_nodes", cfg.tree_nodes, "each N counts the base token: >= 2")
    if cfg.step_graph and not cfg.cuda_graph:
        raise ConfigError("step_graph", True, "needs --cuda-graph true (the fixed-buffer path)")


@torch.no_grad()
def first_divergence(model, ref: torch.Tensor, out: torch.Tensor, T0: int) -> dict | None:
    """Where another decoder's tokens first leave greedy's, and whether that is a near tie.

    ref, out: [1, T0 + n] greedy's and the other's tokens (the prompt's T0 first). None if
    they are equal. Else `at`: the first new-token index where they differ; `gap`: the
    base's logit of greedy's token minus that of the other's token there, from one full
    (uncached) forward over the common prefix in the model's dtype (small next to the
    logits' spread: a near tie that rounding can flip); `full_forward_picks`: which of the
    two the full forward's argmax takes ("greedy", "other" token, or "neither")."""
    diff = (ref[0] != out[0]).nonzero()
    if diff.numel() == 0:
        return None
    j = int(diff[0])
    logits = model(ref[:, :j])[0, -1].float()
    g, m, top = int(ref[0, j]), int(out[0, j]), int(logits.argmax())
    picks = "greedy" if top == g else "other" if top == m else "neither"
    return {"at": j - T0, "gap": round(float(logits[g] - logits[m]), 4),
            "full_forward_picks": picks}  # fmt: skip


def _divergence_note(divergences: dict[str, list[dict]]) -> str | None:
    """One line over every method's divergences (None when every output equals greedy's)."""
    ds = [d for v in divergences.values() for d in v]
    if not ds:
        return None
    gaps = sorted(abs(d["gap"]) for d in ds)
    picks = {k: sum(d["full_forward_picks"] == k for d in ds) for k in ("greedy", "other")}
    return (
        f"where an output left greedy's ({len(ds)} prompt-method pairs; metric "
        f"`divergences`): logit gap between the two tokens in a full forward, median "
        f"{gaps[len(gaps) // 2]:.3g}, max {gaps[-1]:.3g}; that forward picks greedy's token "
        f"{picks['greedy']} times and the other's {picks['other']}"
    )


@suite(
    "medusa",
    "Medusa vs greedy decoding (same weights, same KV-cache code): tokens/s, accepted length",
    MedusaBenchConfig,
    presets={
        "smoke": {
            "n_prompts": 1,
            "prompt_len": 4,
            "new_tokens": 8,
            "warmup": 0,
            "tree_nodes": [4],
            "calib_prompts": 2,
        },
        "gpu": {
            "n_prompts": 20,
            "new_tokens": 256,
            "dtype": "bfloat16",
            "warmup": 2,
            "tree_nodes": [4, 8, 12, 16, 24, 32],
            "calib_prompts": 32,
        },
    },
    check=check_medusa_bench,
)
@torch.no_grad()
def run(cfg: MedusaBenchConfig, ctx: Context) -> Result:
    model, heads, prompts, calib = _setup(cfg, ctx)
    K = heads.n_heads
    trees = {
        "dense 2^K": dense_tree([2] * K),
        "dense 3-2-1": dense_tree([3, 2, 1, 1][:K]),
        "sparse 18": sparse_tree([p for p in SPARSE_4 if len(p) <= K], topk=[4, 3, 2, 2][:K]),
    }
    t0 = time.perf_counter()
    acc, optimal, optimal_paths = _optimal_trees(cfg, model, heads, calib)
    _sync(ctx.device)
    calib_s = time.perf_counter() - t0
    trees.update(optimal)
    n, graph = cfg.new_tokens, cfg.cuda_graph
    runs = {name: (tree, False) for name, tree in trees.items()}  # method -> (tree, step graph)
    if graph and cfg.step_graph:
        runs.update({f"{name}{STEP}": (tree, True) for name, tree in trees.items()})
    predicted = {name: _predicted(acc, tree) for name, (tree, _) in runs.items()}
    greedy = "greedy (cached forward" + (", CUDA graph)" if graph else ")")
    # the library's stepped `generate` is eager only: a reference row in eager runs
    methods = {**({} if graph else {"greedy (LM.step)": None}), greedy: None, **runs}
    per: dict[str, list[dict]] = {m: [] for m in methods}
    divergences: dict[str, list[dict]] = {}
    for i, p in enumerate(ctx.progress(prompts, desc="prompts")):
        ref, t = _timed(lambda p=p: greedy_cached(model, p, n, cuda_graph=graph), ctx.device)
        rec = {greedy: {"s": t, "forwards": n, "equal": True}}
        if not graph:
            _, t = _timed(lambda p=p: generate(model, p, n, temperature=0), ctx.device)
            rec["greedy (LM.step)"] = {"s": t, "forwards": n, "equal": True}
        for name, (tree, step) in runs.items():
            (out, st), t = _timed(
                lambda p=p, tree=tree, step=step: medusa_generate(
                    model, heads, p, n, tree=tree, cuda_graph=graph, step_graph=step
                ),
                ctx.device,
            )
            rec[name] = {"s": t, "forwards": st.forwards - 1, "equal": torch.equal(out, ref)}
            if i >= cfg.warmup and not rec[name]["equal"]:
                d = first_divergence(model, ref, out, p.shape[1])
                divergences.setdefault(name, []).append({"prompt": i - cfg.warmup, **d})
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
                "nodes": runs[m][0].n_nodes if m in runs else 1,
                "tokens_per_s": round(n / s, 1),
                "speedup": round(base_s / s, 3),
                "mean_accepted_length": round(n / fw, 3),
                "predicted_length": predicted.get(m),
                "ms_per_forward": round(1e3 * s / fw, 3),
                "tree_overhead": round((s / fw) / t1, 3),
                "equal_to_greedy": f"{sum(r['equal'] for r in rs)}/{len(rs)}",
            }
        )
    title = f"Medusa, batch 1, {cfg.dtype}, {n} new tokens, {ctx.device.type}"
    if graph:  # off CUDA the fixed-buffer path runs eagerly
        title += ", CUDA graphs" if ctx.device.type == "cuda" else ", fixed buffers (eager)"
    _plot(ctx, rows, title)
    best = max((r for r in rows if r["method"] in runs), key=lambda r: r["speedup"])
    profile = {}
    if cfg.profile:
        tree, step = runs[best["method"]]

        def run_greedy():
            greedy_cached(model, prompts[0], n, cuda_graph=graph)
            return n

        def run_best():
            _, st = medusa_generate(
                model, heads, prompts[0], n, tree=tree, cuda_graph=graph, step_graph=step
            )
            return st.forwards - 1

        profile = {"profile": {}}
        for name, fn in ((greedy, run_greedy), (best["method"], run_best)):
            try:  # the timings above are kept whatever happens here
                profile["profile"][name] = _profile(ctx, cfg.profile_top, fn)
            except Exception as e:  # noqa: BLE001 - reported in the results, not raised
                profile["profile"][name] = {"error": error_line(e)}
    calibration = {}
    if acc is not None:
        calibration = {
            "calibration": f"{cfg.calib_prompts} prompts x {n} greedy tokens, last quarter "
            f"of the validation stream, {calib_s:.1f} s",
            # acc[d][r]: how often head d + 1's rank-r token was greedy's token
            "calibration_acc": [[round(x, 4) for x in row] for row in acc.tolist()],
            "optimal_paths": optimal_paths,
        }
    return Result(
        metrics={
            "best_speedup": best["speedup"],
            "best_tree": best["method"],
            "greedy_tokens_per_s": next(r for r in rows if r["method"] == greedy)["tokens_per_s"],
            "greedy_ms_per_token": round(1e3 * t1, 3),
            "cuda_graph": graph and ctx.device.type == "cuda",
            "step_graph": graph and cfg.step_graph and ctx.device.type == "cuda",
            "model_params": sum(p.numel() for p in model.parameters()),
            **calibration,
            **profile,
            "divergences": divergences,
        },
        table=rows,
        columns=[
            "method",
            "nodes",
            "tokens_per_s",
            "speedup",
            "mean_accepted_length",
            "predicted_length",
            "ms_per_forward",
            "tree_overhead",
            "equal_to_greedy",
        ],
        notes=[
            "speedup is against greedy over the same cached forward; tree_overhead = time "
            "of one tree forward / one single-token forward",
            "equal_to_greedy may fall below n/n in bf16: a tree forward and a one-token "
            "forward round differently, and near-ties can flip an argmax",
            "predicted_length = 1 + sum over the tree's nodes of the product of the heads' "
            "calibration rank accuracy along the node's path (the paper's independence "
            "approximation); optimal N = the N-node tree that maximises it",
            *filter(None, [_divergence_note(divergences)]),
        ],
    )


def _profile(ctx: Context, top: int, run) -> dict:
    """Profile run() -> steps once (after the timed runs: graphs captured, kernels warm);
    see `deepnotes.utils.profile.profile_steps`."""
    return profile_steps(ctx.device, run, top)


def _plot(ctx: Context, rows: list[dict], title: str) -> None:
    """Left: speed-up over greedy decoding of each method, tokens per forward (measured, and
    predicted from calibration) on the bar. Right, when there are optimal trees: speed-up,
    tokens per forward and tree overhead against the tree's node count."""
    opt = [r for r in rows if r["method"].startswith("optimal ") and STEP not in r["method"]]
    opt_step = [r for r in rows if r["method"].startswith("optimal ") and STEP in r["method"]]
    width = max(7.5, 0.8 * len(rows) + 2)
    if opt:
        fig, (ax, ax2) = ctx.figure(1, 2, figsize=(width + 5.5, 4.6),
                                    gridspec_kw={"width_ratios": [width, 5.5]})  # fmt: skip
    else:
        fig, ax = ctx.figure(figsize=(width, 4.6))
    colours = ["tab:orange" if STEP in r["method"] else "tab:blue" for r in rows]
    ax.bar(range(len(rows)), [r["speedup"] for r in rows], color=colours)
    ax.axhline(1.0, color="k", lw=1, ls="--", zorder=0.5)  # under the bars and their labels
    ax.set_xticks(range(len(rows)), [r["method"] for r in rows], fontsize=8, rotation=30,
                  ha="right")  # fmt: skip
    for i, r in enumerate(rows):
        pred = r.get("predicted_length")
        text = f"{r['mean_accepted_length']:.2f}" + (f"\n({pred:.2f})" if pred else "")
        ax.annotate(text, (i, r["speedup"]), xytext=(0, 2), textcoords="offset points",
                    ha="center", va="bottom", fontsize=7,
                    bbox={"fc": "white", "ec": "none", "pad": 0.5})  # fmt: skip
    pred = " (predicted)" if any(r.get("predicted_length") for r in rows) else ""
    ax.set(ylabel="speed-up over greedy (cached forward)",
           title=f"{title}\non the bars: tokens/forward{pred}")  # fmt: skip
    ax.title.set_fontsize(10)
    ax.set_ylim(0, 1.2 * max(r["speedup"] for r in rows))
    if opt:
        x = [r["nodes"] for r in opt]
        ax2.plot(x, [r["speedup"] for r in opt], "o-", color="tab:blue", label="speed-up")
        if opt_step:
            ax2.plot([r["nodes"] for r in opt_step], [r["speedup"] for r in opt_step], "o--",
                     color="tab:orange", label="speed-up, one graph a step")  # fmt: skip
        ax2.plot(x, [r["mean_accepted_length"] for r in opt], "s-", color="tab:green",
                 label="tokens/forward, measured")  # fmt: skip
        if all(r["predicted_length"] is not None for r in opt):
            ax2.plot(x, [r["predicted_length"] for r in opt], "s--", color="tab:green",
                     alpha=0.6, label="tokens/forward, predicted")  # fmt: skip
        ax2.plot(x, [r["tree_overhead"] for r in opt], "^-", color="tab:red",
                 label="tree overhead (x one-token forward)")  # fmt: skip
        ax2.axhline(1.0, color="k", lw=1, ls="--")
        ax2.set(xlabel="tree nodes (base token included)", title="optimal trees by size",
                ylabel="speed-up / tokens per forward / overhead")  # fmt: skip
        ax2.title.set_fontsize(10)
        ax2.set_xticks(x)
        ax2.grid(alpha=0.3)
        # below the axes: the four curves fill the panel's height between them
        ax2.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    fig.tight_layout()
    ctx.savefig(fig, "medusa_bench.png")
