"""The Mamba selective scan in Triton: autograd function, launchers and the backward kernel.

Definitions as in `naive.py` (Gu & Dao 2023, Algorithm 2): per channel d and state n,

    a_t = exp(delta_t A[d, n]),  b_t = delta_t B_t[n] u_t,  h_t = a_t h_{t-1} + b_t,
    y_t = sum_n C_t[n] h_t + D u_t,   out_t = y_t silu(z_t).

Forward: `triton_scan_fwd.py` (one channel per thread, the states in registers, time walked
step by step). When a backward pass follows it also saves the state at the start of every
backward chunk (BWD_CONFIG's BL steps) and y before the gate (when z is given). An
alternative forward, `triton_scan_chunked.py`, splits the walk into chunks run in parallel
(a two-level scan) and saves the same tensors; `fwd="chunked"` or $DEEPNOTES_SCAN_FWD picks
it (see `forward_variant`); the default stays the single walk until a GPU measures both.

Backward, chunks in reverse. A program owns BD channels of one batch row and walks chunks of
BL steps from the end; for each state index n it scans [BD, BL] tiles over time with
`tl.associative_scan` of the affine maps (a_t, b_t), composed as (a1, b1) then (a2, b2) =
(a1 a2, a2 b1 + b2) (Blelloch 1990). The chunk's h_t are recomputed from its saved start
state; the gradient of the state runs backwards as another affine scan,

    dh_t = C_t dy_t + a_{t+1} dh_{t+1}          (a_{t+1} read one step ahead),

and then, with a_t h_{t-1} = h_t - b_t (no shifted tile needed),

    du_t     = D dy_t + sum_n dh_t delta_t B_t
    ddelta_t = sum_n dh_t (A (h_t - b_t) + B_t u_t)      (then through bias and softplus)
    dA       = sum_t dh_t delta_t (h_t - b_t)
    dB_t[n]  = sum_d dh_t delta_t u_t,    dC_t[n] = sum_d dy_t h_t.

dB and dC sum over channels, which live in different programs: they are accumulated with
atomic adds in fp32 (as mamba_ssm's CUDA kernel does), as are dA, dD and d(delta_bias),
which sum over the batch.

The tile walk is one @triton.jit function, `_bwd_walk`, carrying a_t0 dh_t0 (what reaches
the state before a tile) from tile to tile. An alternative backward,
`triton_scan_chunked_bwd.py`, runs it on chunks of the sequence in parallel, joined by a
reverse scan over chunks; `bwd="chunked"` or $DEEPNOTES_SCAN_BWD picks it
(`backward_variant`); the default stays the single walk until a GPU measures both.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from deepnotes.ops.backend import interpreting
from deepnotes.ops.ssm.triton_scan_chunked import chunk_length, selective_scan_fwd_chunked
from deepnotes.ops.ssm.triton_scan_fwd import (
    INTERPRET_BD,
    INTERPRET_SPLIT,
    chunk_steps,
    selective_scan_fwd_kernel,
    selective_scan_fwd_tuned,
)
from deepnotes.ops.triton_utils import pow2

LOG2E = tl.constexpr(1.4426950408889634)  # a global a @jit function may read
# what `selective_scan_bwd(parts=...)` runs of the walk backward -> the kernel's PARTS
BWD_PARTS = {"all": 2, "no-bc": 1, "dh": 0}

# (BD channels, BL steps) per program (docs/kernels.md). BD shrinks, down to MIN_BD, until
# the grid has MIN_PROGRAMS programs (two per H100 multiprocessor). Small tiles under the
# interpreter so the CPU tests cross several chunks and channel blocks.
BWD_CONFIG = dict(BD=32, BL=64, num_warps=4, num_stages=1)
INTERPRET_CONFIG = dict(BD=4, BL=16, num_warps=4, num_stages=1)
MIN_BD, MIN_PROGRAMS = 16, 264
MAX_N = 64

# Forward variants: "walk" (triton_scan_fwd.py, one program walks the whole sequence) and
# "chunked" (triton_scan_chunked.py, chunks of CL steps in parallel, then a scan over chunks).
FWD_VARIANTS = ("walk", "chunked")
FWD_ENV_VAR = "DEEPNOTES_SCAN_FWD"
DEFAULT_FWD = "walk"
# Backward variants: "walk" (selective_scan_bwd_kernel below, one program per channel block
# and batch row walks all of L) and "chunked" (triton_scan_chunked_bwd.py, the same walk per
# chunk of CL steps in parallel, joined by a reverse scan over chunks).
BWD_VARIANTS = ("walk", "chunked")
BWD_ENV_VAR = "DEEPNOTES_SCAN_BWD"
DEFAULT_BWD = "walk"


def _variant(value: str, name: str, variants: tuple, env_var: str, default: str) -> str:
    """value unless "auto", else $env_var, else default; ValueError if not in variants."""
    if value == "auto":
        value = os.environ.get(env_var, "").strip().lower() or default
        where = f"${env_var}"
    else:
        where = name
    if value not in variants:
        raise ValueError(f"selective_scan: {where} must be one of {variants}, got {value!r}")
    return value


def forward_variant(fwd: str = "auto") -> str:
    """The forward asked for: the argument unless "auto", else $DEEPNOTES_SCAN_FWD, else
    DEFAULT_FWD (as `backend.requested_backend` reads $DEEPNOTES_KERNELS)."""
    return _variant(fwd, "fwd", FWD_VARIANTS, FWD_ENV_VAR, DEFAULT_FWD)


def backward_variant(bwd: str = "auto") -> str:
    """The backward asked for: the argument unless "auto", else $DEEPNOTES_SCAN_BWD, else
    DEFAULT_BWD (as `forward_variant`)."""
    return _variant(bwd, "bwd", BWD_VARIANTS, BWD_ENV_VAR, DEFAULT_BWD)


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
def _column(X, sel):
    """X[:, n] of a [BD, BN] tile, with sel = (offs_n == n)[None, :]."""
    return tl.sum(tl.where(sel, X, 0.0), 1)


@triton.jit
def _channel_params(BIAS, Dv, offs_d, d_ok, BD: tl.constexpr, HAS_BIAS: tl.constexpr,
                    HAS_D: tl.constexpr):  # fmt: skip
    """delta_bias and D of the program's channels, [BD] fp32 each (zeros when absent)."""
    if HAS_BIAS:
        bias = tl.load(BIAS + offs_d, mask=d_ok, other=0.0).to(tl.float32)
    else:
        bias = tl.zeros([BD], dtype=tl.float32)
    if HAS_D:
        Dd = tl.load(Dv + offs_d, mask=d_ok, other=0.0).to(tl.float32)
    else:
        Dd = tl.zeros([BD], dtype=tl.float32)
    return bias, Dd


@triton.jit
def _bwd_walk(
    U,
    DELTA,
    A,
    Bm,
    Cm,
    Z,
    DOUT,
    YPRE,
    H0S,
    DU,
    DDELTA,
    DB,
    DC,
    DZ,
    b,
    offs_d,
    bias,
    Dd,
    carry,
    tile_lo,
    tile_hi,
    Dm,
    L,
    N,
    BD: tl.constexpr,
    BN: tl.constexpr,
    BL: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    GRADS: tl.constexpr,
    BC_GRADS: tl.constexpr,
):
    """The reverse walk over tiles tile_hi - 1 down to tile_lo (BL steps each) of batch row b
    and channels offs_d [BD]; shared by the walk kernel and both walks of the chunked one.

    carry [BD, BN] fp32: the gradient reaching the state after the last tile's last step t1
    from later steps, dL/dh_t1 - C_t1 dy_t1 = a_{t1+1} dh_{t1+1} (for the sequence's end,
    the last-state gradient). Returns (carry, dA, dD, d(delta_bias), dt_sum): the carry
    for the tile before tile_lo (a_t0 dh_t0, t0 its first step), the parameter gradients
    summed over the walked steps ([BD, BN], [BD], [BD]; zeros without GRADS) and
    sum_t delta_t over them ([BD]).

    GRADS: recompute h from H0S (the state before every tile, [Bt, Dm, cdiv(L, BL), N]
    fp32), store du, ddelta, dz and, with BC_GRADS, add dB, dC atomically. Without GRADS only
    the recurrence of dh runs, which reads delta, dout, C (and z, y before the gate): the
    chunked pass 1. (GRADS without BC_GRADS leaves dB, dC out: only for timing the parts.)
    """
    offs_n = tl.arange(0, BN)
    offs_l = tl.arange(0, BL)
    d_ok = offs_d < Dm
    dn_mask = d_ok[:, None] & (offs_n < N)[None, :]
    row = (b * Dm + offs_d)[:, None] * L
    first = (offs_l == 0)[None, :]
    last = (offs_l == BL - 1)[None, :]
    NC = tl.cdiv(L, BL)
    dA_acc = tl.zeros([BD, BN], dtype=tl.float32)
    dD_acc = tl.zeros([BD], dtype=tl.float32)
    dbias_acc = tl.zeros([BD], dtype=tl.float32)
    dt_sum = tl.zeros([BD], dtype=tl.float32)
    for it in range(tile_lo, tile_hi):
        c = tile_lo + tile_hi - 1 - it
        t = c * BL + offs_l
        t_ok = t < L
        m = d_ok[:, None] & t_ok[None, :]
        dt_raw = tl.load(DELTA + row + t[None, :], mask=m, other=0.0).to(tl.float32)
        dt = tl.where(t_ok[None, :], _step_size(dt_raw, bias, SOFTPLUS), 0.0)
        dt_sum += tl.sum(dt, 1)
        dt0 = _column(dt, first)  # delta at the tile's first step, for the carry
        # a_{t+1} needs the step size one ahead (the next tile's first at the tile's end)
        t1 = t + 1
        m1 = d_ok[:, None] & (t1 < L)[None, :]
        dt1 = tl.load(DELTA + row + t1[None, :], mask=m1, other=0.0).to(tl.float32)
        dt1 = tl.where((t1 < L)[None, :], _step_size(dt1, bias, SOFTPLUS), 0.0)
        dout = tl.load(DOUT + row + t[None, :], mask=m, other=0.0).to(tl.float32)
        if HAS_Z:
            zz = tl.load(Z + row + t[None, :], mask=m, other=0.0).to(tl.float32)
            sz = tl.sigmoid(zz)
            if GRADS:
                yp = tl.load(YPRE + row + t[None, :], mask=m, other=0.0).to(tl.float32)
                dz = dout * yp * sz * (1.0 + zz * (1.0 - sz))
                tl.store(DZ + row + t[None, :], dz.to(DZ.dtype.element_ty), mask=m)
            dy = dout * zz * sz
        else:
            dy = dout
        if GRADS:
            u = tl.load(U + row + t[None, :], mask=m, other=0.0).to(tl.float32)
            dtu = dt * u
            H0 = tl.load(
                H0S + ((b * Dm + offs_d)[:, None] * NC + c) * N + offs_n[None, :],
                mask=dn_mask,
                other=0.0,
            )
            ddt = tl.zeros([BD, BL], dtype=tl.float32)
            du = tl.zeros([BD, BL], dtype=tl.float32)
        for n in range(0, N):
            sel = (offs_n == n)[None, :]
            An = tl.load(A + offs_d * N + n, mask=d_ok, other=0.0).to(tl.float32)
            Ct = tl.load(Cm + (b * N + n) * L + t, mask=t_ok, other=0.0).to(tl.float32)
            # dh_t = C_t dy_t + a_{t+1} dh_{t+1}, run from the end by the same composition;
            # the gradient from later tiles enters at the last step
            a1 = tl.exp2(dt1 * (An * LOG2E)[:, None])
            g = dy * Ct[None, :]
            g = tl.where(last, g + _column(carry, sel)[:, None], g)
            _, dh = tl.associative_scan((a1, g), 1, _affine, reverse=True)
            # what reaches the state before the tile: a_t0 dh_t0
            a0 = tl.exp2(dt0 * (An * LOG2E))
            carry = tl.where(sel, (a0 * _column(dh, first))[:, None], carry)
            if GRADS:
                Bt = tl.load(Bm + (b * N + n) * L + t, mask=t_ok, other=0.0).to(tl.float32)
                # recompute the tile's states h_t for this n
                a = tl.exp2(dt * (An * LOG2E)[:, None])
                bx = dtu * Bt[None, :]
                bx0 = tl.where(first, a * _column(H0, sel)[:, None] + bx, bx)
                _, h = tl.associative_scan((a, bx0), 1, _affine)
                ah = h - bx  # a_t h_{t-1}
                ddt += dh * (An[:, None] * ah + Bt[None, :] * u)
                du += dh * (dt * Bt[None, :])
                dA_acc += tl.where(sel, tl.sum(dh * dt * ah, 1)[:, None], 0.0)
                if BC_GRADS:
                    # dB, dC sum over all channels: this program's BD of them, atomically (fp32)
                    dBn = tl.sum(dh * dtu, 0)
                    tl.atomic_add(DB + (b * N + n) * L + t, dBn, mask=t_ok, sem="relaxed")
                    dCn = tl.sum(h * dy, 0)
                    tl.atomic_add(DC + (b * N + n) * L + t, dCn, mask=t_ok, sem="relaxed")
        if GRADS:
            if HAS_D:
                du += Dd[:, None] * dy
                dD_acc += tl.sum(tl.where(m, dy * u, 0.0), 1)
            if SOFTPLUS:
                ddt = ddt * tl.sigmoid(dt_raw + bias[:, None])
            ddt = tl.where(m, ddt, 0.0)
            dbias_acc += tl.sum(ddt, 1)
            tl.store(DU + row + t[None, :], du.to(DU.dtype.element_ty), mask=m)
            tl.store(DDELTA + row + t[None, :], ddt.to(DDELTA.dtype.element_ty), mask=m)
    return carry, dA_acc, dD_acc, dbias_acc, dt_sum


@triton.jit
def _add_param_grads(DA, DD, DBIAS, offs_d, Dm, N, dA_acc, dD_acc, dbias_acc,
                     BN: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr):  # fmt: skip
    """dA [Dm, N], dD, d(delta_bias) [Dm] (zeroed fp32) += this program's sums, atomically:
    they sum over the batch (and over the chunks in the chunked backward)."""
    offs_n = tl.arange(0, BN)
    d_ok = offs_d < Dm
    dn_mask = d_ok[:, None] & (offs_n < N)[None, :]
    tl.atomic_add(DA + offs_d[:, None] * N + offs_n[None, :], dA_acc, mask=dn_mask, sem="relaxed")
    if HAS_D:
        tl.atomic_add(DD + offs_d, dD_acc, mask=d_ok, sem="relaxed")
    if HAS_BIAS:
        tl.atomic_add(DBIAS + offs_d, dbias_acc, mask=d_ok, sem="relaxed")


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
    YPRE,
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
    PARTS: tl.constexpr,
):
    """Gradients, one program per (BD channels, batch row) walking all of L from the end.
    DA, DB, DC, DD, DBIAS are zeroed fp32 buffers that receive atomic adds. PARTS: 2 = all
    gradients; 1 = all but dB, dC; 0 = the dh recurrence only, its end state added into DA so
    that it is not optimised away (1 and 0 time the parts)."""
    pid_d = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_d = pid_d * BD + tl.arange(0, BD)
    offs_n = tl.arange(0, BN)
    d_ok = offs_d < Dm
    bias, Dd = _channel_params(BIAS, Dv, offs_d, d_ok, BD, HAS_BIAS, HAS_D)
    if HAS_DHLAST:
        dn_mask = d_ok[:, None] & (offs_n < N)[None, :]
        st_rows = (b * Dm + offs_d)[:, None] * N + offs_n[None, :]
        carry = tl.load(DHLAST + st_rows, mask=dn_mask, other=0.0).to(tl.float32)
    else:
        carry = tl.zeros([BD, BN], dtype=tl.float32)
    carry, dA_acc, dD_acc, dbias_acc, _ = _bwd_walk(
        U, DELTA, A, Bm, Cm, Z, DOUT, YPRE, H0S, DU, DDELTA, DB, DC, DZ, b, offs_d, bias, Dd,
        carry, 0, tl.cdiv(L, BL), Dm, L, N, BD, BN, BL, HAS_D, HAS_Z, SOFTPLUS, PARTS > 0,
        PARTS > 1,
    )  # fmt: skip
    if PARTS == 0:  # the recurrence alone: keep its result, or the compiler drops the walk
        dA_acc = carry
    _add_param_grads(DA, DD, DBIAS, offs_d, Dm, N, dA_acc, dD_acc, dbias_acc, BN, HAS_D, HAS_BIAS)


def _cfg(which: dict, Dm: int, Bt: int) -> dict:
    if interpreting():
        return dict(INTERPRET_CONFIG)
    cfg = dict(which)
    # fewer channels per program when the grid would leave multiprocessors idle
    while cfg["BD"] > MIN_BD and triton.cdiv(Dm, cfg["BD"]) * Bt < MIN_PROGRAMS:
        cfg["BD"] //= 2
    return cfg


def _opt(t, dummy):
    return t if t is not None else dummy


def selective_scan_fwd(
    u,
    delta,
    A,
    B,
    C,
    D,
    z,
    delta_bias,
    softplus,
    save_states,
    store_last,
    fwd="walk",
    chunk_len=None,
):
    """-> (out, saved states or None, last state or None, y before the gate or None).

    The saved states are those at the start of each backward chunk (BWD_CONFIG's BL steps).
    fwd: "walk" | "chunked" (FWD_VARIANTS); chunk_len: the chunked forward's CL (None: its
    default).
    """
    Bt, Dm, L = u.shape
    save_every = _cfg(BWD_CONFIG, Dm, Bt)["BL"]
    if fwd == "chunked":
        return selective_scan_fwd_chunked(
            u, delta, A, B, C, D, z, delta_bias, softplus, save_every, save_states, store_last,
            chunk_len,
        )  # fmt: skip
    N = A.shape[1]
    BN = pow2(N, 2)
    BL = chunk_steps(u, delta, z)
    NS = triton.cdiv(L, save_every)
    f32 = dict(device=u.device, dtype=torch.float32)
    # B and C time-major, fp32, zero-padded to BN states and whole chunks (a few MB; the
    # kernel reads one [2, BN] row per step, the same row for every channel)
    bc = torch.zeros(Bt, triton.cdiv(L, BL) * BL, 2, BN, **f32)
    bc[:, :L, 0, :N] = B.transpose(1, 2)
    bc[:, :L, 1, :N] = C.transpose(1, 2)
    out = torch.empty_like(u)
    h0s = torch.empty(Bt, Dm, NS, N, **f32) if save_states else None
    hlast = torch.empty(Bt, Dm, N, **f32) if store_last else None
    ypre = torch.empty_like(u) if save_states and z is not None else None
    args = (
        u,
        delta,
        A.t().contiguous(),
        bc,
        _opt(D, u),
        _opt(z, u),
        _opt(delta_bias, u),
        out,
        _opt(ypre, u),
        _opt(h0s, u),
        _opt(hlast, u),
        Dm,
        L,
        N,
        NS,
        Bt,
    )
    kw = dict(
        BN=BN,
        BL=BL,
        SAVE_EVERY=save_every,
        HAS_D=D is not None,
        HAS_Z=z is not None,
        HAS_BIAS=delta_bias is not None,
        SOFTPLUS=softplus,
        SAVE_STATES=save_states,
        STORE_LAST=store_last,
        FAST_EXP=not interpreting(),
    )
    if interpreting():
        grid = (triton.cdiv(Dm, INTERPRET_BD), Bt)
        selective_scan_fwd_kernel[grid](
            *args, **kw, BD=INTERPRET_BD, SPLIT=INTERPRET_SPLIT, num_warps=1
        )
    else:
        selective_scan_fwd_tuned[lambda meta: (triton.cdiv(Dm, meta["BD"]), Bt)](*args, **kw)
    return out, h0s, hlast, ypre


def selective_scan_bwd(
    u,
    delta,
    A,
    B,
    C,
    D,
    z,
    delta_bias,
    softplus,
    h0s,
    ypre,
    dout,
    dhlast,
    bwd="walk",
    chunk_len=None,
    parts="all",
):
    """-> (du, ddelta, dA, dB, dC, dD, dz, d(delta_bias)), the parameter sums in fp32.

    bwd: "walk" | "chunked" (BWD_VARIANTS); chunk_len: the chunked backward's CL, a multiple
    of BWD_CONFIG's BL (resolved by `triton_scan_chunked.chunk_length`). parts (walk only,
    for timing what the backward spends where; anything but "all" gives wrong gradients):
    "all" | "no-bc" (dB, dC left at zero: no channel sums, no atomic adds) | "dh" (only the
    dh recurrence runs; dA then holds what reaches the first state, a_0 dh_0, summed over
    the batch)."""
    if parts not in BWD_PARTS:
        raise ValueError(f"parts={parts!r}: expected one of {', '.join(BWD_PARTS)}")
    if parts != "all" and bwd != "walk":
        raise ValueError(f"parts={parts!r} times the walk backward only, not bwd={bwd!r}")
    Bt, Dm, L = u.shape
    N = A.shape[1]
    cfg = _cfg(BWD_CONFIG, Dm, Bt)
    BD = cfg.pop("BD")
    BL = cfg.pop("BL")
    assert h0s.shape[2] == triton.cdiv(L, BL), "forward and backward chunk lengths differ"
    f32 = dict(device=u.device, dtype=torch.float32)
    du, ddelta = torch.empty_like(u), torch.empty_like(delta)
    dz = torch.empty_like(z) if z is not None else None
    dA = torch.zeros(Dm, N, **f32)
    dB = torch.zeros(Bt, N, L, **f32)
    dC = torch.zeros(Bt, N, L, **f32)
    dD = torch.zeros(Dm, **f32) if D is not None else None
    dbias = torch.zeros(Dm, **f32) if delta_bias is not None else None
    inputs = (u, delta, A, B, C, _opt(D, u), _opt(z, u), _opt(delta_bias, u), dout)
    inputs += (_opt(ypre, u), h0s, _opt(dhlast, dA))
    grads = (du, ddelta, dA, dB, dC, _opt(dD, dA), _opt(dz, du), _opt(dbias, dA))
    flags = dict(
        BN=pow2(N, 2),
        HAS_D=D is not None,
        HAS_Z=z is not None,
        HAS_BIAS=delta_bias is not None,
        SOFTPLUS=softplus,
        HAS_DHLAST=dhlast is not None,
    )
    if bwd == "chunked":
        # imported here: that module builds on this one's @triton.jit helpers
        from deepnotes.ops.ssm.triton_scan_chunked_bwd import selective_scan_bwd_chunked

        CL = chunk_length(L, BL, chunk_len)
        selective_scan_bwd_chunked(inputs, grads, Dm, L, N, Bt, CL, flags)
    else:
        selective_scan_bwd_kernel[(triton.cdiv(Dm, BD), Bt)](
            *inputs, *grads, Dm, L, N, BD=BD, BL=BL, PARTS=BWD_PARTS[parts], **flags, **cfg
        )
    return du, ddelta, dA, dB, dC, dD, dz, dbias


class SelectiveScanFunction(torch.autograd.Function):
    """The selective scan with the Triton kernels; see the module docstring."""

    @staticmethod
    def forward(
        ctx,
        u,
        delta,
        A,
        B,
        C,
        D,
        z,
        delta_bias,
        softplus,
        return_last_state,
        fwd,
        chunk_len,
        bwd,
        bwd_chunk_len,
    ):
        u, delta, B, C = (t.contiguous() for t in (u, delta, B, C))
        A = A.contiguous()
        z = z.contiguous() if z is not None else None
        needs_grad = any(ctx.needs_input_grad[:8])
        out, h0s, hlast, ypre = selective_scan_fwd(
            u,
            delta,
            A,
            B,
            C,
            D,
            z,
            delta_bias,
            softplus,
            needs_grad,
            return_last_state,
            fwd,
            chunk_len,
        )
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, h0s, ypre)
        ctx.softplus = softplus
        ctx.bwd = (bwd, bwd_chunk_len)
        ctx.dtypes = [t.dtype if t is not None else None for t in (A, B, C, D, delta_bias)]
        if return_last_state:
            return out, hlast
        return out, None

    @staticmethod
    def backward(ctx, dout, dhlast):
        u, delta, A, B, C, D, z, delta_bias, h0s, ypre = ctx.saved_tensors
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
            ypre,
            dout.contiguous(),
            dhlast.contiguous() if dhlast is not None else None,
            *ctx.bwd,
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
            *[None] * 6,  # softplus, return_last_state, fwd, chunk_len, bwd, bwd_chunk_len
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
    *,
    fwd="auto",
    chunk_len=None,
    bwd="auto",
    bwd_chunk_len=None,
):
    """Kernel path of `selective_scan` (same arguments and results). fwd: "auto" | "walk" |
    "chunked" (`forward_variant`); chunk_len: steps per chunk of the chunked forward (None:
    its default). bwd, bwd_chunk_len: the same for the backward (`backward_variant`; the
    chunk length a multiple of BWD_CONFIG's BL). Either backward follows either forward.
    Bad variants and chunk lengths raise ValueError before any work."""
    fwd = forward_variant(fwd)
    bwd = backward_variant(bwd)
    if bwd == "chunked":
        Bt, Dm, L = u.shape
        bwd_chunk_len = chunk_length(L, _cfg(BWD_CONFIG, Dm, Bt)["BL"], bwd_chunk_len)
    D = D.contiguous() if D is not None else None
    delta_bias = delta_bias.contiguous() if delta_bias is not None else None
    out, hlast = SelectiveScanFunction.apply(
        u,
        delta,
        A,
        B,
        C,
        D,
        z,
        delta_bias,
        delta_softplus,
        return_last_state,
        fwd,
        chunk_len,
        bwd,
        bwd_chunk_len,
    )
    return (out, hlast) if return_last_state else out
