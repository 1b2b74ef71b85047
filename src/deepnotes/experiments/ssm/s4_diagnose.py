"""`deepnotes run s4-diagnose`: why S4D did not learn ListOps, one candidate at a time.

On a short ListOps (T <= 300, so that a run takes about a minute on one CPU thread) the same
encoder classifier as `listops` is trained with softmax attention and with S4D under
variants that each change one suspect (docs/ssm.md, "Why S4D did not learn ListOps"):

- `softmax`, `softmax-fast`: attention at the default lr and at `recipe_lr`, the yardsticks;
- `s4d`: the `listops` default: bidirectional, Δ in [1e-3, 1e-1], padding masked, pre-norm
  blocks with an MLP, one AdamW setting (lr, weight decay) for every parameter;
- `s4d-causal`: the unidirectional form (is the bidirectional form broken?);
- `s4d-dt-long`: Δ in [1e-4, 1e-2] (timescales 10x longer: does the memory reach far enough?);
- `s4d-nomask`: padding neither masked nor left out of the pooling;
- `s4d-ssm-groups`: S4's optimizer groups: A, B, log Δ at `ssm_lr` without weight decay, the
  rest at `recipe_lr` with weight decay;
- `s4d-recipe`: those groups plus S4's LRA block (post-norm, no MLP).

A second part measures the plateau behind it on delayed recall (`recall_*` fields): a class
token repeated over the first k positions, read out at the last position T - k steps later;
k = 1 is the ListOps situation (one token, the outermost operator, decides much of the
answer), k = 32 gives the kernel's tail k times the signal; Δ fixed at 0.5 is a local model.

Per ListOps run it records the loss / accuracy curves, the gradient norms of A, B, C and log Δ (and
of all other parameters) through training, how far each moved from its initial value, and
the trained kernels' effective length (the lag holding 90% of |K|'s mass).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

import deepnotes.mixers as M
from deepnotes.data.batches import random_batches
from deepnotes.data.synthetic import LISTOPS_VOCAB, PAD
from deepnotes.experiments.ssm.listops import (
    ListOpsConfig,
    accuracy,
    first_op_baseline,
    generate,
    tag_ssm_params,
)
from deepnotes.jobs import Context, Result, experiment
from deepnotes.models.seqmodel import SeqModel, SeqModelConfig
from deepnotes.train import TrainConfig, Trainer

# variant -> changes against the `listops` default (see the module docstring)
VARIANTS: dict[str, dict] = {
    "softmax": {"mixer": "softmax"},
    "softmax-fast": {"mixer": "softmax", "lr": "recipe"},
    "s4d": {},
    "s4d-causal": {"causal": True},
    "s4d-dt-long": {"dt_min": 1e-4, "dt_max": 1e-2},
    "s4d-nomask": {"mask": False},
    "s4d-ssm-groups": {"groups": True},
    "s4d-recipe": {"groups": True, "prenorm": False, "mlp": False},
}
# parameter families of an S4D layer, by attribute name
FAMILIES = {"A": ("log_A_real", "A_imag"), "B": ("B",), "C": ("C",), "log_dt": ("log_dt",)}


@dataclass
class S4DiagnoseConfig:
    variants: list[str] = field(
        default_factory=lambda: ["softmax", "softmax-fast", "s4d", "s4d-causal", "s4d-dt-long",
                                 "s4d-nomask", "s4d-ssm-groups", "s4d-recipe"]
    )  # fmt: skip # names from VARIANTS
    min_len: int = 100  # shortest sequence (exclusive)
    max_len: int = 300  # longest sequence (exclusive); padded to this
    max_depth: int = 10  # LRA's tree depth limit
    train_examples: int = 2000  # generated training examples
    eval_examples: int = 300  # held-out examples
    d_model: int = 32  # width
    n_layers: int = 2  # blocks
    d_state: int = 16  # S4D state size N
    steps: int = 300  # optimizer steps per run
    batch_size: int = 16  # sequences per step
    lr: float = 1e-3  # AdamW peak lr of the `listops` default (every parameter)
    weight_decay: float = 0.05  # decoupled weight decay of the `listops` default
    recipe_lr: float = 4e-3  # lr of the non-SSM parameters in the *-groups / recipe variants
    ssm_lr: float = 1e-3  # lr of A, B, log Δ in the *-groups / recipe variants (S4: 1e-3)
    warmup: int = 25  # linear warm-up steps
    log_every: int = 10  # steps between loss / gradient-norm records
    eval_every: int = 50  # steps between held-out evaluations
    threads: int = 1  # torch CPU threads (the machine is shared)
    recall_T: int = 300  # delayed recall: sequence length (0 = skip this part)
    recall_blocks: list[int] = field(default_factory=lambda: [1, 32])  # class-token repeats k
    recall_steps: int = 150  # optimizer steps per delayed-recall run (batch 16, lr 1e-2)


@experiment(
    "s4-diagnose",
    "why S4D did not learn ListOps: kernels, gradient norms, curves and one-suspect ablations",
    S4DiagnoseConfig,
    presets={
        "smoke": {
            "variants": ["softmax", "s4d-recipe"], "min_len": 10, "max_len": 48,
            "max_depth": 4, "train_examples": 32, "eval_examples": 16, "d_model": 16,
            "n_layers": 1, "d_state": 4, "steps": 4, "batch_size": 4, "warmup": 1,
            "log_every": 2, "eval_every": 2, "recall_T": 40, "recall_blocks": [4],
            "recall_steps": 3,
        },
    },
)  # fmt: skip
def run_s4_diagnose(cfg: S4DiagnoseConfig, ctx: Context) -> Result:
    unknown = [v for v in cfg.variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"s4-diagnose: unknown variants {unknown}; valid: {list(VARIANTS)}")
    torch.set_num_threads(cfg.threads)
    lcfg = ListOpsConfig(min_len=cfg.min_len, max_len=cfg.max_len, max_depth=cfg.max_depth)
    data = (*generate(lcfg, cfg.train_examples, 2 * ctx.seed),
            *generate(lcfg, cfg.eval_examples, 2 * ctx.seed + 1))  # fmt: skip
    majority = Counter(data[1].tolist()).most_common(1)[0][0]
    baseline = (data[3] == majority).float().mean().item()
    first_op = first_op_baseline(*data)
    runs, bar = {}, ctx.progress(total=len(cfg.variants), desc="s4-diagnose")
    for name in cfg.variants:
        runs[name] = train_variant(cfg, VARIANTS[name], data, ctx.seed)
        bar.set_postfix_str(f"{name} acc={runs[name]['acc']:.3f}")
        bar.update(1)
    bar.close()
    recall = []
    for k in cfg.recall_blocks if cfg.recall_T else []:
        recall += [run_recall(cfg.recall_T, k, cfg.recall_steps, local) for local in (False, True)]
    metrics_recall = {f"recall_acc/k={r['k']}{' local' if r['local'] else ''}": r["acc"]
                      for r in recall}  # fmt: skip
    if runs:
        _plot_curves(ctx, runs, baseline, first_op)
    if recall:
        _plot_recall(ctx, recall)
    _plot_ssm(ctx, runs)
    rows = [{"variant": n, **{k: v for k, v in r.items() if not isinstance(v, list | dict)},
             **{f"moved_{k}": v for k, v in r.get("moved", {}).items()}}
            for n, r in runs.items()]  # fmt: skip
    metrics = {f"acc/{n}": r["acc"] for n, r in runs.items()}
    metrics["majority_baseline"] = baseline
    metrics["first_op_baseline"] = first_op
    metrics.update(metrics_recall)
    metrics["recall"] = recall
    metrics["runs"] = runs  # curves, gradient norms, kernel lengths: the evidence in full
    notes = [
        f"ListOps {cfg.min_len} < L < {cfg.max_len} (padded to {cfg.max_len}), "
        f"{cfg.train_examples} training examples, {cfg.steps} steps x {cfg.batch_size}, "
        f"d_model {cfg.d_model}, {cfg.n_layers} layers, N = {cfg.d_state}; majority class "
        f"{baseline:.3f}; outermost operator alone (token 0 -> its most common label) "
        f"{first_op:.3f}",
        "moved_X: ||X - X_init|| / ||X_init|| after training; kernel_len90: median over "
        "channels of the lag holding 90% of |K| (init -> trained), of T = max_len",
    ]
    columns = ["variant", "acc", "eval_loss", "final_loss", "kernel_len90_init", "kernel_len90",
               "moved_A", "moved_B", "moved_C", "moved_log_dt", "train_s"]  # fmt: skip
    return Result(metrics=metrics, table=rows, columns=columns, notes=notes)


class LastReadout(nn.Module):
    """tokens [B, T] -> Embedding -> S4D (bidirectional) -> logits [B, 4] at the last position."""

    def __init__(self, **s4d_kw) -> None:
        super().__init__()
        self.embed = nn.Embedding(5, 16)
        self.mix = M.build("s4d", 16, causal=False, d_state=8, **s4d_kw)
        self.head = nn.Linear(16, 4)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.mix(self.embed(tokens))[:, -1])


def delayed_recall(n: int, T: int, k: int, g: torch.Generator):
    """tokens [n, T]: the class (1..4) over positions < k, then blanks (0); labels [n]."""
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.zeros(n, T, dtype=torch.long)  # 0 = blank (its embedding is learned too)
    x[:, :k] = (y + 1)[:, None]
    return x, y


def train_recall(T: int, k: int, steps: int, **s4d_kw) -> tuple[float, list[float]]:
    """Delayed recall with AdamW at lr 1e-2 on every parameter: (held-out acc, losses)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = LastReadout(**s4d_kw)

    def loss_fn(m, batch):
        return F.cross_entropy(m(batch[0]), batch[1])

    cfg = TrainConfig(steps=steps, lr=1e-2, warmup=5, weight_decay=0.0, progress=False,
                      log_interval=10)  # fmt: skip
    tr = Trainer(model, cfg, lambda: delayed_recall(16, T, k, g), loss_fn=loss_fn)
    tr.fit(reseed=False)
    x, y = delayed_recall(200, T, k, g)
    with torch.no_grad():
        acc = (model(x).argmax(-1) == y).float().mean().item()
    return acc, [h["loss"] for h in tr.history]


def run_recall(T: int, k: int, steps: int, local: bool) -> dict:
    kw = {"dt_min": 0.5, "dt_max": 0.5} if local else {}
    acc, losses = train_recall(T, k, steps, **kw)
    return {"T": T, "k": k, "lag": T - k, "local": local, "steps": steps, "acc": acc,
            "loss": losses}  # fmt: skip


def build(cfg: S4DiagnoseConfig, spec: dict) -> SeqModel:
    mixer = spec.get("mixer", "s4d")
    kw = {}
    if mixer == "s4d":
        kw = {"d_state": cfg.d_state, "dt_min": spec.get("dt_min", 1e-3),
              "dt_max": spec.get("dt_max", 1e-1)}  # fmt: skip
    mcfg = SeqModelConfig(
        vocab_size=len(LISTOPS_VOCAB), n_classes=10, d_model=cfg.d_model,
        n_layers=cfg.n_layers, mixer=mixer, mixer_kwargs=kw, causal=spec.get("causal", False),
        max_len=cfg.max_len, prenorm=spec.get("prenorm", True), mlp=spec.get("mlp", True),
    )  # fmt: skip
    return SeqModel(mcfg)


def ssm_layers(model) -> list:
    return [m for m in model.mixers if hasattr(m, "log_A_real")]


def family_params(model) -> dict[str, list[torch.nn.Parameter]]:
    """A, B, C, log_dt of every S4D layer, and every other parameter ("rest")."""
    out: dict[str, list] = {k: [] for k in (*FAMILIES, "rest")}
    seen = set()
    for layer in ssm_layers(model):
        for fam, names in FAMILIES.items():
            for n in names:
                p = getattr(layer, n)
                out[fam].append(p)
                seen.add(id(p))
    out["rest"] = [p for p in model.parameters() if id(p) not in seen]
    return {k: v for k, v in out.items() if v}


def _norm(ts) -> float:
    return math.sqrt(sum(float(t.detach().double().square().sum()) for t in ts))


@torch.no_grad()
def kernel_len90(model, T: int) -> float | None:
    """Median over layers, directions and channels of the lag where |K| reaches 90% of its
    mass over T taps; None for a model without S4D layers."""
    lens = []
    for layer in ssm_layers(model):
        K = layer.fft_kernels(T).abs().double()  # [n_dir, H, T]
        frac = K.cumsum(-1) / K.sum(-1, keepdim=True).clamp_min(1e-30)
        lens.append((frac < 0.9).sum(-1).flatten().float())
    return float(torch.cat(lens).median()) if lens else None


@torch.no_grad()
def kernel_profile(model, T: int) -> list[float] | None:
    """Median over channels of |K_j| / max_j |K_j|, j < T (first S4D layer, forward half)."""
    layers = ssm_layers(model)
    if not layers:
        return None
    K = layers[0].fft_kernels(T)[0].abs()
    return (K / K.amax(-1, keepdim=True).clamp_min(1e-30)).median(0).values.tolist()


def train_variant(cfg: S4DiagnoseConfig, spec: dict, data, seed: int) -> dict:
    x, y, xv, yv = (t.long() if t.dtype == torch.uint8 else t for t in data)
    torch.manual_seed(seed)
    model = build(cfg, spec)
    lr = cfg.recipe_lr if spec.get("lr") == "recipe" else cfg.lr
    if spec.get("groups"):
        tag_ssm_params(model, lr=cfg.ssm_lr)
        lr = cfg.recipe_lr
    fams = family_params(model)
    init = {k: [p.detach().clone() for p in v] for k, v in fams.items()}
    k_init, prof_init = kernel_len90(model, cfg.max_len), kernel_profile(model, cfg.max_len)
    use_mask = spec.get("mask", True)

    def loss_fn(m, batch):
        xb, yb = batch
        logits = m(xb, xb != PAD if use_mask else None)
        return F.cross_entropy(logits.float(), yb), {
            "acc": (logits.argmax(-1) == yb).float().mean()
        }

    def on_log(trainer, entry):  # gradients of the step just taken (clipped at 1 in total)
        for k, v in fams.items():
            entry[f"grad_{k}"] = _norm(p.grad for p in v if p.grad is not None)

    def eval_fn(m):
        if not use_mask:  # the same model as trained: padding included
            logits = torch.cat([m(xv[i : i + 100]) for i in range(0, len(xv), 100)]).float()
            return {"acc": (logits.argmax(-1) == yv).float().mean().item(),
                    "loss": F.cross_entropy(logits, yv).item()}  # fmt: skip
        return accuracy(m, xv, yv, batch=100)

    tcfg = TrainConfig(
        steps=cfg.steps, batch_size=cfg.batch_size, lr=lr, warmup=cfg.warmup,
        weight_decay=cfg.weight_decay, log_interval=cfg.log_every,
        eval_interval=cfg.eval_every, seed=seed, progress=False,
    )  # fmt: skip
    batches = random_batches(x, y, batch_size=cfg.batch_size, seed=seed)
    trainer = Trainer(model, tcfg, batches, eval_fn=eval_fn, loss_fn=loss_fn, on_log=on_log)
    t0 = time.perf_counter()
    trainer.fit(reseed=False)
    hist = trainer.history
    moved = {k: _norm(p - q for p, q in zip(v, init[k], strict=True)) / max(_norm(init[k]), 1e-30)
             for k, v in fams.items()}  # fmt: skip
    return {
        "acc": trainer.last_eval["acc"], "eval_loss": trainer.last_eval["loss"],
        "final_loss": hist[-1]["loss"], "train_s": round(time.perf_counter() - t0, 1),
        "kernel_len90_init": k_init, "kernel_len90": kernel_len90(model, cfg.max_len),
        "moved": moved, "kernel_profile_init": prof_init,
        "kernel_profile": kernel_profile(model, cfg.max_len),
        "groups": [{"name": g.get("name"), "lr": g["initial_lr"], "weight_decay":
                    g["weight_decay"], "n": sum(p.numel() for p in g["params"])}
                   for g in trainer.optimizer.param_groups],
        "history": [{k: v for k, v in h.items() if k in ("step", "loss", "acc", "eval_acc",
                     "eval_loss", "grad_norm", "lr") or k.startswith("grad_")} for h in hist],
    }  # fmt: skip


def _plot_curves(ctx, runs, baseline, first_op):
    fig, (a1, a2) = ctx.figure(1, 2, figsize=(11, 4))
    for name, r in runs.items():
        h = r["history"]
        (line,) = a1.plot([e["step"] for e in h], [e["loss"] for e in h], label=name)
        ev = [e for e in h if "eval_acc" in e]
        a2.plot([e["step"] for e in ev], [e["eval_acc"] for e in ev], "o-", ms=3,
                color=line.get_color(), label=name)  # fmt: skip
    a1.axhline(math.log(10), color="k", ls=":", lw=1)
    a1.annotate(
        "ln 10 (uniform)",
        (1.0, math.log(10)),
        xycoords=("axes fraction", "data"),
        xytext=(-2, 2),
        textcoords="offset points",
        ha="right",
        va="bottom",
        fontsize=8,
    )
    a1.set(xlabel="optimizer step", ylabel="training loss (mean of 10 steps)",
           title="Training loss")  # fmt: skip
    a2.axhline(baseline, color="k", ls="--", lw=1, label="majority class")
    if first_op is not None:  # older results did not record it
        a2.axhline(first_op, color="k", ls=":", lw=1, label="outermost operator alone")
    a2.set(xlabel="optimizer step", ylabel="held-out accuracy", title="Held-out accuracy")
    for a in (a1, a2):
        a.grid(alpha=0.3)
    # one legend beside the panels: inside, the curves (which fill both) ran through it
    a2.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    ctx.savefig(fig, "s4_diagnose_curves.png")


def _plot_ssm(ctx, runs):
    from deepnotes.utils.plot import log_ticks

    ssm = {n: r for n, r in runs.items() if r["kernel_profile"] is not None}
    if not ssm:
        return
    fig, (a1, a2) = ctx.figure(1, 2, figsize=(11, 4))
    first = next(iter(ssm.values()))
    a1.semilogy(first["kernel_profile_init"], "k--", lw=1, label="at init")
    for name, r in ssm.items():
        a1.semilogy(r["kernel_profile"], lw=1, label=f"{name} (trained)")
    a1.set(xlabel="lag j (tokens)", ylabel="median over channels of |K_j| / max |K|",
           title="S4D kernels, layer 1, forward half")  # fmt: skip
    base = ssm.get("s4d", first)
    for fam in (*FAMILIES, "rest"):
        h = [e for e in base["history"] if f"grad_{fam}" in e]
        a2.semilogy([e["step"] for e in h], [e[f"grad_{fam}"] for e in h], label=fam)
    name = "s4d" if "s4d" in ssm else next(iter(ssm))
    a2.set(xlabel="optimizer step", ylabel="gradient L2 norm (after clipping at 1)",
           title=f"Gradient norms by parameter family ({name})")  # fmt: skip
    for a in (a1, a2):
        log_ticks(a, "y")
        a.grid(alpha=0.3, which="major")
    a1.legend(fontsize=8)
    a2.legend(fontsize=8, ncol=5, loc="center")  # in the gap between "rest" and the SSM params
    ctx.savefig(fig, "s4_diagnose_ssm.png")


def _plot_recall(ctx, recall):
    fig, ax = ctx.figure(figsize=(9, 4))
    for r in recall:
        kind = "local (dt = 0.5)" if r["local"] else "S4D"
        ax.plot([10 * (i + 1) for i in range(len(r["loss"]))], r["loss"], ls=":" if r["local"]
                else "-", label=f"{kind}, k = {r['k']} (acc {r['acc']:.2f})")  # fmt: skip
    ax.axhline(math.log(4), color="k", lw=1, ls="--", label="ln 4 (chance)")
    T = recall[0]["T"]
    ax.set(xlabel="optimizer step (batch 16, lr 1e-2)", ylabel="training loss",
           title=f"Delayed recall over T = {T}: class over the first k tokens")  # fmt: skip
    ax.grid(alpha=0.3)
    # beside the axes: inside, wherever it went, a falling curve ran through it
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    ctx.savefig(fig, "s4_diagnose_recall.png")
