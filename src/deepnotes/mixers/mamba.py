"""Mamba (Gu & Dao 2023) as a sequence mixer: a gated block around the selective scan.

    x, z = split(W_in u)                         in-projection to 2 * d_inner (expand = 2)
    x    = silu(causal depthwise conv1d(x))      short local mixing, kernel d_conv = 4
    dt, B, C = split(W_x x)                      input-dependent SSM parameters
    delta = softplus(W_dt dt + b_dt)             per-channel step, dt_rank -> d_inner
    y    = selective_scan(x, delta, A, B, C, D) * silu(z)     A = -exp(A_log) (S4D-real)
    out  = W_out y

Selectivity (delta, B, C depending on the input) lets the model decide per token what to
write into its state and what to ignore -- what an LTI SSM (S4) cannot do, and the reason
Mamba solves selective copying.

Bidirectional (causal=False): a second conv / SSM path (its own conv, x_proj, dt_proj, A, D)
reads the sequence backwards; the two gated outputs are summed before W_out (as in Vision
Mamba). Projections W_in and W_out are shared.

Padding (mask): the input is zeroed at padded positions and their step is set to delta = 0,
so dA = 1 and dB u = 0: a padded step leaves the state exactly unchanged (padding is
skipped, not just silenced), in either direction.

Decoding: the state is the last d_conv - 1 conv inputs plus the SSM state h [B, d_inner, N],
constant memory per token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.mixers import register
from deepnotes.mixers.base import Mixer
from deepnotes.ops.ssm import naive_selective_scan, selective_scan


@dataclass
class MambaState:
    """conv: the last d_conv conv inputs [B, d_inner, d_conv]; h: SSM state [B, d_inner, N]."""

    conv: torch.Tensor
    h: torch.Tensor


def causal_conv(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """Causal depthwise conv as K shifted multiply-adds: y_t = b + sum_k w_k x_{t-(K-1)+k}.

    x: [B, Di, L]. For the short kernels of Mamba (K = 4) this beats F.conv1d's grouped
    path on CPU (which loops over the Di groups in fp64) and works in every dtype.
    """
    K = conv.kernel_size[0]
    xp = F.pad(x, (K - 1, 0))
    w = conv.weight[:, 0]  # [d_inner, K]
    y = sum(w[:, k, None] * xp[..., k : k + x.shape[-1]] for k in range(K))
    return y if conv.bias is None else y + conv.bias[:, None]


@register("mamba")
class Mamba(Mixer):
    """Mamba block. kw: d_state (N = 16), d_conv (4), expand (2), dt_rank (ceil(D/16)),
    dt_min / dt_max (delta init range), bias (projections), conv_bias, max_len."""

    supports_step = True
    # Keep torch's default Linear init (kaiming-uniform) inside the block, as mamba_ssm's
    # `_init_weights` does (it re-draws only embeddings and rescales out_proj by the depth);
    # the LM's normal(0.02) on in_proj / x_proj made B, C and the delta updates ~2.5x smaller
    # at init and measurably slowed learning (selective copying T = 64, d = 64, 1,200 steps:
    # 0.34 accuracy with the LM's init, 0.71 with this one; docs/ssm.md).
    own_init = True

    def __init__(
        self,
        d_model: int,
        *,
        causal: bool,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
        bias: bool = False,
        conv_bias: bool = True,
        max_len: int | None = None,
    ) -> None:
        super().__init__(d_model, causal=causal, max_len=max_len)
        for name, v in (("d_state", d_state), ("d_conv", d_conv), ("expand", expand)):
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"Mamba: {name} must be a positive int, got {v!r}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"Mamba: need 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
        Di = expand * d_model
        R = dt_rank or math.ceil(d_model / 16)
        self.d_inner, self.d_state, self.d_conv, self.dt_rank = Di, d_state, d_conv, R
        n_dir = 1 if causal else 2
        # S4D-real init A_n = -(n + 1), shared by all channels (Mamba's default).
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(n_dir, Di, 1)
        self.A_log = nn.Parameter(torch.log(A))  # [n_dir, Di, N]
        self.D = nn.Parameter(torch.ones(n_dir, Di))
        self.in_proj = nn.Linear(d_model, 2 * Di, bias=bias)
        self.conv = nn.ModuleList(
            nn.Conv1d(Di, Di, d_conv, groups=Di, padding=d_conv - 1, bias=conv_bias)
            for _ in range(n_dir)
        )
        self.x_proj = nn.ModuleList(
            nn.Linear(Di, R + 2 * d_state, bias=False) for _ in range(n_dir)
        )
        self.dt_proj = nn.ModuleList(nn.Linear(R, Di, bias=True) for _ in range(n_dir))
        self.out_proj = nn.Linear(Di, d_model, bias=bias)
        for lin in self.dt_proj:
            self._init_dt(lin, dt_min, dt_max, dt_init_floor)

    @torch.no_grad()
    def _init_dt(self, lin: nn.Linear, dt_min, dt_max, floor) -> None:
        """W_dt ~ U(+-R^-1/2); bias = softplus^-1(dt), dt log-uniform in [dt_min, dt_max]."""
        nn.init.uniform_(lin.weight, -(self.dt_rank**-0.5), self.dt_rank**-0.5)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)))
        dt = (dt * dt_min).clamp(min=floor)
        lin.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus
        lin.weight._no_reinit = True  # model-level inits keep this (mamba_ssm convention)
        lin.bias._no_reinit = True

    # ------------------------------------------------------------------ forward
    def _direction(self, d, x, z, mask, scan, conv_fn):
        """One direction. x, z: [B, Di, L]; mask: [B, L] bool or None -> y: [B, Di, L]."""
        x = F.silu(conv_fn(x, self.conv[d]))
        dt, Bm, Cm = self.x_proj[d](x.transpose(1, 2)).split(
            [self.dt_rank, self.d_state, self.d_state], dim=-1
        )
        delta = (dt @ self.dt_proj[d].weight.T).transpose(1, 2)  # [B, Di, L], bias below
        A = -torch.exp(self.A_log[d])
        Bm, Cm = Bm.transpose(1, 2), Cm.transpose(1, 2)  # [B, N, L]
        if mask is None:
            return scan(
                x, delta, A, Bm, Cm, self.D[d], z, self.dt_proj[d].bias, delta_softplus=True
            )
        delta = F.softplus(delta + self.dt_proj[d].bias[:, None]) * mask[:, None].to(delta.dtype)
        return scan(x, delta, A, Bm, Cm, self.D[d], z)

    def _forward(self, u, mask, scan, conv_fn):
        if mask is not None:
            u = u * mask[..., None].to(u.dtype)
        x, z = self.in_proj(u).transpose(1, 2).chunk(2, dim=1)  # [B, Di, L] each
        if mask is not None:
            x = x * mask[:, None].to(x.dtype)
        y = self._direction(0, x, z, mask, scan, conv_fn)
        if not self.causal:
            flip = lambda t: None if t is None else t.flip(-1)
            y = y + self._direction(1, flip(x), flip(z), flip(mask), scan, conv_fn).flip(-1)
        return self.out_proj(y.transpose(1, 2))

    def mix(self, x, mask):
        return self._forward(x, mask, selective_scan, causal_conv)

    def reference(self, x, mask=None):
        """The sequential reference scan, and the conv by torch's Conv1d (padded, cropped)."""
        conv_fn = lambda x, conv: conv(x)[..., : x.shape[-1]]
        y = self._forward(x, mask, naive_selective_scan, conv_fn)
        return y if mask is None else y * mask[..., None].to(y.dtype)

    # ------------------------------------------------------------------ decoding
    def init_state(self, batch, device=None, dtype=None) -> MambaState:
        self._require_step()
        p = self.in_proj.weight
        device, dtype = device or p.device, dtype or p.dtype
        conv = torch.zeros(batch, self.d_inner, self.d_conv, device=device, dtype=dtype)
        h_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        h = torch.zeros(batch, self.d_inner, self.d_state, device=device, dtype=h_dtype)
        return MambaState(conv, h)

    def step(self, x_t, state: MambaState):
        self.check_step_input(x_t)
        x, z = self.in_proj(x_t).chunk(2, dim=-1)  # [B, Di]
        conv = torch.cat([state.conv[..., 1:], x[..., None]], dim=-1)
        c = self.conv[0]
        x = (conv * c.weight[:, 0]).sum(-1)
        x = F.silu(x if c.bias is None else x + c.bias)
        dt, Bm, Cm = self.x_proj[0](x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj[0](dt)).to(state.h.dtype)  # [B, Di]
        A = -torch.exp(self.A_log[0]).to(state.h.dtype)
        xh = x.to(state.h.dtype)
        h = torch.exp(delta[..., None] * A) * state.h + (delta * xh)[..., None] * Bm[:, None].to(
            state.h.dtype
        )
        y = (h * Cm[:, None].to(h.dtype)).sum(-1) + self.D[0] * xh
        y = (y * F.silu(z.to(h.dtype))).to(x_t.dtype)
        return self.out_proj(y), MambaState(conv, h)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, d_inner={self.d_inner}, d_state={self.d_state}, "
            f"d_conv={self.d_conv}, dt_rank={self.dt_rank}"
        )
