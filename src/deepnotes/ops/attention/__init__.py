"""Attention operators: references (naive.py) and fast paths."""

from deepnotes.ops.attention.naive import naive_softmax_attn

__all__ = ["naive_softmax_attn"]
