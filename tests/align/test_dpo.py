"""DPO: TRL's loss and reward definitions, ln 2 at the start, the bandit optimum."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from deepnotes.align.dpo import dpo_loss, dpo_metrics
from deepnotes.align.logprobs import response_mask, sequence_logps
from deepnotes.models.lm import LM, LMConfig
from tests.helpers import assert_close


def _logps(B=7):
    return [torch.randn(B, dtype=torch.float64) * 5 - 20 for _ in range(4)]


def test_step_zero_is_ln2_and_zero_margin():
    pc, pr, _, _ = _logps()
    losses, ch, rej = dpo_loss(pc, pr, pc.clone(), pr.clone(), beta=0.3)
    assert torch.allclose(losses, torch.full_like(losses, math.log(2)))
    m = dpo_metrics(ch, rej)
    assert m["rewards/margins"] == 0 and m["rewards/chosen"] == 0
    assert m["rewards/accuracies"] == 0  # TRL counts strict wins only


@pytest.mark.parametrize(
    "loss_type,ls", [("sigmoid", 0.0), ("sigmoid", 0.2), ("hinge", 0.0), ("ipo", 0.0)]
)
def test_loss_definitions(loss_type, ls):
    pc, pr, rc, rr = _logps(11)
    beta = 0.25
    losses, ch, rej = dpo_loss(pc, pr, rc, rr, beta, ls, loss_type)
    z = (pc - rc) - (pr - rr)
    expect = {
        "sigmoid": -(1 - ls) * F.logsigmoid(beta * z) - ls * F.logsigmoid(-beta * z),
        "hinge": torch.relu(1 - beta * z),
        "ipo": (z - 1 / (2 * beta)) ** 2,
    }[loss_type]
    assert_close(losses, expect)
    assert_close(ch, beta * (pc - rc))
    assert_close(rej, beta * (pr - rr))
    m = dpo_metrics(ch, rej)
    assert m["rewards/accuracies"] == pytest.approx(float((z > 0).double().mean()))
    assert m["rewards/margins"] == pytest.approx(float(beta * z.mean()))


def test_bad_inputs():
    a = torch.zeros(3)
    with pytest.raises(ValueError, match="loss_type"):
        dpo_loss(a, a, a, a, loss_type="kto")
    with pytest.raises(ValueError, match="shape"):
        dpo_loss(a, a, a, torch.zeros(4))


@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_bandit_optimum(beta):
    """Minimising the expected DPO loss under Bradley-Terry preferences gives πref e^{r/β}/Z."""
    torch.manual_seed(0)
    K = 6
    r = torch.randn(K, dtype=torch.float64)
    ref = torch.softmax(torch.randn(K, dtype=torch.float64), 0)
    i, j = torch.triu_indices(K, K, 1)
    p_ij = torch.sigmoid(r[i] - r[j])  # P(i preferred to j)
    theta = torch.log(ref).clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [theta],
        lr=1,
        max_iter=500,
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
        line_search_fn="strong_wolfe",
    )
    lref = torch.log(ref)

    def closure():
        opt.zero_grad()
        lp = torch.log_softmax(theta, 0)
        l_ij, _, _ = dpo_loss(lp[i], lp[j], lref[i], lref[j], beta)
        l_ji, _, _ = dpo_loss(lp[j], lp[i], lref[j], lref[i], beta)
        loss = (p_ij * l_ij + (1 - p_ij) * l_ji).sum()
        loss.backward()
        return loss

    opt.step(closure)
    pi = torch.softmax(theta.detach(), 0)
    target = ref * torch.exp(r / beta)
    assert_close(pi, target / target.sum(), tol=1e-6)


def test_sequence_logps_mask_prompt():
    torch.manual_seed(0)
    model = LM(LMConfig(vocab_size=13, d_model=16, n_layers=1, max_len=32)).double()
    tokens = torch.randint(0, 13, (3, 10))
    mask = response_mask(torch.tensor([2, 4, 9]), torch.tensor([10, 7, 10]), 10)
    got = sequence_logps(model, tokens, mask)
    with torch.no_grad():
        lp = torch.log_softmax(model(tokens).double(), -1)
    for b in range(3):
        want = sum(float(lp[b, t - 1, tokens[b, t]]) for t in range(10) if mask[b, t])
        assert got[b].item() == pytest.approx(want, rel=1e-6)
    avg = sequence_logps(model, tokens, mask, average=True)
    assert_close(avg, got / mask.sum(-1), tol=1e-6)
    with pytest.raises(ValueError):
        response_mask(torch.tensor([0]), torch.tensor([3]), 5)
