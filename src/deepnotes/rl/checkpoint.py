"""Agent checkpoints: everything needed to resume a run exactly, written atomically.

A checkpoint is one `torch.save` dict holding the networks, optimisers, step counters, the
random-number generators (python, numpy, torch and the agent's own numpy generator), the
vector environments themselves (pickled, so an episode in flight continues where it was),
replay buffers and the learning curve so far. It is written through
`deepnotes.utils.io.atomic_write`: a crash while saving leaves the previous checkpoint intact.

Loading uses `torch.load(weights_only=False)` because of the pickled environments: load only
checkpoints you wrote yourself. A truncated or corrupted file, a missing key, or networks and
optimisers of other shapes raise `CheckpointError` (a ValueError naming the file) before any
network, optimiser, environment or generator of the run is touched.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepnotes.train.checkpoint import (
    CheckpointError,
    check_module_state,
    check_optimizer_state,
    check_rng_state,
)
from deepnotes.utils.errors import error_line
from deepnotes.utils.io import atomic_write
from deepnotes.utils.seed import rng_state, set_rng_state

FORMAT_VERSION = 2  # 2: generator states in `deepnotes.utils.seed`'s plain-value format
_KEYS = ("format_version", "rng", "algo", "config", "step", "obs", "envs", "parts")


def env_snapshot(envs) -> bytes:
    """Pickle the sub-environments of a `SyncVectorEnv` (their state and their RNGs)."""
    return pickle.dumps(list(envs.envs))


def restore_envs(envs, snapshot: bytes) -> None:
    restored = pickle.loads(snapshot)
    if len(restored) != len(envs.envs):
        raise ValueError(f"checkpoint has {len(restored)} envs, the run has {len(envs.envs)}")
    envs.envs = restored


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Atomically write `state` (plus the format version and RNG states) to `path`."""
    full = {"format_version": FORMAT_VERSION, "rng": rng_state(), **state}
    return atomic_write(path, lambda p: torch.save(full, p))


def load_checkpoint(path: str | os.PathLike, algo: str | None = None) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; check it is whole and belongs to `algo`.

    Raises CheckpointError naming `path` when the file cannot be read or lacks a key.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # zip, pickle and OS errors of a damaged file share no base class
        raise CheckpointError(
            f"{path}: damaged checkpoint, cannot be read ({error_line(e)})"
        ) from e
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a checkpoint dict")
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unknown checkpoint format {state.get('format_version')!r}")
    if algo is not None and state.get("algo") != algo:
        raise ValueError(f"{path} is a {state.get('algo')!r} checkpoint, not {algo!r}")
    missing = [k for k in _KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}")
    check_rng_state(path, state["rng"])
    return state


def save_agent(
    path: str | os.PathLike,
    algo: str,
    config: Any,
    step: int,
    obs: Any,
    envs,
    parts: dict[str, Any],
    **extra: Any,
) -> Path:
    """Checkpoint a training loop: `parts` maps names to objects with `state_dict()` (networks,
    optimisers, buffers, recorders, episode statistics); `extra` holds plain values."""
    import dataclasses

    return save_checkpoint(
        path,
        {
            "algo": algo,
            "config": dataclasses.asdict(config),
            "step": step,
            "obs": obs,
            "envs": env_snapshot(envs),
            "parts": {k: v.state_dict() for k, v in parts.items()},
            **extra,
        },
    )


def resume_agent(path: str | os.PathLike, algo: str, envs, parts: dict[str, Any]) -> dict[str, Any]:
    """Load what `save_agent` wrote into `parts` and `envs`, restore the global RNGs last, and
    return the checkpoint dict (for `step`, `obs` and the extras)."""
    state = load_checkpoint(path, algo)
    missing = sorted(set(parts) - set(state["parts"]))
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}")
    # Check everything against this run before restoring anything.
    for k, v in parts.items():
        sd = state["parts"][k]
        if isinstance(v, nn.Module):
            check_module_state(f"{path} [{k}]", v.state_dict(), sd)
        elif isinstance(v, torch.optim.Optimizer):
            check_optimizer_state(f"{path} [{k}]", v, sd)
    try:
        restored = pickle.loads(state["envs"])
    except Exception as e:
        raise CheckpointError(f"{path}: environment snapshot cannot be unpickled ({e})") from e
    if len(restored) != len(envs.envs):
        raise ValueError(f"{path}: checkpoint has {len(restored)} envs, the run has "
                         f"{len(envs.envs)}")  # fmt: skip
    for k, v in parts.items():
        v.load_state_dict(state["parts"][k])
    envs.envs = restored
    set_rng_state(state["rng"])
    return state
