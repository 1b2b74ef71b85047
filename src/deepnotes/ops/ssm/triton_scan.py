"""The Mamba selective scan in Triton (forward and backward), chunked over time with the
state kept in registers.

Definitions as in `naive.py` (Gu & Dao 2023, Algorithm 2): per channel d and state n,

    a_t = exp(delta_t A[d, n]),  b_t = delta_t B_t[n] u_t,  h_t = a_t h_{t-1} + b_t,
    y_t = sum_n C_t[n] h_t + D u_t,   out_t = y_t silu(z_t).

Tiling. A program owns one batch row and BD channels and walks the sequence in chunks of
BL steps. Inside a chunk the recurrence is an associative scan over time of the affine maps
(a_t, b_t), composed as (a1, b1) then (a2, b2) = (a1 a2, a2 b1 + b2) (Blelloch 1990), done by
`tl.associative_scan` on a [BD, N, BL] tile; the state h [BD, N] at the chunk boundary is
carried in registers (folded into the first step of the next chunk). Only u, delta, z, B, C
are read and y written, plus the state at each chunk start (N fp32 numbers per BL steps of a
channel) when a backward pass will follow.

Backward, chunks in reverse. The chunk's h_t are recomputed from its saved start state; the
gradient of the state runs backwards as another affine scan,

    dh_t = C_t dy_t + a_{t+1} dh_{t+1}          (a_{t+1} read one step ahead),

and then, with a_t h_{t-1} = h_t - b_t (no shifted tile needed),

    du_t     = D dy_t + sum_n dh_t delta_t B_t
    ddelta_t = sum_n dh_t (A (h_t - b_t) + B_t u_t)      (then through bias and softplus)
    dA       = sum_t dh_t delta_t (h_t - b_t)
    dB_t[n]  = sum_d dh_t delta_t u_t,    dC_t[n] = sum_d dy_t h_t.

dB and dC sum over channels, which live in different programs: they are accumulated with
atomic adds in fp32 (as mamba_ssm's CUDA kernel does), as are dA, dD and d(delta_bias),
which sum over the batch.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from deepnotes.ops.backend import interpreting
from deepnotes.ops.triton_utils import pow2

LOG2E = tl.constexpr(1.4426950408889634)  # a global a @jit function may read

# (BD channels, BL steps) per program, chosen on an H100 (docs/kernels.md); small tiles
# under the interpreter so the CPU tests cross several chunks and channel blocks.
FWD_CONFIG = dict(BD=8, BL=64, num_warps=4, num_stages=2)
BWD_CONFIG = dict(BD=8, BL=32, num_warps=4, num_stages=1)
INTERPRET_CONFIG = dict(BD=4, BL=16, num_warps=4, num_stages=1)
MAX_N = 64


@triton.jit
def _affine(a1, b1, a2, b2):
    """(a1, b1) then (a2, b2): x -> a2 (a1 x + b1) + b2."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _step_size(dt_raw, bias, SOFTPLUS: tl.constexpr):
    """delta + bias, through softplus (threshold 20, as F.softplus) when asked. fp32."""
    dt = dt_raw + bias[:, None]
    if SOFTPLUS:
        dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(tl.minimum(dt, 20.0))), dt)
    return dt


@triton.jit
def selective_scan_fwd_kernel(
    U,
    DELTA,
    A,
    Bm,
    Cm,
    Dv,
    Z,
    BIAS,
    OUT,
    H0S,
    HLAST,
    Dm,
    L,
    N,
    BD: tl.constexpr,
    BN: tl.constexpr,
    BL: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    SAVE_STATES: tl.constexpr,
    STORE_LAST: tl.constexpr,
):
    """u, delta, z, out: [Bt, Dm, L] contiguous; A [Dm, N]; B, C [Bt, N, L];
    H0S: [Bt, Dm, NC, N] fp32 states at each chunk start; HLAST: [Bt, Dm, N] fp32."""
    pid_d = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_d = pid_d * BD + tl.arange(0, BD)
    offs_n = tl.arange(0, BN)
    offs_l = tl.arange(0, BL)
    d_ok = offs_d < Dm
    n_ok = offs_n < N
    A2 = (
        tl.load(
            A + offs_d[:, None] * N + offs_n[None, :], mask=d_ok[:, None] & n_ok[None, :], other=0.0
        ).to(tl.float32)
        * LOG2E
    )  # exp(x A) = exp2(x A log2 e)
    if HAS_BIAS:
        bias = tl.load(BIAS + offs_d, mask=d_ok, other=0.0).to(tl.float32)
    else:
        bias = tl.zeros([BD], dtype=tl.float32)
    if HAS_D:
        Dd = tl.load(Dv + offs_d, mask=d_ok, other=0.0).to(tl.float32)
    row = (b * Dm + offs_d)[:, None] * L  # [BD, 1] start of each channel's row
    bn_row = (b * N + offs_n)[:, None] * L  # [BN, 1]
    h = tl.zeros([BD, BN], dtype=tl.float32)
    NC = tl.cdiv(L, BL)
    for c in range(0, NC):
        t = c * BL + offs_l
        t_ok = t < L
        m = d_ok[:, None] & t_ok[None, :]
        if SAVE_STATES:
            st = ((b * Dm + offs_d)[:, None] * NC + c) * N + offs_n[None, :]
            tl.store(H0S + st, h, mask=d_ok[:, None] & n_ok[None, :])
        u = tl.load(U + row + t[None, :], mask=m, other=0.0).to(tl.float32)
        dt = _step_size(
            tl.load(DELTA + row + t[None, :], mask=m, other=0.0).to(tl.float32), bias, SOFTPLUS
        )
        mn = n_ok[:, None] & t_ok[None, :]
        Bt = tl.load(Bm + bn_row + t[None, :], mask=mn, other=0.0).to(tl.float32)
        Ct = tl.load(Cm + bn_row + t[None, :], mask=mn, other=0.0).to(tl.float32)
        # steps past L are the identity map (a = 1, b = 0): the state passes through
        dt = tl.where(t_ok[None, :], dt, 0.0)
        a = tl.exp2(dt[:, None, :] * A2[:, :, None])  # [BD, BN, BL]
        bx = (dt * u)[:, None, :] * Bt[None, :, :]
        # fold the carried state into the first step: b_0 <- a_0 h + b_0
        first = (offs_l == 0)[None, None, :]
        bx = tl.where(first, a * h[:, :, None] + bx, bx)
        _, hs = tl.associative_scan((a, bx), 2, _affine)
        y = tl.sum(hs * Ct[None, :, :], 1)  # [BD, BL]
        h = tl.sum(tl.where((offs_l == BL - 1)[None, None, :], hs, 0.0), 2)
        if HAS_D:
            y = y + Dd[:, None] * u
        if HAS_Z:
            zz = tl.load(Z + row + t[None, :], mask=m, other=0.0).to(tl.float32)
            y = y * zz * tl.sigmoid(zz)
        tl.store(OUT + row + t[None, :], y.to(OUT.dtype.element_ty), mask=m)
    if STORE_LAST:
        tl.store(
            HLAST + (b * Dm + offs_d)[:, None] * N + offs_n[None, :],
            h,
            mask=d_ok[:, None] & n_ok[None, :],
        )


@triton.jit
def selective_scan_bwd_kernel(
    U,
    DELTA,
    A,
    Bm,
    Cm,
    Dv,
    Z,
    BIAS,
    DOUT,
    H0S,
    DHLAST,
    DU,
    DDELTA,
    DA,
    DB,
    DC,
    DD,
    DZ,
    DBIAS,
    Dm,
    L,
    N,
    BD: tl.constexpr,
    BN: tl.constexpr,
    BL: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    HAS_DHLAST: tl.constexpr,
):
    """Gradients; DA, DB, DC, DD, DBIAS are zeroed fp32 buffers that receive atomic adds."""
    pid_d = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_d = pid_d * BD + tl.arange(0, BD)
    offs_n = tl.arange(0, BN)
    offs_l = tl.arange(0, BL)
    d_ok = offs_d < Dm
    n_ok = offs_n < N
    dn_ok = d_ok[:, None] & n_ok[None, :]
    Araw = tl.load(A + offs_d[:, None] * N + offs_n[None, :], mask=dn_ok, other=0.0)
    Araw = Araw.to(tl.float32)
    A2 = Araw * LOG2E
    if HAS_BIAS:
        bias = tl.load(BIAS + offs_d, mask=d_ok, other=0.0).to(tl.float32)
    else:
        bias = tl.zeros([BD], dtype=tl.float32)
    if HAS_D:
        Dd = tl.load(Dv + offs_d, mask=d_ok, other=0.0).to(tl.float32)
    row = (b * Dm + offs_d)[:, None] * L
    bn_row = (b * N + offs_n)[:, None] * L
    NC = tl.cdiv(L, BL)
    if HAS_DHLAST:
        dh_next = tl.load(
            DHLAST + (b * Dm + offs_d)[:, None] * N + offs_n[None, :], mask=dn_ok, other=0.0
        ).to(tl.float32)
    else:
        dh_next = tl.zeros([BD, BN], dtype=tl.float32)
    dA_acc = tl.zeros([BD, BN], dtype=tl.float32)
    dD_acc = tl.zeros([BD], dtype=tl.float32)
    dbias_acc = tl.zeros([BD], dtype=tl.float32)
    first = (offs_l == 0)[None, None, :]
    last = (offs_l == BL - 1)[None, None, :]
    for it in range(0, NC):
        c = NC - 1 - it
        t = c * BL + offs_l
        t_ok = t < L
        m = d_ok[:, None] & t_ok[None, :]
        mn = n_ok[:, None] & t_ok[None, :]
        u = tl.load(U + row + t[None, :], mask=m, other=0.0).to(tl.float32)
        dt_raw = tl.load(DELTA + row + t[None, :], mask=m, other=0.0).to(tl.float32)
        dt = tl.where(t_ok[None, :], _step_size(dt_raw, bias, SOFTPLUS), 0.0)
        Bt = tl.load(Bm + bn_row + t[None, :], mask=mn, other=0.0).to(tl.float32)
        Ct = tl.load(Cm + bn_row + t[None, :], mask=mn, other=0.0).to(tl.float32)
        h0 = tl.load(
            H0S + ((b * Dm + offs_d)[:, None] * NC + c) * N + offs_n[None, :], mask=dn_ok, other=0.0
        )
        # recompute the chunk's states
        a = tl.exp2(dt[:, None, :] * A2[:, :, None])
        bx = (dt * u)[:, None, :] * Bt[None, :, :]
        bx0 = tl.where(first, a * h0[:, :, None] + bx, bx)
        _, hs = tl.associative_scan((a, bx0), 2, _affine)
        # output gradient before the gate
        dout = tl.load(DOUT + row + t[None, :], mask=m, other=0.0).to(tl.float32)
        if HAS_Z:
            zz = tl.load(Z + row + t[None, :], mask=m, other=0.0).to(tl.float32)
            y = tl.sum(hs * Ct[None, :, :], 1)
            if HAS_D:
                y = y + Dd[:, None] * u
            sz = tl.sigmoid(zz)
            dz = dout * y * sz * (1.0 + zz * (1.0 - sz))
            tl.store(DZ + row + t[None, :], dz.to(DZ.dtype.element_ty), mask=m)
            dy = dout * zz * sz
        else:
            dy = dout
        # a_{t+1}: the step size one ahead (the next chunk's first step at the chunk's end)
        t1 = t + 1
        m1 = d_ok[:, None] & (t1 < L)[None, :]
        dt1 = tl.load(DELTA + row + t1[None, :], mask=m1, other=0.0).to(tl.float32)
        dt1 = tl.where((t1 < L)[None, :], _step_size(dt1, bias, SOFTPLUS), 0.0)
        a1 = tl.exp2(dt1[:, None, :] * A2[:, :, None])
        g = Ct[None, :, :] * dy[:, None, :]
        g = tl.where(last, g + a1 * dh_next[:, :, None], g)
        # dh_t = g_t + a_{t+1} dh_{t+1}: the same affine composition, run from the end
        _, dh = tl.associative_scan((a1, g), 2, _affine, reverse=True)
        dh_next = tl.sum(tl.where(first, dh, 0.0), 2)
        ah = hs - bx  # a_t h_{t-1}
        Bu = Bt[None, :, :] * u[:, None, :]
        ddt = tl.sum(dh * (Araw[:, :, None] * ah + Bu), 1)  # [BD, BL]
        dA_acc += tl.sum(dh * dt[:, None, :] * ah, 2)
        du = tl.sum(dh * Bt[None, :, :], 1) * dt
        if HAS_D:
            du = du + Dd[:, None] * dy
            dD_acc += tl.sum(tl.where(m, dy * u, 0.0), 1)
        if SOFTPLUS:
            ddt = ddt * tl.sigmoid(dt_raw + bias[:, None])
        ddt = tl.where(m, ddt, 0.0)
        dbias_acc += tl.sum(ddt, 1)
        tl.store(DU + row + t[None, :], du.to(DU.dtype.element_ty), mask=m)
        tl.store(DDELTA + row + t[None, :], ddt.to(DDELTA.dtype.element_ty), mask=m)
        # dB, dC sum over all channels: this program's BD of them, atomically into fp32
        dB = tl.sum(dh * (dt * u)[:, None, :], 0)  # [BN, BL]
        dC = tl.sum(hs * dy[:, None, :], 0)
        tl.atomic_add(DB + bn_row + t[None, :], dB, mask=mn, sem="relaxed")
        tl.atomic_add(DC + bn_row + t[None, :], dC, mask=mn, sem="relaxed")
    tl.atomic_add(DA + offs_d[:, None] * N + offs_n[None, :], dA_acc, mask=dn_ok, sem="relaxed")
    if HAS_D:
        tl.atomic_add(DD + offs_d, dD_acc, mask=d_ok, sem="relaxed")
    if HAS_BIAS:
        tl.atomic_add(DBIAS + offs_d, dbias_acc, mask=d_ok, sem="relaxed")


def _cfg(which: dict) -> dict:
    return dict(INTERPRET_CONFIG) if interpreting() else dict(which)


def selective_scan_fwd(u, delta, A, B, C, D, z, delta_bias, softplus, save_states, store_last):
    Bt, Dm, L = u.shape
    N = A.shape[1]
    cfg = _cfg(FWD_CONFIG)
    BD, BL = cfg.pop("BD"), cfg.pop("BL")
    NC = triton.cdiv(L, BL)
    out = torch.empty_like(u)
    h0s = torch.empty(Bt, Dm, NC, N, device=u.device, dtype=torch.float32) if save_states else u
    hlast = torch.empty(Bt, Dm, N, device=u.device, dtype=torch.float32) if store_last else u
    selective_scan_fwd_kernel[(triton.cdiv(Dm, BD), Bt)](
        u,
        delta,
        A,
        B,
        C,
        D if D is not None else u,
        z if z is not None else u,
        delta_bias if delta_bias is not None else u,
        out,
        h0s,
        hlast,
        Dm,
        L,
        N,
        BD=BD,
        BN=pow2(N, 2),
        BL=BL,
        HAS_D=D is not None,
        HAS_Z=z is not None,
        HAS_BIAS=delta_bias is not None,
        SOFTPLUS=softplus,
        SAVE_STATES=save_states,
        STORE_LAST=store_last,
        **cfg,
    )
    return out, (h0s if save_states else None), (hlast if store_last else None)


def selective_scan_bwd(u, delta, A, B, C, D, z, delta_bias, softplus, h0s, dout, dhlast, BL):
    Bt, Dm, L = u.shape
    N = A.shape[1]
    cfg = _cfg(BWD_CONFIG)
    BD = cfg.pop("BD")
    cfg.pop("BL")  # the backward reuses the forward's chunks (its saved states)
    f32 = dict(device=u.device, dtype=torch.float32)
    du, ddelta = torch.empty_like(u), torch.empty_like(delta)
    dz = torch.empty_like(z) if z is not None else None
    dA = torch.zeros(Dm, N, **f32)
    dB = torch.zeros(Bt, N, L, **f32)
    dC = torch.zeros(Bt, N, L, **f32)
    dD = torch.zeros(Dm, **f32) if D is not None else None
    dbias = torch.zeros(Dm, **f32) if delta_bias is not None else None
    dummy = dA
    selective_scan_bwd_kernel[(triton.cdiv(Dm, BD), Bt)](
        u,
        delta,
        A,
        B,
        C,
        D if D is not None else u,
        z if z is not None else u,
        delta_bias if delta_bias is not None else u,
        dout,
        h0s,
        dhlast if dhlast is not None else dummy,
        du,
        ddelta,
        dA,
        dB,
        dC,
        dD if dD is not None else dummy,
        dz if dz is not None else du,
        dbias if dbias is not None else dummy,
        Dm,
        L,
        N,
        BD=BD,
        BN=pow2(N, 2),
        BL=BL,
        HAS_D=D is not None,
        HAS_Z=z is not None,
        HAS_BIAS=delta_bias is not None,
        SOFTPLUS=softplus,
        HAS_DHLAST=dhlast is not None,
        **cfg,
    )
    return du, ddelta, dA, dB, dC, dD, dz, dbias


class SelectiveScanFunction(torch.autograd.Function):
    """The selective scan with the Triton kernels; see the module docstring."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus, return_last_state):
        u, delta, B, C = (t.contiguous() for t in (u, delta, B, C))
        A = A.contiguous()
        z = z.contiguous() if z is not None else None
        needs_grad = any(ctx.needs_input_grad[:8])
        out, h0s, hlast = selective_scan_fwd(
            u, delta, A, B, C, D, z, delta_bias, softplus, needs_grad, return_last_state
        )
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, h0s)
        ctx.softplus = softplus
        ctx.BL = _cfg(FWD_CONFIG)["BL"]
        ctx.dtypes = [t.dtype if t is not None else None for t in (A, B, C, D, delta_bias)]
        if return_last_state:
            return out, hlast
        return out, None

    @staticmethod
    def backward(ctx, dout, dhlast):
        u, delta, A, B, C, D, z, delta_bias, h0s = ctx.saved_tensors
        du, ddelta, dA, dB, dC, dD, dz, dbias = selective_scan_bwd(
            u,
            delta,
            A,
            B,
            C,
            D,
            z,
            delta_bias,
            ctx.softplus,
            h0s,
            dout.contiguous(),
            dhlast.contiguous() if dhlast is not None else None,
            ctx.BL,
        )
        tA, tB, tC, tD, tbias = ctx.dtypes
        return (
            du,
            ddelta,
            dA.to(tA),
            dB.to(tB),
            dC.to(tC),
            dD.to(tD) if dD is not None else None,
            dz,
            dbias.to(tbias) if dbias is not None else None,
            None,
            None,
        )


def triton_selective_scan(
    u,
    delta,
    A,
    B,
    C,
    D=None,
    z=None,
    delta_bias=None,
    delta_softplus=False,
    return_last_state=False,
):
    """Kernel path of `selective_scan` (same arguments and results)."""
    D = D.contiguous() if D is not None else None
    delta_bias = delta_bias.contiguous() if delta_bias is not None else None
    out, hlast = SelectiveScanFunction.apply(
        u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state
    )
    return (out, hlast) if return_last_state else out
