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


def add_config_arguments(
    parser: argparse.ArgumentParser,
    config_cls: type,
    defaults: dict[str, Any] | None = None,
    hidden: frozenset[str] = frozenset(),
) -> None:
    """Add `--field` options for every dataclass field (default None = keep the config's).

    Help text: the field's source comment, how to write the value, and its default, which is
    `defaults[name]` when given (a --budget preset's value) else the dataclass default.
    Fields in `hidden` get no option.
    """
    hints = typing.get_type_hints(config_cls)
    comments = field_comments(config_cls)
    group = parser.add_argument_group(f"{config_cls.__name__} fields")
    for f in dataclasses.fields(config_cls):
        if f.name in hidden:
            continue
        if defaults is not None and f.name in defaults:
            default = defaults[f.name]
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        if isinstance(default, list | tuple):
            default = ",".join(map(str, default)) or "(empty)"
        text = f.metadata.get("help") or comments.get(f.name, "")
        # the dashed spelling first: argparse shows the first flag in usage lines
        flags = list(dict.fromkeys([f"--{f.name.replace('_', '-')}", f"--{f.name}"]))
        group.add_argument(
            *flags,
            dest=f"cfg__{f.name}",
            type=converter(hints[f.name]),
            default=None,
            metavar=f.name.upper(),
            help=f"{text} [{type_hint_text(hints[f.name])}; default: {default}]".strip(),
        )


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {
        k[len("cfg__") :]: v
        for k, v in vars(args).items()
        if k.startswith("cfg__") and v is not None
    }


def field_comments(config_cls: type) -> dict[str, str]:
    """The comment written after each field of a @dataclass config (and on the comment-only
    lines just below it), for every class in its MRO: the text of `--help`."""
    import ast
    import inspect
    import io
    import tokenize

    out: dict[str, str] = {}
    for klass in reversed(config_cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            src = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        src = inspect.cleandoc("\n" + src) if src.startswith((" ", "\t")) else src
        tree = ast.parse(src)
        cls_node = next(n for n in tree.body if isinstance(n, ast.ClassDef))
        starts = {
            n.target.id: (n.lineno, n.end_lineno)
            for n in cls_node.body
            if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
        }
        comments: dict[int, str] = {}
        code_lines: set[int] = set()
        for tok in tokenize.generate_tokens(io.StringIO(src).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
            elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                                  tokenize.DEDENT, tokenize.ENDMARKER):  # fmt: skip
                code_lines.add(tok.start[0])
        own = {n: [comments[i] for i in range(a, b + 1) if i in comments]
               for n, (a, b) in starts.items()}  # fmt: skip
        bare_starts = {a for n, (a, _) in starts.items() if not own[n]}
        for name, (first, last) in starts.items():
            parts = list(own[name])
            if not parts:  # comment-only lines just above a field without its own comment
                line = first - 1
                while line in comments and line not in code_lines:
                    parts.insert(0, comments[line])
                    line -= 1
            line, below = last + 1, []  # continuation lines below the field ...
            while line in comments and line not in code_lines:
                below.append(comments[line])
                line += 1
            if line not in bare_starts:  # ... unless they introduce the next, bare field
                parts += below
            text = " ".join(p for p in parts if p and p != "fmt: skip")
            if text:
                out[name] = text
    return out


def type_hint_text(tp: Any) -> str:
    """How to write a value of annotation `tp` on the command line."""
    tp, optional = _strip_optional(tp)
    origin = typing.get_origin(tp)
    none = "; none for None" if optional else ""
    if tp is bool:
        return "true/false" + none
    if origin in (list, tuple):
        return "comma-separated list, e.g. a,b" + none
    if origin is typing.Literal:
        return "one of " + "|".join(str(c) for c in typing.get_args(tp)) + none
    if origin is dict:
        return "JSON object, e.g. '{\"k\": 1}'" + none
    return getattr(tp, "__name__", str(tp)) + none
