"""The sequence-mixer interface shared by attention, its efficient relatives, RNNs and SSMs.

A mixer maps x: [B, T, D] -> [B, T, D]. Contract:
- `forward(x, mask=None)`: mask is a key-padding mask [B, T] of bool, True = real token.
  Padded positions never influence real positions, and their own outputs are zero.
- Causal mixers (`causal=True`) make output t depend on inputs <= t only.
- A mixer with `supports_step` decodes token by token: `init_state(batch, device, dtype)`
  and `step(x_t: [B, D], state) -> (y_t: [B, D], state)`; step-by-step outputs equal the
  full causal forward. The state does not grow with T unless `state_grows` (KV caches).
- `reference(x, mask=None)` is the explicit definition (O(T^2) or a step-by-step loop) that
  tests compare `forward` with.
- Misuse raises ValueError naming the problem: a causal request to a non-causal-only mixer,
  T over a fixed maximum length, a wrong rank or width, mismatched dtypes.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn


class Mixer(nn.Module):
    """Base class: input validation, padding, and the step API."""

    supports_causal: ClassVar[bool] = True
    supports_noncausal: ClassVar[bool] = True
    supports_step: ClassVar[bool] = False  # has init_state / step (causal mode only)
    state_grows: ClassVar[bool] = False  # step state grows with T (KV cache)
    supports_rotary: ClassVar[bool] = False  # accepts rotary=True (RoPE on q and k)
    supports_heads: ClassVar[bool] = False  # accepts n_heads=... (multi-head q, k, v)
    supports_scale: ClassVar[bool] = False  # accepts scale=... (the factor on q k^T)

    def __init__(self, d_model: int, *, causal: bool, max_len: int | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        if not isinstance(d_model, int) or d_model <= 0:
            raise ValueError(f"{name}: d_model must be a positive int, got {d_model!r}")
        if causal and not self.supports_causal:
            raise ValueError(
                f"{name} cannot be causal: it mixes over the whole sequence; "
                "build it with causal=False"
            )
        if not causal and not self.supports_noncausal:
            raise ValueError(f"{name} is causal-only; build it with causal=True")
        if max_len is not None and max_len <= 0:
            raise ValueError(f"{name}: max_len must be positive, got {max_len}")
        self.d_model = d_model
        self.causal = causal
        self.max_len = max_len

    # ----------------------------------------------------------------- validation
    def _param_dtype(self) -> torch.dtype | None:
        for p in self.parameters():
            return p.dtype
        return None

    def check_input(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        name = type(self).__name__
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name}: x must be a tensor, got {type(x).__name__}")
        if x.dim() != 3:
            raise ValueError(
                f"{name}: expected x of rank 3 [B, T, D], got rank {x.dim()} "
                f"with shape {tuple(x.shape)}"
            )
        B, T, D = x.shape
        if D != self.d_model:
            raise ValueError(f"{name}: expected width D = d_model = {self.d_model}, got {D}")
        if T == 0:
            raise ValueError(f"{name}: empty sequence (T = 0)")
        if self.max_len is not None and T > self.max_len:
            raise ValueError(f"{name}: sequence length T = {T} exceeds max_len = {self.max_len}")
        self._check_dtype(x)
        if mask is not None:
            if mask.shape != (B, T):
                raise ValueError(
                    f"{name}: mask must have shape [B, T] = {(B, T)}, got {tuple(mask.shape)}"
                )
            if mask.dtype != torch.bool:
                raise ValueError(f"{name}: mask must be bool (True = real token), got {mask.dtype}")

    def _check_dtype(self, x: torch.Tensor) -> None:
        name = type(self).__name__
        if not x.is_floating_point():
            raise ValueError(f"{name}: x must be floating point, got {x.dtype}")
        pdtype = self._param_dtype()
        if (
            pdtype is not None
            and x.dtype != pdtype
            and not torch.is_autocast_enabled(x.device.type)
        ):
            raise ValueError(
                f"{name}: dtype mismatch: input is {x.dtype} but parameters are "
                f"{pdtype}; convert one with .to()"
            )

    # ----------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, T, D], mask: [B, T] bool or None -> [B, T, D]."""
        self.check_input(x, mask)
        if mask is not None and bool(mask.all()):
            mask = None
        y = self.mix(x, mask)
        if mask is not None:
            y = torch.where(mask[..., None], y, torch.zeros((), dtype=y.dtype, device=y.device))
        return y

    def mix(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The mixer's fast form; inputs are already validated."""
        raise NotImplementedError(f"{type(self).__name__} must implement mix()")

    def reference(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The explicit definition (O(T^2) matrix or a step-by-step loop), for tests."""
        raise NotImplementedError(f"{type(self).__name__} has no reference()")

    # ----------------------------------------------------------------- decoding
    def _require_step(self) -> None:
        name = type(self).__name__
        if not self.supports_step:
            raise ValueError(f"{name} cannot decode token by token")
        if not self.causal:
            raise ValueError(f"{name}: step decoding needs a causal mixer (causal=True)")

    def init_state(self, batch: int, device: Any = None, dtype: torch.dtype | None = None):
        """State before the first token."""
        self._require_step()
        raise NotImplementedError(f"{type(self).__name__} must implement init_state()")

    def check_step_input(self, x_t: torch.Tensor) -> None:
        name = type(self).__name__
        self._require_step()
        if x_t.dim() != 2 or x_t.shape[-1] != self.d_model:
            raise ValueError(
                f"{name}.step: expected x_t of shape [B, D={self.d_model}], got {tuple(x_t.shape)}"
            )
        self._check_dtype(x_t)

    def step(self, x_t: torch.Tensor, state) -> tuple[torch.Tensor, Any]:
        """x_t: [B, D] -> (y_t: [B, D], new state)."""
        raise NotImplementedError(f"{type(self).__name__} must implement step()")

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, causal={self.causal}"
