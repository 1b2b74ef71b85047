"""FLASH mixed-chunk attention (GAU) in Triton, forward and backward.

Definition as in `naive.py` (Hua et al. 2022, sec. 3.2), one head, chunks of C positions:

    o_i = (1/n_i) [ sum_{j in chunk(i), j<=i} relu(q_i . k_j / sqrt(S))^2 v_j  +  ql_i S_c ]

with S_c = sum_{chunks c' < c} kl_{c'}^T v_{c'} when causal (n_i = i + 1), or the sum over
the whole sequence when not (n_i = T, and the quadratic part sees the whole chunk).

Kernels (B = batch, G = chunks, S = shared q/k width, E = value width):

- `gau_state_kernel`, grid (E / BE, B): walks the chunks in order keeping S_c [S, BE] in fp32
  registers and writes each chunk's S_c (the prefix *before* it), [B, G, S, E]. Run backwards
  on (ql, do / n) it gives dS_c = sum_{c' > c} ql_{c'}^T (do / n)_{c'}, the gradient that
  flows into the state from later chunks.
- `gau_fwd_kernel`, grid (G * C / BM, E / BE, B): one block of BM query rows, fully parallel.
  The C x C relu^2 block is recomputed in BM x BN tiles and never stored; the linear part
  is one [BM, S] x [S, BE] product with the chunk's state. Both are summed in fp32 and
  divided by n_i before the single store.
- backward: with g = do / n,
      dv_j   = sum_{i >= j in chunk} A_ij g_i + kl_j dS_c              (grid over key blocks, E)
      dA_ij  = g_i . v_j (summed over all E),  dP = dA * 2 relu(s) / sqrt(S)
      dq_i   = sum_j dP_ij k_j,   dql_i = g_i S_c^T                   (grid over query blocks)
      dk_j   = sum_i dP_ij q_i,   dkl_j = v_j dS_c^T                   (grid over key blocks)
  The sums over E run inside the programs, so no partial buffers or atomics are needed.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from deepnotes.ops.backend import interpreting
from deepnotes.ops.triton_utils import dot_precision, dot_upcast, mm, pow2

# From scripts/tune_kernels.py on an H100 (T = 8k, C = 256, S = 128, E = 2048: 0.80 ms
# forward, 2.65 ms forward+backward; docs/kernels.md); small tiles under the interpreter.
CONFIG = dict(BM=128, BE=128, BE_STATE=64, num_warps=8, num_stages=2)
INTERPRET_CONFIG = dict(BM=16, BE=16, BE_STATE=16, num_warps=4, num_stages=1)
MAX_S = 128


def config(C: int) -> dict:
    cfg = dict(INTERPRET_CONFIG if interpreting() else CONFIG)
    cfg["BM"] = min(cfg["BM"], C)
    return cfg


@triton.jit
def gau_state_kernel(
    KX,
    X,
    ST,
    T,
    G,
    C,
    E,
    S,
    BT: tl.constexpr,
    BS: tl.constexpr,
    BE: tl.constexpr,
    REVERSE: tl.constexpr,
    DIV_N: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """ST[b, c] = sum over earlier (REVERSE: later) chunks of KX_c^T X_c. KX: [B, T, S],
    X: [B, T, E] (rows divided by n_i = i + 1 when DIV_N), ST: [B, G, S, E]."""
    pid_e = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_s = tl.arange(0, BS)
    offs_e = pid_e * BE + tl.arange(0, BE)
    offs_t = tl.arange(0, BT)
    s_ok = offs_s < S
    e_ok = offs_e < E
    dtype = KX.dtype.element_ty
    state = tl.zeros([BS, BE], dtype=tl.float32)
    for it in range(0, G):
        if REVERSE:
            c = G - 1 - it
        else:
            c = it
        st_ptr = ST + ((b * G + c) * S + offs_s[:, None]) * E + offs_e[None, :]
        tl.store(st_ptr, state.to(ST.dtype.element_ty), mask=s_ok[:, None] & e_ok[None, :])
        for t0 in range(0, C, BT):
            rows = c * C + t0 + offs_t
            r_ok = rows < T
            kx = tl.load(
                KX + (b * T + rows[:, None]) * S + offs_s[None, :],
                mask=r_ok[:, None] & s_ok[None, :],
                other=0.0,
            )
            x = tl.load(
                X + (b * T + rows[:, None]) * E + offs_e[None, :],
                mask=r_ok[:, None] & e_ok[None, :],
                other=0.0,
            )
            if DIV_N:
                x = (x.to(tl.float32) / (rows + 1).to(tl.float32)[:, None]).to(dtype)
            state = mm(tl.trans(kx), x, state, PRECISION, UPCAST)


@triton.jit
def gau_fwd_kernel(
    QQ,
    KQ,
    QL,
    V,
    ST,
    O,
    T,
    C,
    E,
    S,
    scale,
    stride_sb,
    stride_sc,
    BM: tl.constexpr,
    BS: tl.constexpr,
    BE: tl.constexpr,
    CAUSAL: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    NB = C // BM
    c = tl.program_id(0) // NB
    mb = tl.program_id(0) % NB
    pid_e = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    offs_s = tl.arange(0, BS)
    offs_e = pid_e * BE + tl.arange(0, BE)
    offs_b = tl.arange(0, BM)
    s_ok = offs_s < S
    e_ok = offs_e < E
    dtype = QQ.dtype.element_ty
    rows = c * C + mb * BM + offs_b
    r_ok = rows < T
    qs_mask = r_ok[:, None] & s_ok[None, :]
    qq = tl.load(QQ + (b * T + rows[:, None]) * S + offs_s[None, :], mask=qs_mask, other=0.0)
    ql = tl.load(QL + (b * T + rows[:, None]) * S + offs_s[None, :], mask=qs_mask, other=0.0)
    st = tl.load(
        ST + b * stride_sb + c * stride_sc + offs_s[:, None] * E + offs_e[None, :],
        mask=s_ok[:, None] & e_ok[None, :],
        other=0.0,
    )
    acc = mm(ql, st, None, PRECISION, UPCAST)
    if CAUSAL:
        hi = mb + 1
    else:
        hi = NB
    for nb in range(0, hi):
        keys = c * C + nb * BM + offs_b
        k_ok = keys < T
        kq = tl.load(
            KQ + (b * T + keys[:, None]) * S + offs_s[None, :],
            mask=k_ok[:, None] & s_ok[None, :],
            other=0.0,
        )
        v = tl.load(
            V + (b * T + keys[:, None]) * E + offs_e[None, :],
            mask=k_ok[:, None] & e_ok[None, :],
            other=0.0,
        )
        s = mm(qq, tl.trans(kq), None, PRECISION, UPCAST) * scale
        p = tl.maximum(s, 0.0)
        p = p * p
        if CAUSAL:
            p = tl.where(keys[None, :] <= rows[:, None], p, 0.0)
        acc = mm(p.to(dtype), v, acc, PRECISION, UPCAST)
    if CAUSAL:
        n = (rows + 1).to(tl.float32)
    else:
        n = tl.zeros([BM], dtype=tl.float32) + T
    o = acc / n[:, None]
    tl.store(
        O + (b * T + rows[:, None]) * E + offs_e[None, :],
        o.to(O.dtype.element_ty),
        mask=r_ok[:, None] & e_ok[None, :],
    )


@triton.jit
def gau_bwd_dv_kernel(
    QQ,
    KQ,
    KL,
    DO,
    DST,
    DV,
    T,
    C,
    E,
    S,
    scale,
    stride_sb,
    stride_sc,
    BM: tl.constexpr,
    BS: tl.constexpr,
    BE: tl.constexpr,
    CAUSAL: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """dv for one block of BM key rows and BE value columns."""
    NB = C // BM
    c = tl.program_id(0) // NB
    nb = tl.program_id(0) % NB
    pid_e = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    offs_s = tl.arange(0, BS)
    offs_e = pid_e * BE + tl.arange(0, BE)
    offs_b = tl.arange(0, BM)
    s_ok = offs_s < S
    e_ok = offs_e < E
    dtype = QQ.dtype.element_ty
    keys = c * C + nb * BM + offs_b
    k_ok = keys < T
    ks_mask = k_ok[:, None] & s_ok[None, :]
    kq = tl.load(KQ + (b * T + keys[:, None]) * S + offs_s[None, :], mask=ks_mask, other=0.0)
    kl = tl.load(KL + (b * T + keys[:, None]) * S + offs_s[None, :], mask=ks_mask, other=0.0)
    dst = tl.load(
        DST + b * stride_sb + c * stride_sc + offs_s[:, None] * E + offs_e[None, :],
        mask=s_ok[:, None] & e_ok[None, :],
        other=0.0,
    )
    acc = mm(kl, dst, None, PRECISION, UPCAST)
    if CAUSAL:
        lo = nb
    else:
        lo = 0
    for mb in range(lo, NB):
        rows = c * C + mb * BM + offs_b
        r_ok = rows < T
        qq = tl.load(
            QQ + (b * T + rows[:, None]) * S + offs_s[None, :],
            mask=r_ok[:, None] & s_ok[None, :],
            other=0.0,
        )
        do = tl.load(
            DO + (b * T + rows[:, None]) * E + offs_e[None, :],
            mask=r_ok[:, None] & e_ok[None, :],
            other=0.0,
        )
        if CAUSAL:
            n = (rows + 1).to(tl.float32)
        else:
            n = tl.zeros([BM], dtype=tl.float32) + T
        g = (do.to(tl.float32) / n[:, None]).to(dtype)
        s_t = mm(kq, tl.trans(qq), None, PRECISION, UPCAST) * scale  # [key, query]
        p_t = tl.maximum(s_t, 0.0)
        p_t = p_t * p_t
        if CAUSAL:
            p_t = tl.where(keys[:, None] <= rows[None, :], p_t, 0.0)
        acc = mm(p_t.to(dtype), g, acc, PRECISION, UPCAST)
    tl.store(
        DV + (b * T + keys[:, None]) * E + offs_e[None, :],
        acc.to(DV.dtype.element_ty),
        mask=k_ok[:, None] & e_ok[None, :],
    )


@triton.jit
def _dA_block(
    G_ROWS,
    g_scale,
    V_ROWS,
    b,
    T,
    E,
    rows_a,
    rows_b,
    ok_a,
    ok_b,
    BM: tl.constexpr,
    BE: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    dtype: tl.constexpr,
):
    """sum over all E of (do_a / n_a) . v_b as a [BM, BM] fp32 tile; G_ROWS holds do."""
    dA = tl.zeros([BM, BM], dtype=tl.float32)
    for e0 in range(0, E, BE):
        offs_e = e0 + tl.arange(0, BE)
        e_ok = offs_e < E
        do = tl.load(
            G_ROWS + (b * T + rows_a[:, None]) * E + offs_e[None, :],
            mask=ok_a[:, None] & e_ok[None, :],
            other=0.0,
        )
        g = (do.to(tl.float32) * g_scale[:, None]).to(dtype)
        v = tl.load(
            V_ROWS + (b * T + rows_b[:, None]) * E + offs_e[None, :],
            mask=ok_b[:, None] & e_ok[None, :],
            other=0.0,
        )
        dA = mm(g, tl.trans(v), dA, PRECISION, UPCAST)
    return dA


@triton.jit
def gau_bwd_dq_kernel(
    QQ,
    KQ,
    V,
    DO,
    ST,
    DQQ,
    DQL,
    T,
    C,
    E,
    S,
    scale,
    stride_sb,
    stride_sc,
    BM: tl.constexpr,
    BS: tl.constexpr,
    BE: tl.constexpr,
    CAUSAL: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """dq_quad and dq_lin for one block of BM query rows (sums over E inside)."""
    NB = C // BM
    c = tl.program_id(0) // NB
    mb = tl.program_id(0) % NB
    b = tl.program_id(1).to(tl.int64)
    offs_s = tl.arange(0, BS)
    offs_b = tl.arange(0, BM)
    s_ok = offs_s < S
    dtype = QQ.dtype.element_ty
    rows = c * C + mb * BM + offs_b
    r_ok = rows < T
    qs_mask = r_ok[:, None] & s_ok[None, :]
    if CAUSAL:
        inv_n = 1.0 / (rows + 1).to(tl.float32)
    else:
        inv_n = tl.zeros([BM], dtype=tl.float32) + 1.0 / T
    # dql = g S_c^T
    dql = tl.zeros([BM, BS], dtype=tl.float32)
    for e0 in range(0, E, BE):
        offs_e = e0 + tl.arange(0, BE)
        e_ok = offs_e < E
        do = tl.load(
            DO + (b * T + rows[:, None]) * E + offs_e[None, :],
            mask=r_ok[:, None] & e_ok[None, :],
            other=0.0,
        )
        g = (do.to(tl.float32) * inv_n[:, None]).to(dtype)
        st = tl.load(
            ST + b * stride_sb + c * stride_sc + offs_s[:, None] * E + offs_e[None, :],
            mask=s_ok[:, None] & e_ok[None, :],
            other=0.0,
        )
        dql = mm(g, tl.trans(st), dql, PRECISION, UPCAST)
    tl.store(
        DQL + (b * T + rows[:, None]) * S + offs_s[None, :],
        dql.to(DQL.dtype.element_ty),
        mask=qs_mask,
    )
    # dqq = sum_j (dA * 2 relu(s) * scale) kq_j
    qq = tl.load(QQ + (b * T + rows[:, None]) * S + offs_s[None, :], mask=qs_mask, other=0.0)
    dqq = tl.zeros([BM, BS], dtype=tl.float32)
    if CAUSAL:
        hi = mb + 1
    else:
        hi = NB
    for nb in range(0, hi):
        keys = c * C + nb * BM + offs_b
        k_ok = keys < T
        kq = tl.load(
            KQ + (b * T + keys[:, None]) * S + offs_s[None, :],
            mask=k_ok[:, None] & s_ok[None, :],
            other=0.0,
        )
        dA = _dA_block(
            DO, inv_n, V, b, T, E, rows, keys, r_ok, k_ok, BM, BE, PRECISION, UPCAST, dtype
        )
        s = mm(qq, tl.trans(kq), None, PRECISION, UPCAST) * scale
        dP = dA * 2.0 * tl.maximum(s, 0.0) * scale
        if CAUSAL:
            dP = tl.where(keys[None, :] <= rows[:, None], dP, 0.0)
        dqq = mm(dP.to(dtype), kq, dqq, PRECISION, UPCAST)
    tl.store(
        DQQ + (b * T + rows[:, None]) * S + offs_s[None, :],
        dqq.to(DQQ.dtype.element_ty),
        mask=qs_mask,
    )


@triton.jit
def gau_bwd_dk_kernel(
    QQ,
    KQ,
    V,
    DO,
    DST,
    DKQ,
    DKL,
    T,
    C,
    E,
    S,
    scale,
    stride_sb,
    stride_sc,
    BM: tl.constexpr,
    BS: tl.constexpr,
    BE: tl.constexpr,
    CAUSAL: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """dk_quad and dk_lin for one block of BM key rows (sums over E inside)."""
    NB = C // BM
    c = tl.program_id(0) // NB
    nb = tl.program_id(0) % NB
    b = tl.program_id(1).to(tl.int64)
    offs_s = tl.arange(0, BS)
    offs_b = tl.arange(0, BM)
    s_ok = offs_s < S
    dtype = QQ.dtype.element_ty
    keys = c * C + nb * BM + offs_b
    k_ok = keys < T
    ks_mask = k_ok[:, None] & s_ok[None, :]
    # dkl = v dS_c^T
    dkl = tl.zeros([BM, BS], dtype=tl.float32)
    for e0 in range(0, E, BE):
        offs_e = e0 + tl.arange(0, BE)
        e_ok = offs_e < E
        v = tl.load(
            V + (b * T + keys[:, None]) * E + offs_e[None, :],
            mask=k_ok[:, None] & e_ok[None, :],
            other=0.0,
        )
        dst = tl.load(
            DST + b * stride_sb + c * stride_sc + offs_s[:, None] * E + offs_e[None, :],
            mask=s_ok[:, None] & e_ok[None, :],
            other=0.0,
        )
        dkl = mm(v, tl.trans(dst), dkl, PRECISION, UPCAST)
    tl.store(
        DKL + (b * T + keys[:, None]) * S + offs_s[None, :],
        dkl.to(DKL.dtype.element_ty),
        mask=ks_mask,
    )
    kq = tl.load(KQ + (b * T + keys[:, None]) * S + offs_s[None, :], mask=ks_mask, other=0.0)
    dkq = tl.zeros([BM, BS], dtype=tl.float32)
    if CAUSAL:
        lo = nb
    else:
        lo = 0
    for mb in range(lo, NB):
        rows = c * C + mb * BM + offs_b
        r_ok = rows < T
        if CAUSAL:
            inv_n = 1.0 / (rows + 1).to(tl.float32)
        else:
            inv_n = tl.zeros([BM], dtype=tl.float32) + 1.0 / T
        qq = tl.load(
            QQ + (b * T + rows[:, None]) * S + offs_s[None, :],
            mask=r_ok[:, None] & s_ok[None, :],
            other=0.0,
        )
        dA = _dA_block(
            DO, inv_n, V, b, T, E, rows, keys, r_ok, k_ok, BM, BE, PRECISION, UPCAST, dtype
        )  # [query, key]
        s = mm(qq, tl.trans(kq), None, PRECISION, UPCAST) * scale
        dP = dA * 2.0 * tl.maximum(s, 0.0) * scale
        if CAUSAL:
            dP = tl.where(keys[None, :] <= rows[:, None], dP, 0.0)
        dkq = mm(tl.trans(dP.to(dtype)), qq, dkq, PRECISION, UPCAST)
    tl.store(
        DKQ + (b * T + keys[:, None]) * S + offs_s[None, :],
        dkq.to(DKQ.dtype.element_ty),
        mask=ks_mask,
    )


# --------------------------------------------------------------------------- host side
def _states(kx, x, C, reverse, div_n, cfg):
    """[B, G, S, E] exclusive prefix (or suffix) sums of kx_c^T x_c over chunks."""
    B, T, S = kx.shape
    E = x.shape[-1]
    G = triton.cdiv(T, C)
    st = torch.empty(B, G, S, E, device=kx.device, dtype=kx.dtype)
    BE = cfg["BE_STATE"]
    gau_state_kernel[(triton.cdiv(E, BE), B)](
        kx,
        x,
        st,
        T,
        G,
        C,
        E,
        S,
        BT=min(cfg["BM"], 64),
        BS=pow2(S),
        BE=BE,
        REVERSE=reverse,
        DIV_N=div_n,
        PRECISION=dot_precision(kx.dtype),
        UPCAST=dot_upcast(kx.dtype),
        num_warps=cfg["num_warps"],
    )
    return st


def gau_forward(qq, kq, ql, kl, v, C, causal):
    B, T, S = qq.shape
    E = v.shape[-1]
    cfg = config(C)
    BM, BE = cfg["BM"], cfg["BE"]
    if causal:
        st = _states(kl, v, C, reverse=False, div_n=False, cfg=cfg)
    else:
        st = (kl.transpose(1, 2) @ v)[:, None].contiguous()  # [B, 1, S, E], every chunk
    o = torch.empty_like(v)
    G = triton.cdiv(T, C)
    gau_fwd_kernel[(G * (C // BM), triton.cdiv(E, BE), B)](
        qq,
        kq,
        ql,
        v,
        st,
        o,
        T,
        C,
        E,
        S,
        1.0 / math.sqrt(S),
        st.stride(0),
        st.stride(1) if causal else 0,
        BM=BM,
        BS=pow2(S),
        BE=BE,
        CAUSAL=causal,
        PRECISION=dot_precision(qq.dtype),
        UPCAST=dot_upcast(qq.dtype),
        num_warps=cfg["num_warps"],
        num_stages=cfg["num_stages"],
    )
    return o, st


def gau_backward(do, qq, kq, ql, kl, v, st, C, causal):
    B, T, S = qq.shape
    E = v.shape[-1]
    cfg = config(C)
    BM, BE = cfg["BM"], cfg["BE"]
    G = triton.cdiv(T, C)
    if causal:
        dst = _states(ql, do, C, reverse=True, div_n=True, cfg=cfg)
    else:
        dst = ((ql.transpose(1, 2) @ do) / T)[:, None].contiguous()
    strides = (st.stride(0), st.stride(1) if causal else 0)
    consts = dict(
        BM=BM,
        BS=pow2(S),
        BE=BE,
        CAUSAL=causal,
        PRECISION=dot_precision(qq.dtype),
        UPCAST=dot_upcast(qq.dtype),
        num_warps=cfg["num_warps"],
        num_stages=cfg["num_stages"],
    )
    scale = 1.0 / math.sqrt(S)
    dv = torch.empty_like(v)
    gau_bwd_dv_kernel[(G * (C // BM), triton.cdiv(E, BE), B)](
        qq, kq, kl, do, dst, dv, T, C, E, S, scale, *strides, **consts
    )
    dqq, dql = torch.empty_like(qq), torch.empty_like(ql)
    gau_bwd_dq_kernel[(G * (C // BM), B)](
        qq, kq, v, do, st, dqq, dql, T, C, E, S, scale, *strides, **consts
    )
    dkq, dkl = torch.empty_like(kq), torch.empty_like(kl)
    gau_bwd_dk_kernel[(G * (C // BM), B)](
        qq, kq, v, do, dst, dkq, dkl, T, C, E, S, scale, *strides, **consts
    )
    return dqq, dkq, dql, dkl, dv


class ChunkGAUFunction(torch.autograd.Function):
    """Mixed-chunk attention with the Triton kernels; see the module docstring."""

    @staticmethod
    def forward(ctx, qq, kq, ql, kl, v, chunk_size, causal):
        qq, kq, ql, kl, v = (t.contiguous() for t in (qq, kq, ql, kl, v))
        o, st = gau_forward(qq, kq, ql, kl, v, chunk_size, causal)
        ctx.save_for_backward(qq, kq, ql, kl, v, st)
        ctx.chunk_size, ctx.causal = chunk_size, causal
        return o

    @staticmethod
    def backward(ctx, do):
        qq, kq, ql, kl, v, st = ctx.saved_tensors
        grads = gau_backward(do.contiguous(), qq, kq, ql, kl, v, st, ctx.chunk_size, ctx.causal)
        return (*grads, None, None)


def triton_chunk_gau(q_quad, k_quad, q_lin, k_lin, v, *, chunk_size: int, causal: bool):
    """Kernel path of `chunk_gau` (same arguments and result)."""
    return ChunkGAUFunction.apply(q_quad, k_quad, q_lin, k_lin, v, chunk_size, causal)
