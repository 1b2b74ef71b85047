"""Command-line overrides for `@dataclass` configs.

Every field of a job's config becomes an option: `lr: float` -> `--lr 3e-4`,
`mixers: list[str]` -> `--mixers softmax,linear`, `compile: bool` -> `--compile true`.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def parse_bool(s: str) -> bool:
    low = s.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


def converter(tp: Any):
    """A function str -> value for annotation `tp`."""
    tp, optional = _strip_optional(tp)
    origin = typing.get_origin(tp)

    def maybe_none(fn):
        if not optional:
            return fn
        return lambda s: None if s.lower() in ("none", "null") else fn(s)

    if tp is bool:
        return maybe_none(parse_bool)
    if tp in (int, float, str):
        return maybe_none(tp)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis] or [str]
        item = converter(args[0])
        container = list if origin is list else tuple
        return maybe_none(lambda s: container(item(x) for x in s.split(",") if x != ""))
    if origin is typing.Literal:
        choices = typing.get_args(tp)

        def lit(s: str):
            for c in choices:
                if str(c) == s:
                    return c
            raise argparse.ArgumentTypeError(f"expected one of {choices}, got {s!r}")

        return maybe_none(lit)
    return maybe_none(str)


def add_config_arguments(parser: argparse.ArgumentParser, config_cls: type) -> None:
    """Add `--field` options for every dataclass field (default None = keep the config's)."""
    hints = typing.get_type_hints(config_cls)
    group = parser.add_argument_group(f"{config_cls.__name__} fields")
    for f in dataclasses.fields(config_cls):
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        )
        help_text = f.metadata.get("help", "")
        flags = sorted({f"--{f.name.replace('_', '-')}", f"--{f.name}"}, key=len)
        group.add_argument(
            *flags,
            dest=f"cfg__{f.name}",
            type=converter(hints[f.name]),
            default=None,
            metavar=f.name.upper(),
            help=f"{help_text} (default: {default})".strip(),
        )


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {
        k[len("cfg__") :]: v
        for k, v in vars(args).items()
        if k.startswith("cfg__") and v is not None
    }
