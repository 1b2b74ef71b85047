"""A small sequence classifier around any mixer, and a plain loop to train it on a task.

    tokens [B, T] -> embedding (+ learned positions) -> n_layers x [x + Mixer(Norm(x));
    x + MLP(Norm(x))] -> Norm -> mean over real tokens -> Linear -> logits [B, n_classes]

`prenorm=False` gives the post-norm blocks of S4's LRA configs, x = Norm(x + Mixer(x)) (and
x = Norm(x + MLP(x))), with no final norm; `mlp=False` drops the MLP (S4's LRA blocks are
the SSM layer alone: its GLU output layer does the channel mixing).

Unlike the decoder LM (`deepnotes.models.lm`), the mixers may be bidirectional
(causal=False), as Long Range Arena's encoders are. Padding: `mask` [B, T] (True = real)
goes to every mixer and to the pooling, so padded tokens never reach the prediction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import deepnotes.mixers as M
from deepnotes.layers.ffn import build_ffn
from deepnotes.layers.norms import build_norm


@dataclass
class SeqModelConfig:
    vocab_size: int  # token ids in [0, vocab_size); 0 may be padding
    n_classes: int  # output classes of the pooled head
    d_model: int = 64  # residual width
    n_layers: int = 2  # blocks
    mixer: str = "softmax"  # any name from deepnotes.mixers.names()
    mixer_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to mixers.build
    causal: bool = False  # bidirectional mixers by default (classification sees everything)
    max_len: int = 2048  # size of the learned position table
    positions: bool = True  # learned absolute positions (SSMs and RNNs do not need them)
    ffn: str = "gelu"  # FFN kind (deepnotes.layers.ffn)
    norm: str = "layernorm"  # "layernorm" | "rmsnorm"
    prenorm: bool = True  # x + f(Norm(x)); False: Norm(x + f(x)) as S4's LRA configs
    mlp: bool = True  # an MLP after each mixer (False: mixer-only blocks, as S4's LRA models)


class SeqModel(nn.Module):
    """Encoder classifier: forward(tokens [B, T], mask [B, T] bool | None) -> [B, n_classes]."""

    def __init__(self, cfg: SeqModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.embed = nn.Embedding(cfg.vocab_size, d)
        self.pos = nn.Embedding(cfg.max_len, d) if cfg.positions else None
        self.mixers = nn.ModuleList(
            M.build(cfg.mixer, d, causal=cfg.causal, **cfg.mixer_kwargs)
            for _ in range(cfg.n_layers)
        )
        self.norms1 = nn.ModuleList(build_norm(cfg.norm, d) for _ in range(cfg.n_layers))
        n_mlp = cfg.n_layers if cfg.mlp else 0
        self.ffns = nn.ModuleList(build_ffn(cfg.ffn, d) for _ in range(n_mlp))
        self.norms2 = nn.ModuleList(build_norm(cfg.norm, d) for _ in range(n_mlp))
        self.norm = build_norm(cfg.norm, d) if cfg.prenorm else nn.Identity()
        self.head = nn.Linear(d, cfg.n_classes)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        T = tokens.shape[1]
        if self.pos is not None and T > self.cfg.max_len:
            raise ValueError(f"SeqModel: T = {T} exceeds max_len = {self.cfg.max_len}")
        x = self.embed(tokens)
        if self.pos is not None:
            x = x + self.pos.weight[:T]
        for i, (mix, n1) in enumerate(zip(self.mixers, self.norms1, strict=True)):
            x = self._residual(x, lambda h, f=mix: f(h, mask), n1)
            if self.cfg.mlp:
                x = self._residual(x, self.ffns[i], self.norms2[i])
        x = self.norm(x)
        if mask is None:
            pooled = x.mean(1)
        else:
            w = mask[..., None].to(x.dtype)
            pooled = (x * w).sum(1) / w.sum(1).clamp(min=1)
        return self.head(pooled)

    def _residual(self, x: torch.Tensor, f, norm: nn.Module) -> torch.Tensor:
        """x + f(Norm(x)) (pre-norm) or Norm(x + f(x)) (post-norm). x: [B, T, D]."""
        return x + f(norm(x)) if self.cfg.prenorm else norm(x + f(x))
