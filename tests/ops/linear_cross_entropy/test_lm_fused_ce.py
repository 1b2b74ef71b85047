"""LMConfig.fused_ce: LM.loss through the chunked head + loss equals the plain one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepnotes.models.lm import LM, LMConfig
from tests.helpers import TOLERANCE, assert_close


@pytest.mark.parametrize("tie", [True, False])
def test_fused_ce_same_loss_and_grads(tie, seed):
    cfg = dict(vocab_size=61, d_model=32, n_layers=2, n_heads=2, max_len=32, tie_weights=tie)
    plain = LM(LMConfig(**cfg)).double()
    fused = LM(LMConfig(**cfg, fused_ce=True, fused_ce_chunk=13)).double()
    fused.load_state_dict(plain.state_dict())
    x, y = torch.randint(0, 61, (3, 17)), torch.randint(0, 61, (3, 17))
    y[0, :4] = -100  # ignored positions (padding) behave as in F.cross_entropy
    # LM.loss's plain path upcasts logits to fp32 (fp64 logits too); the fp64 truth here:
    la = F.cross_entropy(plain(x).flatten(0, 1), y.flatten())
    lb = fused.loss(x, y)
    la.backward()
    lb.backward()
    tol = 10 * TOLERANCE[torch.float64]
    assert_close(lb, la, tol=tol, what="loss")
    for (n, pa), pb in zip(plain.named_parameters(), fused.parameters(), strict=True):
        assert_close(pb.grad, pa.grad, tol=tol, what=n)
