"""`deepnotes list | run NAME | bench SUITE | <command>`."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deepnotes import jobs
from deepnotes.cli_options import add_config_arguments, overrides_from_args
from deepnotes.job_checks import check_config
from deepnotes.registry import Registry, UnknownNameError
from deepnotes.utils.env import resolve_device


@dataclass
class Command:
    """An extra subcommand (e.g. `deepnotes algo ...`), registered by its own module."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]


COMMANDS: Registry[Command] = Registry("command")


def command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Decorator registering `handler(args) -> exit code` as `deepnotes NAME`."""

    def wrap(handler):
        COMMANDS.add(name, Command(name, help, add_arguments, handler))
        return handler

    return wrap


def _discover_commands() -> None:
    import importlib
    import pkgutil

    import deepnotes.commands as pkg

    for info in pkgutil.iter_modules(pkg.__path__, prefix="deepnotes.commands."):
        importlib.import_module(info.name)


def cmd_list() -> int:
    jobs.discover()
    for title, reg in (
        ("experiments (deepnotes run NAME)", jobs.EXPERIMENTS),
        ("benchmark suites (deepnotes bench SUITE)", jobs.SUITES),
    ):
        print(title)
        width = max((len(n) for n in reg.names()), default=0)
        for name, job in reg.items():
            budgets = ", ".join(["default", *[b for b in job.presets if b != "default"]])
            print(f"  {name.ljust(width)}  {job.description}  [budgets: {budgets}]")
    if COMMANDS:
        print("other commands")
        for name, c in COMMANDS.items():
            print(f"  {name}  {c.help}")
    for mod, err in jobs.IMPORT_ERRORS.items():
        print(f"warning: {mod} failed to import:\n{err}", file=sys.stderr)
    return 1 if jobs.IMPORT_ERRORS else 0


EXIT_ALL_FAILED = 1  # every row of the results table failed
EXIT_USAGE = 2  # a bad option or value, found before any work started
EXIT_SOME_FAILED = 3  # some rows failed (the others are in the table and results.json)
EXIT_INTERRUPTED = 130  # Ctrl-C


def _job_parser(job: jobs.Job, verb: str, budget: str, own_seed: bool):
    parser = argparse.ArgumentParser(
        prog=f"deepnotes {verb} {job.name}",
        description=job.description,
        epilog=(
            "exit status: 0 = done; 1 = every row failed; 2 = bad option or value (nothing "
            "ran); 3 = some rows failed; 130 = interrupted."
        ),
    )
    parser.add_argument("name")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    parser.add_argument("--out", default=None, help="output folder (default: runs/NAME/<time>/)")
    parser.add_argument(
        "--budget",
        default="default",
        help=f"preset: {', '.join(['default', *job.presets])} (default: default); with --help, "
        "the defaults shown are that preset's",
    )
    if job.resumable:
        keep = "continue the run already in --out (finished parts are kept)"
        parser.add_argument("--resume", action="store_true", help=keep)
    parser.add_argument("--force", action="store_true",
                        help="clear --out first if it holds an earlier run")  # fmt: skip
    if not own_seed:
        parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    preset = job.presets.get(budget, {})
    add_config_arguments(parser, job.config_cls, defaults=preset, hidden=HIDDEN_FIELDS)
    return parser


# config fields the command line sets through its own flags (--resume), not as --FIELD
HIDDEN_FIELDS = frozenset({"resume"})


def cmd_job(kind: str, argv: list[str]) -> int:
    jobs.discover()
    reg = jobs.registry_for(kind)
    verb = "run" if kind == "experiment" else "bench"
    pre = argparse.ArgumentParser(prog=f"deepnotes {verb}", add_help=False)
    pre.add_argument("name", nargs="?")
    pre.add_argument("--budget", default="default")
    known, _ = pre.parse_known_args(argv)
    if known.name is None or known.name.startswith("-"):
        print(
            f"usage: deepnotes {verb} NAME [options]; NAME is one of: {', '.join(reg.names())}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        job = reg.get(known.name)
    except UnknownNameError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if known.budget != "default" and known.budget not in job.presets:
        valid = ", ".join(["default", *job.presets])
        msg = f"error: --budget {known.budget}: {job.name} has the budgets {valid}"
        print(msg, file=sys.stderr)
        return EXIT_USAGE
    # a config with its own `seed` field takes --seed there; the run is seeded with it too
    own_seed = "seed" in {f.name for f in dataclasses.fields(job.config_cls)}
    args = _job_parser(job, verb, known.budget, own_seed).parse_args(argv)
    resume = bool(getattr(args, "resume", False))
    try:
        device = resolve_device(args.device)
        cfg = job.make_config(args.budget, **overrides_from_args(args))
        check_config(job, cfg)
        out = Path(args.out) if args.out is not None else jobs.default_out(job)
        jobs.prepare_out(out, resume=resume, force=args.force, resumable=job.resumable)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    seed = cfg.seed if own_seed else args.seed
    try:
        record = jobs.run_job(job, cfg, out=out, device=device, seed=seed, budget=args.budget,
                              resume=resume)  # fmt: skip
    except KeyboardInterrupt:
        print(f"\ninterrupted: {_interrupted_hint(job, out, argv)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    failed, rows = len(record["failed"]), len(record["table"])
    if failed and failed >= rows:
        return EXIT_ALL_FAILED
    return EXIT_SOME_FAILED if failed else 0


def _interrupted_hint(job: jobs.Job, out: Path, argv: list[str]) -> str:
    """One line: what was kept and how to go on."""
    if not job.resumable:
        return f"{job.name} does not resume; rerun it with --force to start over in {out}"
    recorded = shlex.split(jobs.recorded_command(argv))
    words = [w for w in recorded if w not in ("--resume", "--force")]
    verb = "run" if job.kind == "experiment" else "bench"
    cmd = shlex.join(["deepnotes", verb, *words[1:], "--out", str(out), "--resume"])
    return f"finished parts are saved in {out}; to go on: {cmd}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _discover_commands()
    top = argparse.ArgumentParser(
        prog="deepnotes",
        description="Deep-learning systems from the study notes: run experiments and benchmarks.",
    )
    sub = top.add_subparsers(dest="cmd", metavar="{list,run,bench,...}")
    sub.add_parser("list", help="list experiments and benchmark suites")
    sub.add_parser("run", help="run an experiment: deepnotes run NAME [--help]", add_help=False)
    sub.add_parser(
        "bench", help="run a benchmark suite: deepnotes bench SUITE [--help]", add_help=False
    )
    for name, c in COMMANDS.items():
        c.add_arguments(sub.add_parser(name, help=c.help))
    if not argv:
        top.print_help()
        return 2
    if argv[0] in ("run", "bench"):
        return cmd_job("experiment" if argv[0] == "run" else "bench", argv[1:])
    args = top.parse_args(argv)
    if args.cmd == "list":
        return cmd_list()
    return COMMANDS.get(args.cmd).handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
