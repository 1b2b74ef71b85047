"""Experiments and benchmark suites: how they register, run and report.

A job is a function `fn(cfg, ctx) -> Result` with a `@dataclass` config. Modules under
`deepnotes.experiments` and `deepnotes.bench` register themselves with the `experiment` or
`suite` decorator; `discover()` imports them all, so adding a job touches only its own module.

Every run:
- gets its config from the dataclass defaults, then the chosen `--budget` preset, then any
  `--field value` given on the command line;
- shows progress through `ctx.progress`;
- writes `results.json` (metrics, table, config, versions, device, wall time, command) and at
  least one `.png` plot to its output directory, and prints the results table.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import pkgutil
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import torch

from deepnotes.registry import Registry
from deepnotes.utils.env import device_name, versions
from deepnotes.utils.io import atomic_write, atomic_write_json
from deepnotes.utils.plot import pyplot
from deepnotes.utils.seed import seed_everything
from deepnotes.utils.table import format_table

JOB_PACKAGES = ("deepnotes.experiments", "deepnotes.bench")


@dataclass
class Result:
    """What a job returns. The runner adds config, versions and timing around it."""

    metrics: dict[str, Any] = field(default_factory=dict)  # headline numbers
    table: list[dict[str, Any]] = field(default_factory=list)  # one row per setting / peer
    columns: list[str] | None = None  # column order for the printed table
    notes: list[str] = field(default_factory=list)  # caveats printed under the table


@dataclass
class Context:
    """Handed to every job: where to write, which device, progress and plotting helpers."""

    out: Path
    device: torch.device
    seed: int = 0
    budget: str = "default"
    quiet: bool = False

    def progress(self, iterable: Iterable | None = None, **kw: Any):
        """A tqdm progress bar (disabled with DEEPNOTES_NO_PROGRESS=1 or quiet runs)."""
        import os

        from tqdm.auto import tqdm

        disable = self.quiet or os.environ.get("DEEPNOTES_NO_PROGRESS") == "1"
        return tqdm(iterable, disable=disable, dynamic_ncols=True, **kw)

    def log(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=sys.stderr, flush=True)

    def figure(self, *args: Any, **kw: Any):
        """`plt.subplots(...)`, with the Agg backend."""
        return pyplot().subplots(*args, **kw)

    def savefig(self, fig, name: str) -> Path:
        """Save a figure atomically as `out/name` (a .png) and close it."""
        plt = pyplot()
        path = self.out / (name if name.endswith(".png") else name + ".png")
        fig.tight_layout()
        atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
        plt.close(fig)
        return path


@dataclass
class Job:
    name: str
    kind: Literal["experiment", "bench"]
    description: str  # one line, shown by `deepnotes list`
    config_cls: type
    fn: Callable[[Any, Context], Result]
    presets: dict[str, dict[str, Any]]  # budget name -> field overrides

    def make_config(self, budget: str = "default", **overrides: Any):
        if budget not in self.presets and budget != "default":
            valid = ", ".join(["default", *self.presets])
            raise ValueError(f"unknown budget {budget!r} for {self.name}; valid: {valid}")
        values = {**self.presets.get(budget, {}), **overrides}
        names = {f.name for f in dataclasses.fields(self.config_cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(
                f"{self.name} has no config field(s) {unknown}; valid: {sorted(names)}"
            )
        return self.config_cls(**values)


EXPERIMENTS: Registry[Job] = Registry("experiment")
SUITES: Registry[Job] = Registry("benchmark suite")


def _decorator(registry: Registry[Job], kind, name, description, config, presets):
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"{name}: config must be a @dataclass, got {config!r}")

    def wrap(fn):
        registry.add(name, Job(name, kind, description, config, fn, dict(presets or {})))
        return fn

    return wrap


def experiment(name: str, description: str, config: type, presets: dict | None = None):
    """Register `fn(cfg, ctx) -> Result` as `deepnotes run NAME`.

    `presets` maps budget names to config overrides. Every job should define a "smoke"
    budget that finishes in seconds on a CPU: the test suite runs it.
    """
    return _decorator(EXPERIMENTS, "experiment", name, description, config, presets)


def suite(name: str, description: str, config: type, presets: dict | None = None):
    """Register `fn(cfg, ctx) -> Result` as `deepnotes bench NAME` (rows = measurements)."""
    return _decorator(SUITES, "bench", name, description, config, presets)


_DISCOVERED = False
IMPORT_ERRORS: dict[str, str] = {}


def discover() -> None:
    """Import every module under the job packages so that they register themselves.

    A module that fails to import is recorded in IMPORT_ERRORS (and reported by
    `deepnotes list`) instead of breaking every other job.
    """
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    for pkg_name in JOB_PACKAGES:
        pkg = importlib.import_module(pkg_name)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=pkg_name + "."):
            try:
                importlib.import_module(info.name)
            except Exception:  # noqa: BLE001 - reported, not hidden
                IMPORT_ERRORS[info.name] = traceback.format_exc(limit=3)


def registry_for(kind: str) -> Registry[Job]:
    return EXPERIMENTS if kind == "experiment" else SUITES


def default_out(job: Job) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / job.name / stamp


def recorded_command(argv: list[str]) -> str:
    """The command line to record, without `--out DIR`: the output folder is a path of the
    machine that ran it, not part of how to reproduce the result."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif not arg.startswith("--out="):
            kept.append(arg)
    return " ".join(["deepnotes", *kept])


def run_job(
    job: Job,
    cfg: Any,
    *,
    out: Path | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    budget: str = "default",
    quiet: bool = False,
    command: str | None = None,
) -> dict[str, Any]:
    """Run a job, write results.json next to its plots, print the table; return the record.

    Under torchrun (RANK set) only rank 0 makes the folder, writes and prints.
    """
    out = Path(out) if out is not None else default_out(job)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    if main_rank:
        out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    ctx = Context(out=out, device=device, seed=seed, budget=budget, quiet=quiet or not main_rank)
    seed_everything(seed)
    started = datetime.now().isoformat(timespec="seconds")
    t0 = time.perf_counter()
    result = job.fn(cfg, ctx)
    wall = time.perf_counter() - t0
    if not isinstance(result, Result):
        raise TypeError(f"{job.name} returned {type(result).__name__}, expected Result")
    plots = sorted(p.name for p in out.glob("*.png"))
    record = {
        "name": job.name,
        "kind": job.kind,
        "description": job.description,
        "budget": budget,
        "seed": seed,
        "config": dataclasses.asdict(cfg),
        "metrics": result.metrics,
        "table": result.table,
        "notes": result.notes,
        "plots": plots,
        "device": str(device),
        "device_name": device_name(device),
        "versions": versions(),
        "wall_time_s": wall,
        "started": started,
        "command": command or recorded_command(sys.argv[1:]),
    }
    if not main_rank:
        return record
    atomic_write_json(out / "results.json", record)
    if not quiet:
        print(f"\n{job.kind} {job.name} ({wall:.1f} s)")
        print(format_table(result.table, result.columns))
        for n in result.notes:
            print(f"note: {n}")
        for k, v in result.metrics.items():
            print(f"{k}: {v}")
        print(f"wrote {out / 'results.json'} and {len(plots)} plot(s)")
    if not plots:
        raise RuntimeError(f"{job.name} wrote no .png plot to {out}")
    return record
