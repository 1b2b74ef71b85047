"""LSTM and GRU mixers (Hochreiter & Schmidhuber 1997; Cho et al. 2014), wrapping torch's
nn.LSTM / nn.GRU: the recurrent baseline the Transformer note compares against.

- causal: one left-to-right layer with hidden size d; `step` runs the cell on one token
  with the (h, c) or h state, O(d^2) per token and a bounded state.
- non-causal: a bidirectional layer with d/2 hidden units per direction, outputs
  concatenated to width d.
- key-padding masks: right padding only (each row True on a prefix), run with
  pack_padded_sequence so the backward direction starts at each sequence's last real token.
  Any other mask raises ValueError.
`reference()` writes the cell equations out step by step with the same weights (torch's
gate order: i, f, g, o for LSTM; r, z, n for GRU).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from deepnotes.mixers import register
from deepnotes.mixers.base import Mixer


def lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh):
    """One LSTM step: x [B, D], h, c [B, H] -> (h, c)."""
    i, f, g, o = (x @ W_ih.T + b_ih + h @ W_hh.T + b_hh).chunk(4, -1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def gru_cell(x, h, W_ih, W_hh, b_ih, b_hh):
    """One GRU step: x [B, D], h [B, H] -> h."""
    gi_r, gi_z, gi_n = (x @ W_ih.T + b_ih).chunk(3, -1)
    gh_r, gh_z, gh_n = (h @ W_hh.T + b_hh).chunk(3, -1)
    r, z = torch.sigmoid(gi_r + gh_r), torch.sigmoid(gi_z + gh_z)
    n = torch.tanh(gi_n + r * gh_n)
    return (1 - z) * n + z * h


def right_padding_lengths(mask: torch.Tensor) -> torch.Tensor:
    """Lengths [B] of a right-padding mask [B, T]; ValueError for any other mask."""
    lengths = mask.sum(1)
    prefix = torch.arange(mask.shape[1], device=mask.device)[None, :] < lengths[:, None]
    if not torch.equal(prefix, mask):
        raise ValueError(
            "RNN mixers support right padding only: the key-padding mask must be True on a "
            "prefix of each row and False after it"
        )
    return lengths


class _RNN(Mixer):
    rnn_cls: type[nn.RNNBase]
    supports_step = True

    def __init__(self, d_model: int, *, causal: bool, max_len: int | None = None) -> None:
        super().__init__(d_model, causal=causal, max_len=max_len)
        if not causal and d_model % 2:
            raise ValueError(
                f"{type(self).__name__}: the bidirectional (non-causal) form needs an even "
                f"d_model (d/2 units per direction), got {d_model}"
            )
        hidden = d_model if causal else d_model // 2
        self.rnn = self.rnn_cls(d_model, hidden, batch_first=True, bidirectional=not causal)

    def mix(self, x, mask):
        if mask is None:
            return self.rnn(x)[0]
        lengths = right_padding_lengths(mask).clamp_min(1)  # an all-padding row: output zeroed
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]

    def _weights(self, suffix: str):
        r = self.rnn
        return tuple(
            getattr(r, f"{n}_l0{suffix}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        )

    def _cell(self, x_t, state, weights):
        raise NotImplementedError

    def _zero_state(self, B, H, like):
        raise NotImplementedError

    def reference(self, x, mask=None):
        if mask is not None:
            right_padding_lengths(mask)
        B, T, _ = x.shape
        keep = torch.ones(B, T, dtype=torch.bool, device=x.device) if mask is None else mask
        outs = []
        directions = (
            [("", range(T))]
            if self.causal
            else [("", range(T)), ("_reverse", range(T - 1, -1, -1))]
        )
        for suffix, order in directions:
            w = self._weights(suffix)
            state = self._zero_state(B, self.rnn.hidden_size, x)
            hs = [None] * T
            for t in order:
                new = self._cell(x[:, t], state, w)
                m = keep[:, t, None]
                # padded steps leave the state alone: the reverse pass starts at the last real token
                state = tuple(torch.where(m, n, s) for n, s in zip(new, state, strict=True))
                hs[t] = state[0]
            outs.append(torch.stack(hs, 1))
        y = torch.cat(outs, -1)
        return y if mask is None else y * mask[..., None]


@register("lstm")
class LSTMMixer(_RNN):
    """nn.LSTM as a mixer (bidirectional, d/2 per direction, when non-causal). kw: max_len."""

    rnn_cls = nn.LSTM

    def _cell(self, x_t, state, weights):
        return lstm_cell(x_t, *state, *weights)

    def _zero_state(self, B, H, like):
        z = like.new_zeros(B, H)
        return z, z

    def init_state(self, batch, device=None, dtype=None):
        """(h, c): [1, B, d] each."""
        self._require_step()
        w = self.rnn.weight_ih_l0
        z = torch.zeros(1, batch, self.d_model, device=device or w.device, dtype=dtype or w.dtype)
        return z, z.clone()

    def step(self, x_t, state):
        self.check_step_input(x_t)
        y, state = self.rnn(x_t[:, None, :], state)
        return y[:, 0], state


@register("gru")
class GRUMixer(_RNN):
    """nn.GRU as a mixer (bidirectional, d/2 per direction, when non-causal). kw: max_len."""

    rnn_cls = nn.GRU

    def _cell(self, x_t, state, weights):
        return (gru_cell(x_t, state[0], *weights),)

    def _zero_state(self, B, H, like):
        return (like.new_zeros(B, H),)

    def init_state(self, batch, device=None, dtype=None):
        """h: [1, B, d]."""
        self._require_step()
        w = self.rnn.weight_ih_l0
        return torch.zeros(
            1, batch, self.d_model, device=device or w.device, dtype=dtype or w.dtype
        )

    def step(self, x_t, state):
        self.check_step_input(x_t)
        y, state = self.rnn(x_t[:, None, :], state)
        return y[:, 0], state
