"""Cross-entropy of a linear layer's output (an LM head) without the full logits: the chunked
form `linear_cross_entropy` and its plain reference `torch_linear_cross_entropy`.

Layout: h [N, D] hidden states, weight [V, D] (nn.Linear's), targets [N] class indices.
"""

from __future__ import annotations

from deepnotes.ops.cross_entropy.chunked import linear_cross_entropy, peak_bytes
from deepnotes.ops.cross_entropy.naive import torch_linear_cross_entropy

__all__ = ["linear_cross_entropy", "peak_bytes", "torch_linear_cross_entropy"]
