"""S4D carries a token over more than 1,000 steps where a local model cannot.

Task (delayed recall): a class token (one of 4) repeated over the first k positions, then
blanks; the model reads out the label at the last position, more than T - k steps later.
S4D with its default Δ range (timescales 1/Δ from 10 to 1,000 steps) learns it; the same
model with Δ fixed at 0.5 (kernel decaying within ~10 tokens: a local model) stays at
chance. This guards the long-range path end to end: the kernel's tail, its gradients, the
chunked convolution across many chunks, and the bidirectional form used by ListOps.

Why a block of k tokens rather than one: one token's contribution to an output j steps later
is 2 Re(C dB dA^j) with dB ~ Δ B, i.e. ~Δ for the slow channels (1e-3 here): a single token
at lag 300 moves the mixer's output by ~2e-3 at init, and S4D needs hundreds of steps to
leave that plateau (docs/ssm.md). A block of k tokens sums to ~k Δ.
"""

from __future__ import annotations

import pytest
import torch

from deepnotes.experiments.ssm.s4_diagnose import train_recall


def check(T: int, k: int, steps: int) -> None:
    torch.set_num_threads(1)
    long, _ = train_recall(T, k, steps)
    local, _ = train_recall(T, k, steps, dt_min=0.5, dt_max=0.5)
    assert long > 0.9, f"S4D failed to carry a class over {T - k} steps: acc {long:.2f}"
    assert local < 0.45, f"a local model (dt = 0.5) should be at chance: acc {local:.2f}"


def test_s4d_recalls_over_268_steps():
    check(T=300, k=32, steps=60)


@pytest.mark.slow
def test_s4d_recalls_over_1036_steps():
    check(T=1100, k=64, steps=160)
