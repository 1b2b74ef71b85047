"""Chunk-parallel forward of the Triton selective scan: a two-level scan over chunks of CL
steps, so that long sequences with a small batch still give many programs.

The recurrence per channel d and state n (`naive.py`; Gu & Dao 2023, Algorithm 2) is affine,
h_t = a_t h_{t-1} + b_t with a_t = exp(delta_t A[d, n]) and b_t = delta_t B_t[n] u_t, and
affine maps compose associatively (Blelloch 1990). Over a chunk c of steps t0..t1 the map is
h -> P_c h + E_c, with the chunk's decay P_c = prod_t a_t = exp(A sum_t delta_t) and E_c the
chunk's end state when started from h = 0. Three launches:

1. `selective_scan_chunk_kernel` with OUTPUT = False, grid (channel blocks, chunks, batch):
   each program walks its chunk from h = 0 and writes E_c [N] per channel and the chunk's
   step-size sum sum_t delta_t (one number per channel, so no per-step or per-state decay is
   stored: P_c = exp(A sum delta) is formed in pass 2).
2. `chunk_states_kernel`, grid (blocks of (n, d), batch): the true state after each chunk,
   H_c = P_c H_{c-1} + E_c (H_{-1} = 0), written over E_c. It takes CB chunks at a time as a
   [CB, BLOCK] tile and composes them with `tl.associative_scan` along the chunk axis, the
   carry from the previous tile folded into the first row; O(L / CL) work: it reads and
   rewrites N fp32 per chunk and channel (in bf16 terms 1 B per step and channel at CL = 128,
   N = 16, against pass 1's 4 B).
3. The same kernel with OUTPUT = True, same grid: each chunk walks again from its true
   entering state H_{c-1} and writes y (with D u and the z gate), and, when a backward pass
   follows, exactly what the step-by-step forward (`triton_scan_fwd.py`) saves: the state at
   the start of every SAVE_EVERY steps and y before the gate. The existing backward
   (`triton_scan.py`) runs on them unchanged. The last state is H of the last chunk.

Inside a chunk the steps are walked one at a time, as in `triton_scan_fwd.py` (same layout:
one channel per thread or per SPLIT lane groups, the N states in registers, [SPLIT, BD, BL]
tiles with time inside each thread, B and C from a time-major fp32 copy), rather than with
`tl.associative_scan` over the time axis: the walk is the code already checked on the GPU,
has no cross-lane traffic, and the chunks now supply the parallelism that the single walk
lacked. The price: pass 1 reads u, delta and B and pass 3 reads them again (with z and C) and
writes y, about 1.5-2x the bytes of the single walk, and twice the exponentials.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from deepnotes.ops.backend import interpreting
from deepnotes.ops.ssm.triton_scan_fwd import (
    FWD_CONFIGS,
    INTERPRET_BD,
    INTERPRET_SPLIT,
    _exp2,
    _load_chunk,
    _prune,
    _step_size,
    chunk_steps,
)
from deepnotes.ops.triton_utils import pow2

LOG2E = tl.constexpr(1.4426950408889634)

# Steps per chunk CL (a multiple of the tile length BL). More chunks give more programs but
# more pass-2 traffic (N fp32 per chunk and channel, against CL inputs); unmeasured on a GPU,
# so the bench times several. Under the interpreter: short chunks, so the CPU tests cross
# several of them.
CHUNK_LEN, INTERPRET_CHUNK_LEN = 128, 16
MAX_CHUNKS = 65535  # grid axis 1 (CUDA's limit for the second grid dimension)
STATES_CONFIG = dict(BLOCK=256, CB=16, num_warps=4)  # pass 2: (n, d) per program, chunks per tile
INTERPRET_STATES_CONFIG = dict(BLOCK=16, CB=4, num_warps=1)


@triton.jit
def selective_scan_chunk_kernel(
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
    HCH,
    DTS,
    Dm,
    L,
    N,
    NSAVE,
    NCH,
    Bt,
    BD: tl.constexpr,
    BN: tl.constexpr,
    SPLIT: tl.constexpr,
    BL: tl.constexpr,
    CL: tl.constexpr,
    SAVE_EVERY: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    SAVE_STATES: tl.constexpr,
    FAST_EXP: tl.constexpr,
    OUTPUT: tl.constexpr,
):
    """One chunk of CL steps of one batch row and BD channels (pass 1 or pass 3).

    u, delta, z, out, ypre: [Bt, Dm, L]; A: [N, Dm] (transposed); BC: [Bt, LP, 2, BN] fp32
    (B then C per step, LP = L rounded up to whole BL tiles); H0S: [Bt, Dm, NSAVE, N] fp32;
    HCH: [Bt, NCH, N, Dm] fp32, pass 1 writes each chunk's end state from h = 0, pass 3 reads
    the true state after chunk c - 1; DTS: [Bt, NCH, Dm] fp32, sum of the chunk's step sizes
    (pass 1 writes it). Pass 1 is launched with HAS_D = HAS_Z = SAVE_STATES = False.
    """
    pid_d = tl.program_id(0)
    c = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    offs_d = pid_d * BD + tl.arange(0, BD)
    # state n = s * NB + i sits in lane group s (of SPLIT) and register i (of NB), as in v3
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
    # channel offsets marked non-contiguous, so that the loads of [N, Dm] tensors (A, HCH)
    # take h's layout (states inside a thread); see triton_scan_fwd.py
    d_any = tl.max_contiguous(offs_d, 1)
    A2 = tl.load(A + n3 * Dm + d_any[None, None, :], mask=nd_mask, other=0.0)
    A2 = A2.to(tl.float32) * LOG2E  # [NB, SPLIT, BD]
    row = (b * Dm + offs_d)[None, :, None] * L + tl.zeros([SPLIT, 1, 1], dtype=tl.int64)
    dtile_ok = d_ok[None, :, None]
    st_rows = (b * Dm + offs_d)[None, None, :] * NSAVE
    if OUTPUT:
        # the true state entering chunk c: H_{c-1} from pass 2 (zero for the first chunk)
        prev = tl.maximum(c - 1, 0)
        h = tl.load(
            HCH + ((b * NCH + prev) * N + n3) * Dm + d_any[None, None, :], mask=nd_mask, other=0.0
        )
        h = tl.where(c > 0, h, 0.0)
    else:
        h = tl.zeros([NB, SPLIT, BD], dtype=tl.float32)
    dt_sum = tl.zeros([SPLIT, BD], dtype=tl.float32)
    LP = tl.cdiv(L, BL) * BL
    bc_row = BC + b * (LP * 2 * BN)
    c0 = c * CL
    end = tl.minimum(c0 + CL, L)  # this chunk's steps are c0 .. end - 1
    n_tiles = tl.cdiv(end - c0, BL)
    t = c0 + offs_l
    m = dtile_ok & (t < end)[None, None, :]
    u_n, dt_n, z_n = _load_chunk(U, DELTA, Z, row, t, m, HAS_Z)
    for i in range(0, n_tiles):
        t0 = c0 + i * BL
        if SAVE_STATES:
            if t0 % SAVE_EVERY == 0:
                s = t0 // SAVE_EVERY
                tl.store(H0S + ((st_rows + s) * N + n3), h, mask=nd_mask)
        u_raw, dt_raw, z_raw = u_n, dt_n, z_n
        # prefetch the next tile of the chunk (masked off past its end)
        t = t0 + BL + offs_l
        m_next = dtile_ok & (t < end)[None, None, :]
        u_n, dt_n, z_n = _load_chunk(U, DELTA, Z, row, t, m_next, HAS_Z)
        t = t0 + offs_l
        t_ok = (t < end)[None, None, :]
        m = dtile_ok & t_ok
        u = u_raw.to(tl.float32)
        # steps past the end get dt = 0: a = 1, b = 0, the identity map
        dt = tl.where(t_ok, _step_size(dt_raw.to(tl.float32), bias, SOFTPLUS), 0.0)
        dt_sum += tl.sum(dt, 2)
        dtu = dt * u
        y = tl.zeros([SPLIT, BD, BL], dtype=tl.float32)
        for j in tl.static_range(BL):
            pick = (offs_l == j)[None, None, :]
            dt_j = tl.sum(tl.where(pick, dt, 0.0), 2)[None]  # [1, SPLIT, BD], a register pick
            dtu_j = tl.sum(tl.where(pick, dtu, 0.0), 2)[None]
            bc = bc_row + (t0 + j) * (2 * BN)
            B_j = tl.load(bc + offs_n)[:, :, None]  # the same for every channel
            a = _exp2(A2 * dt_j, FAST_EXP)
            h = a * h + B_j * dtu_j
            if OUTPUT:
                C_j = tl.load(bc + BN + offs_n)[:, :, None]
                y_j = tl.sum(h * C_j, 0)  # [SPLIT, BD], inside each thread
                y = tl.where(pick, y_j[:, :, None], y)
        if OUTPUT:
            y = tl.sum(y, 0)[None]  # the lane groups' parts
            m1 = m & (tl.arange(0, SPLIT) == 0)[:, None, None]  # one lane group stores
            if HAS_D:
                y += tl.load(Dv + offs_d, mask=d_ok, other=0.0).to(tl.float32)[None, :, None] * u
            if HAS_Z:
                if SAVE_STATES:
                    tl.store(YPRE + row + t[None, None, :], y.to(YPRE.dtype.element_ty), mask=m1)
                zz = z_raw.to(tl.float32)
                y = y * zz * tl.sigmoid(zz)
            tl.store(OUT + row + t[None, None, :], y.to(OUT.dtype.element_ty), mask=m1)
    if not OUTPUT:
        tl.store(HCH + ((b * NCH + c) * N + n3) * Dm + d_any[None, None, :], h, mask=nd_mask)
        # every lane group holds the same sum; the first stores it
        d_rows = (b * NCH + c) * Dm + offs_d[None, :]
        s_ok = d_ok[None, :] & (tl.arange(0, SPLIT) == 0)[:, None]
        tl.store(DTS + d_rows + tl.zeros([SPLIT, 1], dtype=tl.int64), dt_sum, mask=s_ok)


@triton.jit
def _affine(a1, b1, a2, b2):
    """(a1, b1) then (a2, b2): x -> a2 (a1 x + b1) + b2."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def chunk_states_kernel(
    HCH, DTS, A, Dm, N, NCH, BLOCK: tl.constexpr, CB: tl.constexpr, FAST_EXP: tl.constexpr
):
    """Pass 2, in place: HCH[b, c] <- H_c = exp(A DTS[b, c]) H_{c-1} + HCH[b, c].

    HCH: [Bt, NCH, N, Dm] fp32 (read as each row's flat (n, d) index, contiguous); DTS:
    [Bt, NCH, Dm] fp32; A: [N, Dm]. Never autotuned (it overwrites its input)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)  # n * Dm + d
    b = tl.program_id(1).to(tl.int64)
    ok = offs < N * Dm
    d = offs % Dm
    A2 = tl.load(A + offs, mask=ok, other=0.0).to(tl.float32) * LOG2E
    offs_c = tl.arange(0, CB)
    first = (offs_c == 0)[:, None]
    last = (offs_c == CB - 1)[:, None]
    h = tl.zeros([BLOCK], dtype=tl.float32)  # H after the previous tile's chunks
    for c0 in range(0, NCH, CB):
        cc = (b * NCH + c0 + offs_c)[:, None]
        m = ((c0 + offs_c) < NCH)[:, None] & ok[None, :]
        # chunks past NCH: dts = 0 and E = 0, the identity map (so the last row is H)
        dts = tl.load(DTS + cc * Dm + d[None, :], mask=m, other=0.0)
        e = tl.load(HCH + cc * (N * Dm) + offs[None, :], mask=m, other=0.0)
        p = _exp2(A2[None, :] * dts, FAST_EXP)
        e = tl.where(first, p * h[None, :] + e, e)
        _, hs = tl.associative_scan((p, e), 0, _affine)
        tl.store(HCH + cc * (N * Dm) + offs[None, :], hs, mask=m)
        h = tl.sum(tl.where(last, hs, 0.0), 0)


selective_scan_chunk_tuned = triton.autotune(
    configs=[
        triton.Config({"SPLIT": sp, "BD": 32 * w // sp}, num_warps=w, num_stages=1)
        for sp, w in FWD_CONFIGS
    ],
    key=["Dm", "L", "Bt", "BN", "BL", "CL", "OUTPUT"],
    prune_configs_by={"early_config_prune": _prune},
)(selective_scan_chunk_kernel)


def chunk_length(L: int, BL: int, chunk_len: int | None = None) -> int:
    """CL: the given or default length, a multiple of BL, long enough for MAX_CHUNKS chunks."""
    if chunk_len is None:
        chunk_len = INTERPRET_CHUNK_LEN if interpreting() else CHUNK_LEN
    cl = chunk_len
    if cl <= 0 or cl % BL:
        raise ValueError(
            f"chunked scan: chunk length must be a positive multiple of {BL}, got {cl}"
        )
    while triton.cdiv(L, cl) > MAX_CHUNKS:
        cl *= 2
    return cl


def selective_scan_fwd_chunked(
    u,
    delta,
    A,
    B,
    C,
    D,
    z,
    delta_bias,
    softplus,
    save_every,
    save_states,
    store_last,
    chunk_len=None,
):
    """Same results as `triton_scan.selective_scan_fwd`: (out, states every `save_every`
    steps or None, last state or None, y before the gate or None). Shapes there."""
    Bt, Dm, L = u.shape
    N = A.shape[1]
    BN = pow2(N, 2)
    BL = chunk_steps(u, delta, z)
    CL = chunk_length(L, BL, chunk_len)
    NCH = triton.cdiv(L, CL)
    NS = triton.cdiv(L, save_every)
    f32 = dict(device=u.device, dtype=torch.float32)
    bc = torch.zeros(Bt, triton.cdiv(L, BL) * BL, 2, BN, **f32)
    bc[:, :L, 0, :N] = B.transpose(1, 2)
    bc[:, :L, 1, :N] = C.transpose(1, 2)
    A_t = A.t().contiguous()
    out = torch.empty_like(u)
    h0s = torch.empty(Bt, Dm, NS, N, **f32) if save_states else None
    ypre = torch.empty_like(u) if save_states and z is not None else None
    hch = torch.empty(Bt, NCH, N, Dm, **f32)
    dts = torch.empty(Bt, NCH, Dm, **f32)

    def opt(t):
        return t if t is not None else u

    def walk(output: bool):
        args = (u, delta, A_t, bc, opt(D), opt(z), opt(delta_bias), out, opt(ypre), opt(h0s))
        args += (hch, dts, Dm, L, N, NS, NCH, Bt)
        kw = dict(
            BN=BN,
            BL=BL,
            CL=CL,
            SAVE_EVERY=save_every,
            HAS_D=output and D is not None,
            HAS_Z=output and z is not None,
            HAS_BIAS=delta_bias is not None,
            SOFTPLUS=softplus,
            SAVE_STATES=output and save_states,
            FAST_EXP=not interpreting(),
            OUTPUT=output,
        )
        if interpreting():
            grid = (triton.cdiv(Dm, INTERPRET_BD), NCH, Bt)
            selective_scan_chunk_kernel[grid](
                *args, **kw, BD=INTERPRET_BD, SPLIT=INTERPRET_SPLIT, num_warps=1
            )
        else:
            grid = lambda meta: (triton.cdiv(Dm, meta["BD"]), NCH, Bt)  # noqa: E731
            selective_scan_chunk_tuned[grid](*args, **kw)

    walk(False)  # pass 1: end states from zero, step-size sums
    cfg = dict(INTERPRET_STATES_CONFIG if interpreting() else STATES_CONFIG)
    chunk_states_kernel[(triton.cdiv(N * Dm, cfg["BLOCK"]), Bt)](
        hch, dts, A_t, Dm, N, NCH, **cfg, FAST_EXP=not interpreting()
    )  # pass 2: true states after each chunk
    walk(True)  # pass 3: outputs from the true entering states
    hlast = hch[:, -1].transpose(1, 2).contiguous() if store_last else None
    return out, h0s, hlast, ypre
