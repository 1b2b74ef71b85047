"""`deepnotes run arena`: which sequence mixer should I use? The same LM, one mixer at a time.

Every registered mixer that can run causally (softmax, linear, performer, sliding window,
FLASH/GAU, LSTM, GRU, the state-space mixers ...; a newly registered mixer joins
automatically) drives the same byte-level decoder LM (`deepnotes.models.lm`) on the embedded
corpus (the King James Bible, split by chapter), with the same width, depth, data order,
optimizer, schedule and number of steps. Reported per mixer:
- validation bits per byte (the loss in nats / ln 2, since one token is one byte);
- training tokens/s, peak training memory, parameter count;
- decoding speed in tokens/s through the mixer's `step` path (KV cache or recurrent state;
  mixers without one recompute the whole prefix per token, and say so), and a sample, both
  from `deepnotes.generate.generate` (prefill of the short prompt included).

Budget: the same `steps` x `batch_size` x `seq_len` tokens for every mixer. The default is
sized so that all mixers finish in about 4 minutes on a 2-core CPU (S4, the slowest, sets
the size). `max_total_seconds` is only a safety net for a loaded machine or
a slow newly added mixer: a mixer is stopped early only when the whole run would otherwise
pass the guard (keeping `reserve_seconds` for each mixer still to run). A stopped mixer
breaks the equal budget, and the run says so loudly: its status reads "TIME CAP", the first
note lists every capped mixer, and `metrics["equal_budget"]` is False. Results are written
atomically per mixer under OUT/mixers/ as each finishes. Rerunning with the same --out and
--resume reuses the mixers that ran their full budget under the same config and marks them
"reused"; failed and time-capped mixers run again. A crash loses at most the mixer in
progress.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import traceback

import torch

from deepnotes.data.text import cached_text
from deepnotes.experiments.lm.common import (
    RunResult,
    plot_bpb_vs_speed,
    plot_curves,
    train_config,
    train_lm,
)
from deepnotes.generate import timed_generate
from deepnotes.job_checks import ConfigError
from deepnotes.jobs import Context, Result, experiment
from deepnotes.models.lm import build_lm
from deepnotes.models.lm_arena import (
    ARENA_PRESETS,
    NOT_RESULT_FIELDS,
    ArenaConfig,
    lm_config,
    select_mixers,
)
from deepnotes.utils.env import threads
from deepnotes.utils.io import atomic_write_json
from deepnotes.utils.timing import peak_memory_bytes


def fingerprint(cfg: ArenaConfig, mixer: str, device: torch.device, seed: int) -> str:
    d = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_RESULT_FIELDS}
    d.update(mixer=mixer, device=device.type, seed=seed)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def train_peak_memory(model, data, cfg: ArenaConfig, device: torch.device) -> int:
    x, y = next(data.train_batches(cfg.batch_size, cfg.seq_len, seed=1, device=device))
    model.train()

    def step():
        model.loss(x, y).backward()

    peak = peak_memory_bytes(step, device)
    model.zero_grad(set_to_none=True)
    return peak


def run_mixer(name, cfg, data, ctx, max_seconds, bar) -> dict:
    """Train, evaluate and decode one mixer; returns its record (row + history)."""
    lm_cfg = lm_config(cfg, name, data.vocab_size)
    model = build_lm(lm_cfg, ctx.device, ctx.seed)
    tcfg = train_config(cfg, ctx.seed)
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)
    r: RunResult = train_lm(
        model, data, tcfg, eval_every=cfg.eval_every, eval_batches=cfg.eval_batches,
        max_seconds=max_seconds, log_every=1 if ctx.device.type == "cpu" else 10, bar=bar,
    )  # fmt: skip
    if cfg.measure_memory:
        peak = train_peak_memory(model, data, cfg, ctx.device)
    else:
        peak = None
    prompt = torch.tensor([list(cfg.prompt.encode())], device=ctx.device)
    toks, secs, path = timed_generate(
        model, prompt, cfg.gen_tokens, temperature=cfg.temperature, top_k=cfg.top_k, seed=ctx.seed
    )
    sample = bytes(toks.tolist()).decode("utf-8", errors="replace")
    status = "ok" if not r.stopped_early else f"TIME CAP at step {r.steps}/{cfg.steps}"
    if any(h.get("diverged") for h in r.history):
        status = "diverged"
    row = {
        "mixer": name,
        "val_bpb": r.final.get("val_bpb"),
        "val_loss": r.final.get("val_loss"),
        "params": model.num_params(),
        "train_tok_s": round(r.steady_tokens_per_s),  # after warm-up steps
        "train_tok_s_all": round(r.tokens_per_s),  # including the first steps
        "peak_mem_mb": None if peak is None else round(peak / 2**20, 1),
        "gen_tok_s": round(cfg.gen_tokens / secs, 1) if secs > 0 else None,
        "gen_path": path,
        "steps": r.steps,
        "train_s": round(r.train_seconds, 1),
        "status": status,
    }
    return {"row": row, "history": r.history, "sample": sample}


def _row_failed(name: str, err: BaseException) -> dict:
    msg = f"failed: {type(err).__name__}: {err}"
    return {"row": {"mixer": name, "status": msg[:120]}, "history": [], "sample": ""}


def check_arena(cfg: ArenaConfig) -> None:
    """Mixers that exist and can drive a decoder LM, before anything runs."""
    try:
        select_mixers(cfg)
    except ValueError as e:
        raise ConfigError("mixers", cfg.mixers, str(e)) from None


@experiment(
    "arena",
    "the same byte-level LM trained with every causal mixer: bits/byte, speed, memory, samples",
    ArenaConfig,
    presets=ARENA_PRESETS,
    check=check_arena,
    resumable=True,
)
def run(cfg: ArenaConfig, ctx: Context) -> Result:
    names = select_mixers(cfg)
    load0 = _load_average()
    with threads(cfg.threads if ctx.device.type == "cpu" else 0):
        records = _run_all(cfg, ctx, names)
    load1 = _load_average()
    load = None if load0 is None or load1 is None else (load0, load1)
    return _report(cfg, ctx, records, load)


def _load_average() -> float | None:
    """The 1-minute load average (other jobs on a shared machine slow the CPU timings)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        return None


def _reusable(path, fp: str) -> dict | None:
    """A finished mixer's saved record, if it may stand in this run: same config and seed
    (fingerprint), and it ran its full budget. Failed and time-capped rows run again."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    status = str(saved.get("row", {}).get("status", ""))
    if saved.get("fingerprint") != fp or status not in ("ok", "diverged"):
        return None
    return saved


def _run_all(cfg: ArenaConfig, ctx: Context, names: list[str]) -> dict[str, dict]:
    data = cached_text(cfg.corpus, cfg.max_docs)
    out_dir = ctx.out / "mixers"
    records: dict[str, dict] = {}
    start = time.perf_counter()
    overhead = []  # seconds per mixer spent outside training (eval, memory, decoding)
    bar = ctx.progress(total=len(names) * cfg.steps, desc="arena")
    try:
        for i, name in enumerate(names):
            fp = fingerprint(cfg, name, ctx.device, ctx.seed)
            path = out_dir / f"{name}.json"
            saved = _reusable(path, fp) if ctx.resume else None
            if saved is not None:
                saved["row"]["reused"] = True
                records[name] = saved
                bar.update(cfg.steps)
                ctx.log(f"arena: reusing {path}")
                continue
            left = cfg.max_total_seconds - (time.perf_counter() - start)
            per = sum(overhead) / len(overhead) if overhead else 0.0
            # The guard binds only when the whole run would pass it: this mixer may train for
            # what is left, less its own evaluation/decoding time and a reserve for each mixer
            # still to run. (No per-mixer share: a slow mixer gets the same steps as the rest.)
            cap = max(1.0, left - per - cfg.reserve_seconds * (len(names) - i - 1))
            bar.set_description(f"arena: {name}")
            t0 = time.perf_counter()
            try:
                rec = run_mixer(name, cfg, data, ctx, cap, bar)
            except Exception as err:  # noqa: BLE001 - one broken mixer must not sink the rest
                if cfg.strict:
                    raise
                ctx.log(f"arena: {name} failed:\n{traceback.format_exc(limit=4)}")
                rec = _row_failed(name, err)
            overhead.append(max(0.0, time.perf_counter() - t0 - rec["row"].get("train_s", 0.0)))
            rec["fingerprint"] = fp
            rec["row"]["reused"] = False
            atomic_write_json(path, rec)  # a crash later loses nothing finished
            records[name] = rec
            bar.update(max(0, cfg.steps - rec["row"].get("steps", cfg.steps)))
    finally:
        bar.close()  # before any message about an interruption
    return records


def plot_loss_curves(ctx, runs: dict[str, RunResult]) -> None:
    """The arena's two loss plots: bits/byte against step and against training time."""
    plot_curves(ctx, runs, "loss_vs_step.png", "mixer arena: byte-level LM on KJV")
    plot_curves(ctx, runs, "loss_vs_time.png", "mixer arena: loss vs training time", x="time")


def _report(cfg: ArenaConfig, ctx: Context, records: dict[str, dict], load=None) -> Result:
    """The ranked table, plots and notes. load: 1-minute load averages (start, end) or None."""
    ok = {n: r for n, r in records.items() if "val_bpb" in r["row"]}
    rows = sorted(ok.values(), key=lambda r: r["row"]["val_bpb"])
    table = []
    for rank, r in enumerate(rows, 1):
        table.append({"rank": rank, **r["row"]})
    table += [r["row"] for n, r in records.items() if n not in ok]
    runs = {n: RunResult(history=r["history"]) for n, r in records.items() if r["history"]}
    if runs:
        # the plots' data beside results.json, so scripts/replot.py can redraw them
        atomic_write_json(ctx.out / "curves.json", {n: r.history for n, r in runs.items()})
        plot_loss_curves(ctx, runs)
        plot_bpb_vs_speed(ctx, [r["row"] for r in rows])
    else:  # every mixer failed: still leave a picture saying so
        fig, ax = ctx.figure(figsize=(4, 2))
        ax.text(0.5, 0.5, "no mixer finished", ha="center")
        ctx.savefig(fig, "loss_vs_step.png")
    capped = [n for n, r in records.items() if str(r["row"].get("status", "")).startswith("TIME")]
    notes = [
        f"equal budget: {cfg.steps} steps x {cfg.batch_size} x {cfg.seq_len} bytes per mixer, "
        f"d_model {cfg.d_model}, {cfg.n_layers} layers, {cfg.precision}; speeds are "
        f"wall-clock on {ctx.device.type}"
        + (" (shared cores: noisy)" if ctx.device.type == "cpu" else ""),
    ]
    if capped:
        warning = (
            f"WARNING: UNEQUAL BUDGET. The time guard (max_total_seconds = "
            f"{cfg.max_total_seconds:g}) stopped {', '.join(capped)} before {cfg.steps} steps "
            "(see 'steps'); their bits/byte are not comparable with the others. Rerun with "
            "the same --out, --resume and a larger --max-total-seconds (finished mixers are "
            "kept), or on a less loaded machine."
        )
        notes.insert(0, warning)
        ctx.log(warning)
    if load is not None:
        notes.append(f"1-minute load average at start / end: {load[0]:.2f} / {load[1]:.2f}")
    for n, r in records.items():
        if r["sample"]:
            text = json.dumps(cfg.prompt + r["sample"], ensure_ascii=False)
            notes.append(f"sample {n}: {text[:150]}")
    metrics = {f"val_bpb[{r['row']['mixer']}]": r["row"]["val_bpb"] for r in rows}
    metrics["mixers"] = len(records)
    metrics["equal_budget"] = not capped
    metrics["capped"] = capped
    metrics["failed"] = len(records) - len(ok)
    reused = [n for n, r in records.items() if r["row"].get("reused")]
    metrics["reused"] = reused
    if reused:
        notes.append(f"reused from an earlier run in this folder (--resume): {', '.join(reused)}")
    if rows:
        metrics["best"] = rows[0]["row"]["mixer"]
    columns = [
        "rank", "mixer", "val_bpb", "params", "train_tok_s", "peak_mem_mb", "gen_tok_s",
        "gen_path", "steps", "status", "reused",
    ]  # fmt: skip
    failed = [n for n in records if n not in ok]
    return Result(metrics=metrics, table=table, columns=columns, notes=notes, failed=failed)
