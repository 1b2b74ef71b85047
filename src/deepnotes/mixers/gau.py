"""Gated attention unit and FLASH (Hua et al. 2022, "Transformer Quality in Linear Time").

The gated attention unit (GAU) replaces attention + FFN by one gated layer:

    u = silu(x W_u),  v = silu(x W_v)      [T, e], e = 2 d (expansion 2)
    z = silu(x W_z)                        [T, s], s = 128, shared by queries and keys
    q_r = z * gamma_r + beta_r             per-dim scale and offset for each role r
    y = (u * attn(q, k, v)) W_o            [T, d]

with relu^2 scores instead of softmax. Two forms:
- `gau_quad` (FLASH-Quad): A_ij = relu(q_i . k_j / sqrt(s))^2 / n_i over all visible j,
  O(T^2). Decoding keeps all past keys and values (`state_grows`).
- `gau_flash` (FLASH): the mixed-chunk attention of `deepnotes.ops.gau`: relu^2 within
  chunks of C positions, linear attention across chunks (causal: a cumulative sum over
  earlier chunks), O(T C (s + e) + T s e). Decoding state: the linear sum plus the open
  chunk, bounded by C.

Scaling of FLASH's mixed-chunk sum (`scaling=`): "paper" (default) follows the paper's
pseudo-code: relu(q.k / C)^2 inside a chunk with no per-row divisor, and the linear sum
divided by C (causal) or by the number of real tokens (non-causal). "position" divides each
row by n_i below, so the local term fades as C / i against the linear sum on long sequences;
at equal budget in the arena it trained worse (3.414 vs 3.225 bits/byte, docs/mixers.md).
`gau_quad` always uses the n_i rows below.

n_i is the number of real tokens position i can see: T (the paper's 1/n) or, when causal,
the count up to i (never the future length, so decoding equals the forward pass). Padded
keys are zeroed (relu^2(q . 0) = 0, no linear contribution) and the normaliser counts real
tokens only. The mixer excludes the paper's pre-norm and residual: the block around a mixer
provides them.

Positions and init (two departures from the paper's pseudo-code, which adds a relative
position bias b inside relu^2(q k^T + b)):
- No bias b. With `rotary=True` (what the LM picks for a mixer that supports it) every role
  is rotated by RoPE, so q_i . k_j depends on i - j, as in FLASH-pytorch and GAU-alpha.
  Without any position inside the scores, q_i . k_j = z_i^T diag(gamma_q gamma_k) z_j (+
  offsets) is a diagonal form of one shared z, which barely uses absolute position
  embeddings: a byte LM with it stayed at the bigram loss (2.29 nats) for 300 steps.
- gamma ~ N(1, 0.02^2) instead of N(0, 0.02^2), as GAU-alpha's scale-offset (ones). The
  paper's gamma ~ 0.02 makes q, k ~ 0.02 z, so scores ~ 1e-5 and relu^2 ~ 1e-9: the attention
  output is ~1e-9 of the residual and every gradient of the unit but the output bias is
  ~1e-10, below Adam's eps = 1e-8 (the paper's bias b is what keeps its attention alive at
  init). With gamma ~ 1 the unit starts as a near-uniform causal average, like softmax.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.layers.positional import RotaryEmbedding
from deepnotes.mixers import register
from deepnotes.mixers.base import Mixer
from deepnotes.ops.gau import (
    SCALINGS,
    chunk_gau,
    gau_step,
    init_gau_state,
    naive_gau,
    relu2_scores,
    row_normaliser,
)

# FLASH's default scaling of the mixed-chunk sum: "paper" won the arena comparison at equal
# budget, 3.225 vs 3.414 bits/byte (docs/mixers.md).
FLASH_SCALING = "paper"


class _GAU(Mixer):
    n_roles = 2  # scale/offset pairs of shared Z: (q, k) for GAU, 4 for FLASH
    supports_rotary = True

    def __init__(
        self,
        d_model: int,
        *,
        causal: bool,
        expansion: int = 2,
        qk_dim: int = 128,
        gamma_init_std: float = 0.02,
        rotary: bool = False,
        max_len: int | None = None,
    ) -> None:
        super().__init__(d_model, causal=causal, max_len=max_len)
        if expansion <= 0 or qk_dim <= 0:
            raise ValueError(
                f"{type(self).__name__}: expansion and qk_dim must be positive, "
                f"got {expansion}, {qk_dim}"
            )
        self.e = expansion * d_model  # the paper's e = 2d
        self.s = qk_dim  # the paper's s = 128
        self.proj = nn.Linear(d_model, 2 * self.e + self.s)  # W_u, W_v, W_z in one matmul
        # scale_offset: gamma ~ N(1, 0.02^2) (the paper's N(0, 0.02^2) is a dead start without
        # its position bias; see the module docstring), beta = 0.
        self.gamma = nn.Parameter(1.0 + torch.randn(self.n_roles, self.s) * gamma_init_std)
        self.beta = nn.Parameter(torch.zeros(self.n_roles, self.s))
        self.out = nn.Linear(self.e, d_model)
        self.rotary = RotaryEmbedding(self.s) if rotary else None

    def _project(self, x, mask, offset: int = 0):
        """x: [B, T, d] -> u, v: [B, T, e] and the role tensors [n_roles][B, T, s], rotated
        at positions offset.. when rotary."""
        u, v, z = F.silu(self.proj(x)).split([self.e, self.e, self.s], dim=-1)
        roles = list((z[..., None, :] * self.gamma + self.beta).unbind(-2))
        if self.rotary is not None:
            roles = [self.rotary(r, offset) for r in roles]
        if mask is not None:  # padded keys and values contribute nothing
            m = mask[..., None].to(v.dtype)
            v = v * m
            roles[1::2] = [r * m for r in roles[1::2]]  # the key roles
        return u, v, roles

    def _renorm(self, o, mask):
        """Ops divide row i by its position count; divide by the real-token count instead."""
        if mask is None:
            return o
        T = o.shape[1]
        n_pos = row_normaliser(T, self.causal, device=o.device, dtype=o.dtype)[:, 0]  # [T]
        m = mask.to(o.dtype)
        n_real = m.cumsum(1) if self.causal else m.sum(1, keepdim=True).expand_as(m)
        return o * (n_pos / n_real.clamp_min(1))[..., None]

    def _finish(self, u, o, mask):
        y = self.out(u * self._renorm(o, mask))
        return y if mask is None else y * mask[..., None]


@register("gau_quad")
class GAUQuad(_GAU):
    """FLASH-Quad: GAU with relu^2 attention over the whole sequence. kw: expansion, qk_dim,
    gamma_init_std, rotary, max_len."""

    supports_step = True
    state_grows = True

    def mix(self, x, mask):
        u, v, (q, k) = self._project(x, mask)
        A = relu2_scores(q, k)  # [B, T, T]
        if self.causal:
            A = A.tril()
        o = (A @ v) / row_normaliser(x.shape[1], self.causal, device=x.device, dtype=x.dtype)
        return self.out(u * self._renorm(o, mask))

    def reference(self, x, mask=None):
        # The mixed-chunk matrix with one chunk spanning T and no linear part is FLASH-Quad.
        u, v, (q, k) = self._project(x, mask)
        zero = torch.zeros_like(q)
        o = naive_gau(q, k, zero, zero, v, chunk_size=x.shape[1], causal=self.causal)
        return self._finish(u, o, mask)

    def init_state(self, batch, device=None, dtype=None):
        """(keys [B, t, s], values [B, t, e]) of all past tokens."""
        self._require_step()
        w = self.proj.weight
        device, dtype = device or w.device, dtype or w.dtype
        return (
            torch.zeros(batch, 0, self.s, device=device, dtype=dtype),
            torch.zeros(batch, 0, self.e, device=device, dtype=dtype),
        )

    def step(self, x_t, state):
        self.check_step_input(x_t)
        u, v, (q, k) = self._project(x_t[:, None, :], None, offset=state[0].shape[1])
        K, V = torch.cat([state[0], k], 1), torch.cat([state[1], v], 1)
        o = relu2_scores(q, K) @ V / K.shape[1]
        return self.out(u * o)[:, 0], (K, V)


@register("gau_flash")
class FLASH(_GAU):
    """FLASH: GAU with mixed-chunk attention. kw: chunk_size, scaling ("position" |
    "paper"), expansion, qk_dim, gamma_init_std, rotary, max_len."""

    supports_step = True
    n_roles = 4  # q_quad, k_quad, q_lin, k_lin

    def __init__(
        self, d_model: int, *, causal: bool, chunk_size: int = 256, scaling: str | None = None,
        **kw,
    ) -> None:  # fmt: skip
        super().__init__(d_model, causal=causal, **kw)
        if chunk_size <= 0:
            raise ValueError(f"FLASH: chunk_size must be positive, got {chunk_size}")
        scaling = FLASH_SCALING if scaling is None else scaling
        if scaling not in SCALINGS:
            raise ValueError(f"FLASH: scaling must be one of {SCALINGS}, got {scaling!r}")
        self.chunk_size = chunk_size  # C = 256, the paper's group size
        # "position": row i / n_i; "paper": the pseudo-code's constants (`ops.gau.naive`)
        self.scaling = scaling

    def _roles(self, x, mask):
        u, v, (qq, kq, ql, kl) = self._project(x, mask)
        if self.scaling == "paper" and mask is not None and not self.causal:
            # The pseudo-code's non-causal linear term is / T; count real tokens, not pads.
            m = mask.to(kl.dtype)
            kl = kl * (x.shape[1] / m.sum(1).clamp_min(1))[:, None, None]
        return u, v, (qq, kq, ql, kl)

    def _renorm(self, o, mask):
        return o if self.scaling == "paper" else super()._renorm(o, mask)

    def mix(self, x, mask):
        u, v, roles = self._roles(x, mask)
        o = chunk_gau(*roles, v, chunk_size=self.chunk_size, causal=self.causal,
                      scaling=self.scaling)  # fmt: skip
        return self.out(u * self._renorm(o, mask))

    def reference(self, x, mask=None):
        u, v, roles = self._roles(x, mask)
        o = naive_gau(*roles, v, chunk_size=self.chunk_size, causal=self.causal,
                      scaling=self.scaling)  # fmt: skip
        return self._finish(u, o, mask)

    def init_state(self, batch, device=None, dtype=None):
        self._require_step()
        w = self.proj.weight
        return init_gau_state(batch, self.s, self.e, device or w.device, dtype or w.dtype)

    def step(self, x_t, state):
        self.check_step_input(x_t)
        u, v, roles = self._project(x_t[:, None, :], None, offset=state.t)
        qq, kq, ql, kl = (r[:, 0] for r in roles)
        o, state = gau_step(state, qq, kq, ql, kl, v[:, 0], chunk_size=self.chunk_size,
                            scaling=self.scaling)  # fmt: skip
        return self.out(u[:, 0] * o), state

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, chunk_size={self.chunk_size}, scaling={self.scaling}"
