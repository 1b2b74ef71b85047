"""`deepnotes bench mixers`: time and peak memory of every mixer against sequence length.

For each mixer and T: forward time (no grad), forward+backward time, and the peak memory of
forward+backward. A mixer stops at the first T whose predicted memory (power-law
extrapolation from the last two lengths) exceeds `mem_limit_gb`, or whose previous
measurement exceeded `time_limit_s`; the table says so. Scaling exponents are fitted on
log-log data for T >= `fit_from`.

CPU runs are single-threaded by default (`threads`): on a shared machine a second torch
thread that gets descheduled stalls the first, which swamps the scaling with noise. On a
machine with many cores, `workers` > 1 sweeps that many mixers at once in separate
processes (each still `threads`-threaded), which shortens the run without sharing a core.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field

import torch

import deepnotes.mixers as M
from deepnotes.jobs import Context, Result, suite
from deepnotes.utils.env import threads
from deepnotes.utils.fit import extrapolate, power_law_exponent
from deepnotes.utils.timing import peak_memory_bytes, time_ms

# Variants benchmarked beside the registered defaults: label -> (mixer name, kwargs).
VARIANTS = {"softmax[math]": ("softmax", {"impl": "math"})}


@dataclass
class MixersBenchConfig:
    mixers: list[str] = field(default_factory=list)  # empty = every mixer, plus VARIANTS
    lengths: list[int] = field(
        default_factory=lambda: [256, 512, 1024, 2048, 4096, 8192, 16384]
    )  # the T sweep of the foundation issue
    d_model: int = 256  # width; 4 heads of 64 for the attention mixers
    batch: int = 1  # sequences per call (1: the cost of one long sequence)
    causal: bool = True  # non-causal-only mixers (linformer) always run bidirectional
    dtype: str = "float32"  # float32 on CPU; bfloat16 on GPU
    repeat: int = 5  # timed repeats (median of 5 resists a noisy, shared machine); CUDA: do_bench
    threads: int = 1  # torch CPU threads during the sweep (0 = torch's default)
    mem_limit_gb: float = 6.0  # stop a mixer before its predicted peak passes this
    time_limit_s: float = 30.0  # stop a mixer after a fwd+bwd slower than this
    fit_from: int = 2048  # fit scaling exponents on T >= this
    workers: int = 1  # CPU: mixers swept at once in separate processes (1 = in this process)


def _label_specs(cfg: MixersBenchConfig) -> list[tuple[str, str, dict]]:
    chosen = cfg.mixers or [*M.names(), *VARIANTS]
    specs = []
    for label in chosen:
        if label in VARIANTS:
            specs.append((label, *VARIANTS[label]))
        else:
            M.get(label)  # clear error for unknown names
            specs.append((label, label, {}))
    return specs


def _measure(mixer, x, device, cfg: MixersBenchConfig):
    def fwd():
        with torch.no_grad():
            mixer(x)

    def fwd_bwd():
        xg = x.detach().requires_grad_(True)
        mixer(xg).float().square().mean().backward()

    def fwd_bwd_fresh():
        # Parameter gradients are allocated and freed inside the measured call: the CPU
        # profiler's running total never sees a free made outside its window, so gradients
        # left alive would be counted again in every later measurement.
        fwd_bwd()
        mixer.zero_grad(set_to_none=True)

    limit = cfg.time_limit_s  # stop repeating a slow call early
    out = {
        "fwd_ms": time_ms(fwd, device, repeat=cfg.repeat, max_seconds=limit),
        "fwdbwd_ms": time_ms(fwd_bwd, device, repeat=cfg.repeat, max_seconds=limit),
    }
    mixer.zero_grad(set_to_none=True)
    out["peak_mb"] = peak_memory_bytes(fwd_bwd_fresh, device) / 2**20
    return out


@suite(
    "mixers",
    "time and peak memory of every sequence mixer for T = 256 .. 16k, with scaling exponents",
    MixersBenchConfig,
    presets={
        "smoke": {"lengths": [32, 64, 128], "d_model": 32, "fit_from": 32, "repeat": 1},
        "quick": {"lengths": [256, 512, 1024, 2048, 4096], "fit_from": 1024},
    },
)
def bench_mixers(cfg: MixersBenchConfig, ctx: Context) -> Result:
    dtype = getattr(torch, cfg.dtype)
    with threads(cfg.threads if ctx.device.type == "cpu" else 0):
        return _sweep(cfg, ctx, dtype)


def _sweep_one(
    label: str, name: str, kw: dict, cfg: MixersBenchConfig, device, seed: int, dtype, tick
) -> tuple[list[dict], str | None]:
    """Rows for one mixer over cfg.lengths, and why it stopped early (None if it did not)."""
    cls = M.get(name)
    causal = cfg.causal and cls.supports_causal
    rows, done_T, done_mem, done_time = [], [], [], []
    stop = None
    for T in cfg.lengths:
        tick(f"{label} T={T}")
        if stop is None and done_T:
            pred = extrapolate(done_T, done_mem, T)
            if pred is not None and pred > cfg.mem_limit_gb * 1024:
                stop = f"predicted peak {pred / 1024:.1f} GB > limit {cfg.mem_limit_gb} GB"
            elif done_time[-1] > cfg.time_limit_s * 1e3:
                stop = f"fwd+bwd took {done_time[-1] / 1e3:.1f} s > {cfg.time_limit_s} s"
        if stop is not None:
            rows.append({"mixer": label, "T": T, "status": f"skipped: {stop}"})
            continue
        torch.manual_seed(seed)
        extra = {"max_len": T} if "max_len" in _init_params(cls) else {}
        mixer = M.build(name, cfg.d_model, causal=causal, **kw, **extra)
        mixer = mixer.to(device=device, dtype=dtype)
        x = torch.randn(cfg.batch, T, cfg.d_model, device=device, dtype=dtype)
        try:
            m = _measure(mixer, x, device, cfg)
        except torch.OutOfMemoryError:
            stop = "out of memory"
            rows.append({"mixer": label, "T": T, "status": "skipped: out of memory"})
            continue
        rows.append({"mixer": label, "T": T, "causal": causal, **m, "status": "ok"})
        done_T.append(T)
        done_mem.append(m["peak_mb"])
        done_time.append(m["fwdbwd_ms"])
        del mixer, x
    return rows, stop


def _worker(label, name, kw, cfg_dict, seed):
    """One mixer's sweep in a worker process (CPU only)."""
    cfg = MixersBenchConfig(**cfg_dict)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)  # a worker process of its own: nothing to restore
    dtype = getattr(torch, cfg.dtype)
    return _sweep_one(label, name, kw, cfg, torch.device("cpu"), seed, dtype, lambda _: None)


def _sweep_all(specs, cfg, ctx, dtype) -> dict[str, tuple[list[dict], str | None]]:
    """label -> (rows, stop reason), in specs order; parallel over mixers when workers > 1."""
    if cfg.workers < 1:
        raise ValueError(f"bench mixers: workers must be >= 1, got {cfg.workers}")
    if cfg.workers > 1 and ctx.device.type != "cpu":
        raise ValueError("bench mixers: workers > 1 is for CPU runs (one GPU is one device)")
    out = {}
    if cfg.workers == 1:
        bar = ctx.progress(total=len(specs) * len(cfg.lengths), desc="bench mixers")

        def tick(text):
            bar.set_postfix_str(text)
            bar.update(1)

        for label, name, kw in specs:
            out[label] = _sweep_one(label, name, kw, cfg, ctx.device, ctx.seed, dtype, tick)
        bar.close()
        return out
    bar = ctx.progress(total=len(specs), desc=f"bench mixers ({cfg.workers} processes)")
    spawn = multiprocessing.get_context("spawn")  # no forked torch thread pools
    with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=spawn) as pool:
        futures = {
            pool.submit(_worker, label, name, kw, asdict(cfg), ctx.seed): label
            for label, name, kw in specs
        }
        for fut in as_completed(futures):
            out[futures[fut]] = fut.result()
            bar.set_postfix_str(futures[fut])
            bar.update(1)
    bar.close()
    return {label: out[label] for label, _, _ in specs}


def _sweep(cfg: MixersBenchConfig, ctx: Context, dtype: torch.dtype) -> Result:
    specs = _label_specs(cfg)
    rows, notes, metrics = [], [], {}
    for label, (mixer_rows, stop) in _sweep_all(specs, cfg, ctx, dtype).items():
        rows.extend(mixer_rows)
        if stop is not None:
            notes.append(f"{label}: stopped at larger T ({stop})")
        ok = [r for r in rows if r["mixer"] == label and r["status"] == "ok"]
        fit = [r for r in ok if r["T"] >= cfg.fit_from]
        for key, src in (
            ("fwd_time", "fwd_ms"),
            ("fwdbwd_time", "fwdbwd_ms"),
            ("memory", "peak_mb"),
        ):
            metrics[f"{label}/{key}_exponent"] = power_law_exponent(
                [r["T"] for r in fit], [r[src] for r in fit]
            )
    _plot(rows, metrics, cfg, ctx)
    summary = [
        {
            "mixer": label,
            "fwd_exp": metrics[f"{label}/fwd_time_exponent"],
            "fwdbwd_exp": metrics[f"{label}/fwdbwd_time_exponent"],
            "mem_exp": metrics[f"{label}/memory_exponent"],
        }
        for label, _, _ in specs
    ]
    notes.append(f"scaling exponents fitted on T >= {cfg.fit_from}:")
    from deepnotes.utils.table import format_table

    notes.append("\n" + format_table(summary))
    return Result(
        metrics=metrics,
        table=rows,
        columns=["mixer", "T", "fwd_ms", "fwdbwd_ms", "peak_mb", "status"],
        notes=notes,
    )


def _init_params(cls) -> set[str]:
    import inspect

    names = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            names |= set(inspect.signature(klass.__init__).parameters)
    return names


def _plot(rows, metrics, cfg, ctx):
    """Forward time, forward+backward time and peak memory against T (log-log), one fixed
    style per mixer; each panel's legend, with its fitted exponent p, sits under it (inside,
    14 entries covered the short-T curves)."""
    from deepnotes.utils.plot import log_ticks, series_styles

    fig, axes = ctx.figure(1, 3, figsize=(17, 7.2))
    labels = list(dict.fromkeys(r["mixer"] for r in rows))
    styles = series_styles(labels)  # one fixed style per mixer, distinct for 13+ series
    all_T = set()
    for label in labels:
        ok = [r for r in rows if r["mixer"] == label and r["status"] == "ok"]
        if not ok:
            continue
        Ts = [r["T"] for r in ok]
        all_T.update(Ts)
        for ax, key, mkey in zip(
            axes,
            ("fwd_ms", "fwdbwd_ms", "peak_mb"),
            ("fwd_time", "fwdbwd_time", "memory"),
            strict=True,
        ):
            p = metrics.get(f"{label}/{mkey}_exponent")
            tag = f"{label} (p={p:.2f})" if p is not None else label
            st = styles[label]
            ax.loglog(Ts, [r[key] for r in ok], label=tag, ms=4, lw=1.2, **st)
    for ax, title, ylabel in zip(
        axes,
        ("forward time", "forward+backward time", "peak memory, fwd+bwd"),
        ("time (ms, median)", "time (ms, median)", "peak memory (MiB)"),
        strict=True,
    ):
        ax.set(xlabel="sequence length T", ylabel=ylabel, title=title)
        log_ticks(ax, "x", at=all_T)  # the lengths measured, as plain numbers
        log_ticks(ax, "y")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7.5, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.12),
                  title="mixer (p: fitted exponent, value ~ T^p)", title_fontsize=7.5)  # fmt: skip
    ctx.savefig(fig, "mixers_scaling.png")
