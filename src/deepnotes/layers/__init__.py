"""deepnotes.layers."""

from deepnotes.layers.attention import MultiHeadAttention, attention

__all__ = ["MultiHeadAttention", "attention"]
