"""S4D and S4 as sequence mixers (Gu et al. 2022): one SISO state-space model per channel.

For each of the H = d_model channels, u -> y = K * u + D u with the SSM kernel K
(`deepnotes.ops.ssm.s4`), then GELU and a position-wise GLU output layer (S4's block):

    y = GLU(W (GELU(K * u + D u)))

- `s4d`: diagonal A (S4D-Lin or S4D-Inv init), ZOH (default) or bilinear discretisation;
  kernel by a Vandermonde product.
- `s4`:  A = Lambda - P P^* (diagonal plus rank one, HiPPO-LegS init), bilinear; kernel by
  Cauchy sums and the Woodbury identity (S4's Algorithm 1), or by powers of the dense dA.

Modes (`mode=`): "fft" convolves with the whole length-T kernel by FFT (S4's way); "chunk"
runs exact Toeplitz products inside chunks of `chunk_size` and passes the state between
chunks. Both are O(T) up to log factors and agree to rounding. "auto" = "chunk": its outputs
depend on past inputs only, bit for bit (FFT outputs pick up ~1e-7 relative rounding noise
from future inputs in fp32), it needs no O(H N T) Vandermonde or Cauchy matrix, and on CPU it
measured 5-20x faster than "fft" at T = 1k-4k (docs/ssm.md).

Bidirectional (causal=False): a second output matrix C_rev reads the same SSM run backwards,
y_t += sum_{j>=0} K_rev_j u_{t+1+j} (strictly future inputs), as in S4's bidirectional layer.

Padding (mask): padded inputs are set to zero before the SSM. Time still passes through them
(an LTI system cannot skip steps), so a padded hole inside a sequence decays the state; with
the usual right padding (or left padding in causal mode) the real outputs equal those of the
unpadded sequence.

Half precision: complex half tensors are barely supported by torch (no complex exp, FFT or
einsum in float16/bfloat16), and a kernel K_j = Re(C dA^j dB) whose modes decay over
thousands of steps is not representable in 8 or 11 mantissa bits anyway. So under autocast
(fp16/bf16) and in `.half()` / `.bfloat16()` modules the SSM itself (parameters, kernel,
convolution, D u) is computed in fp32 with autocast off; only the GLU output layer runs in
the low-precision dtype, and the result has the input's dtype.

Decoding: `step` advances the recurrent state x [B, H, N/2] (S4D) or [B, H, N] (S4)
(complex), constant memory per token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.mixers import register
from deepnotes.mixers.base import Mixer
from deepnotes.ops.ssm.hippo import discretize, discretize_diag
from deepnotes.ops.ssm.s4 import (
    S4D_INITS,
    chunk_lti_conv,
    dense_chunk_terms,
    diag_chunk_terms,
    dplr_full,
    fft_conv,
    legs_nplr,
    s4_kernel,
    s4d_init,
    vandermonde_kernel,
)

MODES = ("auto", "fft", "chunk")


@dataclass
class LTIState:
    """Decoding state: the complex SSM state x and the discretised system (constant size)."""

    x: torch.Tensor  # [B, H, M] complex
    dA: torch.Tensor  # [H, M] (diagonal) or [H, M, M]
    dB: torch.Tensor  # [H, M]
    C: torch.Tensor  # [H, M]: y = Re(C x)


def _hi(t: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 -> fp32 (the SSM runs in fp32 at least); fp32/fp64 unchanged."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _complex(p: torch.Tensor) -> torch.Tensor:
    """A real parameter [..., 2] viewed as complex [...] (complex64 at least)."""
    return torch.view_as_complex(_hi(p))


def _real_param(z: torch.Tensor, dtype=torch.float32) -> nn.Parameter:
    return nn.Parameter(torch.view_as_real(z.to(torch.complex128)).to(dtype).contiguous())


class LTISSM(Mixer):
    """Shared machinery of S4D and S4: dt, C, D, the convolution modes, the GLU output."""

    supports_step = True
    diagonal: bool = True

    def __init__(
        self,
        d_model: int,
        *,
        causal: bool,
        d_state: int = 64,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        mode: str = "auto",
        chunk_size: int = 64,
        max_len: int | None = None,
    ) -> None:
        super().__init__(d_model, causal=causal, max_len=max_len)
        name = type(self).__name__
        if d_state < 2 or d_state % 2:
            raise ValueError(f"{name}: d_state must be even and >= 2, got {d_state}")
        if mode not in MODES:
            raise ValueError(f"{name}: mode must be one of {MODES}, got {mode!r}")
        if chunk_size <= 0:
            raise ValueError(f"{name}: chunk_size must be positive, got {chunk_size}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"{name}: need 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
        H, M = d_model, d_state // 2
        self.d_state, self.chunk_size = d_state, chunk_size
        self.mode = "chunk" if mode == "auto" else mode
        self.n_dir = 1 if causal else 2
        # dt log-uniform in [dt_min, dt_max]: timescales from ~10 to ~1000 steps (S4).
        log_dt = torch.rand(H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)
        c = torch.complex(torch.randn(self.n_dir, H, M), torch.randn(self.n_dir, H, M))
        self.C = _real_param(c * math.sqrt(0.5))  # unit-variance complex normal
        self.D = nn.Parameter(torch.randn(H))
        self.out = nn.Linear(H, 2 * H)  # GLU output layer

    # ------------------------------------------------------------------ per-family parts
    def system(self):
        """(dA, dB, log_dA or None, Cout [n_dir, H, M]) with y = Re(Cout x)."""
        raise NotImplementedError

    def fft_kernels(self, T: int) -> torch.Tensor:
        """The length-T kernels of both directions: [n_dir, H, T] real."""
        raise NotImplementedError

    def chunk_terms(self, sys, d: int, l: int):
        dA, dB, log_dA, Cout = sys
        if self.diagonal:
            return diag_chunk_terms(log_dA, dB, Cout[d], l)
        return dense_chunk_terms(dA, dB, Cout[d], l)

    # ------------------------------------------------------------------ forward
    def ssm(self, u: torch.Tensor) -> torch.Tensor:
        """u: [B, H, T] -> K * u (+ the anti-causal half): [B, H, T]."""
        T = u.shape[-1]
        if self.mode == "fft":
            K = self.fft_kernels(T)
            return fft_conv(u, K[0], K[1] if self.n_dir == 2 else None)
        sys = self.system()
        l = min(self.chunk_size, T)
        y = chunk_lti_conv(u, *self.chunk_terms(sys, 0, l))
        if self.n_dir == 2:  # the reversed run, shifted by one: strictly future inputs
            z = chunk_lti_conv(u.flip(-1), *self.chunk_terms(sys, 1, l))
            y = y + F.pad(z[..., :-1], (1, 0)).flip(-1)
        return y

    def post(self, y: torch.Tensor) -> torch.Tensor:
        """[..., H] -> GLU(W GELU(y)): [..., H]."""
        return F.glu(self.out(F.gelu(y)), dim=-1)

    def mix(self, x, mask):
        u = _hi(x.transpose(1, 2))
        if mask is not None:
            u = u * mask[:, None, :].to(u.dtype)
        with torch.autocast(u.device.type, enabled=False):  # the SSM in fp32 (or fp64)
            y = self.ssm(u) + _hi(self.D)[:, None] * u
        return self.post(y.transpose(1, 2).to(x.dtype))

    def reference(self, x, mask=None):
        """The recurrence itself, one step at a time (both directions when bidirectional)."""
        u = _hi(x.transpose(1, 2))
        if mask is not None:
            u = u * mask[:, None, :].to(u.dtype)
        dA, dB, _, Cout = self.system()
        T = u.shape[-1]
        s = u.new_zeros(*u.shape[:2], dB.shape[-1], dtype=dB.dtype)
        ys = []
        for t in range(T):
            s = self._advance(dA, dB, s, u[..., t])
            ys.append((Cout[0] * s).sum(-1).real)
        y = torch.stack(ys, -1)
        if self.n_dir == 2:
            s, back = torch.zeros_like(s), [None] * T
            for t in reversed(range(T)):
                back[t] = (Cout[1] * s).sum(-1).real  # state holds u_{t+1..T-1}
                s = self._advance(dA, dB, s, u[..., t])
            y = y + torch.stack(back, -1)
        y = self.post((y + _hi(self.D)[:, None] * u).transpose(1, 2).to(x.dtype))
        return y if mask is None else y * mask[..., None].to(y.dtype)

    def _advance(self, dA, dB, s, u_t):
        """One recurrence step: s [B, H, M] complex, u_t [B, H] real."""
        if dA.dim() == 2:
            return dA * s + dB * u_t[..., None]
        return torch.einsum("hmn,bhn->bhm", dA, s) + dB * u_t[..., None]

    # ------------------------------------------------------------------ decoding
    def init_state(self, batch, device=None, dtype=None) -> LTIState:
        self._require_step()
        dA, dB, _, Cout = self.system()
        x = torch.zeros(batch, *dB.shape, dtype=dB.dtype, device=device or dB.device)
        return LTIState(x, dA, dB, Cout[0])

    def step(self, x_t, state: LTIState):
        self.check_step_input(x_t)
        u_t = _hi(x_t)
        s = self._advance(state.dA, state.dB, state.x, u_t)
        y = (state.C * s).sum(-1).real + _hi(self.D) * u_t
        return self.post(y.to(x_t.dtype)), LTIState(s, state.dA, state.dB, state.C)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, d_state={self.d_state}, mode={self.mode}"


@register("s4d")
class S4D(LTISSM):
    """S4D: diagonal SSM. kw: d_state (N), init ("lin" | "inv"), disc ("zoh" | "bilinear"),
    dt_min, dt_max, mode ("auto" | "fft" | "chunk"), chunk_size, max_len."""

    diagonal = True

    def __init__(
        self, d_model: int, *, causal: bool, init: str = "lin", disc: str = "zoh", **kw
    ) -> None:
        super().__init__(d_model, causal=causal, **kw)
        if init not in S4D_INITS:
            raise ValueError(f"S4D: init must be one of {S4D_INITS}, got {init!r}")
        if disc not in ("zoh", "bilinear"):
            raise ValueError(f"S4D: disc must be 'zoh' or 'bilinear', got {disc!r}")
        self.disc = disc
        A = s4d_init(self.d_state, init).expand(d_model, -1)
        self.log_A_real = nn.Parameter(torch.log(-A.real).float())  # Re A = -exp(.) < 0
        self.A_imag = nn.Parameter(A.imag.float().clone())
        self.B = _real_param(torch.ones_like(A))  # S4D's B = 1 init

    def system(self):
        A = torch.complex(-torch.exp(_hi(self.log_A_real)), _hi(self.A_imag))
        dt = torch.exp(_hi(self.log_dt))[:, None]
        dA, dB = discretize_diag(A, _complex(self.B), dt, self.disc)
        log_dA = dt * A if self.disc == "zoh" else torch.log(dA)
        return dA, dB, log_dA, 2 * _complex(self.C)  # 2 Re(.): the conjugate halves

    def fft_kernels(self, T):
        _, dB, log_dA, Cout = self.system()
        return torch.stack([vandermonde_kernel(Cout[d] * dB, log_dA, T) for d in range(self.n_dir)])


@register("s4")
class S4(LTISSM):
    """S4: diagonal-plus-low-rank SSM with HiPPO-LegS init, bilinear discretisation.
    kw: d_state (N), dt_min, dt_max, mode ("auto" | "fft" | "chunk"), chunk_size, max_len."""

    diagonal = False

    def __init__(self, d_model: int, *, causal: bool, **kw) -> None:
        super().__init__(d_model, causal=causal, **kw)
        Lambda, P, B = (t.expand(d_model, -1) for t in legs_nplr(self.d_state))
        self.log_Lambda_real = nn.Parameter(torch.log(-Lambda.real).float())
        self.Lambda_imag = nn.Parameter(Lambda.imag.float().clone())
        self.P = _real_param(P)
        self.B = _real_param(B)

    def dplr(self):
        Lambda = torch.complex(-torch.exp(_hi(self.log_Lambda_real)), _hi(self.Lambda_imag))
        return Lambda, _complex(self.P), _complex(self.B)

    def system(self):
        Lambda, P, B = self.dplr()
        A_full, B_full = dplr_full(Lambda, P, B)
        dA, dB = discretize(A_full, B_full, torch.exp(_hi(self.log_dt)), "bilinear")
        C = _complex(self.C)
        return dA, dB, None, torch.cat([C, C.conj()], -1)  # full N-dim state

    def fft_kernels(self, T):
        Lambda, P, B = self.dplr()
        return s4_kernel(Lambda, P, B, _complex(self.C), torch.exp(_hi(self.log_dt)), T)
