"""Sequence mixers behind one interface: `build(name, d_model, causal=..., **kw)`.

Every module in this package registers its mixers with `@register("name")`; `build` and
`names` import them all first, so a new mixer touches only its own module.
"""

from __future__ import annotations

import importlib
import pkgutil

from deepnotes.mixers.base import Mixer
from deepnotes.registry import Registry

MIXERS: Registry[type[Mixer]] = Registry("mixer")
_LOADED = False


def register(name: str):
    """Class decorator: register a Mixer subclass under `name`."""

    def wrap(cls: type[Mixer]) -> type[Mixer]:
        if not issubclass(cls, Mixer):
            raise TypeError(f"{cls!r} is not a Mixer")
        cls.mixer_name = name
        return MIXERS.add(name, cls)

    return wrap


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for info in pkgutil.iter_modules(__path__, prefix=__name__ + "."):
        if not info.name.endswith((".base", ".common")):
            importlib.import_module(info.name)


def names() -> list[str]:
    """Registered mixer names, in registration order."""
    _load()
    return MIXERS.names()


def get(name: str) -> type[Mixer]:
    _load()
    return MIXERS.get(name)


def causal_names() -> list[str]:
    """Every registered mixer that can run causally (so can drive a decoder LM)."""
    return [n for n in names() if get(n).supports_causal]


def build(name: str, d_model: int, *, causal: bool, **kw) -> Mixer:
    """Instantiate mixer `name` for width `d_model`; unknown names raise ValueError."""
    return get(name)(d_model, causal=causal, **kw)


__all__ = ["Mixer", "build", "causal_names", "get", "names", "register", "MIXERS"]
