"""Preference and RL fine-tuning of language models: DPO and Kimi k1.5 mirror descent."""

from deepnotes.align.dpo import dpo_loss, dpo_metrics
from deepnotes.align.kimi import kimi_pg_loss, kimi_surrogate_loss, length_penalty
from deepnotes.align.logprobs import response_mask, sequence_logps

__all__ = [
    "dpo_loss",
    "dpo_metrics",
    "kimi_pg_loss",
    "kimi_surrogate_loss",
    "length_penalty",
    "response_mask",
    "sequence_logps",
]
