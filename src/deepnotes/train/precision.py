"""Mixed precision: fp32, bf16 or fp16 compute with fp32 master weights.

- The weights, gradients and optimizer state stay fp32. `torch.autocast` runs matmuls and
  convolutions in the low-precision type and keeps reductions (softmax, norms, losses) in
  fp32 (Micikevicius et al. 2018, "mixed precision training").
- bf16 has fp32's 8 exponent bits (range up to ~3e38), so gradients neither overflow nor
  underflow more than in fp32, and no loss scaling is needed.
- fp16 has 5 exponent bits: values below 2^-24 ≈ 6e-8 flush to zero and above 65504
  overflow. Small gradients would vanish, so the loss is multiplied by a scale S before
  backward (gradients scale by S, by the chain rule) and divided by S before the step
  (`torch.amp.GradScaler`). If any gradient is inf/NaN the step is skipped and S halves;
  after `growth_interval` clean steps S doubles. S thus hovers near the largest safe value.
"""

from __future__ import annotations

import contextlib

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """Autocast and (for fp16) loss scaling around one training step.

    Use: `with prec.autocast(): loss = ...`; `prec.backward(loss)`; `prec.unscale_(opt)`
    (before clipping); `stepped = prec.step(opt)`.
    """

    def __init__(
        self,
        mode: str = "fp32",
        device: torch.device | str = "cpu",
        *,
        init_scale: float = 2.0**16,
        growth_interval: int = 2000,
    ) -> None:
        if mode not in DTYPES:
            raise ValueError(f"precision must be one of {', '.join(DTYPES)}, got {mode!r}")
        self.mode = mode
        self.device_type = torch.device(device).type
        self.dtype = DTYPES[mode]
        self.scaler = torch.amp.GradScaler(
            self.device_type,
            init_scale=init_scale,
            growth_interval=growth_interval,
            enabled=mode == "fp16",
        )

    def autocast(self):
        if self.mode == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide the gradients by the scale in place (no-op unless fp16); once per step."""
        self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> bool | torch.Tensor:
        """Optimizer step unless fp16 found inf/NaN gradients; then update the scale.

        Returns whether the parameters were updated: True without loss scaling, else a
        0-dim bool tensor on the device (reading it waits for the GPU, so a training loop
        should only accumulate it).
        """
        if not self.scaler.is_enabled():
            optimizer.step()
            return True
        # GradScaler lowers its scale exactly when it skipped the step. `_scale` is the
        # device tensor behind get_scale(); comparing it avoids a sync on every step.
        before = self.scaler._scale.clone()
        self.scaler.step(optimizer)
        self.scaler.update()
        return self.scaler._scale >= before

    @property
    def scale(self) -> float:
        return self.scaler.get_scale() if self.scaler.is_enabled() else 1.0

    def state_dict(self) -> dict:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.scaler.load_state_dict(state)
