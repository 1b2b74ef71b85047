"""`deepnotes run listops`: every mixer, bidirectional, on generated Long Range Arena ListOps.

Data: LRA's ListOps generator (`deepnotes.data.synthetic.listops`: nested [MAX, [MIN, [MED,
[SM over digits, 10 classes), sequences of min_len < L < max_len tokens, padded to max_len
(>= 1000). Model: `deepnotes.models.seqmodel.SeqModel` (embedding + learned positions,
n_layers x [mixer + MLP], mean pooling over real tokens, linear head), each mixer with
causal=False. Accuracy on held-out examples, beside the majority-class baseline and, for
orientation only, the numbers published for the closest model (quoted, not measured here;
LRA's ListOps config trains 5,000 steps of 32 at width 512, 6 layers, on 96k examples).
`--budget gpu` trains all 13 mixers on one GPU, 7 at a time, each time-capped.
"""

from __future__ import annotations

import inspect
from collections import Counter
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

import deepnotes.mixers as M
from deepnotes.data.batches import random_batches
from deepnotes.data.synthetic import LISTOPS_VOCAB, PAD, listops
from deepnotes.experiments.ssm.common import (
    RUN_COLUMNS,
    collect_rows,
    failed_row,
    fit_row,
    fit_task,
)
from deepnotes.jobs import Context, Result, experiment
from deepnotes.models.seqmodel import SeqModel, SeqModelConfig
from deepnotes.train import TrainConfig
from deepnotes.utils.pool import map_runs, shareable, shared

LRA = "Tay et al. 2021 (LRA), Table 1"
# mixer -> (published model, ListOps accuracy %, source). Quoted for orientation only.
QUOTED = {
    "softmax": ("Transformer", 36.37, LRA),
    "linear": ("Linear Transformer", 16.13, LRA),
    "performer": ("Performer", 18.01, LRA),
    "linformer": ("Linformer", 35.70, LRA),
    "sliding_window": ("Local Attention", 15.82, LRA),
    "strided_sparse": ("Sparse Transformer", 17.07, LRA),
    "s4": ("S4", 59.60, "Gu, Goel, Re 2022 (S4), Table 4"),
    "s4d": ("S4D-LegS", 60.47, "Gu, Gupta, Goel, Re 2022 (S4D)"),
}
SSM_MIXERS = ("s4d", "s4", "mamba")


@dataclass
class ListOpsConfig:
    mixers: list[str] = field(
        default_factory=lambda: ["softmax", "linear", "s4d", "s4", "mamba"]
    )  # a representative set on CPU; --mixers all = every registered mixer
    min_len: int = 500  # shortest sequence (exclusive), as LRA
    max_len: int = 1024  # longest sequence (exclusive); sequences are padded to this
    max_depth: int = 10  # LRA's tree depth limit
    max_args: int = 10  # LRA's operands per operator limit
    train_examples: int = 2000  # generated training examples (LRA: 96k)
    eval_examples: int = 200  # held-out examples
    d_model: int = 32  # width (CPU-sized; the gpu preset uses 128)
    n_layers: int = 2  # blocks
    ssm_state: int = 16  # d_state of s4d / s4 / mamba
    steps: int = 60  # optimizer steps (CPU-sized: a pipeline check, far from converged)
    batch_size: int = 8  # sequences per step
    lr: float = 1e-3  # AdamW peak learning rate
    weight_decay: float = 0.05  # decoupled weight decay
    warmup: int = 30  # warm-up steps
    time_budget_s: float = 0.0  # optional training wall-clock cap of the whole job (0 = none)
    precision: str = "fp32"  # fp32 | bf16 (autocast, fp32 master weights; the gpu preset)
    workers: int = 1  # mixers trained at once in spawned processes (1 = in this process)
    strict: bool = True  # a run that raises stops the job (False: recorded as an error row)


def chosen(cfg: ListOpsConfig) -> list[str]:
    names = M.names() if cfg.mixers == ["all"] else list(cfg.mixers)
    for n in names:
        if not M.get(n).supports_noncausal:
            raise ValueError(f"listops: mixer {n!r} has no bidirectional mode")
    return names


def mixer_kwargs(name: str, cfg: ListOpsConfig) -> dict:
    kw = {"d_state": cfg.ssm_state} if name in SSM_MIXERS else {}
    params = set()
    for klass in M.get(name).__mro__:
        if "__init__" in vars(klass):
            params |= set(inspect.signature(klass.__init__).parameters)
    if "max_len" in params:  # Linformer projects a fixed length
        kw["max_len"] = cfg.max_len
    return kw


def classify_loss(model, batch):
    x, y = batch
    logits = model(x, x != PAD)
    loss = F.cross_entropy(logits.float(), y)
    return loss, {"acc": (logits.argmax(-1) == y).float().mean()}


@torch.no_grad()
def accuracy(model, x, y, batch: int = 50) -> dict:
    hits, loss = 0, 0.0
    for i in range(0, x.shape[0], batch):
        xb, yb = x[i : i + batch], y[i : i + batch]
        logits = model(xb, xb != PAD).float()
        hits += (logits.argmax(-1) == yb).sum().item()
        loss += F.cross_entropy(logits, yb, reduction="sum").item()
    return {"acc": hits / x.shape[0], "loss": loss / x.shape[0]}


@experiment(
    "listops",
    "every mixer (bidirectional) on generated LRA ListOps (length >= 1000), with LRA's numbers",
    ListOpsConfig,
    presets={
        "smoke": {
            "mixers": ["softmax", "s4d"],
            "min_len": 10,
            "max_len": 64,
            "max_depth": 4,
            "train_examples": 16,
            "eval_examples": 8,
            "d_model": 16,
            "n_layers": 1,
            "steps": 2,
            "batch_size": 4,
            "warmup": 1,
            "time_budget_s": 0.0,
        },
        "gpu": {  # one H100 in about 3 minutes (docs/ssm.md)
            "mixers": ["all"],
            "max_len": 2000,
            "train_examples": 16000,
            "eval_examples": 1000,
            "d_model": 128,
            "n_layers": 4,
            "ssm_state": 64,
            "steps": 1500,
            "batch_size": 32,
            "lr": 1e-3,
            "warmup": 150,
            "precision": "bf16",
            "workers": 7,
            "time_budget_s": 140.0,
            "strict": False,
        },
    },
)
def run_listops(cfg: ListOpsConfig, ctx: Context) -> Result:
    mixers = chosen(cfg)
    ctx.log(f"generating {cfg.train_examples} + {cfg.eval_examples} ListOps examples")
    x, y = generate(cfg, cfg.train_examples, 2 * ctx.seed)
    xv, yv = generate(cfg, cfg.eval_examples, 2 * ctx.seed + 1)
    majority = Counter(y.tolist()).most_common(1)[0][0]
    baseline = (yv == majority).float().mean().item()
    workers = max(1, min(cfg.workers, len(mixers)))
    waves = -(-len(mixers) // workers)  # runs per worker, rounded up
    per_run = cfg.time_budget_s / waves if cfg.time_budget_s > 0 else None
    with shareable((x, y, xv, yv), workers) as data:
        calls = [(cfg, name, ctx.seed, str(ctx.device), per_run, data) for name in mixers]
        rows = collect_rows(ctx, train_mixer, calls, workers, "listops",
                            lambda row: f"{row['mixer']} acc={row['acc']}")  # fmt: skip
    rows.sort(key=lambda r: mixers.index(r["mixer"]))
    _plot(ctx, rows, baseline)
    sources = sorted({q[2] for n, q in QUOTED.items() if n in mixers})
    notes = [
        f"padded length {cfg.max_len} (sequences of {cfg.min_len} < L < {cfg.max_len} tokens); "
        f"{cfg.train_examples} training examples; {cfg.steps} steps x {cfg.batch_size}; "
        f"d_model {cfg.d_model}, {cfg.n_layers} layers, {cfg.precision}; majority-class "
        f"baseline {baseline:.3f}",
        "quoted_acc: published ListOps accuracy of the closest model (QUOTED, not measured "
        "here; the published models trained far longer on 96k examples): " + "; ".join(sources),
    ]
    if per_run is not None:
        capped = sum(r["capped"] for r in rows)
        notes.append(f"time-capped: {per_run:.0f} s of training per mixer; {capped} of "
                     f"{len(rows)} runs stopped before {cfg.steps} steps")  # fmt: skip
    errors = [r for r in rows if r["status"] != "ok"]
    if errors:
        notes.append(f"{len(errors)} run(s) failed: " + "; ".join(
            f"{r['mixer']}: {r['status']}" for r in errors))  # fmt: skip
    metrics = {f"acc/{r['mixer']}": r["acc"] for r in rows}
    metrics["majority_baseline"] = baseline
    return Result(
        metrics=metrics,
        table=rows,
        columns=["mixer", *RUN_COLUMNS, "quoted_model", "quoted_acc"],
        notes=notes,
    )


CHUNK = 250  # examples per generator call (fixed, so the data do not depend on workers)


def _listops_chunk(n, min_len, max_len, max_depth, max_args, seed, pad_to):
    return listops(n, min_len, max_len, max_depth=max_depth, max_args=max_args, seed=seed,
                   pad_to=pad_to)  # fmt: skip


def generate(cfg: ListOpsConfig, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n examples, generated in chunks of CHUNK (over `cfg.workers` processes) and joined."""
    calls = [
        (min(CHUNK, n - k), cfg.min_len, cfg.max_len, cfg.max_depth, cfg.max_args,
         seed * 100_003 + k // CHUNK, cfg.max_len)
        for k in range(0, n, CHUNK)
    ]  # fmt: skip
    parts = dict(map_runs(_listops_chunk, calls, min(cfg.workers, len(calls))))
    x = torch.cat([parts[i][0] for i in range(len(calls))])
    y = torch.cat([parts[i][1] for i in range(len(calls))])
    return x.to(torch.uint8), y  # 20 token ids: uint8 keeps the shared copy small


def train_mixer(cfg: ListOpsConfig, name, seed, device, max_seconds, data) -> dict:
    """Train one mixer from scratch on the shared data; its table row."""
    x, y, xv, yv = shared(data)
    quoted = QUOTED.get(name)
    row = {"mixer": name, "quoted_model": quoted[0] if quoted else None,
           "quoted_acc": quoted[1] / 100 if quoted else None}  # fmt: skip
    try:
        torch.manual_seed(seed)
        mcfg = SeqModelConfig(
            vocab_size=len(LISTOPS_VOCAB), n_classes=10, d_model=cfg.d_model,
            n_layers=cfg.n_layers, mixer=name, mixer_kwargs=mixer_kwargs(name, cfg),
            causal=False, max_len=cfg.max_len,
        )  # fmt: skip
        model = SeqModel(mcfg).to(device)
        tcfg = TrainConfig(
            steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, warmup=cfg.warmup,
            weight_decay=cfg.weight_decay, precision=cfg.precision, seed=seed, progress=False,
        )  # fmt: skip
        draw = random_batches(x, y, batch_size=cfg.batch_size, seed=seed, device=device)

        def batches():
            xb, yb = draw()
            return xb.long(), yb  # token ids travel as uint8

        xv, yv = xv.to(device).long(), yv.to(device)
        fit = fit_task(
            model, tcfg, batches, loss_fn=classify_loss,
            eval_fn=lambda m: accuracy(m, xv, yv), max_seconds=max_seconds,
        )  # fmt: skip
    except Exception as e:  # noqa: BLE001 - strict=False records it in the table
        if cfg.strict:
            raise
        return failed_row(row, e)
    return fit_row(row, fit)


def _plot(ctx, rows, baseline):
    fig, ax = ctx.figure(figsize=(max(6, 0.8 * len(rows) + 2), 4))
    names = [r["mixer"] for r in rows]
    pos = range(len(rows))
    ax.bar([p - 0.2 for p in pos], [r["acc"] or 0.0 for r in rows], 0.4, label="measured")
    quoted = [(p, r["quoted_acc"]) for p, r in zip(pos, rows, strict=True) if r["quoted_acc"]]
    ax.bar([p + 0.2 for p, _ in quoted], [q for _, q in quoted], 0.4, alpha=0.5,
           label="published (quoted, longer training)")  # fmt: skip
    ax.axhline(baseline, color="k", ls="--", lw=1, label="majority class")
    ax.set_xticks(list(pos), names, rotation=30, ha="right")
    ax.set(ylabel="ListOps accuracy", ylim=(0, 1), title="ListOps, bidirectional mixers")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    ctx.savefig(fig, "listops_accuracy.png")
