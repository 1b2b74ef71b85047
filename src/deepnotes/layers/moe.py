"""Mixture of Experts: a top-k routed set of FFN experts (Shazeer et al. 2017; GShard,
Lepikhin et al. 2020; Switch Transformer, Fedus et al. 2021; ST-MoE, Zoph et al. 2022).

For tokens x_n (n = 1..N) and experts e = 1..E:
- router logits h = x W_r (computed in fp32 even under autocast: the softmax over experts is
  sensitive to rounding, Switch sec. 2.4), p = softmax(h);
- each token picks its top-k experts; k = 1 is Switch (gate = p_e, so the router still gets a
  gradient), k = 2 is GShard/Mixtral (gates renormalised over the chosen two by default);
- y_n = sum over chosen e of gate_{n,e} * FFN_e(x_n).

Capacity. Each expert takes at most C = ceil(capacity_factor * k * N / E) assignments per
forward. Assignments are served first choices first, then in token order (GShard); the rest are
dropped: they contribute nothing, so the token passes through the block's residual unchanged.
Drops are counted in `stats`. `capacity_factor=None` is dropless: every assignment is served.

Auxiliary losses (set as `self.aux_loss` after each forward, already weighted):
- load balancing (Switch eq. 4): L_bal = E * sum_e f_e P_e, f_e = fraction of the N k routing
  choices sent to e (before drops), P_e = mean router probability of e. It is 1 when routing is
  uniform (either f or P uniform) and grows to E when everything goes to one expert.
- router z-loss (ST-MoE eq. 5): L_z = mean_n (logsumexp_e h_{n,e})^2, keeps logits small.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.layers.ffn import build_ffn


class MoE(nn.Module):
    """Top-k mixture of FFN experts. x: [..., D] -> [..., D]; sets aux_loss and stats."""

    def __init__(
        self,
        d_model: int,
        n_experts: int,
        *,
        top_k: int = 1,
        capacity_factor: float | None = 1.25,
        ffn: str = "gelu",
        hidden: int | None = None,
        mult: float = 4.0,
        bias: bool = False,
        dropout: float = 0.0,
        balance_coef: float = 0.01,
        z_coef: float = 1e-3,
        normalize_gates: bool = True,
    ) -> None:
        super().__init__()
        if n_experts < 1:
            raise ValueError(f"MoE: n_experts must be >= 1, got {n_experts}")
        if not 1 <= top_k <= n_experts:
            raise ValueError(f"MoE: top_k must be in 1..n_experts={n_experts}, got {top_k}")
        if capacity_factor is not None and not capacity_factor > 0:
            raise ValueError(f"MoE: capacity_factor must be > 0 or None, got {capacity_factor}")
        self.d_model = d_model
        self.n_experts = n_experts
        self.top_k = top_k
        self.capacity_factor = capacity_factor
        self.balance_coef = balance_coef
        self.z_coef = z_coef
        # k = 1 keeps the raw probability as gate (Switch): renormalising would make it 1.
        self.normalize_gates = normalize_gates and top_k > 1
        self.router = nn.Linear(d_model, n_experts, bias=False)
        self.experts = nn.ModuleList(
            build_ffn(ffn, d_model, hidden=hidden, mult=mult, bias=bias, dropout=dropout)
            for _ in range(n_experts)
        )
        self.aux_loss = torch.zeros(())
        self.stats: dict[str, torch.Tensor] = {}

    def capacity(self, n_tokens: int) -> int | None:
        """Assignments each expert serves per forward; None = dropless."""
        if self.capacity_factor is None:
            return None
        return math.ceil(self.capacity_factor * self.top_k * n_tokens / self.n_experts)

    def route(self, x: torch.Tensor):
        """x: [N, D] -> logits, probs [N, E] (fp32), gates, experts [N, k]."""
        ct = torch.promote_types(x.dtype, torch.float32)  # fp32, or fp64 for fp64 tests
        with torch.autocast(x.device.type, enabled=False):
            logits = F.linear(x.to(ct), self.router.weight.to(ct))
        probs = logits.softmax(-1)
        gates, experts = probs.topk(self.top_k, dim=-1)
        if self.normalize_gates:
            gates = gates / gates.sum(-1, keepdim=True)
        return logits, probs, gates, experts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.d_model:
            raise ValueError(f"MoE: expected last dim {self.d_model}, got {x.shape[-1]}")
        shape = x.shape
        x2 = x.reshape(-1, self.d_model)
        N, E, k = x2.shape[0], self.n_experts, self.top_k
        logits, probs, gates, experts = self.route(x2)

        # choice-major order: every token's first choice is served before any second choice
        choice_expert = experts.t().reshape(-1)  # [k N]
        choice_gate = gates.t().reshape(-1)
        choice_token = torch.arange(N, device=x.device).repeat(k)
        onehot = F.one_hot(choice_expert, E)  # [k N, E]
        position = (onehot.cumsum(0) - 1).gather(1, choice_expert[:, None]).squeeze(1)
        C = self.capacity(N)
        keep = torch.ones_like(choice_expert, dtype=torch.bool) if C is None else position < C

        f = onehot.float().mean(0)  # fraction of routing choices per expert (before drops)
        P = probs.mean(0)
        balance = E * (f * P).sum()
        z = torch.logsumexp(logits, dim=-1).square().mean()
        self.aux_loss = self.balance_coef * balance + self.z_coef * z

        out = torch.zeros_like(x2)
        for e, expert in enumerate(self.experts):
            sel = torch.nonzero((choice_expert == e) & keep).squeeze(1)
            if sel.numel() == 0:
                continue
            tok = choice_token[sel]
            y = expert(x2[tok]) * choice_gate[sel, None].to(x2.dtype)
            out.index_add_(0, tok, y)

        with torch.no_grad():
            served = torch.bincount(choice_expert[keep], minlength=E)
            token_served = torch.zeros(N, dtype=torch.bool, device=x.device)
            token_served[choice_token[keep]] = True
            self.stats = {
                "routed": onehot.sum(0).detach(),  # [E] assignments before capacity
                "served": served,  # [E] assignments each expert computed
                "load": served.float() / max(1, N * k),  # [E] share of all assignments
                "importance": P.detach(),  # [E] mean router probability
                "dropped": (~keep).sum(),  # assignments dropped at capacity
                "tokens_unserved": (~token_served).sum(),  # tokens with every choice dropped
                "balance_loss": balance.detach(),
                "z_loss": z.detach(),
                "capacity": torch.tensor(-1 if C is None else C),
            }
        return out.reshape(shape)

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, n_experts={self.n_experts}, top_k={self.top_k}, "
            f"capacity_factor={self.capacity_factor}"
        )
