"""Autoregressive decoding with a per-token state, or by recomputing the whole prefix.

- Stepped (`use_cache=True` and `model.supports_step`): the model keeps a decoding state,
  `state = model.init_state(B)`, `logits, state = model.step(tokens_t, state)`. For softmax
  attention the state is a KV cache, so token t costs O(t) instead of the O(t²) of a full
  forward; for linear attention, RNNs and SSMs it is a fixed-size recurrent state, so both
  the cost and the memory per token stay constant however long the text grows.
- Recompute (fallback): run the model on the whole sequence for every new token and take
  the last position's logits. Correct for any causal model; O(t) work per layer per token
  for recurrent models and O(t²) for attention. Sequences longer than the model's max_len
  are cropped to their last max_len tokens; a model with a learned or sinusoidal position
  table takes this path when prompt + new tokens would run past its table.

Both give identical tokens (tests check every mixer that decodes).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch
from torch import nn

from deepnotes.generate.sampling import sample_next


def _max_len(model: nn.Module) -> int | None:
    cfg = getattr(model, "cfg", None)
    return getattr(cfg, "max_len", None)


def _position_limit(model: nn.Module) -> int | None:
    """Longest sequence a model with a position table can step through (None = no limit)."""
    cfg = getattr(model, "cfg", None)
    if getattr(cfg, "positions", None) in ("learned", "sinusoidal"):
        return getattr(cfg, "max_len", None)
    return None


@torch.no_grad()
def generate(
    model: nn.Module,
    prompt: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """prompt: LongTensor [B, T0] -> LongTensor [B, T0 + max_new_tokens].

    temperature 0 is greedy decoding. `generator` (on the model's device) makes sampling
    reproducible. `use_cache=False` forces the recompute path.
    """
    if prompt.dim() != 2 or prompt.shape[1] == 0:
        raise ValueError(f"prompt must be [B, T0] with T0 >= 1, got {tuple(prompt.shape)}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    was_training = model.training
    model.eval()
    try:
        stepped = use_cache and bool(getattr(model, "supports_step", False))
        limit = _position_limit(model)
        if limit is not None and prompt.shape[1] + max_new_tokens > limit:
            stepped = False  # past the position table: recompute over a sliding window
        run = _generate_stepped if stepped else _generate_recompute
        return run(model, prompt, max_new_tokens, temperature, top_k, top_p, generator)
    finally:
        model.train(was_training)


def prefill(model: nn.Module, prompt: torch.Tensor, state=None):
    """Feed prompt [B, T0] through `model.step`; return (last logits [B, V], state)."""
    if state is None:
        p = next(iter(model.parameters()))
        state = model.init_state(prompt.shape[0], device=p.device, dtype=p.dtype)
    logits = None
    for t in range(prompt.shape[1]):
        logits, state = model.step(prompt[:, t], state)
    return logits, state


def _generate_stepped(model, prompt, n, temperature, top_k, top_p, generator):
    logits, state = prefill(model, prompt)
    out = [prompt]
    for i in range(n):
        nxt = sample_next(
            logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator
        )
        out.append(nxt[:, None])
        if i < n - 1:
            logits, state = model.step(nxt, state)
    return torch.cat(out, dim=1)


def _generate_recompute(model, prompt, n, temperature, top_k, top_p, generator):
    seq = prompt
    limit = _max_len(model)
    for _ in range(n):
        ctx = seq if limit is None else seq[:, -limit:]
        logits = model(ctx)[:, -1]
        nxt = sample_next(
            logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator
        )
        seq = torch.cat([seq, nxt[:, None]], dim=1)
    return seq


def state_nbytes(state: Any) -> int:
    """Bytes held by the tensors of a decoding state (lists, dicts, dataclasses, objects).

    Counts each storage once, at its full allocated size (a KV cache's spare capacity too).
    """
    seen: set[int] = set()
    total = 0
    stack = [state]
    visited: set[int] = set()
    while stack:
        obj = stack.pop()
        if id(obj) in visited:
            continue
        visited.add(id(obj))
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple):
            stack.extend(obj)
        elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            stack.extend(getattr(obj, f.name) for f in dataclasses.fields(obj))
        elif hasattr(obj, "__dict__") and not isinstance(obj, nn.Module | type):
            stack.extend(vars(obj).values())
    return total


def timed_generate(
    model: nn.Module,
    prompt: torch.Tensor,
    n: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, float, str]:
    """Sample n tokens after prompt [1, T0] with `generate` and time it (prefill included).

    Returns (new tokens [n], seconds, path): "step" through the KV cache / recurrent state,
    or "recompute" (the whole prefix per token) for a model that cannot step, or whose
    position table the text would run past.
    """
    gen = torch.Generator(device=prompt.device).manual_seed(seed)
    sync = torch.cuda.synchronize if prompt.device.type == "cuda" else (lambda: None)
    limit = _position_limit(model)
    fits = limit is None or prompt.shape[1] + n <= limit
    path = "step" if getattr(model, "supports_step", False) and fits else "recompute"
    sync()
    t0 = time.perf_counter()
    out = generate(model, prompt, n, temperature=temperature, top_k=top_k, generator=gen)
    sync()
    return out[0, prompt.shape[1] :], time.perf_counter() - t0, path
