"""Next-token sampling: temperature, top-k and top-p (nucleus) filtering.

For logits z over the vocabulary and temperature τ > 0 the sampling distribution is
softmax(z / τ): τ < 1 sharpens it, τ > 1 flattens it, τ → 0 becomes argmax (greedy, which
`temperature=0` selects exactly). Filters remove tokens before sampling:
- top-k keeps the k largest logits (Fan et al. 2018);
- top-p keeps the smallest set of most likely tokens whose total probability reaches p
  (Holtzman et al. 2020), so the cut adapts to how peaked the distribution is.
Removed tokens get logit -inf; the rest are renormalised by the softmax. Both filters are
applied to z / τ, top-k first (as in Hugging Face transformers).
"""

from __future__ import annotations

import torch


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """logits [..., V] -> same, with all but the k largest per row set to -inf.

    Ties with the k-th largest value are kept.
    """
    if k < 1:
        raise ValueError(f"top_k must be >= 1, got {k}")
    if k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """logits [..., V] -> same, keeping the smallest top set whose probability is >= p.

    A token is kept when the probability of the tokens before it (in descending order,
    ties by index) is < p; the most likely token is always kept.
    """
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top_p must lie in (0, 1], got {p}")
    if p == 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True, stable=True)
    probs = torch.softmax(sorted_logits.float(), dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs
    drop_sorted = mass_before >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def _check(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must lie in (0, 1], got {top_p}")


def next_token_probs(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """logits [B, V] -> the sampling distribution [B, V] (fp32) after τ, top-k, top-p."""
    _check(temperature, top_k, top_p)
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    z = logits.float() / temperature
    if top_k is not None:
        z = top_k_filter(z, top_k)
    if top_p is not None:
        z = top_p_filter(z, top_p)
    return torch.softmax(z, dim=-1)


def sample_next(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """logits [B, V] -> next tokens LongTensor [B]; temperature 0 = greedy (argmax)."""
    _check(temperature, top_k, top_p)
    if temperature == 0:
        return logits.argmax(-1)
    probs = next_token_probs(logits, temperature=temperature, top_k=top_k, top_p=top_p)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]
