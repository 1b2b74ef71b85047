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
import json
import os
import pkgutil
import shlex
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import torch

from deepnotes.job_checks import check_config
from deepnotes.registry import Registry
from deepnotes.utils.env import code_revision, device_name, reset_threads_used, versions
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
    failed: list[str] = field(default_factory=list)  # rows that failed (exit status 1 or 3)


@dataclass
class Context:
    """Handed to every job: where to write, which device, progress and plotting helpers."""

    out: Path
    device: torch.device
    seed: int = 0
    budget: str = "default"
    quiet: bool = False
    resume: bool = False  # continue the run already in `out` (jobs that can: Job.resumable)
    revision: str | None = None  # the code revision the run started with (run_job sets it)

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

    def save_rows(self, rows: list[dict[str, Any]]) -> Path:
        """Write the rows measured so far to `out/rows_so_far.json` (atomically, with device,
        versions and the command), so that a crash or time-out mid-run loses none of them."""
        code = versions()
        if self.revision is not None:  # the start's, not the one of a tree that moved on
            code["revision"] = self.revision
        partial = {"device": device_name(self.device), "versions": code, "rows": rows,
                   "command": recorded_command(sys.argv[1:])}  # fmt: skip
        path = self.out / "rows_so_far.json"
        atomic_write_json(path, partial)
        return path

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
    check: Callable[[Any], None] | None = None  # job-specific config check (ConfigError)
    resumable: bool = False  # can continue a run in an existing --out (--resume)

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


def _decorator(registry: Registry[Job], kind, name, description, config, presets, **kw):
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"{name}: config must be a @dataclass, got {config!r}")

    def wrap(fn):
        job = Job(name, kind, description, config, fn, dict(presets or {}), **kw)
        registry.add(name, job)
        return fn

    return wrap


def experiment(
    name: str,
    description: str,
    config: type,
    presets: dict | None = None,
    *,
    check: Callable[[Any], None] | None = None,
    resumable: bool = False,
):
    """Register `fn(cfg, ctx) -> Result` as `deepnotes run NAME`.

    `presets` maps budget names to config overrides. Every job should define a "smoke"
    budget that finishes in seconds on a CPU: the test suite runs it. `check(cfg)` raises
    `ConfigError` for values the generic checks (`deepnotes.job_checks`) cannot know about.
    `resumable`: the job continues a run found in its output folder when ctx.resume is set.
    """
    return _decorator(EXPERIMENTS, "experiment", name, description, config, presets,
                      check=check, resumable=resumable)  # fmt: skip


def suite(
    name: str,
    description: str,
    config: type,
    presets: dict | None = None,
    *,
    check: Callable[[Any], None] | None = None,
    resumable: bool = False,
):
    """Register `fn(cfg, ctx) -> Result` as `deepnotes bench NAME` (rows = measurements)."""
    return _decorator(SUITES, "bench", name, description, config, presets,
                      check=check, resumable=resumable)  # fmt: skip


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
    machine that ran it, not part of how to reproduce the result. Arguments are shell-quoted
    (an empty value records as '') so the line can be typed back as it is."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif not arg.startswith("--out="):
            kept.append(arg)
    return shlex.join(["deepnotes", *kept])


MARKER = ".deepnotes-run"  # written into every output folder: what --force may clear


class OutputError(ValueError):
    """--out cannot be used as asked (a file, not creatable, or holds another run)."""


def prepare_out(
    out: Path, *, resume: bool = False, force: bool = False, resumable: bool = True
) -> Path:
    """Check (and make) an output folder before any work starts.

    An existing folder holding results is refused unless `resume` (continue the run in it)
    or `force` (clear it first; only folders this program made, which hold MARKER). A folder
    that holds only MARKER (a run stopped before it wrote anything) counts as empty.
    `resumable` says whether the refusal may suggest --resume.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out}: is a file, not a folder")
    if out.is_dir() and any(p.name != MARKER for p in out.iterdir()):
        if force:
            if not (out / MARKER).exists():
                raise OutputError(
                    f"--out {out}: not empty and not made by deepnotes; --force clears only "
                    "folders deepnotes made. Choose another --out"
                )
            shutil.rmtree(out)
        elif not resume:
            how = "add --resume to continue that run or " if resumable else ""
            raise OutputError(f"--out {out}: already holds results; {how}--force to overwrite it")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / MARKER).touch()
    except OSError as e:
        raise OutputError(f"--out {out}: cannot create it ({e.strerror or e})") from None
    return out


def _short(v: Any) -> str:
    """A metric for the terminal: floats to 4 significant digits, long values cut."""
    if isinstance(v, float):
        return f"{v:.4g}"
    text = str(v)
    return text if len(text) <= 80 else text[:77] + "..."


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
    resume: bool = False,
) -> dict[str, Any]:
    """Check the config, run the job, write results.json next to its plots, print the table;
    return the record. Raises ConfigError (before any folder is made) for a bad config.

    Under torchrun (RANK set) only rank 0 makes the folder, writes and prints. With `resume`
    the wall time adds up over the runs that made the folder's results.
    """
    check_config(job, cfg)
    out = Path(out) if out is not None else default_out(job)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    previous = _previous_record(out) if resume else None
    if main_rank:
        out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    ctx = Context(out=out, device=device, seed=seed, budget=budget,
                  quiet=quiet or not main_rank, resume=resume)  # fmt: skip
    seed_everything(seed)
    reset_threads_used()
    started = datetime.now().isoformat(timespec="seconds")
    revision = code_revision()  # at the start: the code that ran, even if the tree changes later
    ctx.revision = revision
    t0 = time.perf_counter()
    result = job.fn(cfg, ctx)
    wall = time.perf_counter() - t0
    if not isinstance(result, Result):
        raise TypeError(f"{job.name} returned {type(result).__name__}, expected Result")
    plots = sorted(p.name for p in out.glob("*.png"))
    before = 0.0
    if previous is not None:
        before = float(previous.get("wall_time_total_s", previous.get("wall_time_s", 0.0)))
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
        "failed": result.failed,
        "plots": plots,
        "device": str(device),
        "device_name": device_name(device),
        "versions": {**versions(), "revision": revision},  # versions() counts threads used
        "wall_time_s": wall,  # this run
        "wall_time_total_s": before + wall,  # every run that made these results
        "resumed": previous is not None,
        "started": started,
        "command": command or recorded_command(sys.argv[1:]),
    }
    if not main_rank:
        return record
    atomic_write_json(out / "results.json", record)
    if not quiet:
        _print_summary(job, result, record, out)
    if not plots:
        raise RuntimeError(f"{job.name} wrote no .png plot to {out}")
    return record


def _previous_record(out: Path) -> dict | None:
    try:
        return json.loads((Path(out) / "results.json").read_text())
    except (OSError, ValueError):
        return None


def _print_summary(job: Job, result: Result, record: dict, out: Path, most: int = 12) -> None:
    wall = record["wall_time_s"]
    total = record["wall_time_total_s"]
    took = f"{wall:.1f} s" + (f", {total:.1f} s with the runs resumed" if record["resumed"] else "")
    print(f"\n{job.kind} {job.name} ({took})")
    print(format_table(result.table, result.columns))
    for n in result.notes:
        print(f"note: {n}")
    items = list(result.metrics.items())
    for k, v in items[:most]:
        print(f"{k}: {_short(v)}")
    if len(items) > most:
        print(f"({len(items) - most} more metrics, at full precision, in results.json)")
    if result.failed:
        print(f"FAILED: {', '.join(map(str, result.failed))}")
    print(f"wrote {out / 'results.json'} and {len(record['plots'])} plot(s)")
