"""`deepnotes bench scan-forms`: the selective scan's PyTorch forms against each other.

`torch_selective_scan(..., algorithm=...)` runs the recurrence in chunks of 64 steps, each
chunk one of three ways (`deepnotes.ops.ssm.scan`): "parallel" (Hillis-Steele, the GPU
form), "sequential" (a step at a time, autograd through it, chunks checkpointed) and
"recurrent" (a step at a time on time-major tensors with the reverse scan as its own
backward). Same inputs for all (Mamba's ranges: delta through softplus, D, z, delta bias),
median milliseconds of the forward (no grad) and of forward+backward, on `threads` CPU
threads; every form's output is checked against the first one's before it is timed.

    deepnotes bench scan-forms --out OUT/scan-forms
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from deepnotes.jobs import Context, Result, suite
from deepnotes.ops.ssm.scan import ALGORITHMS, torch_selective_scan
from deepnotes.utils.timing import time_ms

# batch x channels (Mamba's 2 d_model) x state size x length; the first is a Mamba layer of
# `run listops --budget cpu-s4` (d_model 64, batch 32, T 512)
SHAPES = ("32x128x16x512", "8x256x16x1024", "4x64x64x512")


@dataclass
class ScanFormsConfig:
    shapes: list[str] = field(default_factory=lambda: list(SHAPES))  # Bt x Dm x N x L each
    algorithms: list[str] = field(default_factory=lambda: list(ALGORITHMS))  # forms to time
    chunk_size: int = 64  # steps per chunk (torch_selective_scan's default)
    threads: int = 1  # torch CPU threads while timing
    repeat: int = 3  # timed repeats per point (median)


def _shape(text: str) -> tuple[int, int, int, int]:
    parts = text.lower().split("x")
    if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"shape {text!r}: expected 'Bt x Dm x N x L', e.g. 32x128x16x512")
    return tuple(int(p) for p in parts)  # type: ignore[return-value]


def _check(cfg: ScanFormsConfig) -> None:
    bad = sorted(set(cfg.algorithms) - set(ALGORITHMS))
    if bad or not cfg.algorithms:
        raise ValueError(f"algorithms {bad or '[]'}: choose among {sorted(ALGORITHMS)}")
    for s in cfg.shapes:
        _shape(s)
    if cfg.threads < 1 or cfg.repeat < 1 or cfg.chunk_size < 1:
        raise ValueError("threads, repeat and chunk_size must be >= 1")


def _inputs(Bt: int, Dm: int, N: int, L: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    x = dict(u=r(Bt, Dm, L), delta=r(Bt, Dm, L) * 0.5 - 1.0, A=-torch.exp(r(Dm, N) * 0.5))
    x.update(B=r(Bt, N, L), C=r(Bt, N, L), D=r(Dm), z=r(Bt, Dm, L), delta_bias=r(Dm) * 0.3)
    return x


@suite(
    "scan-forms",
    "selective scan on CPU: the parallel, sequential and recurrent PyTorch forms, fwd and fwd+bwd",
    ScanFormsConfig,
    presets={"smoke": {"shapes": ["2x8x4x100"], "repeat": 1}},
    check=_check,
)
def bench_scan_forms(cfg: ScanFormsConfig, ctx: Context) -> Result:
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    rows: list[dict] = []
    try:
        bar = ctx.progress(total=len(cfg.shapes) * len(cfg.algorithms), desc="bench scan-forms")
        for text in cfg.shapes:
            Bt, Dm, N, L = _shape(text)
            x = _inputs(Bt, Dm, N, L, ctx.seed)
            run = lambda alg, x=x: torch_selective_scan(  # noqa: E731
                **x, delta_softplus=True, chunk_size=cfg.chunk_size, algorithm=alg
            )
            with torch.no_grad():
                first = run(cfg.algorithms[0])
            for alg in cfg.algorithms:
                with torch.no_grad():
                    y = run(alg)
                err = float((y - first).abs().max() / first.abs().max())
                if err > 1e-4:
                    raise AssertionError(f"{alg} differs from {cfg.algorithms[0]}: {err:.1e}")
                xg = {k: v.clone().requires_grad_(True) for k, v in x.items()}

                def fwd_bwd(alg=alg, xg=xg):
                    torch_selective_scan(
                        **xg, delta_softplus=True, chunk_size=cfg.chunk_size, algorithm=alg
                    ).sum().backward()

                def fwd(alg=alg, run=run):
                    with torch.no_grad():
                        run(alg)

                rows.append({"shape": text, "algorithm": alg,
                             "fwd_ms": round(time_ms(fwd, "cpu", repeat=cfg.repeat), 2),
                             "fwdbwd_ms": round(time_ms(fwd_bwd, "cpu", repeat=cfg.repeat), 2),
                             "max_rel_diff": err})  # fmt: skip
                bar.update(1)
        bar.close()
    finally:
        torch.set_num_threads(threads)
    metrics: dict = {}
    base = "sequential" if "sequential" in cfg.algorithms else cfg.algorithms[0]
    for r in rows:
        b = next(q for q in rows if q["shape"] == r["shape"] and q["algorithm"] == base)
        r[f"fwd_x_{base}"] = round(b["fwd_ms"] / r["fwd_ms"], 2)  # > 1: faster than base
        r[f"fwdbwd_x_{base}"] = round(b["fwdbwd_ms"] / r["fwdbwd_ms"], 2)
        metrics[f"{r['shape']}/{r['algorithm']}/fwdbwd_x_{base}"] = r[f"fwdbwd_x_{base}"]
    _plot(ctx, rows, cfg)
    notes = [
        f"{cfg.threads} CPU thread(s), chunks of {cfg.chunk_size} steps, float32, medians of "
        f"{cfg.repeat}; x_{base} columns: {base}'s time / this form's (> 1 = faster)",
    ]
    cols = ["shape", "algorithm", "fwd_ms", "fwdbwd_ms", f"fwd_x_{base}", f"fwdbwd_x_{base}",
            "max_rel_diff"]  # fmt: skip
    return Result(metrics=metrics, table=rows, columns=cols, notes=notes)


def _plot(ctx: Context, rows: list[dict], cfg: ScanFormsConfig) -> None:
    """Grouped bars: forward+backward ms per shape (one bar per form), forward as a hatch."""
    import numpy as np

    from deepnotes.utils.plot import log_ticks

    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    algs = list(dict.fromkeys(r["algorithm"] for r in rows))
    fig, ax = ctx.figure(figsize=(2.4 * len(shapes) + 3, 4.5))
    w = 0.8 / len(algs)
    for i, alg in enumerate(algs):
        at = {r["shape"]: r for r in rows if r["algorithm"] == alg}
        xs = np.arange(len(shapes)) + (i - (len(algs) - 1) / 2) * w
        ax.bar(xs, [at[s]["fwdbwd_ms"] for s in shapes], w, label=f"{alg}: fwd+bwd",
               color=f"C{i}")  # fmt: skip
        ax.bar(xs, [at[s]["fwd_ms"] for s in shapes], w, color=f"C{i}", alpha=0.45,
               hatch="//", edgecolor="white", label=f"{alg}: fwd")  # fmt: skip
    ax.set_xticks(range(len(shapes)), [s.replace("x", " x ") for s in shapes])
    ax.set_xlabel("Bt x Dm x N x L")
    ax.set_yscale("log")
    log_ticks(ax, "y")  # 1-2-5 labels, not only the decades
    ax.set_ylabel("time (ms, median)")
    ax.set_title(f"selective scan, PyTorch forms on {cfg.threads} CPU thread(s)")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ctx.savefig(fig, "scan_forms.png")
