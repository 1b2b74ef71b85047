"""Forward kernel of the Triton selective scan: one thread per channel, the N states in
registers, time walked step by step (as mamba_ssm's CUDA kernel keeps the state per thread).

Per channel d, state n and step t (Gu & Dao 2023, Algorithm 2; `naive.py`):

    a_t = exp(delta_t A[d, n]),  h_t = a_t h_{t-1} + delta_t B_t[n] u_t,
    y_t = sum_n C_t[n] h_t[n] + D u_t,   out_t = y_t silu(z_t).

Tiling. A program owns BD channels of one batch row (one channel per thread) and walks the
sequence in chunks of BL steps. The chunk's u, delta, z are read as [BD, BL] tiles whose
time axis lies inside each thread (BL x 2 bytes = one 16-byte load per row for bf16), so
taking step j of the tile is a register pick. The state h [BN, BD] and A [BN, BD] (log2 e
folded in, so the decay is one `ex2`) stay in registers for the whole sequence; the sum over
n for y_t is inside the thread, no shuffles. B_t and C_t, shared by all channels, are read
from a [Bt, L, 2, BN] fp32 copy (time-major, zero-padded to BN states and whole chunks)
that every thread of a row reads in the same order (broadcast loads, L1 hits).

The work per (channel, state, step) is one ex2, two multiplies and two FMAs, with nothing
else shared: the kernel is bound by the ex2 throughput (16 per clock per multiprocessor)
rather than by the bytes it moves (docs/kernels.md). The next chunk's tiles are loaded
before the current one is processed, so the loads overlap the arithmetic.

For a backward pass it saves the state at the start of every SAVE_EVERY steps; the
backward kernel recomputes the states in between.
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _exp2(x, FAST: tl.constexpr):
    """2^x; FAST: the bare `ex2.approx.ftz` instruction (no denormal fix-up, which a decay
    in (0, 1] never needs), else tl.exp2 (the interpreter has no inline assembly)."""
    if FAST:
        return tl.inline_asm_elementwise(
            "ex2.approx.ftz.f32 $0, $1;", "=r,r", [x], dtype=tl.float32, is_pure=True, pack=1
        )
    else:
        return tl.exp2(x)


@triton.jit
def _step_size(dt_raw, bias, SOFTPLUS: tl.constexpr):
    """delta + bias, through softplus (threshold 20, as F.softplus) when asked. fp32."""
    dt = dt_raw + bias
    if SOFTPLUS:
        dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(tl.minimum(dt, 20.0))), dt)
    return dt


@triton.jit
def _load_chunk(U, DELTA, Z, row, t, m, HAS_Z: tl.constexpr):
    u = tl.load(U + row + t[None, None, :], mask=m, other=0.0)
    dt = tl.load(DELTA + row + t[None, None, :], mask=m, other=0.0)
    if HAS_Z:
        z = tl.load(Z + row + t[None, None, :], mask=m, other=0.0)
    else:
        z = u
    return u, dt, z


@triton.jit
def selective_scan_fwd_kernel(
    U,
    DELTA,
    A,
    BC,
    Dv,
    Z,
    BIAS,
    OUT,
    YPRE,
    H0S,
    HLAST,
    Dm,
    L,
    N,
    NSAVE,
    Bt,
    BD: tl.constexpr,
    BN: tl.constexpr,
    SPLIT: tl.constexpr,
    BL: tl.constexpr,
    SAVE_EVERY: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    SAVE_STATES: tl.constexpr,
    STORE_LAST: tl.constexpr,
    FAST_EXP: tl.constexpr,
):
    """u, delta, z, out, ypre: [Bt, Dm, L] contiguous; A: [N, Dm] (transposed);
    BC: [Bt, NC * BL, 2, BN] fp32 (B then C per step); H0S: [Bt, Dm, NSAVE, N] fp32, the
    states before steps 0, SAVE_EVERY, 2 SAVE_EVERY, ...; HLAST: [Bt, Dm, N] fp32.
    With SAVE_STATES (a backward pass follows) H0S is written, and YPRE = y before the
    gate when z is given."""
    pid_d = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_d = pid_d * BD + tl.arange(0, BD)
    # state n = s * NB + i sits in lane group s (of SPLIT) and register i (of NB)
    NB: tl.constexpr = BN // SPLIT
    offs_n = tl.arange(0, SPLIT)[None, :] * NB + tl.arange(0, NB)[:, None]  # [NB, SPLIT]
    n3 = offs_n[:, :, None]
    offs_l = tl.arange(0, BL)
    d_ok = offs_d < Dm
    nd_mask = (n3 < N) & d_ok[None, None, :]
    if HAS_BIAS:
        bias = tl.load(BIAS + offs_d, mask=d_ok, other=0.0).to(tl.float32)[None, :, None]
    else:
        bias = tl.zeros([1, BD, 1], dtype=tl.float32)
    # A is read as [N, Dm] (transposed by the caller) through channel offsets marked
    # non-contiguous: the load then takes the layout of h (channels across threads, states
    # inside each thread) instead of one that would spread the states across threads.
    # Padded states get A = 0 (and B = C = 0): they stay 0 and add nothing.
    d_any = tl.max_contiguous(offs_d, 1)
    A2 = tl.load(A + n3 * Dm + d_any[None, None, :], mask=nd_mask, other=0.0)
    A2 = A2.to(tl.float32) * LOG2E  # [NB, SPLIT, BD]
    # Tiles of u, delta, z, y are [SPLIT, BD, BL], the same row for each lane group of a
    # channel: that order gives them the lanes of h (and time inside each thread).
    row = (b * Dm + offs_d)[None, :, None] * L + tl.zeros([SPLIT, 1, 1], dtype=tl.int64)
    dtile_ok = d_ok[None, :, None]
    st_rows = (b * Dm + offs_d)[None, None, :] * NSAVE
    h = tl.zeros([NB, SPLIT, BD], dtype=tl.float32)
    NC = tl.cdiv(L, BL)
    bc_row = BC + b * (NC * BL * 2 * BN)
    t = offs_l
    m = dtile_ok & (t < L)[None, None, :]
    u_n, dt_n, z_n = _load_chunk(U, DELTA, Z, row, t, m, HAS_Z)
    for c in range(0, NC):
        if SAVE_STATES:
            if (c * BL) % SAVE_EVERY == 0:
                s = (c * BL) // SAVE_EVERY
                tl.store(H0S + ((st_rows + s) * N + n3), h, mask=nd_mask)
        u_raw, dt_raw, z_raw = u_n, dt_n, z_n
        # prefetch the next chunk (masked off past the end)
        t = (c + 1) * BL + offs_l
        m_next = dtile_ok & (t < L)[None, None, :]
        u_n, dt_n, z_n = _load_chunk(U, DELTA, Z, row, t, m_next, HAS_Z)
        t = c * BL + offs_l
        t_ok = (t < L)[None, None, :]
        m = dtile_ok & t_ok
        u = u_raw.to(tl.float32)
        # steps past L get dt = 0: a = 1, b = 0, the identity map, so the state passes through
        dt = tl.where(t_ok, _step_size(dt_raw.to(tl.float32), bias, SOFTPLUS), 0.0)
        dtu = dt * u
        y = tl.zeros([SPLIT, BD, BL], dtype=tl.float32)  # each lane group's part of y
        for j in tl.static_range(BL):
            pick = (offs_l == j)[None, None, :]
            dt_j = tl.sum(tl.where(pick, dt, 0.0), 2)[None]  # [1, SPLIT, BD], a register pick
            dtu_j = tl.sum(tl.where(pick, dtu, 0.0), 2)[None]
            bc = bc_row + (c * BL + j) * (2 * BN)
            B_j = tl.load(bc + offs_n)[:, :, None]  # the same for every channel
            C_j = tl.load(bc + BN + offs_n)[:, :, None]
            a = _exp2(A2 * dt_j, FAST_EXP)
            h = a * h + B_j * dtu_j
            y_j = tl.sum(h * C_j, 0)  # [SPLIT, BD], inside each thread
            y = tl.where(pick, y_j[:, :, None], y)
        # the lane groups' parts: one shuffle level per group split, once per chunk
        y = tl.sum(y, 0)[None]
        m1 = m & (tl.arange(0, SPLIT) == 0)[:, None, None]  # one lane group stores
        if HAS_D:
            y += tl.load(Dv + offs_d, mask=d_ok, other=0.0).to(tl.float32)[None, :, None] * u
        if HAS_Z:
            if SAVE_STATES:
                tl.store(YPRE + row + t[None, None, :], y.to(YPRE.dtype.element_ty), mask=m1)
            zz = z_raw.to(tl.float32)
            y = y * zz * tl.sigmoid(zz)
        tl.store(OUT + row + t[None, None, :], y.to(OUT.dtype.element_ty), mask=m1)
    if STORE_LAST:
        tl.store(HLAST + (b * Dm + offs_d)[None, None, :] * N + n3, h, mask=nd_mask)


# Channels per program BD = 32 x num_warps / SPLIT (one channel per SPLIT lanes). Splitting
# the states over lanes multiplies the threads by SPLIT (for long L with a small batch there
# are only Bt x Dm channels) at the price of one shuffle level per split and step; the
# autotuner picks per (Dm, L, Bt). SPLIT > 1 needs one warp (more would split the states
# across warps).
FWD_CONFIGS = [(1, 4), (1, 2), (1, 1), (2, 1), (4, 1), (8, 1)]  # (SPLIT, num_warps)
INTERPRET_BD, INTERPRET_SPLIT = 4, 2  # small tiles: several channel blocks, split states


def _prune(configs, named_args, **kwargs):
    """Drop splits wider than the padded state size."""
    BN = kwargs.get("BN", named_args.get("BN"))
    return [c for c in configs if c.kwargs["SPLIT"] <= BN]


selective_scan_fwd_tuned = triton.autotune(
    configs=[
        triton.Config({"SPLIT": sp, "BD": 32 * w // sp}, num_warps=w, num_stages=1)
        for sp, w in FWD_CONFIGS
    ],
    key=["Dm", "L", "Bt", "BN", "BL"],
    prune_configs_by={"early_config_prune": _prune},
)(selective_scan_fwd_kernel)


def chunk_steps(u, delta, z) -> int:
    """BL: one 16-byte load per row for the widest of u, delta, z."""
    return 16 // max(t.element_size() for t in (u, delta, z) if t is not None)
