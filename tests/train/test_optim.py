"""From-scratch Adam/AdamW against torch, Adam + L2 against AdamW, and parameter groups."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from deepnotes.train.optim import Adam, AdamW, build_optimizer, param_groups
from tests.helpers import assert_close

SHAPES = [(63, 60), (17,), (4, 3, 5), (1,)]


def fresh_params(dtype=torch.float64):
    return [torch.randn(s, dtype=dtype, requires_grad=True) for s in SHAPES]


def groups_of(ps, wd):
    # two groups with their own lr and decay, as param_groups produces
    return [
        {"params": ps[:2], "weight_decay": wd},
        {"params": ps[2:], "weight_decay": 0.0, "lr": 3e-3},
    ]


@pytest.mark.parametrize(
    "ours,theirs", [(Adam, torch.optim.Adam), (AdamW, torch.optim.AdamW)], ids=["adam", "adamw"]
)
@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_matches_torch_step_for_step(ours, theirs, wd, seed):
    p_ours = fresh_params()
    p_torch = [p.detach().clone().requires_grad_() for p in p_ours]
    kw = dict(lr=1e-2, betas=(0.8, 0.95), eps=1e-7)
    opt_a = ours(groups_of(p_ours, wd), **kw)
    opt_b = theirs(groups_of(p_torch, wd), foreach=False, **kw)
    for step in range(8):
        for a, b in zip(p_ours, p_torch, strict=True):
            g = torch.randn_like(a) * 10.0 ** torch.randint(-3, 2, ()).item()
            a.grad, b.grad = g.clone(), g.clone()
        opt_a.step()
        opt_b.step()
        for i, (a, b) in enumerate(zip(p_ours, p_torch, strict=True)):
            assert_close(a, b, what=f"step {step} param {i}")
            sa, sb = opt_a.state[a], opt_b.state[b]
            assert_close(sa["exp_avg_sq"], sb["exp_avg_sq"], what=f"step {step} v {i}")


def decay_run(opt_cls, sigma, lam, lr, warmup, steps, betas=(0.9, 0.999), eps=1e-8):
    """Paired runs on the same gradients, one with weight decay λ switched on after `warmup`.

    The gradient of coordinate i is ±σ_i with a random sign each step: it does not depend on
    θ, so any difference between the runs is caused by the decay alone, and g² = σ² makes
    the decay-free run's v̂ exactly σ². Returns θ at the decay onset, both final θ, the
    decayed run's θ before each decayed step, the free run's updates, and the onset step.
    """
    pa = (1.0 + torch.rand(sigma.shape, dtype=torch.float64)).requires_grad_()  # ~1, > 0
    pb = pa.detach().clone().requires_grad_()
    oa = opt_cls([pa], lr=lr, betas=betas, eps=eps, weight_decay=0.0)
    ob = opt_cls([pb], lr=lr, betas=betas, eps=eps, weight_decay=0.0)
    before, upd = [], []
    for t in range(1, warmup + steps + 1):
        if t == warmup + 1:
            oa.param_groups[0]["weight_decay"] = lam
            p0 = pa.detach().clone()
        g = sigma * (torch.randint(0, 2, sigma.shape) * 2 - 1)
        pa.grad, pb.grad = g.clone(), g.clone()
        b_prev = pb.detach().clone()
        if t > warmup:
            before.append(pa.detach().clone())
        oa.step()
        ob.step()
        if t > warmup:
            upd.append(pb.detach() - b_prev)
    return p0, pa.detach(), pb.detach(), before, upd, warmup


def test_adamw_decays_every_weight_by_lr_times_wd(seed):
    """AdamW: θ_t = (1 - lr λ) θ_{t-1} + u_t with u_t the decay-free Adam update, exactly."""
    sigma = torch.logspace(-2, 1, 16, dtype=torch.float64)  # gradient scales over 3 decades
    lam, lr = 1e-2, 1e-3
    p0, pa, _, _, upd, _ = decay_run(AdamW, sigma, lam, lr, warmup=20, steps=200)
    expected = p0.clone()
    for u in upd:
        expected = (1 - lr * lam) * expected + u
    assert_close(pa, expected, what="AdamW closed form")


def test_adam_l2_decay_is_divided_by_sqrt_v(seed):
    """Adam + L2: the decay λθ passes through m̂ / (√v̂ + ε).

    The decay enters the first moment like a gradient, so (to first order in λθ/σ) its share
    of the step-t update is lr · m̂_dec,t / (√v̂_t + ε), where m̂_dec is the bias-corrected
    EMA of λθ and √v̂ = σ here. Per unit of AdamW's decay (lr·λ·θ) a weight with gradient
    scale σ is decayed by 1/σ: weights with large gradients are decayed less. The neglected
    second-order term (the decay's effect on v) is ~0.3% after a warm-up that settles v̂.
    """
    sigma = torch.logspace(-2, 1, 16, dtype=torch.float64)
    lam, lr, b1 = 1e-4, 1e-3, 0.9
    p0, pa, pb, before, _, t0 = decay_run(Adam, sigma, lam, lr, warmup=300, steps=300)
    measured = pb - pa  # how much further the decayed run has shrunk
    m_dec = torch.zeros_like(p0)
    dec_sum = torch.zeros_like(p0)  # Σ_t m̂_dec,t
    for k, theta in enumerate(before):
        m_dec = b1 * m_dec + (1 - b1) * lam * theta
        dec_sum += m_dec / (1 - b1 ** (t0 + k + 1))
    predicted = lr * dec_sum / (sigma + 1e-8)
    assert_close(measured, predicted, tol=0.02, what="Adam+L2 decay vs lr·m̂_dec/sqrt(v)")
    # AdamW would have shrunk each weight by lr·Σ λθ: Adam + L2 does ~1/σ of that
    adamw_decay = lr * lam * torch.stack(before).sum(0)
    ratio = measured / adamw_decay
    assert_close(ratio * sigma, torch.ones_like(sigma), tol=0.06, what="decay ratio vs 1/sigma")
    assert ratio[0] / ratio[-1] > 900  # σ spans 1000x, and so does the decay


def test_param_groups_skip_norms_biases_embeddings():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(50, 12)
            self.norm = nn.LayerNorm(12)
            self.proj = nn.Linear(12, 12)
            self.head = nn.Linear(12, 50, bias=False)
            self.head.weight = self.emb.weight  # tied

    net = Net()
    groups = {g["name"]: g for g in param_groups(net, 0.1)}
    decay = {id(p) for p in groups["decay"]["params"]}
    keep = {id(p) for p in groups["no_decay"]["params"]}
    assert decay == {id(net.proj.weight)}
    assert keep == {id(p) for p in (net.emb.weight, net.norm.weight, net.norm.bias, net.proj.bias)}
    assert groups["decay"]["weight_decay"] == 0.1 and groups["no_decay"]["weight_decay"] == 0.0


@pytest.mark.parametrize("name", ["adamw", "adamw-scratch", "adam-scratch"])
def test_build_optimizer_steps(name, seed):
    net = nn.Sequential(nn.Linear(6, 5), nn.LayerNorm(5), nn.Linear(5, 1))
    ref = copy.deepcopy(net)
    opt = build_optimizer(net, name, lr=1e-2, weight_decay=0.1)
    net(torch.randn(9, 6)).pow(2).mean().backward()
    opt.step()
    assert all(not torch.equal(a, b) for a, b in zip(net.parameters(), ref.parameters()))
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer(net, "sgd", lr=1.0)
