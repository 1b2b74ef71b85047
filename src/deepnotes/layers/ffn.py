"""Position-wise feed-forward blocks: the MLP and the GLU family (Shazeer 2020).

MLP:  FFN(x) = act(x W1 + b1) W2 + b2                          (Vaswani et al. 2017, eq. 2)
GLU:  FFN(x) = (gate(x W) * (x V)) W2                          (Shazeer 2020, eqs. 5-6)

A GLU block has three weight matrices instead of two, so at equal parameter count its hidden
width is 2/3 of the MLP's (Shazeer 2020, sec. 2): d_ff = 4 d for the MLP, (2/3) 4 d for GLU.
`ffn_hidden` applies that rule. Both blocks name their output projection `w_out`, which the
scaled residual init (GPT-2) looks for.
"""

from __future__ import annotations

import torch
from torch import nn

from deepnotes.layers.activations import GLU_GATES, get_activation

MLP_KINDS = ("relu", "gelu", "silu")
GLU_KINDS = tuple(GLU_GATES)
FFN_KINDS = MLP_KINDS + GLU_KINDS


def is_glu(kind: str) -> bool:
    return kind in GLU_GATES


def ffn_hidden(kind: str, d_model: int, mult: float = 4.0, multiple_of: int = 1) -> int:
    """Hidden width: mult * d_model for an MLP, 2/3 of that for a GLU variant (equal params).

    Rounded up to a multiple of `multiple_of` (e.g. 64 keeps matmuls on tensor-core tiles).
    """
    if kind not in FFN_KINDS:
        raise ValueError(f"unknown ffn {kind!r}; valid: {', '.join(FFN_KINDS)}")
    h = mult * d_model * (2.0 / 3.0 if is_glu(kind) else 1.0)
    h = max(1, int(round(h)))
    return -(-h // multiple_of) * multiple_of


class MLP(nn.Module):
    """act(x W_in) W_out. x: [..., D] -> [..., D]."""

    def __init__(
        self, d_model: int, hidden: int, act: str = "gelu", bias: bool = False, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if act not in MLP_KINDS:
            raise ValueError(f"MLP: activation must be one of {MLP_KINDS}, got {act!r}")
        self.kind = act
        self.act = get_activation(act)
        self.w_in = nn.Linear(d_model, hidden, bias=bias)
        self.w_out = nn.Linear(hidden, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.w_out(self.act(self.w_in(x))))


class GLUFFN(nn.Module):
    """(gate(x W) * (x V)) W_out, with W and V fused into one [D, 2H] projection `w_in`.

    x: [..., D] -> [..., D]. variant: glu | bilinear | reglu | geglu | swiglu.
    """

    def __init__(
        self,
        d_model: int,
        hidden: int,
        variant: str = "swiglu",
        bias: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if variant not in GLU_GATES:
            raise ValueError(f"GLUFFN: variant must be one of {GLU_KINDS}, got {variant!r}")
        self.kind = variant
        self.gate = get_activation(GLU_GATES[variant])
        self.w_in = nn.Linear(d_model, 2 * hidden, bias=bias)  # [W | V]
        self.w_out = nn.Linear(hidden, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.w_in(x).chunk(2, dim=-1)
        return self.dropout(self.w_out(self.gate(a) * b))


def build_ffn(
    kind: str,
    d_model: int,
    *,
    hidden: int | None = None,
    mult: float = 4.0,
    multiple_of: int = 1,
    bias: bool = False,
    dropout: float = 0.0,
) -> nn.Module:
    """kind in FFN_KINDS; hidden defaults to `ffn_hidden(kind, d_model, mult, multiple_of)`."""
    if kind not in FFN_KINDS:
        raise ValueError(f"unknown ffn {kind!r}; valid: {', '.join(FFN_KINDS)}")
    hidden = ffn_hidden(kind, d_model, mult, multiple_of) if hidden is None else hidden
    if hidden <= 0:
        raise ValueError(f"ffn hidden width must be positive, got {hidden}")
    if is_glu(kind):
        return GLUFFN(d_model, hidden, kind, bias=bias, dropout=dropout)
    return MLP(d_model, hidden, kind, bias=bias, dropout=dropout)
