"""Sequence log-probabilities of responses under a causal LM, the prompt masked out.

For a sequence s = (prompt, response) the log-probability of the response is
    log π(y | x) = Σ_{t in response} log softmax(model(s)[t - 1])[s_t],
the sum over response tokens only: prompt tokens are conditioned on, never scored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def response_mask(prompt_lens: torch.Tensor, lengths: torch.Tensor, T: int) -> torch.Tensor:
    """[B, T] bool: True at response tokens, positions prompt_len <= t < length."""
    if prompt_lens.shape != lengths.shape or prompt_lens.dim() != 1:
        raise ValueError("prompt_lens and lengths must both be [B]")
    if (prompt_lens < 1).any() or (lengths < prompt_lens).any() or (lengths > T).any():
        raise ValueError("need 1 <= prompt_len <= length <= T for every row")
    t = torch.arange(T, device=lengths.device)
    return (t >= prompt_lens[:, None]) & (t < lengths[:, None])


def token_logps(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """tokens: [B, T] -> [B, T] fp32 log p(tokens_t | tokens_<t); column 0 is 0 (no context)."""
    logits = model(tokens[:, :-1]).float()
    lp = torch.gather(F.log_softmax(logits, -1), -1, tokens[:, 1:, None])[..., 0]
    return F.pad(lp, (1, 0))


def sequence_logps(
    model: nn.Module, tokens: torch.Tensor, mask: torch.Tensor, average: bool = False
) -> torch.Tensor:
    """Σ (or mean, `average=True`, as IPO uses) of log p over tokens where mask [B, T] is True.

    tokens: [B, T] int (right padding is fine: pads are masked); mask[:, 0] must be False.
    Returns [B] fp32.
    """
    if tokens.shape != mask.shape or mask.dtype != torch.bool:
        raise ValueError(f"mask must be bool with the shape of tokens {tuple(tokens.shape)}")
    if mask[:, 0].any():
        raise ValueError("the first token has no context: it cannot be a response token")
    lp = (token_logps(model, tokens) * mask).sum(-1)
    return lp / mask.sum(-1).clamp(min=1) if average else lp
