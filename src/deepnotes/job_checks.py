"""Checks a job's config before any work starts (and before any folder is made).

Each bad value raises `ConfigError` with one line: the option, the value, what is allowed.
The generic rules read the config's own field comments (`cli_options.field_comments`):
- a count (steps, batch_size, d_model, ...: `COUNTS`) whose default is positive must be
  >= 1, unless its comment documents what 0 means ("0 = none", "(0 = only at the end)");
- an integer or float whose default is >= 0 must not be negative, unless its comment
  documents a negative value ("-1 = all");
- floats must be finite;
- `precision` must be fp32, bf16 or fp16;
- `mixer` / `mixers` must name registered mixers.
A job adds its own rules through `@experiment(..., check=fn)`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from typing import Any

from deepnotes.cli_options import _strip_optional, field_comments

PRECISIONS = ("fp32", "bf16", "fp16")
_ZERO_DOCUMENTED = re.compile(
    r"(?<![\d.\w])0(?![\d.])\s*(=|:|means|disables|turns|for\b|\)|,|is\b|keeps|or\b)"
    r"|\(\s*0\b(?![\d.])|\bzero\b"
)
_NEGATIVE_DOCUMENTED = re.compile(r"-1\b|negative|<\s*0")
# integer fields that count something a run cannot do zero of
COUNTS = frozenset({
    "steps", "total_steps", "train_steps", "iterations", "epochs", "max_epochs", "batch_size",
    "batch", "seq_len", "max_len", "d_model", "n_layers", "n_heads", "layers", "depth",
    "width", "hidden", "channels", "embed_dim", "image_size", "patch", "patch_size",
    "eval_every", "eval_interval_steps", "eval_batches", "eval_episodes", "eval_examples",
    "train_examples", "n_train", "n_test", "n_val", "seeds", "n_envs", "n_steps", "grad_accum",
    "vocab_size", "gen_tokens", "new_tokens", "frames", "num_classes", "num_queries",
})  # fmt: skip


class ConfigError(ValueError):
    """A config value that cannot work, found before the job starts."""

    def __init__(self, field: str, value: Any, allowed: str) -> None:
        self.field, self.value, self.allowed = field, value, allowed
        shown = ",".join(map(str, value)) if isinstance(value, list | tuple) else value
        super().__init__(f"--{field.replace('_', '-')} {shown}: {allowed}")


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def check_numbers(cfg: Any) -> None:
    """The sign and finiteness rules above, for every numeric field of cfg."""
    hints = typing.get_type_hints(type(cfg))
    comments = field_comments(type(cfg))
    for f in dataclasses.fields(cfg):
        value, default = getattr(cfg, f.name), _default(f)
        tp, _ = _strip_optional(hints[f.name])
        if value is None or isinstance(value, bool) or tp not in (int, float):
            continue
        note = comments.get(f.name, "")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f.name, value, "must be a finite number")
        is_num = isinstance(default, int | float) and not isinstance(default, bool)
        if not is_num:
            continue
        if value < 0 and default >= 0 and not _NEGATIVE_DOCUMENTED.search(note):
            floor = "a positive integer" if tp is int and default > 0 else "a number >= 0"
            raise ConfigError(f.name, value, f"must be {floor} ({note or f.name})")
        if (
            tp is int
            and value == 0
            and f.name in COUNTS
            and default > 0
            and not _ZERO_DOCUMENTED.search(note)
        ):
            raise ConfigError(f.name, value, f"must be a positive integer ({note or f.name})")


def check_names(cfg: Any) -> None:
    """precision, mixer and mixers fields name things that exist."""
    names = {f.name for f in dataclasses.fields(cfg)}
    if "precision" in names and cfg.precision not in PRECISIONS:
        raise ConfigError("precision", cfg.precision, f"must be one of {', '.join(PRECISIONS)}")
    if "mixer" in names or "mixers" in names:
        import deepnotes.mixers as M

        valid = M.names()
        asked = [cfg.mixer] if "mixer" in names else []
        field = "mixer" if asked else "mixers"
        if "mixers" in names and isinstance(cfg.mixers, list | tuple):
            asked, field = [m for m in cfg.mixers if m != "all"], "mixers"
        bad = [m for m in asked if m.split("[")[0] not in valid]  # "softmax[math]": a variant
        if bad:
            raise ConfigError(
                field, bad, f"unknown mixer(s) {', '.join(bad)}; valid: {', '.join(valid)}"
            )


def check_config(job, cfg: Any) -> None:
    """Every generic rule, then the job's own `check` (all raise ConfigError)."""
    check_numbers(cfg)
    check_names(cfg)
    if job.check is not None:
        job.check(cfg)
