"""`deepnotes list | run NAME | bench SUITE | <command>`."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass

from deepnotes import jobs
from deepnotes.cli_options import add_config_arguments, overrides_from_args
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


def cmd_job(kind: str, argv: list[str]) -> int:
    jobs.discover()
    reg = jobs.registry_for(kind)
    verb = "run" if kind == "experiment" else "bench"
    pre = argparse.ArgumentParser(prog=f"deepnotes {verb}", add_help=False)
    pre.add_argument("name", nargs="?")
    known, _ = pre.parse_known_args(argv)
    if known.name is None or known.name.startswith("-"):
        print(
            f"usage: deepnotes {verb} NAME [options]; NAME is one of: {', '.join(reg.names())}",
            file=sys.stderr,
        )
        return 2
    try:
        job = reg.get(known.name)
    except UnknownNameError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(
        prog=f"deepnotes {verb} {job.name}", description=job.description
    )
    parser.add_argument("name")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    parser.add_argument("--out", default=None, help="output directory (default: runs/NAME/<time>/)")
    parser.add_argument(
        "--budget",
        default="default",
        help=f"preset: {', '.join(['default', *job.presets])} (default: default)",
    )
    # a config with its own `seed` field takes --seed there; the run is seeded with it too
    own_seed = "seed" in {f.name for f in dataclasses.fields(job.config_cls)}
    if not own_seed:
        parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_config_arguments(parser, job.config_cls)
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
        cfg = job.make_config(args.budget, **overrides_from_args(args))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    seed = cfg.seed if own_seed else args.seed
    jobs.run_job(job, cfg, out=args.out, device=device, seed=seed, budget=args.budget)
    return 0


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
