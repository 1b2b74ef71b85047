"""Chunk-parallel backward of the Triton selective scan: the reverse recurrence split into
chunks of CL steps run in parallel, joined by a scan over chunks (the forward's two-level
scan of `triton_scan_chunked.py`, run backwards).

Per channel d and state n (`triton_scan.py` for the notation), the state gradient obeys

    dh_t = C_t dy_t + a_{t+1} dh_{t+1},      a_t = exp(delta_t A[d, n]),

affine in dh like the forward in h. Let chunk c hold steps t0..t1 and X_c = a_{t1+1} dh_{t1+1}
be the gradient that reaches its last state h_t1 from later steps (X = the last-state
gradient for the last chunk). Then what the chunk passes on to the state before it is

    a_t0 dh_t0 = P_c X_c + G_c,     P_c = prod_{t0 <= t <= t1} a_t = exp(A sum_t delta_t),

with G_c the same quantity computed from X_c = 0: the map X_c -> X_{c-1} is the chunk's
forward decay P_c (one step-size sum per channel, as in the forward's pass 1) plus G_c.
Three launches:

1. `selective_scan_bwd_chunk_kernel` with GRADS = False, grid (channel blocks, chunks,
   batch): each chunk runs the recurrence of dh over its steps from X = 0 (the last chunk
   from the last-state gradient, so that it needs no special case in pass 2) and writes G_c
   [N] per channel and sum_t delta_t. Only delta, dout, C (and z, y before the gate) are
   read: no state recomputation, no outputs.
2. The forward's `chunk_states_kernel`, unchanged, on the chunks in reverse order (pass 1
   stores chunk c at row NCH - 1 - c): H_r = exp(A dts_r) H_{r-1} + G_r is then
   X_{NCH-2-r}, the true gradient entering chunk NCH - 2 - r from the right.
3. The same kernel with GRADS = True, same grid: each chunk walks its BL-step tiles in
   reverse from its true X_c, recomputing h from the states the forward saved before every
   tile (CL is a multiple of BL), and produces du, ddelta, dz, dA, dB, dC, dD, d(delta_bias)
   with the code of the single-walk backward (`triton_scan._bwd_walk`).

dA, dD and d(delta_bias) sum over the batch and now also over the chunks. They are added
atomically into fp32, as the walk does and as dB, dC already are (over channel blocks),
rather than written to per-chunk partial buffers and summed: a [Bt, NCH, Dm, N] fp32 buffer
written and read again costs 8 N / CL bytes per step and channel (1 B at CL = 128, N = 16,
as much as the pass-2 traffic) plus a launch, while the atomics are fire-and-forget `red`
instructions at the end of each program, Bt x NCH of them per address (dB and dC, which
every tile of every program adds to, take Dm / BD per address already). The sums are
therefore not bitwise reproducible, as in the walk.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from deepnotes.ops.backend import interpreting
from deepnotes.ops.ssm.triton_scan import (
    BWD_CONFIG,
    _add_param_grads,
    _bwd_walk,
    _cfg,
    _channel_params,
)
from deepnotes.ops.ssm.triton_scan_chunked import (
    INTERPRET_STATES_CONFIG,
    STATES_CONFIG,
    chunk_states_kernel,
)


@triton.jit
def selective_scan_bwd_chunk_kernel(
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
    GCH,
    DTS,
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
    NCH,
    BD: tl.constexpr,
    BN: tl.constexpr,
    BL: tl.constexpr,
    CL: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    HAS_DHLAST: tl.constexpr,
    GRADS: tl.constexpr,
):
    """One chunk of CL steps (CL / BL tiles) of one batch row and BD channels (pass 1 or 3).

    Inputs and gradients as in `triton_scan.selective_scan_bwd_kernel` (u, delta, z, dout,
    ypre, du, ddelta, dz: [Bt, Dm, L]; A: [Dm, N]; B, C, dB, dC: [Bt, N, L]; H0S: [Bt, Dm,
    cdiv(L, BL), N] fp32; DHLAST: [Bt, Dm, N]). GCH: [Bt, NCH, N, Dm] fp32 and DTS: [Bt, NCH,
    Dm] fp32, chunks in reverse order (chunk c at row NCH - 1 - c): pass 1 writes G_c and
    sum_t delta_t; pass 3 reads X_c, the gradient entering chunk c from the right, at the
    row of chunk c + 1 (pass 2 left there the map's value after chunks NCH - 1 .. c + 1).
    """
    pid_d = tl.program_id(0)
    c = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    offs_d = pid_d * BD + tl.arange(0, BD)
    offs_n = tl.arange(0, BN)
    d_ok = offs_d < Dm
    dn_mask = d_ok[:, None] & (offs_n < N)[None, :]
    bias, Dd = _channel_params(BIAS, Dv, offs_d, d_ok, BD, HAS_BIAS, HAS_D)
    # [BD, BN] offsets into a chunk row of GCH ([N, Dm] per chunk, as the forward's pass 2 reads)
    gch = (offs_n[None, :] * Dm + offs_d[:, None]).to(tl.int64)
    is_last = c == NCH - 1
    # X entering the chunk's last step: the last-state gradient for the last chunk; else
    # zero (pass 1) or pass 2's result at the row of chunk c + 1 (pass 3)
    carry = tl.zeros([BD, BN], dtype=tl.float32)
    if HAS_DHLAST:
        st_rows = (b * Dm + offs_d)[:, None] * N + offs_n[None, :]
        dhlast = tl.load(DHLAST + st_rows, mask=dn_mask, other=0.0).to(tl.float32)
        carry = tl.where(is_last, dhlast, carry)
    if GRADS:
        r_next = tl.maximum(NCH - 2 - c, 0)
        x = tl.load(GCH + (b * NCH + r_next) * (N * Dm) + gch, mask=dn_mask, other=0.0)
        carry = tl.where(is_last, carry, x)
    tile_lo = c * (CL // BL)
    tile_hi = tl.minimum(tile_lo + CL // BL, tl.cdiv(L, BL))
    carry, dA_acc, dD_acc, dbias_acc, dt_sum = _bwd_walk(
        U, DELTA, A, Bm, Cm, Z, DOUT, YPRE, H0S, DU, DDELTA, DB, DC, DZ, b, offs_d, bias, Dd,
        carry, tile_lo, tile_hi, Dm, L, N, BD, BN, BL, HAS_D, HAS_Z, SOFTPLUS, GRADS, GRADS,
    )  # fmt: skip
    if GRADS:
        _add_param_grads(
            DA, DD, DBIAS, offs_d, Dm, N, dA_acc, dD_acc, dbias_acc, BN, HAS_D, HAS_BIAS
        )
    else:
        r = b * NCH + NCH - 1 - c  # this chunk's row (reverse order)
        tl.store(GCH + r * (N * Dm) + gch, carry, mask=dn_mask)
        tl.store(DTS + r * Dm + offs_d, dt_sum, mask=d_ok)


def selective_scan_bwd_chunked(inputs, grads, Dm, L, N, Bt, CL, flags):
    """The three launches. inputs: (u, delta, A, B, C, D, z, delta_bias, dout, ypre, h0s,
    dhlast) and grads: (du, ddelta, dA, dB, dC, dD, dz, dbias), as the walk kernel takes them
    (absent ones replaced by dummies, fp32 sums zeroed); CL: steps per chunk, a multiple of
    the saved states' spacing BL (`triton_scan_chunked.chunk_length`); flags: BN and the
    HAS_* / SOFTPLUS constexprs."""
    u = inputs[0]
    NCH = triton.cdiv(L, CL)
    cfg = _cfg(BWD_CONFIG, Dm, Bt * NCH)  # the chunks count as programs when sizing BD
    BD = cfg.pop("BD")
    BL = cfg.pop("BL")
    assert CL % BL == 0, "chunks must start at saved states"
    f32 = dict(device=u.device, dtype=torch.float32)
    gch = torch.empty(Bt, NCH, N, Dm, **f32)
    dts = torch.empty(Bt, NCH, Dm, **f32)
    grid = (triton.cdiv(Dm, BD), NCH, Bt)
    kw = dict(BD=BD, BL=BL, CL=CL, **flags, **cfg)
    # pass 1: each chunk's G_c from X = 0, and its step-size sum
    selective_scan_bwd_chunk_kernel[grid](*inputs, gch, dts, *grads, Dm, L, N, NCH, **kw,
                                          GRADS=False)  # fmt: skip
    # pass 2: X for every chunk, the chunks taken last to first
    scfg = dict(INTERPRET_STATES_CONFIG if interpreting() else STATES_CONFIG)
    A_t = inputs[2].t().contiguous()
    chunk_states_kernel[(triton.cdiv(N * Dm, scfg["BLOCK"]), Bt)](
        gch, dts, A_t, Dm, N, NCH, **scfg, FAST_EXP=not interpreting()
    )
    # pass 3: the gradients, each chunk from its true X
    selective_scan_bwd_chunk_kernel[grid](*inputs, gch, dts, *grads, Dm, L, N, NCH, **kw,
                                          GRADS=True)  # fmt: skip
