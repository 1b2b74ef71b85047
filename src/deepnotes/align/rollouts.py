"""Partial rollouts (Kimi k1.5, §2.6.2): long responses are generated across iterations.

Each iteration every unfinished response gets at most `segment_budget` new tokens. A
response that ends (an end token, or `max_response` tokens) is finished; one that runs out of
budget is carried to the next iteration, where generation continues from where it stopped
under the then-current policy. Only the newest segment, `response[seg_start:]`, was sampled
by the current policy, so only it enters the on-policy loss (`segment_mask`); the earlier
segments are conditioned on, as the report's replay of earlier segments does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from deepnotes.generate import prefill, sample_next


@dataclass
class Rollout:
    """One sampled response to one prompt, possibly unfinished."""

    prompt: list[int]  # prompt token ids
    group: int = 0  # which prompt group (the k samples of one prompt share it)
    meta: Any = None  # task data for the reward (e.g. the right answer)
    response: list[int] = field(default_factory=list)  # tokens generated so far
    seg_start: int = 0  # where this iteration's segment of `response` starts
    done: bool = False  # ended with the end token or at max_response

    @property
    def tokens(self) -> list[int]:
        return self.prompt + self.response


@torch.no_grad()
def partial_rollouts(
    model: nn.Module,
    rollouts: list[Rollout],
    segment_budget: int,
    *,
    eos: int,
    max_response: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> int:
    """Extend every unfinished rollout by at most `segment_budget` tokens, in place.

    Rollouts of equal current length are decoded together through the KV cache. Returns the
    number of tokens generated.
    """
    if segment_budget < 1 or max_response < 1:
        raise ValueError("segment_budget and max_response must be >= 1")
    device = next(model.parameters()).device
    groups: dict[int, list[Rollout]] = {}
    for r in rollouts:
        if not r.done:
            r.seg_start = len(r.response)
            groups.setdefault(len(r.tokens), []).append(r)
    was_training = model.training
    model.eval()
    made = 0
    try:
        for rs in groups.values():
            x = torch.tensor([r.tokens for r in rs], device=device)
            logits, state = prefill(model, x)
            alive = torch.ones(len(rs), dtype=torch.bool, device=device)
            for s in range(segment_budget):
                nxt = sample_next(logits, temperature=temperature, generator=generator)
                for i, r in enumerate(rs):
                    if alive[i]:
                        r.response.append(int(nxt[i]))
                        made += 1
                        if int(nxt[i]) == eos or len(r.response) >= max_response:
                            r.done = True
                            alive[i] = False
                if not alive.any() or s == segment_budget - 1:
                    break
                logits, state = model.step(nxt, state)
    finally:
        model.train(was_training)
    return made


def pad_rollouts(rollouts: list[Rollout], pad: int = 0, device=None):
    """-> tokens [B, T] (right-padded), response mask [B, T], segment mask [B, T] (bool).

    The response mask covers all response tokens; the segment mask only the tokens sampled
    in the latest iteration (`response[seg_start:]`).
    """
    T = max(len(r.tokens) for r in rollouts)
    tokens = torch.full((len(rollouts), T), pad, dtype=torch.long)
    resp = torch.zeros(len(rollouts), T, dtype=torch.bool)
    seg = torch.zeros_like(resp)
    for i, r in enumerate(rollouts):
        p, n = len(r.prompt), len(r.tokens)
        tokens[i, :n] = torch.tensor(r.tokens)
        resp[i, p:n] = True
        seg[i, p + r.seg_start : n] = True
    return tokens.to(device), resp.to(device), seg.to(device)
