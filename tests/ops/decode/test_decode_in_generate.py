"""The softmax mixer's decode step through flash_decode: same logits and tokens as before."""

from __future__ import annotations

import pytest
import torch

from deepnotes.generate import generate
from deepnotes.models.lm import LM, LMConfig
from tests.helpers import TOLERANCE, assert_close
from tests.ops.kernel_cases import CUDA, INTERPRET


def _lm(device):
    cfg = LMConfig(vocab_size=50, d_model=64, n_layers=2, n_heads=2, max_len=128,
                   positions="rotary")  # fmt: skip
    return LM(cfg).to(device).eval()


def _step_logits(m, x):
    state, out = m.init_state(x.shape[0]), []
    with torch.no_grad():
        for t in range(x.shape[1]):
            logits, state = m.step(x[:, t], state)
            out.append(logits)
    return torch.stack(out, 1)


DEVICES = [
    pytest.param("cpu", marks=pytest.mark.skipif(not INTERPRET, reason="needs TRITON_INTERPRET=1")),
    pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="CUDA")]),
]


@pytest.mark.parametrize("device", DEVICES)
def test_kernel_decode_equals_forward_and_reference_step(device, monkeypatch, seed):
    """Stepping with the kernel (forced) gives the full forward's logits and the same
    greedy tokens as stepping with the plain path (fp32, 37 steps crossing the cache's
    doubling at 16 and 32)."""
    m = _lm(device)
    x = torch.randint(0, 50, (2, 37), device=device)
    with torch.no_grad():
        full = m(x)
    monkeypatch.setenv("DEEPNOTES_KERNELS", "torch")
    plain = _step_logits(m, x)
    ref_tokens = generate(m, x[:, :5], 8, temperature=0.0)
    monkeypatch.setenv("DEEPNOTES_KERNELS", "triton")
    kernel = _step_logits(m, x)
    assert_close(kernel, full, tol=TOLERANCE[torch.float32], what="kernel steps vs forward")
    assert_close(kernel, plain, tol=TOLERANCE[torch.float32], what="kernel steps vs plain steps")
    assert torch.equal(generate(m, x[:, :5], 8, temperature=0.0), ref_tokens)
