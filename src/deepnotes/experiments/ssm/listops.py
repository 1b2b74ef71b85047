"""`deepnotes run listops`: every mixer, bidirectional, on generated Long Range Arena ListOps.

Data: LRA's ListOps generator (`deepnotes.data.synthetic.listops`: nested [MAX, [MIN, [MED,
[SM over digits, 10 classes), sequences of min_len < L < max_len tokens, padded to max_len
(>= 1000). Model: `deepnotes.models.seqmodel.SeqModel` (embedding + learned positions,
n_layers x [mixer + MLP], mean pooling over real tokens, linear head), each mixer with
causal=False. Accuracy on held-out examples, beside the majority-class baseline and, for
orientation only, the numbers published for the closest model (quoted, not measured here;
LRA's ListOps config trains 5,000 steps of 32 at width 512, 6 layers, on 96k examples).
`--budget gpu` trains all 13 mixers on one GPU, 7 at a time, each time-capped.

S4's recipe (`--budget gpu-s4`, or the fields below on any budget), as in the S4 / S4D
repositories' LRA ListOps config: the SSM parameters (A, B, log Δ) at their own lr `ssm_lr`
(1e-3) without weight decay, the rest at `lr` with weight decay; cosine to zero
(`min_lr_ratio` 0); post-norm blocks (`prenorm=False`) without an MLP after the SSMs (their
layer ends in a GLU); bidirectional S4D; width 128, depth 8, N = 64, batch 50. With
`ckpt_dir` every run checkpoints and a rerun resumes it, so a long run can span several
time-capped calls; `eval_every` records held-out learning curves. `mixer_lr` gives one mixer
its own peak lr (softmax diverges at the SSMs' 4e-3 in post-norm blocks: docs/ssm.md).
`--budget cpu-s4` is the recipe scaled to two CPU cores (T < 512, d 64, 4 layers);
`scripts/listops_eval.py` scores a run's checkpoints on a fresh, larger held-out set.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

import deepnotes.mixers as M
from deepnotes.data.synthetic import LISTOPS_VOCAB, PAD, listops
from deepnotes.experiments.ssm.common import (
    RUN_COLUMNS,
    FitResult,
    collect_rows,
    failed_labels,
    failed_row,
    fit_row,
)
from deepnotes.job_checks import ConfigError
from deepnotes.jobs import Context, Result, experiment
from deepnotes.models.seqmodel import SeqModel, SeqModelConfig
from deepnotes.train import TrainConfig, Trainer
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
    mixer_lr: list[str] = field(default_factory=list)  # name=lr entries: a mixer's own peak lr
    # (e.g. softmax=1e-3); the others use lr
    weight_decay: float = 0.05  # decoupled weight decay
    warmup: int = 30  # linear warm-up steps (0 = none)
    min_lr_ratio: float = 0.1  # final lr / peak lr of the cosine (S4's recipe: 0)
    ssm_lr: float = 0.0  # own lr of SSM params (A, B, log dt), no decay (S4: 1e-3); 0 = off
    prenorm: bool = True  # x + f(Norm(x)); False: Norm(x + f(x)) as S4's LRA configs
    mlp: str = "all"  # MLP after each mixer: all | none | attention (not after s4d / s4 / mamba,
    # whose blocks end in their own gated output, as S4's LRA models)
    mamba_state: int = 0  # Mamba's d_state (0 = ssm_state; mamba_ssm's default is 16)
    eval_every: int = 0  # steps between held-out evaluations for learning curves (0 = end only)
    ckpt_dir: str = ""  # checkpoint each run under ckpt_dir/<mixer>; a rerun resumes it ("" = off)
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
    if name == "mamba" and cfg.mamba_state:
        kw["d_state"] = cfg.mamba_state
    params = set()
    for klass in M.get(name).__mro__:
        if "__init__" in vars(klass):
            params |= set(inspect.signature(klass.__init__).parameters)
    if "max_len" in params:  # Linformer projects a fixed length
        kw["max_len"] = cfg.max_len
    return kw


# The SSM parameters S4's recipe trains at their own lr without weight decay: A, B and log Δ
# of s4d / s4 (S4's `register(name, tensor, lr)`), Mamba's A_log, D and Δ bias (mamba_ssm
# keeps decay off A_log and D).
LTI_SSM_PARAMS = ("log_A_real", "A_imag", "B", "log_dt", "log_Lambda_real", "Lambda_imag", "P")


def ssm_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """A, B, log Δ of every S4D / S4 mixer in `model`; A_log, D, Δ bias of every Mamba."""
    from deepnotes.mixers.mamba import Mamba
    from deepnotes.mixers.s4 import LTISSM

    out = []
    for m in model.modules():
        if isinstance(m, LTISSM):
            out += [p for n, p in m.named_parameters(recurse=False) if n in LTI_SSM_PARAMS]
        elif isinstance(m, Mamba):
            out += [m.A_log, m.D, *(lin.bias for lin in m.dt_proj)]
    return out


def tag_ssm_params(model: torch.nn.Module, *, lr: float, weight_decay: float = 0.0) -> int:
    """Give the SSM parameters their own optimizer group (`train.optim.param_groups` reads
    `_optim`): S4's recipe. Returns how many parameters were tagged."""
    params = ssm_parameters(model)
    for p in params:
        p._optim = {"lr": lr, "weight_decay": weight_decay}
    return len(params)


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


def check_listops(cfg: ListOpsConfig) -> None:
    """Bidirectional mixers and well-formed `mixer_lr` entries, before anything runs."""
    try:
        mixers = chosen(cfg)
    except ValueError as e:
        raise ConfigError("mixers", cfg.mixers, str(e)) from None
    try:
        lrs = mixer_lrs(cfg)
    except ValueError:
        raise ConfigError("mixer_lr", cfg.mixer_lr, "entries are name=lr with lr > 0") from None
    if set(lrs) - set(mixers):
        raise ConfigError("mixer_lr", cfg.mixer_lr, f"names must be among {mixers}")


@experiment(
    "listops",
    "every mixer (bidirectional) on generated LRA ListOps (length >= 1000), with LRA's numbers",
    ListOpsConfig,
    check=check_listops,
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
        "gpu-s4": {  # S4's ListOps recipe, S4D vs softmax vs Mamba: ~6 min a call on one H200
            "mixers": ["s4d", "softmax", "mamba"],
            "max_len": 2000,
            "train_examples": 16000,
            "eval_examples": 500,
            "d_model": 128,
            "n_layers": 8,
            "ssm_state": 64,
            "mamba_state": 16,
            "steps": 3000,
            "batch_size": 50,
            "lr": 4e-3,
            # post-norm softmax (CPU) and Mamba (H200, T = 2,000) fell back from the
            # first-operator rule to the majority class at 4e-3 (docs/ssm.md)
            "mixer_lr": ["softmax=1e-3", "mamba=1e-3"],
            "ssm_lr": 1e-3,
            "weight_decay": 0.05,
            "warmup": 300,
            "min_lr_ratio": 0.0,
            "prenorm": False,
            "mlp": "attention",
            "precision": "bf16",
            "workers": 3,
            "time_budget_s": 270.0,
            "eval_every": 250,
            "ckpt_dir": "runs/listops-gpu-s4-ckpt",
            "strict": False,
        },
        "cpu-s4": {  # S4's recipe scaled to 2 CPU cores: T < 512, d 64, 4 layers (~1 h)
            "mixers": ["s4d", "softmax"],
            "min_len": 100,
            "max_len": 512,
            "train_examples": 40000,
            "eval_examples": 1000,
            "d_model": 64,
            "n_layers": 4,
            "ssm_state": 64,
            "steps": 5000,
            "batch_size": 32,
            "lr": 4e-3,
            "mixer_lr": ["softmax=1e-3"],  # post-norm softmax diverged at 4e-3 (docs/ssm.md)
            "ssm_lr": 1e-3,
            "weight_decay": 0.05,
            "warmup": 250,
            "min_lr_ratio": 0.0,
            "prenorm": False,
            "mlp": "attention",
            "workers": 2,
            "eval_every": 250,
            "ckpt_dir": "runs/listops-cpu-s4-ckpt",
            "strict": False,
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
    first_op = first_op_baseline(x, y, xv, yv)
    workers = max(1, min(cfg.workers, len(mixers)))
    waves = -(-len(mixers) // workers)  # runs per worker, rounded up
    per_run = cfg.time_budget_s / waves if cfg.time_budget_s > 0 else None
    with shareable((x, y, xv, yv), workers) as data:
        calls = [(cfg, name, ctx.seed, str(ctx.device), per_run, data) for name in mixers]
        rows = collect_rows(ctx, train_mixer, calls, workers, "listops",
                            lambda row: f"{row['mixer']} acc={row['acc']}")  # fmt: skip
    rows.sort(key=lambda r: mixers.index(r["mixer"]))
    _plot(ctx, rows, baseline, first_op)
    if cfg.eval_every:
        _plot_curves(ctx, rows, baseline, cfg, first_op)
    sources = sorted({q[2] for n, q in QUOTED.items() if n in mixers})
    notes = [
        f"padded length {cfg.max_len} (sequences of {cfg.min_len} < L < {cfg.max_len} tokens); "
        f"{cfg.train_examples} training examples; {cfg.steps} steps x {cfg.batch_size}; "
        f"d_model {cfg.d_model}, {cfg.n_layers} layers, {cfg.precision}; majority-class "
        f"baseline {baseline:.3f}; first-operator rule {first_op:.3f} (the most common label "
        "for the outermost operator, token 0: what a model gets from that one token alone)",
        "quoted_acc: published ListOps accuracy of the closest model (QUOTED, not measured "
        "here; the published models trained far longer on 96k examples): " + "; ".join(sources),
    ]
    own_lrs = "".join(f" ({n}: {lr})" for n, lr in mixer_lrs(cfg).items())
    if cfg.ssm_lr > 0 or not cfg.prenorm or cfg.mlp != "all":
        notes.append(
            f"recipe: SSM parameters (A, B, log dt) at lr {cfg.ssm_lr or cfg.lr} without weight "
            f"decay, the rest at {cfg.lr}{own_lrs} with decay {cfg.weight_decay}; cosine to "
            f"{cfg.min_lr_ratio} x peak after {cfg.warmup} warm-up steps; "
            f"{'pre' if cfg.prenorm else 'post'}-norm blocks, MLP: {cfg.mlp}"
        )
    resumed = [f"{r['mixer']} at step {r['resumed_at']}" for r in rows if r.get("resumed_at")]
    if resumed:
        notes.append("resumed from checkpoints: " + ", ".join(resumed))
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
    metrics["first_op_baseline"] = first_op
    return Result(
        metrics=metrics,
        table=rows,
        columns=["mixer", *RUN_COLUMNS, "quoted_model", "quoted_acc"],
        failed=failed_labels(rows, "mixer"),
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


class Batches:
    """Random batches (with replacement) of x, y; the generator state goes into checkpoints,
    so a resumed run draws what it would have drawn. Same draws as `random_batches`."""

    def __init__(self, x, y, batch_size: int, seed: int, device) -> None:
        self.x, self.y, self.batch_size, self.device = x, y, batch_size, device
        self.g = torch.Generator().manual_seed(seed)

    def __call__(self):
        idx = torch.randint(self.x.shape[0], (self.batch_size,), generator=self.g)
        return self.x[idx].to(self.device).long(), self.y[idx].to(self.device)  # ids: uint8

    def state_dict(self) -> dict:
        return {"rng": self.g.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.g.set_state(state["rng"])


def mixer_lrs(cfg: ListOpsConfig) -> dict[str, float]:
    """`mixer_lr` entries ("name=lr") as a dict; a bad entry raises ValueError."""
    out = {}
    for item in cfg.mixer_lr:
        name, sep, value = item.partition("=")
        try:
            lr = float(value)
        except ValueError:
            lr = -1.0
        if not sep or lr <= 0:
            raise ValueError(f"listops: mixer_lr entries are name=lr with lr > 0, got {item!r}")
        out[name.strip()] = lr
    return out


def peak_lr(cfg: ListOpsConfig, name: str) -> float:
    """The peak lr of mixer `name`'s non-SSM parameters: its `mixer_lr` entry, else `lr`."""
    return mixer_lrs(cfg).get(name, cfg.lr)


def has_mlp(name: str, cfg: ListOpsConfig) -> bool:
    if cfg.mlp not in ("all", "none", "attention"):
        raise ValueError(f"listops: mlp must be all | none | attention, got {cfg.mlp!r}")
    return cfg.mlp == "all" or (cfg.mlp == "attention" and name not in SSM_MIXERS)


def build_model(cfg: ListOpsConfig, name: str) -> SeqModel:
    """The encoder classifier for one mixer; with `ssm_lr`, its SSM parameters tagged."""
    mcfg = SeqModelConfig(
        vocab_size=len(LISTOPS_VOCAB), n_classes=10, d_model=cfg.d_model,
        n_layers=cfg.n_layers, mixer=name, mixer_kwargs=mixer_kwargs(name, cfg),
        causal=False, max_len=cfg.max_len, prenorm=cfg.prenorm, mlp=has_mlp(name, cfg),
    )  # fmt: skip
    model = SeqModel(mcfg)
    if cfg.ssm_lr > 0:
        tag_ssm_params(model, lr=cfg.ssm_lr)
    return model


def train_mixer(cfg: ListOpsConfig, name, seed, device, max_seconds, data) -> dict:
    """Train one mixer from scratch on the shared data (or resume it); its table row."""
    x, y, xv, yv = shared(data)
    quoted = QUOTED.get(name)
    row = {"mixer": name, "quoted_model": quoted[0] if quoted else None,
           "quoted_acc": quoted[1] / 100 if quoted else None}  # fmt: skip
    try:
        torch.manual_seed(seed)
        model = build_model(cfg, name).to(device)
        ckpt = str(Path(cfg.ckpt_dir) / name) if cfg.ckpt_dir else None
        tcfg = TrainConfig(
            steps=cfg.steps, batch_size=cfg.batch_size, lr=peak_lr(cfg, name), warmup=cfg.warmup,
            min_lr_ratio=cfg.min_lr_ratio, weight_decay=cfg.weight_decay,
            precision=cfg.precision, seed=seed, progress=False, log_interval=10,
            eval_interval=cfg.eval_every, max_seconds=max_seconds or 0.0, ckpt_dir=ckpt,
            ckpt_interval=cfg.eval_every, resume="auto" if ckpt else "", keep_checkpoints=1,
        )  # fmt: skip
        batches = Batches(x, y, cfg.batch_size, seed, device)
        xv, yv = xv.to(device).long(), yv.to(device)
        trainer = Trainer(model, tcfg, batches, eval_fn=lambda m: accuracy(m, xv, yv),
                          loss_fn=classify_loss)  # fmt: skip
        start = trainer.step if trainer._maybe_resume() else 0
        if max_seconds:  # the cap counts this call's training only, not the resumed part
            trainer.cfg = dataclasses.replace(tcfg, max_seconds=trainer.elapsed + max_seconds)
        trainer.fit(reseed=False)
        if not trainer.last_eval:  # resumed a finished run: nothing left to train
            trainer.evaluate()
        fit = FitResult(steps=trainer.step, seconds=trainer.elapsed,
                        stopped_early=trainer.stopped_early, history=trainer.history,
                        final=trainer.last_eval)  # fmt: skip
    except Exception as e:  # noqa: BLE001 - strict=False records it in the table
        if cfg.strict:
            raise
        return failed_row(row, e)
    row = fit_row(row, fit)
    row["resumed_at"] = start
    row["curve"] = [{k: h[k] for k in ("step", "loss", "eval_acc") if k in h}
                    for h in fit.history]  # fmt: skip
    return row


def _plot(ctx, rows, baseline, first_op=None):
    fig, ax = ctx.figure(figsize=(max(6, 0.8 * len(rows) + 2), 4))
    names = [r["mixer"] for r in rows]
    pos = range(len(rows))
    ax.bar([p - 0.2 for p in pos], [r["acc"] or 0.0 for r in rows], 0.4, label="measured")
    quoted = [(p, r["quoted_acc"]) for p, r in zip(pos, rows, strict=True) if r["quoted_acc"]]
    ax.bar([p + 0.2 for p, _ in quoted], [q for _, q in quoted], 0.4, alpha=0.5,
           label="published (quoted, longer training)")  # fmt: skip
    ax.axhline(baseline, color="k", ls="--", lw=1, label="majority class")
    if first_op is not None:
        ax.axhline(first_op, color="k", ls=":", lw=1, label="outermost operator alone")
    ax.set_xticks(list(pos), names, rotation=30, ha="right")
    half = max(len(rows), 3) / 2  # one or two mixers: centred bars keep their width
    ax.set_xlim((len(rows) - 1) / 2 - half, (len(rows) - 1) / 2 + half)
    ax.set(ylabel="ListOps accuracy", ylim=(0, 1), title="ListOps, bidirectional mixers")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    ctx.savefig(fig, "listops_accuracy.png")


def first_op_guess(x, y, xv) -> torch.Tensor:
    """[M] for each held-out example, the most common training label of its outermost
    operator (token 0). x: [N, T] token ids, y: [N] labels, xv: [M, T] held out."""
    table: dict[int, Counter] = {}
    for op, label in zip(x[:, 0].tolist(), y.tolist(), strict=True):
        table.setdefault(op, Counter())[label] += 1
    fallback = Counter(y.tolist()).most_common(1)[0][0]
    return torch.tensor([table[op].most_common(1)[0][0] if op in table else fallback
                         for op in xv[:, 0].tolist()])  # fmt: skip


def first_op_baseline(x, y, xv, yv) -> float:
    """Held-out accuracy of `first_op_guess`: what a model gets from token 0 alone."""
    return (first_op_guess(x, y, xv) == yv.cpu()).float().mean().item()


def _plot_curves(ctx, rows, baseline, cfg, first_op):
    """Held-out accuracy and training loss against steps, one line per mixer."""
    from deepnotes.utils.plot import series_styles

    fig, (a1, a2) = ctx.figure(1, 2, figsize=(11, 4))
    styles = series_styles([r["mixer"] for r in rows])  # each mixer's colour in every plot
    top = 0.0
    for r in rows:
        curve = r.get("curve") or []
        st = styles[r["mixer"]]
        a1.plot([c["step"] for c in curve], [c["loss"] for c in curve], lw=1, color=st["color"],
                ls=st["linestyle"], label=r["mixer"])  # fmt: skip
        ev = [c for c in curve if "eval_acc" in c]
        a2.plot([c["step"] for c in ev], [c["eval_acc"] for c in ev], ms=3, **st,
                label=r["mixer"])  # fmt: skip
        top = max([top, *(c["eval_acc"] for c in ev)])
    a1.set(xlabel="optimizer step", ylabel="training loss (mean of 10 steps)",
           title="ListOps training loss")  # fmt: skip
    a2.axhline(baseline, color="k", ls="--", lw=1, label="majority class")
    a2.axhline(first_op, color="k", ls=":", lw=1, label="outermost operator alone")
    # 0 to a little above the best curve: differences of a few points stay visible
    a2.set(xlabel="optimizer step", ylabel="held-out accuracy",
           ylim=(0, min(1.0, 0.1 * math.ceil(10 * max(top, first_op, baseline) + 1))),
           title=f"ListOps held-out accuracy (T <= {cfg.max_len})")  # fmt: skip
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    ctx.savefig(fig, "listops_curves.png")
