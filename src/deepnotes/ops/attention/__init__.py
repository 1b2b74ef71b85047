"""Attention operators: references (naive.py) and fast paths (flash.py, triton_flash.py)."""

from deepnotes.ops.attention.flash import flash_attn
from deepnotes.ops.attention.naive import naive_softmax_attn

__all__ = ["flash_attn", "naive_softmax_attn"]
