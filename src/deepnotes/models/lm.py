"""A decoder-only language model around any registered sequence mixer.

tokens [B, T] -> embedding (+ learned or sinusoidal positions) -> L blocks -> norm -> head.

A block is pre-norm (GPT-2, Xiong et al. 2020) or post-norm (Vaswani et al. 2017):
  pre:   x = x + Mixer(Norm(x));   x = x + FFN(Norm(x))      (+ final Norm)
  post:  x = Norm(x + Mixer(x));   x = Norm(x + FFN(x))
The mixer is any causal-capable mixer of `deepnotes.mixers`; the FFN is an MLP or GLU variant
(`deepnotes.layers.ffn`) or, every `moe_every`-th block, a Mixture of Experts
(`deepnotes.layers.moe`). Rotary positions are applied inside mixers that declare
`supports_rotary`; asking another mixer for rotary positions raises ValueError (RNNs and SSMs
know positions from their recurrence and can use positions="none").

Initialisation schemes and the attention scale are in `deepnotes.layers.init`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

import deepnotes.mixers as M
from deepnotes.layers import init as I
from deepnotes.layers.ffn import FFN_KINDS, build_ffn, ffn_hidden
from deepnotes.layers.moe import MoE
from deepnotes.layers.norms import RMSNorm, build_norm
from deepnotes.layers.positional import sinusoidal_table
from deepnotes.ops.cross_entropy import linear_cross_entropy

POSITIONS = ("learned", "sinusoidal", "rotary", "none")


@dataclass
class LMConfig:
    vocab_size: int = 256  # bytes by default (ByteTokenizer): no vocabulary file needed
    d_model: int = 256  # residual width
    n_layers: int = 4  # number of blocks L
    max_len: int = 1024  # longest sequence; sizes the learned position table
    mixer: str = "softmax"  # any causal-capable name from deepnotes.mixers.names()
    mixer_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to mixers.build
    n_heads: int | None = None  # heads for multi-head mixers; None = the mixer's default
    attention_scale: float | None = None  # q.k factor; None = 1/sqrt(d_head), 1.0 = T5 style
    norm: str = "layernorm"  # "layernorm" | "rmsnorm"
    norm_position: str = "pre"  # "pre" (stable without warm-up tricks) | "post" (original)
    norm_eps: float = 1e-5  # added to the variance inside the norm
    positions: str = "learned"  # "learned" | "sinusoidal" | "rotary" | "none"
    ffn: str = "gelu"  # relu | gelu | silu | glu | bilinear | reglu | geglu | swiglu
    ffn_mult: float = 4.0  # MLP hidden = mult * d_model; GLU hidden = 2/3 of that
    ffn_hidden: int | None = None  # explicit hidden width (overrides ffn_mult)
    ffn_multiple_of: int = 1  # round the hidden width up to a multiple (64 for GPUs)
    bias: bool = False  # biases in Linear and LayerNorm (GPT-2 has them; LLaMA/T5 do not)
    dropout: float = 0.0  # embedding and residual dropout; 0 for short runs
    tie_weights: bool = True  # output head shares the token embedding (Press & Wolf 2017)
    init: str = "normal"  # "normal" | "lecun" | "kaiming" | "xavier" | "t5" (layers/init.py)
    init_std: float = 0.02  # sigma of the "normal" scheme (GPT-2)
    scaled_residual_init: bool = True  # residual projections get sigma / sqrt(2 L) (GPT-2)
    moe_experts: int = 0  # 0 = dense FFN; > 0 = Mixture of Experts with this many experts
    moe_top_k: int = 1  # experts per token: 1 = Switch, 2 = GShard/Mixtral
    moe_capacity_factor: float | None = 1.25  # expert capacity factor; None = dropless
    moe_every: int = 1  # every k-th block (counting from the last) gets the MoE FFN
    moe_balance_coef: float = 0.01  # weight of the Switch load-balancing loss
    moe_z_coef: float = 1e-3  # weight of the router z-loss (ST-MoE)
    gradient_checkpointing: bool = False  # recompute each block in backward (saves memory)
    # loss(): head + cross-entropy chunk by chunk (ops.cross_entropy.linear_cross_entropy),
    # never holding the [B*T, vocab] logits in fp32; same loss, less memory
    fused_ce: bool = False
    fused_ce_chunk: int = 2048  # rows (tokens) per chunk of the fused loss


@dataclass
class LMState:
    """Decoding state: the next position t and one mixer state per block."""

    t: int
    layers: list


def mixer_kwargs(cfg: LMConfig) -> dict[str, Any]:
    """The kwargs the LM passes to `mixers.build` for cfg, with clear errors for misfits."""
    cls = M.get(cfg.mixer)
    if not cls.supports_causal:
        raise ValueError(f"mixer {cfg.mixer!r} cannot be causal, so it cannot drive a decoder LM")
    kw = dict(cfg.mixer_kwargs)
    if cfg.n_heads is not None:
        kw.setdefault("n_heads", cfg.n_heads)
    if cfg.positions == "rotary":
        if not cls.supports_rotary:
            raise ValueError(
                f"mixer {cfg.mixer!r} does not support rotary positions; use positions="
                "'learned', 'sinusoidal' or 'none' (recurrent mixers know order already)"
            )
        kw["rotary"] = True
    if cfg.attention_scale is not None:
        if not cls.supports_scale:
            raise ValueError(f"mixer {cfg.mixer!r} has no attention scale to set")
        kw["scale"] = cfg.attention_scale
    return kw


class Block(nn.Module):
    """One residual block: mixer then FFN (or MoE), pre- or post-norm."""

    def __init__(self, cfg: LMConfig, index: int) -> None:
        super().__init__()
        self.pre = cfg.norm_position == "pre"
        d = cfg.d_model
        self.norm1 = build_norm(cfg.norm, d, eps=cfg.norm_eps, bias=cfg.bias)
        self.mixer = M.build(cfg.mixer, d, causal=True, **mixer_kwargs(cfg))
        self.norm2 = build_norm(cfg.norm, d, eps=cfg.norm_eps, bias=cfg.bias)
        hidden = cfg.ffn_hidden or ffn_hidden(cfg.ffn, d, cfg.ffn_mult, cfg.ffn_multiple_of)
        ffn_kw = dict(hidden=hidden, bias=cfg.bias, dropout=cfg.dropout)
        is_moe = cfg.moe_experts > 0 and (cfg.n_layers - 1 - index) % cfg.moe_every == 0
        if is_moe:
            self.ffn = MoE(
                d,
                cfg.moe_experts,
                top_k=cfg.moe_top_k,
                capacity_factor=cfg.moe_capacity_factor,
                ffn=cfg.ffn,
                balance_coef=cfg.moe_balance_coef,
                z_coef=cfg.moe_z_coef,
                **ffn_kw,
            )
        else:
            self.ffn = build_ffn(cfg.ffn, d, **ffn_kw)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.pre:
            x = x + self.drop(self.mixer(self.norm1(x), mask))
            return x + self.ffn(self.norm2(x))
        x = self.norm1(x + self.drop(self.mixer(x, mask)))
        return self.norm2(x + self.ffn(x))

    def step(self, x: torch.Tensor, state):
        """x: [B, D] -> ([B, D], new mixer state)."""
        if self.pre:
            y, state = self.mixer.step(self.norm1(x), state)
            x = x + y
            return x + self.ffn(self.norm2(x)), state
        y, state = self.mixer.step(x, state)
        x = self.norm1(x + y)
        return self.norm2(x + self.ffn(x)), state


class LM(nn.Module):
    """Decoder-only LM. forward(tokens [B, T], mask=None) -> logits [B, T, V] (float)."""

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self._check(cfg)
        self.cfg = cfg
        d = cfg.d_model
        self.embed = nn.Embedding(cfg.vocab_size, d)
        self.pos = nn.Embedding(cfg.max_len, d) if cfg.positions == "learned" else None
        if cfg.positions == "sinusoidal":
            self.register_buffer("pos_table", sinusoidal_table(cfg.max_len, d), persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        pre = cfg.norm_position == "pre"
        self.norm = build_norm(cfg.norm, d, eps=cfg.norm_eps, bias=cfg.bias) if pre else None
        self.head = nn.Linear(d, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.head.weight = self.embed.weight
        self.gradient_checkpointing = cfg.gradient_checkpointing
        self.aux_loss = torch.zeros(())
        self.reset_parameters()

    @staticmethod
    def _check(cfg: LMConfig) -> None:
        for name, value, valid in [
            ("norm", cfg.norm, ("layernorm", "rmsnorm")),
            ("norm_position", cfg.norm_position, ("pre", "post")),
            ("positions", cfg.positions, POSITIONS),
            ("ffn", cfg.ffn, FFN_KINDS),
            ("init", cfg.init, I.INIT_SCHEMES),
        ]:
            if value not in valid:
                raise ValueError(f"LMConfig.{name} = {value!r}; valid: {', '.join(valid)}")
        for name in ("vocab_size", "d_model", "n_layers", "max_len", "moe_every"):
            if getattr(cfg, name) <= 0:
                raise ValueError(f"LMConfig.{name} must be positive, got {getattr(cfg, name)}")
        if cfg.init == "t5" and cfg.attention_scale != 1.0:
            raise ValueError(
                "init='t5' shrinks W_q by 1/sqrt(d_head) to replace the 1/sqrt(d_head) of the "
                "attention; use it with attention_scale=1.0 (T5's unscaled attention)"
            )

    # ------------------------------------------------------------------ init
    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Draw every weight under cfg.init (see deepnotes.layers.init)."""
        cfg = self.cfg
        emb_std = I.embedding_std(cfg.init, cfg.d_model, cfg.init_std)
        self.embed.weight.normal_(0.0, emb_std)
        if self.pos is not None:
            self.pos.weight.normal_(0.0, emb_std)
        I.init_linears_(self, cfg.init, cfg.init_std)  # tied head: skipped below
        if cfg.tie_weights:
            self.embed.weight.normal_(0.0, emb_std)
        res = I.residual_scale(cfg.n_layers) if cfg.scaled_residual_init else 1.0
        for block in self.blocks:
            if cfg.init == "t5":
                I.t5_query_init_(block.mixer)
            if res != 1.0:
                outs = [I.residual_out(block.mixer)]
                ffns = block.ffn.experts if isinstance(block.ffn, MoE) else [block.ffn]
                outs += [I.residual_out(f) for f in ffns]
                for lin in outs:
                    if lin is not None:
                        I.scale_weight_(lin, res)
        for m in self.modules():
            if isinstance(m, nn.LayerNorm | RMSNorm):
                if getattr(m, "weight", None) is not None:
                    m.weight.fill_(1.0)
                if getattr(m, "bias", None) is not None:
                    m.bias.zero_()

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each block in backward (non-reentrant torch.utils.checkpoint)."""
        self.gradient_checkpointing = enabled

    # ------------------------------------------------------------------ forward
    def _embed(self, tokens: torch.Tensor, offset: int = 0) -> torch.Tensor:
        T = tokens.shape[-1]
        x = self.embed(tokens)
        if self.cfg.positions in ("learned", "sinusoidal") and offset + T > self.cfg.max_len:
            raise ValueError(
                f"LM: position {offset + T - 1} is past max_len = {self.cfg.max_len} of the "
                f"{self.cfg.positions} position table"
            )
        if self.pos is not None:
            x = x + self.pos.weight[offset : offset + T]
        elif self.cfg.positions == "sinusoidal":
            x = x + self.pos_table[offset : offset + T].to(x.dtype)
        return self.drop(x)

    def hidden(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """tokens: [B, T] int -> final hidden states [B, T, D] (before the head)."""
        if tokens.dim() != 2 or tokens.dtype not in (torch.long, torch.int32, torch.int64):
            raise ValueError(
                f"LM: expected integer tokens of shape [B, T], got {tuple(tokens.shape)} "
                f"{tokens.dtype}"
            )
        x = self._embed(tokens)
        for block in self.blocks:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, mask, use_reentrant=False)
            else:
                x = block(x, mask)
        self.aux_loss = self._collect_aux(x)
        return x if self.norm is None else self.norm(x)

    def _collect_aux(self, like: torch.Tensor) -> torch.Tensor:
        aux = [b.ffn.aux_loss for b in self.blocks if isinstance(b.ffn, MoE)]
        if not aux:
            return torch.zeros((), device=like.device)
        return torch.stack([a.float() for a in aux]).sum()

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """tokens: [B, T] int, mask: [B, T] bool (True = real) -> logits [B, T, V]."""
        return self.head(self.hidden(tokens, mask))

    def loss(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy (in fp32) plus the MoE auxiliary loss."""
        if self.cfg.fused_ce:
            h = self.hidden(tokens)
            ce = linear_cross_entropy(
                h.flatten(0, 1),
                self.head.weight,
                targets.flatten(),
                chunk_size=self.cfg.fused_ce_chunk,
            )
            return ce + self.aux_loss
        logits = self(tokens)
        ce = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        return ce + self.aux_loss

    # ------------------------------------------------------------------ decoding
    @property
    def supports_step(self) -> bool:
        return all(type(b.mixer).supports_step for b in self.blocks)

    def init_state(self, batch: int, device=None, dtype=None) -> LMState:
        """Decoding state before the first token (per-block mixer states)."""
        if not self.supports_step:
            bad = sorted({type(b.mixer).__name__ for b in self.blocks})
            raise ValueError(f"LM: mixer(s) {bad} cannot decode token by token")
        p = self.embed.weight
        device = p.device if device is None else device
        dtype = p.dtype if dtype is None else dtype
        states = [b.mixer.init_state(batch, device=device, dtype=dtype) for b in self.blocks]
        return LMState(0, states)

    def step(self, tokens: torch.Tensor, state: LMState) -> tuple[torch.Tensor, LMState]:
        """tokens: [B] int (position state.t) -> (logits [B, V], state advanced by one)."""
        if tokens.dim() != 1:
            raise ValueError(f"LM.step: expected tokens of shape [B], got {tuple(tokens.shape)}")
        x = self._embed(tokens[:, None], offset=state.t)[:, 0]
        layers = []
        for block, s in zip(self.blocks, state.layers, strict=True):
            x, s = block.step(x, s)
            layers.append(s)
        if self.norm is not None:
            x = self.norm(x)
        return self.head(x), LMState(state.t + 1, layers)

    # ------------------------------------------------------------------ counting
    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count (shared tensors once).

        non_embedding=True leaves out lookup tables: the position table, and the token table
        unless it is tied to the head (then it is the head's matmul weight, as in nanoGPT).
        """
        seen, n = set(), 0
        for p in self.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
        if non_embedding:
            if self.pos is not None:
                n -= self.pos.weight.numel()
            if not self.cfg.tie_weights:
                n -= self.embed.weight.numel()
        return n

    def num_active_params(self, non_embedding: bool = False) -> int:
        """Parameters one token uses: MoE layers count top_k experts, not all of them."""
        n = self.num_params(non_embedding)
        for b in self.blocks:
            if isinstance(b.ffn, MoE):
                per = sum(p.numel() for p in b.ffn.experts[0].parameters())
                n -= (b.ffn.n_experts - b.ffn.top_k) * per
        return n


def auto_positions(mixer: str) -> str:
    """Rotary where the mixer applies it (inside q and k), else a learned table."""
    return "rotary" if M.get(mixer).supports_rotary else "learned"


def build_lm(cfg: LMConfig, device: torch.device | str, seed: int) -> LM:
    """LM(cfg) on `device`, drawn from `seed`: every variant of an experiment starts alike."""
    torch.manual_seed(seed)
    return LM(cfg).to(device)
