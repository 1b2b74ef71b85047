"""Training checkpoints that resume exactly and never leave a corrupt "latest".

Layout of `ckpt_dir`:

    step-00000200/
        model.safetensors   weights (tied tensors stored once, aliases in the metadata)
        state.pt            optimizer, scheduler, loss scaler, RNG states of every rank,
                            data-iterator position, trainer counters and history
        meta.json           step, tokens, time; written last
    latest                  text file naming the newest complete checkpoint directory

A checkpoint is written into a hidden temporary directory and renamed into place only when
complete (a rename is atomic on POSIX); then `latest` is replaced atomically
(`deepnotes.utils.io`). A crash at any moment leaves `latest` naming a complete
checkpoint. `find_latest` also falls back to the newest complete directory if `latest` is
missing or stale, and skips (with a warning) a newest checkpoint whose files are damaged.

`load_checkpoint` validates every file before it touches the model or the optimizer: each
file must load, hold the expected keys, and match the model's parameter names and shapes
and the optimizer's parameter groups. A damaged or mismatched file raises `CheckpointError`
naming the file and what is wrong, and nothing has been restored.

Under DDP rank 0 writes (all ranks hold the same weights); the RNG states of every rank are
gathered so each rank resumes its own stream. Under FSDP the full (unsharded) state is
gathered to CPU through `torch.distributed.checkpoint.state_dict`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from deepnotes.utils.errors import error_line
from deepnotes.utils.io import atomic_write_json, atomic_write_text
from deepnotes.utils.seed import rng_state, set_rng_state

_STEP_DIR = re.compile(r"^step-(\d+)$")
_STATE_KEYS = ("optimizer", "scheduler", "precision", "data", "rng", "trainer")
_RNG_KEYS = ("python", "numpy", "torch")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: the message names the file and the fault."""


# ----------------------------------------------------------------------------- helpers
def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside DDP and torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):  # torch.compile
            model = model._orig_mod
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def _is_fsdp(model: nn.Module) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - very old torch
        return False
    return isinstance(unwrap(model), FSDPModule)


def _dedupe(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Drop names that alias another tensor's storage (tied weights); return the aliases."""
    seen: dict[tuple, str] = {}
    out: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for name, t in sd.items():
        key = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), t.shape, t.stride())
        if t.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        out[name] = t.detach().cpu().contiguous()
    return out, aliases


# ----------------------------------------------------------------------------- state
def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Full state dict with clean names (collective under FSDP: call on every rank)."""
    if _is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_model_state_dict(unwrap(model), options=opts)
    return unwrap(model).state_dict()


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    if _is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_optimizer_state_dict(unwrap(model), optimizer, options=opts)
    return optimizer.state_dict()


def load_model_state(model: nn.Module, sd: dict[str, torch.Tensor]) -> None:
    if _is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(unwrap(model), sd, options=StateDictOptions(full_state_dict=True))
    else:
        unwrap(model).load_state_dict(sd)


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, sd: dict) -> None:
    if _is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        opts = StateDictOptions(full_state_dict=True)
        set_optimizer_state_dict(unwrap(model), optimizer, sd, options=opts)
    else:
        optimizer.load_state_dict(sd)


# ----------------------------------------------------------------------------- save / load
def save_weights(path: str | os.PathLike, state: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    tensors, aliases = _dedupe(state)
    save_file(tensors, str(path), metadata={"aliases": json.dumps(aliases)})


def load_weights(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict:
    from safetensors import safe_open
    from safetensors.torch import load_file

    sd = load_file(str(path), device=str(device))
    with safe_open(str(path), framework="pt") as f:
        aliases = json.loads((f.metadata() or {}).get("aliases", "{}"))
    for name, target in aliases.items():
        sd[name] = sd[target]
    return sd


def save_checkpoint(
    ckpt_dir: str | os.PathLike,
    step: int,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    precision=None,
    data=None,
    trainer_state: dict | None = None,
    keep: int = 2,
) -> Path | None:
    """Write checkpoint `step-{step}` atomically, point `latest` at it, keep the newest `keep`.

    Every rank must call it (states are gathered); only rank 0 writes. Returns the
    directory on rank 0, None elsewhere.
    """
    dist = _dist()
    rank = dist.get_rank() if dist else 0
    weights = model_state(model)
    optim = optimizer_state(model, optimizer) if optimizer is not None else None
    rngs = [rng_state()]
    if dist:
        rngs = [None] * dist.get_world_size()
        dist.all_gather_object(rngs, rng_state())
    if rank != 0:
        dist.barrier()
        return None
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / f"step-{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=ckpt_dir))
    try:
        save_weights(tmp / "model.safetensors", weights)
        state = {
            "optimizer": optim,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "precision": precision.state_dict() if precision is not None else None,
            "data": data.state_dict() if hasattr(data, "state_dict") else None,
            "rng": rngs,
            "trainer": trainer_state or {},
        }
        torch.save(state, tmp / "state.pt")
        scalars = {
            k: v for k, v in (trainer_state or {}).items() if isinstance(v, int | float | str)
        }
        meta = {**scalars, "step": step, "time": time.time()}
        atomic_write_json(tmp / "meta.json", meta)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        trash = None
        if final.exists():  # re-saving a step: move the old copy aside first
            trash = ckpt_dir / f".{final.name}.old-{os.getpid()}"
            os.replace(final, trash)
        os.replace(tmp, final)
        atomic_write_text(ckpt_dir / "latest", final.name + "\n")
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if dist:
            dist.barrier()
    _prune(ckpt_dir, keep, protect=final.name)
    return final


def _complete(d: Path) -> bool:
    return (d / "meta.json").is_file() and (d / "model.safetensors").is_file()


def _step_dirs(ckpt_dir: Path) -> list[Path]:
    found = [(int(m.group(1)), d) for d in ckpt_dir.iterdir() if (m := _STEP_DIR.match(d.name))]
    return [d for _, d in sorted(found) if _complete(d)]


def _prune(ckpt_dir: Path, keep: int, protect: str) -> None:
    if keep <= 0:
        return
    dirs = _step_dirs(ckpt_dir)
    for d in dirs[:-keep]:
        if d.name != protect:
            shutil.rmtree(d, ignore_errors=True)


# ----------------------------------------------------------------------------- validation
def _read(path: Path, what: str, reader):
    """reader(path), with any failure (truncation, bad bytes, missing) as a CheckpointError."""
    if not path.is_file():
        raise CheckpointError(f"{path}: missing ({what})")
    try:
        return reader(path)
    except Exception as e:  # safetensors, pickle, zip and json errors have no common base
        raise CheckpointError(f"{path}: damaged {what}, cannot be read ({error_line(e)})") from e


def check_module_state(path, expected: dict[str, torch.Tensor], sd: dict) -> None:
    """Raise CheckpointError unless `sd` has exactly `expected`'s names and shapes."""
    missing = sorted(set(expected) - set(sd))
    extra = sorted(set(sd) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{path}: weights do not match the model: missing {missing[:5]}"
                              f"{'...' if len(missing) > 5 else ''}, unexpected {extra[:5]}"
                              f"{'...' if len(extra) > 5 else ''}")  # fmt: skip
    for name, t in expected.items():
        got = sd[name]
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(t.shape):
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise CheckpointError(
                f"{path}: {name!r} has shape {shape}, the model expects {tuple(t.shape)}"
            )


def check_optimizer_state(path, optimizer: torch.optim.Optimizer, sd) -> None:
    """Raise CheckpointError unless `sd` fits `optimizer`: same groups, same parameter
    counts, and per-parameter state tensors of the parameters' shapes."""
    if not isinstance(sd, dict) or not {"state", "param_groups"} <= set(sd):
        raise CheckpointError(f"{path}: optimizer state lacks 'state'/'param_groups'")
    groups = sd["param_groups"]
    ours = optimizer.param_groups
    if len(groups) != len(ours):
        raise CheckpointError(f"{path}: optimizer has {len(groups)} parameter groups, the run "
                              f"has {len(ours)}")  # fmt: skip
    for i, (g, o) in enumerate(zip(groups, ours, strict=True)):
        if len(g.get("params", ())) != len(o["params"]):
            raise CheckpointError(f"{path}: optimizer group {i} has {len(g.get('params', ()))} "
                                  f"parameters, the run has {len(o['params'])}")  # fmt: skip
    by_id = {
        pid: p
        for g, o in zip(groups, ours, strict=True)
        for pid, p in zip(g["params"], o["params"], strict=True)
    }
    for pid, st in sd["state"].items():
        if pid not in by_id:  # FSDP's full optimizer state is keyed by name: no ids to check
            continue
        p = by_id[pid]
        for k, v in st.items():
            # Same-rank states (Adam moments) must match; factored ones (lower rank) may not.
            if isinstance(v, torch.Tensor) and v.dim() == p.dim() and v.shape != p.shape:
                raise CheckpointError(f"{path}: optimizer state {k!r} of parameter {pid} has "
                                      f"shape {tuple(v.shape)}, the parameter "
                                      f"{tuple(p.shape)}")  # fmt: skip


def check_rng_state(path, rng) -> None:
    """Raise CheckpointError unless `rng` looks like `deepnotes.utils.seed.rng_state()`."""
    if not isinstance(rng, dict) or not set(_RNG_KEYS) <= set(rng):
        raise CheckpointError(f"{path}: RNG state lacks {list(_RNG_KEYS)}")


def _read_meta(path: Path) -> dict:
    meta = _read(path, "metadata", lambda p: json.loads(p.read_text()))
    if not isinstance(meta, dict) or not isinstance(meta.get("step"), int):
        raise CheckpointError(f"{path}: metadata has no integer 'step'")
    return meta


def _read_state(path: Path) -> dict:
    state = _read(path, "training state",
                  lambda p: torch.load(p, map_location="cpu", weights_only=True))  # fmt: skip
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: training state is a {type(state).__name__}, not a dict")
    missing = [k for k in _STATE_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: training state lacks {missing}")
    rngs = state["rng"]
    if not isinstance(rngs, list) or not rngs:
        raise CheckpointError(f"{path}: training state has no RNG states")
    for r in rngs:
        check_rng_state(path, r)
    return state


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict, dict]:
    """Load and check one checkpoint directory: (weights, state, meta), touching no model.

    Raises CheckpointError naming the damaged file.
    """
    path = Path(path)
    meta = _read_meta(path / "meta.json")
    weights = _read(path / "model.safetensors", "weights", load_weights)
    state = _read_state(path / "state.pt")
    return weights, state, meta


def _candidates(ckpt_dir: Path) -> list[Path]:
    """Step directories newest first, the one `latest` names leading."""
    dirs = list(reversed(_step_dirs(ckpt_dir)))
    pointer = ckpt_dir / "latest"
    if pointer.is_file():
        target = ckpt_dir / pointer.read_text().strip()
        if target in dirs:
            dirs.remove(target)
            dirs.insert(0, target)
    return dirs


def find_latest(ckpt_dir: str | os.PathLike, *, check: bool = True) -> Path | None:
    """The checkpoint `latest` names if complete and readable, else the newest one that is,
    else None. A damaged checkpoint skipped on the way is reported with a warning.

    check: read every file of the candidate (False: only check that the files exist).
    """
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return None
    skipped = []
    for d in _candidates(ckpt_dir):
        if check:
            try:
                read_checkpoint(d)
            except CheckpointError as e:
                skipped.append(str(e))
                continue
        if skipped:
            warnings.warn(f"skipping damaged checkpoint(s): {'; '.join(skipped)}; resuming from "
                          f"{d}", stacklevel=2)  # fmt: skip
        return d
    if skipped:
        warnings.warn(f"no usable checkpoint in {ckpt_dir}: {'; '.join(skipped)}", stacklevel=2)
    return None


def load_checkpoint(
    path: str | os.PathLike,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    precision=None,
    data=None,
    restore_rng: bool = True,
) -> dict:
    """Restore everything `save_checkpoint` wrote; return the saved trainer state.

    `path` is a checkpoint directory or a `ckpt_dir` (then its newest readable checkpoint is
    used, skipping damaged ones with a warning). Every file is read and checked against
    `model` and `optimizer` first; a damaged or mismatched file raises `CheckpointError`
    (a ValueError naming the file) before anything is restored.
    """
    path = Path(path)
    if not (path / "meta.json").exists() and not (path / "model.safetensors").exists():
        found = find_latest(path)  # a ckpt_dir: its newest readable checkpoint
        if found is None:
            raise ValueError(f"no complete checkpoint at {str(path)!r}")
        path = found
    weights, state, _ = read_checkpoint(path)
    # Validate against this run before anything is restored (no half-restored state).
    check_module_state(path / "model.safetensors", unwrap(model).state_dict(), weights)
    if optimizer is not None and state["optimizer"] is not None:
        check_optimizer_state(path / "state.pt", optimizer, state["optimizer"])
    load_model_state(model, weights)
    if optimizer is not None and state["optimizer"] is not None:
        load_optimizer_state(model, optimizer, state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    if precision is not None and state["precision"]:
        precision.load_state_dict(state["precision"])
    if data is not None and state["data"] is not None and hasattr(data, "load_state_dict"):
        data.load_state_dict(state["data"])
    if restore_rng:
        dist = _dist()
        rank = dist.get_rank() if dist else 0
        rngs = state["rng"]
        set_rng_state(rngs[rank] if rank < len(rngs) else rngs[0])
    return {**state["trainer"], "path": str(path)}
