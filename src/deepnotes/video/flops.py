"""Parameters and FLOPs of a model, counted by torch's own `FlopCounterMode`.

`FlopCounterMode` counts 2 FLOPs per multiply-add of every matmul and convolution (and
attention) it sees, and nothing for memory movement: a temporal shift (indexing, zeros, copy)
therefore counts 0, as does a norm or an activation. Papers and torchvision's model tables
quote multiply-adds under the name "FLOPs" (torchvision's "GFLOPS" column for R3D-18 is 40.7
GMACs), so `Counts.macs` = flops / 2 is the number to put beside them.

Models can live on the meta device: shapes flow through, no memory is allocated and no
arithmetic is done, so counting a 33M-parameter video network takes milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class Counts:
    params: int  # trainable and frozen parameters (buffers excluded)
    flops: int  # 2 x multiply-adds, torch's FlopCounterMode convention
    by_op: dict[str, int] = field(default_factory=dict)  # flops per aten op

    @property
    def macs(self) -> int:
        """Multiply-adds: what the papers and torchvision call "FLOPs"."""
        return self.flops // 2


def count_params(model) -> int:
    """Parameters of an nn.Module (0 for a plain function such as `temporal_shift`)."""
    return sum(p.numel() for p in model.parameters()) if isinstance(model, nn.Module) else 0


def count(model, *inputs: torch.Tensor, **kwargs) -> Counts:
    """Run `model(*inputs, **kwargs)` (a module or a function) once under FlopCounterMode,
    without gradients, and count."""
    if not inputs and not kwargs:
        raise ValueError("count needs at least one input to trace the model")
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(*inputs, **kwargs)
    by_op = {str(k): int(v) for k, v in fc.get_flop_counts().get("Global", {}).items()}
    return Counts(count_params(model), int(fc.get_total_flops()), by_op)
