"""`deepnotes run attention-scaling`: why attention divides q.k by sqrt(d), and how T5 does
without it.

The argument (the notes' "为什么除以√d"; Su, kexue.fm 8620): if the d components of q and k
are independent with mean 0 and variance 1 (what fan-in init and a norm before the
projection give), q.k = sum_i q_i k_i is a sum of d terms of variance 1, so Var(q.k) = d.
Logits with standard deviation sqrt(d) (32 at d = 1024) push the softmax to a one-hot
row: its gradient p (1 - p) vanishes and training stalls. Dividing by sqrt(d) restores
Var = 1. T5 drops the division but draws W_q with an extra 1/sqrt(d) (see
`deepnotes.layers.init`), which gives the same Var(q.k) = 1 at init.

Part 1 measures Var(q.k) and the entropy of a softmax row at init for d = 64 .. 1024:
independent unit Gaussians (the theory's assumption), and q, k from freshly initialised
projections of normalised inputs under each init. Part 2 trains the same small byte-level
LM with fan-in init with and without 1/sqrt(d), with T5's init, and with normal(0.02)
(GPT-2), and records loss and attention-row entropy during training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from deepnotes.data.text import cached_text
from deepnotes.experiments.lm.common import (
    SMOKE_LM,
    plot_curves,
    train_config,
    train_lm,
)
from deepnotes.jobs import Context, Result, experiment
from deepnotes.layers.init import init_std
from deepnotes.mixers.softmax import SoftmaxAttention
from deepnotes.models.lm import LMConfig, build_lm
from deepnotes.utils.io import atomic_write_json
from deepnotes.utils.plot import few_series_styles

# name -> (init scheme, attention_scale): None = 1/sqrt(d_head), 1.0 = no division
VARIANTS = {
    "fan-in, q.k/sqrt(d)": ("lecun", None),
    "fan-in, q.k (no 1/sqrt(d))": ("lecun", 1.0),
    "T5 init, q.k (no 1/sqrt(d))": ("t5", 1.0),
    "normal(0.02), q.k/sqrt(d)": ("normal", None),
    "normal(0.02), q.k (no 1/sqrt(d))": ("normal", 1.0),
}


@dataclass
class AttentionScalingConfig:
    dims: list[int] = field(default_factory=lambda: [64, 128, 256, 512, 1024])  # head dims d
    samples: int = 4096  # (q, k) pairs per variance estimate
    keys: int = 256  # keys per softmax row for the entropy at init
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))  # training runs
    corpus: str = "kjv"  # byte-level text (DESIGN.md: offline corpora)
    d_model: int = 128  # LM width
    n_heads: int = 1  # head dim 128: large enough for the unscaled logits to saturate
    n_layers: int = 2  # LM depth
    seq_len: int = 128  # training window
    batch_size: int = 16  # sequences per step
    steps: int = 300  # optimizer steps per run
    lr: float = 2e-3  # AdamW peak lr (small model, short run)
    warmup: int = 30  # linear warm-up steps (0 = none)
    eval_every: int = 50  # steps between evaluations
    eval_batches: int = 8  # validation batches per evaluation
    max_docs: int | None = None  # first documents of the corpus only (quick runs)


def qk_stats(d: int, samples: int, keys: int, gen: torch.Generator) -> list[dict]:
    """Var(q.k) and softmax-row entropy at init for one head dim d (d_model = d, one head)."""
    rows = []
    x = torch.randn(samples, d, generator=gen, dtype=torch.float64)
    x = (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True)  # LayerNorm output
    xk = torch.randn(keys, d, generator=gen, dtype=torch.float64)
    xk = (xk - xk.mean(-1, keepdim=True)) / xk.std(-1, keepdim=True)

    def draw(sigma: float) -> torch.Tensor:
        return torch.randn(d, d, generator=gen, dtype=torch.float64) * sigma

    fan_in = init_std("lecun", d, d)
    cases = {
        # name: (q, k for pairs, k for the softmax row, scale)
        "iid N(0,1), no scale": (None, None, 1.0),
        "iid N(0,1), 1/sqrt(d)": (None, None, 1 / math.sqrt(d)),
        "fan-in init, no scale": (fan_in, fan_in, 1.0),
        "fan-in init, 1/sqrt(d)": (fan_in, fan_in, 1 / math.sqrt(d)),
        "T5 init, no scale": (fan_in / math.sqrt(d), fan_in, 1.0),
        "normal(0.02), 1/sqrt(d)": (0.02, 0.02, 1 / math.sqrt(d)),
    }
    # Var(q.k * scale) = d * Var(q_i) * Var(k_i) * scale^2, Var(q_i) = d sigma_q^2 (unit x)
    theory = {}
    for name, (sq, sk, scale) in cases.items():
        vq = 1.0 if sq is None else d * sq**2
        vk = 1.0 if sk is None else d * sk**2
        theory[name] = d * vq * vk * scale**2
    for name, (sq, sk, scale) in cases.items():
        if sq is None:
            q = torch.randn(samples, d, generator=gen, dtype=torch.float64)
            k = torch.randn(samples, d, generator=gen, dtype=torch.float64)
            kr = torch.randn(keys, d, generator=gen, dtype=torch.float64)
        else:
            Wq, Wk = draw(sq), draw(sk)
            q, k, kr = x @ Wq.T, x.roll(1, 0) @ Wk.T, xk @ Wk.T
        s = (q * k).sum(-1) * scale
        p = torch.softmax(q[:512] @ kr.T * scale, dim=-1)
        rows.append(
            {
                "d": d,
                "case": name,
                "var_qk": s.var().item(),
                "theory": theory[name],
                "entropy": torch.special.entr(p).sum(-1).mean().item(),
                "max_p": p.max(-1).values.mean().item(),
            }
        )
    return rows


@torch.no_grad()
def attention_entropy(model, tokens: torch.Tensor) -> dict[str, float]:
    """Mean entropy (nats) and max probability of causal softmax-attention rows.

    Rows t >= 1 of every head and layer; a uniform row over t + 1 keys has entropy
    log(t + 1), reported as `attn_entropy_uniform` for reference.
    """
    captured = []
    hooks = [
        b.mixer.register_forward_pre_hook(lambda mod, args: captured.append((mod, args[0])))
        for b in model.blocks
        if isinstance(b.mixer, SoftmaxAttention)
    ]
    try:
        model(tokens)
    finally:
        for h in hooks:
            h.remove()
    if not captured:
        return {}
    ents, maxp = [], []
    for mod, h in captured:
        q, k, _ = mod.project_qkv(h.float() if h.dtype != torch.float64 else h)
        scale = mod.scale if mod.scale is not None else 1 / math.sqrt(mod.head_dim)
        s = (q.float() @ k.float().transpose(-1, -2)) * scale
        T = s.shape[-1]
        causal = torch.ones(T, T, dtype=torch.bool, device=s.device).tril()
        p = torch.softmax(s.masked_fill(~causal, float("-inf")), -1)[..., 1:, :]
        ents.append(torch.special.entr(p).sum(-1).mean())
        maxp.append(p.max(-1).values.mean())
    T = tokens.shape[1]
    uniform = torch.log(torch.arange(2, T + 1, dtype=torch.float64)).mean().item()
    return {
        "attn_entropy": torch.stack(ents).mean().item(),
        "attn_max_p": torch.stack(maxp).mean().item(),
        "attn_entropy_uniform": uniform,
    }


def _plot_init(ctx: Context, rows: list[dict], keys: int) -> None:
    """Var(q.k) and softmax-row entropy at init against head dim d, one series per case.
    Cases that coincide (the scaled ones all sit at Var = 1) stay visible through their own
    marker and line style; one legend, right of the panels, serves both."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullFormatter

    from deepnotes.utils.plot import log_ticks

    fig, (a, b) = ctx.figure(1, 2, figsize=(13, 4.6))
    cases = list(dict.fromkeys(r["case"] for r in rows))
    markers, lines = "osD^vP<>", ("-", "--", "-.", ":")
    handles = []
    for i, c in enumerate(cases):
        rs = [r for r in rows if r["case"] == c]
        ds = [r["d"] for r in rs]
        st = dict(color=f"C{i}", marker=markers[i % 8], linestyle=lines[i % 4], ms=6,
                  markerfacecolor="none" if i % 2 else f"C{i}", markeredgewidth=1.3)  # fmt: skip
        a.loglog(ds, [r["var_qk"] for r in rs], **st)
        b.semilogx(ds, [r["entropy"] for r in rs], **st)
        handles.append(Line2D([], [], label=c, **st))
    ds = sorted({r["d"] for r in rows})
    a.loglog(ds, ds, color="k", lw=2.5, alpha=0.25)
    a.loglog(ds, [1.0] * len(ds), color="k", lw=5, alpha=0.15)
    handles += [
        Line2D([], [], color="k", lw=2.5, alpha=0.25, label="theory: Var = d"),
        Line2D([], [], color="k", lw=5, alpha=0.15, label="theory: Var = 1"),
    ]
    a.set(xlabel="head dim d", ylabel="Var(q . k * scale)", title="logit variance at init")
    b.axhline(math.log(keys), color="k", ls=":", lw=1.2)
    handles.append(Line2D([], [], color="k", ls=":", lw=1.2, label=f"uniform row: log {keys}"))
    b.set(xlabel="head dim d", ylabel="entropy of a softmax row (nats)",
          title=f"softmax saturation at init ({keys} keys)")  # fmt: skip
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.set_xticks(ds, [str(d) for d in ds])
        ax.xaxis.set_minor_formatter(NullFormatter())
    log_ticks(a, "y")
    b.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=9)
    ctx.savefig(fig, "qk_variance.png")


@experiment(
    "attention-scaling",
    "Var(q.k) vs d with and without 1/sqrt(d) against theory; training with fan-in, T5 and "
    "GPT-2 inits; attention entropy",
    AttentionScalingConfig,
    presets={
        "smoke": {
            "dims": [16, 64],
            "samples": 256,
            "keys": 32,
            "variants": ["fan-in, q.k/sqrt(d)", "T5 init, q.k (no 1/sqrt(d))"],
            **SMOKE_LM,
        },
        "gpu": {
            "d_model": 512,
            "n_heads": 4,
            "n_layers": 4,
            "seq_len": 256,
            "steps": 2000,
            "batch_size": 32,
            "eval_every": 100,
            "eval_batches": 20,
            "lr": 1e-3,
        },
    },  # fmt: skip
)
def run(cfg: AttentionScalingConfig, ctx: Context) -> Result:
    unknown = sorted(set(cfg.variants) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown variants {unknown}; valid: {list(VARIANTS)}")
    gen = torch.Generator().manual_seed(ctx.seed)
    init_rows = []
    for d in ctx.progress(cfg.dims, desc="Var(q.k) at init"):
        init_rows += qk_stats(d, cfg.samples, cfg.keys, gen)
    _plot_init(ctx, init_rows, cfg.keys)

    data = cached_text(cfg.corpus, cfg.max_docs)
    runs, table = {}, []
    bar = ctx.progress(total=len(cfg.variants) * cfg.steps, desc="training")
    for name in cfg.variants:
        scheme, scale = VARIANTS[name]
        lm_cfg = LMConfig(
            vocab_size=data.vocab_size, d_model=cfg.d_model, n_layers=cfg.n_layers,
            max_len=cfg.seq_len, n_heads=cfg.n_heads, positions="rotary", norm="layernorm",
            ffn="gelu", init=scheme, attention_scale=scale,
        )  # fmt: skip
        model = build_lm(lm_cfg, ctx.device, ctx.seed)
        probe0 = next(data.val_batches(cfg.batch_size, cfg.seq_len, device=ctx.device))[0]
        ent0 = attention_entropy(model.eval(), probe0)
        tcfg = train_config(cfg, ctx.seed)
        r = train_lm(
            model, data, tcfg, eval_every=cfg.eval_every, eval_batches=cfg.eval_batches,
            extra_eval=attention_entropy, bar=bar,
        )  # fmt: skip
        runs[name] = r
        table.append(
            {
                "variant": name,
                "init": scheme,
                "scale": "1/sqrt(d)" if scale is None else "1",
                "entropy@init": ent0.get("attn_entropy"),
                "max_p@init": ent0.get("attn_max_p"),
                "val_loss": r.final.get("val_loss"),
                "val_bpb": r.final.get("val_bpb"),
                "entropy@end": r.final.get("attn_entropy"),
                "max_p@end": r.final.get("attn_max_p"),
            }
        )
    bar.close()
    plot_curves(ctx, runs, "loss_curves.png", "byte-level LM on KJV: attention scale and init")
    fig, ax = ctx.figure(figsize=(7, 4.2))
    styles = few_series_styles(list(runs))  # the loss plot's styles
    for name, r in runs.items():
        ev = [h for h in r.history if "attn_entropy" in h]
        ax.plot([h["step"] for h in ev], [h["attn_entropy"] for h in ev], ms=4,
                **styles[name], label=name)  # fmt: skip
    if runs:
        uni = next(h for h in next(iter(runs.values())).history if "attn_entropy" in h)
        ax.axhline(uni["attn_entropy_uniform"], color="k", ls=":", lw=1, label="uniform rows")
    ax.set(xlabel="step", ylabel="mean entropy of attention rows (nats)",
           title="softmax saturation during training")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center right")  # clear of the uniform-rows line at the top
    ctx.savefig(fig, "attention_entropy.png")

    by = {(r["d"], r["case"]): r for r in init_rows}
    dmax = max(cfg.dims)
    metrics = {f"var_qk_unscaled_d{d}": by[(d, "iid N(0,1), no scale")]["var_qk"] for d in cfg.dims}
    metrics.update(
        {f"var_qk_scaled_d{d}": by[(d, "iid N(0,1), 1/sqrt(d)")]["var_qk"] for d in cfg.dims}
    )
    metrics.update({f"val_loss[{row['variant']}]": row["val_loss"] for row in table})
    # every (d, case) of part 1: Var(q.k), theory, row entropy, max p
    atomic_write_json(ctx.out / "init_sweep.json", init_rows)
    notes = [
        f"at d = {dmax}: Var(q.k) = {by[(dmax, 'iid N(0,1), no scale')]['var_qk']:.1f} "
        f"unscaled (theory {dmax}), {by[(dmax, 'iid N(0,1), 1/sqrt(d)')]['var_qk']:.3f} "
        "scaled (theory 1); full sweep in init_sweep.json and qk_variance.png",
        "normal(0.02) at head dim d with d_model = d: Var = d (0.02^2 d)^2, tiny for small d",
    ]
    return Result(metrics=metrics, table=table, notes=notes, columns=list(table[0]))
