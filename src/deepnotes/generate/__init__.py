"""Decoding: temperature / top-k / top-p sampling over a KV cache or a recurrent state."""

from deepnotes.generate.decode import generate, prefill, state_nbytes, timed_generate
from deepnotes.generate.sampling import next_token_probs, sample_next, top_k_filter, top_p_filter

__all__ = [
    "generate",
    "next_token_probs",
    "prefill",
    "sample_next",
    "state_nbytes",
    "timed_generate",
    "top_k_filter",
    "top_p_filter",
]
