"""FlashAttention-2 in Triton: tiled softmax attention with an online softmax.

Forward (Dao 2023, Algorithm 1). Each program owns a block of BLOCK_M query rows and streams
over key/value blocks of BLOCK_N rows, keeping for every row the running maximum m, the
running sum l of exp(s - m) and the unnormalised output acc in registers:

    m' = max(m, rowmax(s)),  p = exp(s - m'),  l' = l exp(m - m') + rowsum(p),
    acc' = acc exp(m - m') + p v,             o = acc / l,   lse = m + log l.

The T x T score matrix never reaches memory; only lse ([B, H, T] in fp32) is saved.
Exponentials are base 2 with log2(e) folded into the scale, which is applied inside the
exponent's multiply-add (the row maximum is taken over the raw scores).

Backward (Dao 2023, Algorithm 2), recomputing p from q, k and lse:

    p = exp(s - lse),  dv = p^T do,  dp = do v^T,  ds = p * (dp - delta),
    dq = ds k * scale,  dk = ds^T q * scale,      with delta = rowsum(do * o).

Two kernels: `flash_attn_bwd_dkdv_kernel` (a key block per program, looping over query
blocks) and `flash_attn_bwd_dq_kernel` (a query block per program, looping over key blocks),
so that neither needs atomic adds.

Causal masks align queries to the end of the keys (query i sits at position i + T_k - T_q),
matching `naive_softmax_attn`. Each loop is split into blocks entirely inside the mask (no
masking work) and the blocks that straddle the diagonal or the sequence end. A query row
with no visible key (causal with T_q > T_k) gets o = 0, lse = +inf, and zero gradients.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from deepnotes.ops.backend import interpreting
from deepnotes.ops.triton_utils import dot_precision, dot_upcast, mm, pow2, row_dot_kernel

LOG2E = 1.4426950408889634

# Tile shapes and launch settings, (head-dim bucket) -> settings. Chosen on an H100 by
# scripts/bench_kernels_gpu.sh (see docs/kernels.md); the interpreter uses small tiles so the
# CPU tests cross several blocks and ragged tails.
FWD_CONFIGS = {  # H100, bf16, causal, T = 8k: 4.90 / 4.60 ms (scripts/tune_kernels.py)
    64: dict(BLOCK_M=128, BLOCK_N=64, num_warps=8, num_stages=3),
    128: dict(BLOCK_M=128, BLOCK_N=64, num_warps=8, num_stages=3),
}
BWD_CONFIGS = {  # (dkdv tiles, dq tiles); same setting: 16.1 / 14.0 ms
    64: dict(BLOCK_M1=32, BLOCK_N1=128, BLOCK_M2=128, BLOCK_N2=32, num_warps=4, num_stages=3),
    128: dict(BLOCK_M1=64, BLOCK_N1=128, BLOCK_M2=128, BLOCK_N2=64, num_warps=8, num_stages=3),
}
INTERPRET_FWD = dict(BLOCK_M=32, BLOCK_N=16, num_warps=4, num_stages=1)
INTERPRET_BWD = dict(BLOCK_M1=16, BLOCK_N1=32, BLOCK_M2=32, BLOCK_N2=16, num_warps=4, num_stages=1)
MAX_HEAD_DIM = 128


def _bucket(d: int) -> int:
    return 64 if d <= 64 else 128


def fwd_config(d: int) -> dict:
    return dict(INTERPRET_FWD) if interpreting() else dict(FWD_CONFIGS[_bucket(d)])


def bwd_config(d: int) -> dict:
    return dict(INTERPRET_BWD) if interpreting() else dict(BWD_CONFIGS[_bucket(d)])


# --------------------------------------------------------------------------- forward
@triton.jit
def _online_softmax(s, qk_scale, acc, l_i, m_i, offs_m, offs_n, T_k, off, MASKED: tl.constexpr,
                    CAUSAL: tl.constexpr):  # fmt: skip
    """One key block of the online softmax: raw scores s = q k^T [BLOCK_M, BLOCK_N] and
    qk_scale = scale * log2(e) > 0 -> (p = exp2(s qk_scale - m'), acc and l rescaled by
    exp2(m - m'), m'), m in log2 units of scaled scores; the caller adds p v to acc.
    The scale goes into the exponent's multiply-add, not a multiply of every score first:
    the row maximum of the raw scores, scaled, is the maximum of the scaled ones (qk_scale
    > 0), which saves one multiply per score (the SASS count: scripts/sass_report.py).
    MASKED blocks hide keys past T_k and, when CAUSAL, keys after each query."""
    if MASKED:
        allowed = offs_n[None, :] < T_k
        if CAUSAL:
            allowed = allowed & (offs_n[None, :] <= offs_m[:, None] + off)
        s = tl.where(allowed, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1) * qk_scale)
        # A row that has seen no key yet keeps m = -inf; subtract 0 instead (no NaN).
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
    else:
        m_new = tl.maximum(m_i, tl.max(s, 1) * qk_scale)
        m_use = m_new
    p = tl.exp2(s * qk_scale - m_use[:, None])
    alpha = tl.exp2(m_i - m_use)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None]
    return p, acc, l_i, m_new


@triton.jit
def _key_range(start_m, T_k, off, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
               CAUSAL: tl.constexpr):  # fmt: skip
    """(n_full, hi): keys [0, n_full) need no mask for this query block, [n_full, hi) do."""
    if CAUSAL:
        # key blocks every row of this block may see entirely: n + BLOCK_N - 1 <= start_m + off
        n_full = tl.maximum(start_m + off + 1, 0) // BLOCK_N
        n_full = tl.minimum(n_full, T_k // BLOCK_N) * BLOCK_N
        hi = tl.minimum(tl.maximum(start_m + BLOCK_M + off, 0), T_k)
    else:
        n_full = (T_k // BLOCK_N) * BLOCK_N
        hi = T_k
    return n_full, hi


@triton.jit
def _finish(acc, l_i, m_i):
    """(o = acc / l, lse = m + log2 l); a row that saw no key gets o = 0, lse = +inf."""
    empty = l_i == 0.0
    l_safe = tl.where(empty, 1.0, l_i)
    return acc / l_safe[:, None], tl.where(empty, float("inf"), m_i + tl.log2(l_safe))


@triton.jit
def _fwd_inner(
    acc,
    l_i,
    m_i,
    q,
    k_base,
    v_base,
    stride_kt,
    stride_vt,
    offs_m,
    offs_d,
    lo,
    hi,
    T_k,
    off,
    qk_scale,
    D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    MASKED: tl.constexpr,
    CAUSAL: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    offs_n0 = tl.arange(0, BLOCK_N)
    d_ok = offs_d < D
    for start_n in range(lo, hi, BLOCK_N):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        offs_n = start_n + offs_n0
        if MASKED:
            kv_mask = (offs_n[:, None] < T_k) & d_ok[None, :]
        else:
            kv_mask = d_ok[None, :]
        k = tl.load(k_base + offs_n[:, None] * stride_kt + offs_d[None, :], mask=kv_mask, other=0.0)
        s = mm(q, tl.trans(k), None, PRECISION, UPCAST)
        p, acc, l_i, m_i = _online_softmax(
            s, qk_scale, acc, l_i, m_i, offs_m, offs_n, T_k, off, MASKED, CAUSAL
        )
        v = tl.load(v_base + offs_n[:, None] * stride_vt + offs_d[None, :], mask=kv_mask, other=0.0)
        acc = mm(p.to(v.dtype), v, acc, PRECISION, UPCAST)
    return acc, l_i, m_i


@triton.jit
def flash_attn_fwd_kernel(
    Q,
    K,
    V,
    O,
    LSE,
    stride_qb,
    stride_qh,
    stride_qt,
    stride_kb,
    stride_kh,
    stride_kt,
    stride_vb,
    stride_vh,
    stride_vt,
    stride_ob,
    stride_oh,
    stride_ot,
    H,
    T_q,
    T_k,
    off,
    qk_scale,
    D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    CAUSAL: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    # Heaviest (last) query blocks first: with a causal mask they see the most keys.
    start_m = (tl.num_programs(0) - 1 - tl.program_id(0)) * BLOCK_M
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    q_base = Q + b.to(tl.int64) * stride_qb + h.to(tl.int64) * stride_qh
    k_base = K + b.to(tl.int64) * stride_kb + h.to(tl.int64) * stride_kh
    v_base = V + b.to(tl.int64) * stride_vb + h.to(tl.int64) * stride_vh
    row_ok = offs_m < T_q
    q_mask = row_ok[:, None] & (offs_d[None, :] < D)
    q = tl.load(q_base + offs_m[:, None] * stride_qt + offs_d[None, :], mask=q_mask, other=0.0)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    n_full, hi = _key_range(start_m, T_k, off, BLOCK_M, BLOCK_N, CAUSAL)
    acc, l_i, m_i = _fwd_inner(
        acc,
        l_i,
        m_i,
        q,
        k_base,
        v_base,
        stride_kt,
        stride_vt,
        offs_m,
        offs_d,
        0,
        n_full,
        T_k,
        off,
        qk_scale,
        D,
        BLOCK_N,
        BLOCK_D,
        False,
        CAUSAL,
        PRECISION,
        UPCAST,
    )
    acc, l_i, m_i = _fwd_inner(
        acc,
        l_i,
        m_i,
        q,
        k_base,
        v_base,
        stride_kt,
        stride_vt,
        offs_m,
        offs_d,
        n_full,
        hi,
        T_k,
        off,
        qk_scale,
        D,
        BLOCK_N,
        BLOCK_D,
        True,
        CAUSAL,
        PRECISION,
        UPCAST,
    )
    o, lse = _finish(acc, l_i, m_i)
    o_base = O + b.to(tl.int64) * stride_ob + h.to(tl.int64) * stride_oh
    tl.store(
        o_base + offs_m[:, None] * stride_ot + offs_d[None, :],
        o.to(O.dtype.element_ty),
        mask=q_mask,
    )
    tl.store(LSE + bh.to(tl.int64) * T_q + offs_m, lse, mask=row_ok)


# --------------------------------------------------------------------------- backward
@triton.jit
def _dkdv_inner(
    dk,
    dv,
    k,
    v,
    q_base,
    do_base,
    lse_base,
    delta_base,
    stride_qt,
    stride_dt,
    offs_n,
    offs_d,
    lo,
    hi,
    T_q,
    off,
    qk_scale,
    D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    MASKED: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    offs_m0 = tl.arange(0, BLOCK_M)
    d_ok = offs_d < D
    for start_m in range(lo, hi, BLOCK_M):
        start_m = tl.multiple_of(start_m, BLOCK_M)
        offs_m = start_m + offs_m0
        row_ok = offs_m < T_q
        mask = row_ok[:, None] & d_ok[None, :]
        q = tl.load(q_base + offs_m[:, None] * stride_qt + offs_d[None, :], mask=mask, other=0.0)
        # rows past T_q read lse = +inf, so their p is exactly 0
        lse = tl.load(lse_base + offs_m, mask=row_ok, other=float("inf"))
        s_t = mm(k, tl.trans(q), None, PRECISION, UPCAST) * qk_scale  # [BLOCK_N, BLOCK_M]
        if MASKED:
            s_t = tl.where(offs_n[:, None] <= offs_m[None, :] + off, s_t, float("-inf"))
        p_t = tl.exp2(s_t - lse[None, :])
        do = tl.load(do_base + offs_m[:, None] * stride_dt + offs_d[None, :], mask=mask, other=0.0)
        dv = mm(p_t.to(do.dtype), do, dv, PRECISION, UPCAST)
        delta = tl.load(delta_base + offs_m, mask=row_ok, other=0.0)
        dp_t = mm(v, tl.trans(do), None, PRECISION, UPCAST)
        ds_t = p_t * (dp_t - delta[None, :])
        dk = mm(ds_t.to(q.dtype), q, dk, PRECISION, UPCAST)
    return dk, dv


@triton.jit
def flash_attn_bwd_dkdv_kernel(
    Q,
    K,
    V,
    DO,
    LSE,
    DELTA,
    DK,
    DV,
    stride_qb,
    stride_qh,
    stride_qt,
    stride_kb,
    stride_kh,
    stride_kt,
    stride_vb,
    stride_vh,
    stride_vt,
    stride_db,
    stride_dh,
    stride_dt,
    H,
    T_q,
    T_k,
    off,
    qk_scale,
    sm_scale,
    D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    CAUSAL: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """dk, dv for one block of BLOCK_N keys; dk/dv share the strides of k/v."""
    start_n = tl.program_id(0) * BLOCK_N
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    kv_mask = (offs_n[:, None] < T_k) & (offs_d[None, :] < D)
    k_off = b.to(tl.int64) * stride_kb + h.to(tl.int64) * stride_kh
    v_off = b.to(tl.int64) * stride_vb + h.to(tl.int64) * stride_vh
    k = tl.load(K + k_off + offs_n[:, None] * stride_kt + offs_d[None, :], mask=kv_mask, other=0.0)
    v = tl.load(V + v_off + offs_n[:, None] * stride_vt + offs_d[None, :], mask=kv_mask, other=0.0)
    q_base = Q + b.to(tl.int64) * stride_qb + h.to(tl.int64) * stride_qh
    do_base = DO + b.to(tl.int64) * stride_db + h.to(tl.int64) * stride_dh
    lse_base = LSE + bh.to(tl.int64) * T_q
    delta_base = DELTA + bh.to(tl.int64) * T_q
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    m_end = tl.cdiv(T_q, BLOCK_M) * BLOCK_M
    if CAUSAL:
        # query blocks that see part of this key block: rows i >= start_n - off
        m_lo = (tl.maximum(start_n - off, 0) // BLOCK_M) * BLOCK_M
        # first query block that sees all of it: i >= start_n + BLOCK_N - 1 - off for all rows
        m_mid = tl.cdiv(tl.maximum(start_n + BLOCK_N - 1 - off, 0), BLOCK_M) * BLOCK_M
        m_mid = tl.minimum(tl.maximum(m_mid, m_lo), m_end)
        dk, dv = _dkdv_inner(
            dk,
            dv,
            k,
            v,
            q_base,
            do_base,
            lse_base,
            delta_base,
            stride_qt,
            stride_dt,
            offs_n,
            offs_d,
            m_lo,
            m_mid,
            T_q,
            off,
            qk_scale,
            D,
            BLOCK_M,
            True,
            PRECISION,
            UPCAST,
        )
    else:
        m_mid = 0
    dk, dv = _dkdv_inner(
        dk,
        dv,
        k,
        v,
        q_base,
        do_base,
        lse_base,
        delta_base,
        stride_qt,
        stride_dt,
        offs_n,
        offs_d,
        m_mid,
        m_end,
        T_q,
        off,
        qk_scale,
        D,
        BLOCK_M,
        False,
        PRECISION,
        UPCAST,
    )
    dk = dk * sm_scale
    tl.store(
        DK + k_off + offs_n[:, None] * stride_kt + offs_d[None, :],
        dk.to(DK.dtype.element_ty),
        mask=kv_mask,
    )
    tl.store(
        DV + v_off + offs_n[:, None] * stride_vt + offs_d[None, :],
        dv.to(DV.dtype.element_ty),
        mask=kv_mask,
    )


@triton.jit
def _dq_inner(
    dq,
    q,
    do,
    lse,
    delta,
    k_base,
    v_base,
    stride_kt,
    stride_vt,
    offs_m,
    offs_d,
    lo,
    hi,
    T_k,
    off,
    qk_scale,
    D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    MASKED: tl.constexpr,
    CAUSAL: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    offs_n0 = tl.arange(0, BLOCK_N)
    d_ok = offs_d < D
    for start_n in range(lo, hi, BLOCK_N):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        offs_n = start_n + offs_n0
        if MASKED:
            kv_mask = (offs_n[:, None] < T_k) & d_ok[None, :]
        else:
            kv_mask = d_ok[None, :]
        k = tl.load(k_base + offs_n[:, None] * stride_kt + offs_d[None, :], mask=kv_mask, other=0.0)
        v = tl.load(v_base + offs_n[:, None] * stride_vt + offs_d[None, :], mask=kv_mask, other=0.0)
        s = mm(q, tl.trans(k), None, PRECISION, UPCAST) * qk_scale
        if MASKED:
            allowed = offs_n[None, :] < T_k
            if CAUSAL:
                allowed = allowed & (offs_n[None, :] <= offs_m[:, None] + off)
            s = tl.where(allowed, s, float("-inf"))
        p = tl.exp2(s - lse[:, None])
        dp = mm(do, tl.trans(v), None, PRECISION, UPCAST)
        ds = p * (dp - delta[:, None])
        dq = mm(ds.to(k.dtype), k, dq, PRECISION, UPCAST)
    return dq


@triton.jit
def flash_attn_bwd_dq_kernel(
    Q,
    K,
    V,
    DO,
    LSE,
    DELTA,
    DQ,
    stride_qb,
    stride_qh,
    stride_qt,
    stride_kb,
    stride_kh,
    stride_kt,
    stride_vb,
    stride_vh,
    stride_vt,
    stride_db,
    stride_dh,
    stride_dt,
    H,
    T_q,
    T_k,
    off,
    qk_scale,
    sm_scale,
    D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    CAUSAL: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """dq for one block of BLOCK_M queries; dq shares the strides of q."""
    start_m = (tl.num_programs(0) - 1 - tl.program_id(0)) * BLOCK_M
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < T_q
    mask = row_ok[:, None] & (offs_d[None, :] < D)
    q_off = b.to(tl.int64) * stride_qb + h.to(tl.int64) * stride_qh
    q = tl.load(Q + q_off + offs_m[:, None] * stride_qt + offs_d[None, :], mask=mask, other=0.0)
    do = tl.load(
        DO
        + b.to(tl.int64) * stride_db
        + h.to(tl.int64) * stride_dh
        + offs_m[:, None] * stride_dt
        + offs_d[None, :],
        mask=mask,
        other=0.0,
    )
    lse = tl.load(LSE + bh.to(tl.int64) * T_q + offs_m, mask=row_ok, other=float("inf"))
    delta = tl.load(DELTA + bh.to(tl.int64) * T_q + offs_m, mask=row_ok, other=0.0)
    k_base = K + b.to(tl.int64) * stride_kb + h.to(tl.int64) * stride_kh
    v_base = V + b.to(tl.int64) * stride_vb + h.to(tl.int64) * stride_vh
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    n_full, hi = _key_range(start_m, T_k, off, BLOCK_M, BLOCK_N, CAUSAL)
    dq = _dq_inner(
        dq,
        q,
        do,
        lse,
        delta,
        k_base,
        v_base,
        stride_kt,
        stride_vt,
        offs_m,
        offs_d,
        0,
        n_full,
        T_k,
        off,
        qk_scale,
        D,
        BLOCK_N,
        False,
        CAUSAL,
        PRECISION,
        UPCAST,
    )
    dq = _dq_inner(
        dq,
        q,
        do,
        lse,
        delta,
        k_base,
        v_base,
        stride_kt,
        stride_vt,
        offs_m,
        offs_d,
        n_full,
        hi,
        T_k,
        off,
        qk_scale,
        D,
        BLOCK_N,
        True,
        CAUSAL,
        PRECISION,
        UPCAST,
    )
    dq = dq * sm_scale
    tl.store(
        DQ + q_off + offs_m[:, None] * stride_qt + offs_d[None, :],
        dq.to(DQ.dtype.element_ty),
        mask=mask,
    )


# --------------------------------------------------------------------------- host side
def _strides(t: torch.Tensor) -> tuple[int, int, int]:
    return t.stride(0), t.stride(1), t.stride(2)


def flash_attn_fwd(q, k, v, causal: bool, scale: float, loads: str = "pointer"):
    """-> (o [B, H, T_q, D] in q's dtype, lse [B, H, T_q] fp32 in log2 units of scaled scores).
    loads: "pointer" (this kernel), or "tma" / "tma-ws" (`triton_flash_tma`, opt-in)."""
    if loads != "pointer":
        from deepnotes.ops.attention.triton_flash_tma import VARIANTS, flash_attn_fwd_tma

        if loads not in VARIANTS:
            raise ValueError(f"loads must be 'pointer' or one of {sorted(VARIANTS)}, got {loads!r}")
        return flash_attn_fwd_tma(q, k, v, causal, scale, VARIANTS[loads])
    B, H, T_q, D = q.shape
    T_k = k.shape[2]
    o = torch.empty_like(q)
    lse = torch.empty(B, H, T_q, device=q.device, dtype=torch.float32)
    cfg = fwd_config(D)
    BM, BN = cfg.pop("BLOCK_M"), cfg.pop("BLOCK_N")
    grid = (triton.cdiv(T_q, BM), B * H)
    flash_attn_fwd_kernel[grid](
        q,
        k,
        v,
        o,
        lse,
        *_strides(q),
        *_strides(k),
        *_strides(v),
        *_strides(o),
        H,
        T_q,
        T_k,
        T_k - T_q,
        scale * LOG2E,
        D=D,
        BLOCK_M=BM,
        BLOCK_N=BN,
        BLOCK_D=pow2(D),
        CAUSAL=causal,
        PRECISION=dot_precision(q.dtype),
        UPCAST=dot_upcast(q.dtype),
        **cfg,
    )
    return o, lse


def flash_attn_bwd(do, q, k, v, o, lse, causal: bool, scale: float):
    B, H, T_q, D = q.shape
    T_k = k.shape[2]
    BD = pow2(D)
    delta = torch.empty_like(lse)
    row_dot_kernel[(triton.cdiv(T_q, 64), B * H)](
        o,
        do,
        delta,
        *_strides(o),
        *_strides(do),
        H,
        T_q,
        D=D,
        BLOCK_M=64,
        BLOCK_D=BD,
    )
    dq = torch.empty_like(q)
    dk = torch.empty_like(k)
    dv = torch.empty_like(v)
    cfg = bwd_config(D)
    launch = dict(num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
    common = (H, T_q, T_k, T_k - T_q, scale * LOG2E, scale)
    consts = dict(
        D=D,
        BLOCK_D=BD,
        CAUSAL=causal,
        PRECISION=dot_precision(q.dtype),
        UPCAST=dot_upcast(q.dtype),
        **launch,
    )
    # dk/dv/dq are fresh contiguous tensors; they share strides with fresh copies of k/v/q.
    assert dk.stride() == k.stride() and dv.stride() == v.stride() and dq.stride() == q.stride()
    flash_attn_bwd_dkdv_kernel[(triton.cdiv(T_k, cfg["BLOCK_N1"]), B * H)](
        q,
        k,
        v,
        do,
        lse,
        delta,
        dk,
        dv,
        *_strides(q),
        *_strides(k),
        *_strides(v),
        *_strides(do),
        *common,
        BLOCK_M=cfg["BLOCK_M1"],
        BLOCK_N=cfg["BLOCK_N1"],
        **consts,
    )
    flash_attn_bwd_dq_kernel[(triton.cdiv(T_q, cfg["BLOCK_M2"]), B * H)](
        q,
        k,
        v,
        do,
        lse,
        delta,
        dq,
        *_strides(q),
        *_strides(k),
        *_strides(v),
        *_strides(do),
        *common,
        BLOCK_M=cfg["BLOCK_M2"],
        BLOCK_N=cfg["BLOCK_N2"],
        **consts,
    )
    return dq, dk, dv


# The kernels run inside custom ops with fake (shape-only) implementations, so that
# `torch.compile` treats them as opaque calls: Dynamo/Inductor never trace or re-specialise
# the Triton launches (under compile + autocast a traced launch failed a `tl.dot` type
# assertion on an H100), and autograd goes through `register_autograd`.
@torch.library.custom_op("deepnotes::flash_attn_fwd", mutates_args=())
def flash_attn_fwd_op(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool,
    scale: float,
    loads: str = "pointer",
) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (o, lse), o contiguous; q, k, v of one dtype (see `triton_flash_attn`)."""
    q, k, v = (t.contiguous() for t in (q, k, v))
    return flash_attn_fwd(q, k, v, causal, scale, loads)


@flash_attn_fwd_op.register_fake
def _(q, k, v, causal, scale, loads="pointer"):
    B, H, T_q, _ = q.shape
    return q.new_empty(q.shape), q.new_empty(B, H, T_q, dtype=torch.float32)


@torch.library.custom_op("deepnotes::flash_attn_bwd", mutates_args=())
def flash_attn_bwd_op(
    do: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    o: torch.Tensor,
    lse: torch.Tensor,
    causal: bool,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (dq, dk, dv), contiguous, in the dtypes of q, k, v."""
    do, q, k, v, o = (t.contiguous() for t in (do, q, k, v, o))
    return flash_attn_bwd(do, q, k, v, o, lse, causal, scale)


@flash_attn_bwd_op.register_fake
def _(do, q, k, v, o, lse, causal, scale):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup_context(ctx, inputs, output):
    q, k, v, causal, scale, _ = inputs
    o, lse = output
    ctx.save_for_backward(q, k, v, o, lse)
    ctx.mark_non_differentiable(lse)
    ctx.causal, ctx.scale = causal, scale


def _backward(ctx, do, dlse):
    q, k, v, o, lse = ctx.saved_tensors
    dq, dk, dv = flash_attn_bwd_op(do, q, k, v, o, lse, ctx.causal, ctx.scale)
    return dq, dk, dv, None, None, None


flash_attn_fwd_op.register_autograd(_backward, setup_context=_setup_context)


def triton_flash_attn(
    q, k, v, *, causal: bool, scale: float | None = None, loads: str = "pointer"
) -> torch.Tensor:
    """FlashAttention-2 kernels. q: [B, H, T_q, D], k, v: [B, H, T_k, D] -> [B, H, T_q, D].

    q, k, v must share one dtype (`flash_attn` casts them); they are made contiguous here.
    loads: the forward's loads, "pointer" (default), or "tma" / "tma-ws" (Hopper's tensor
    descriptors, without / with warp specialisation; `triton_flash_tma`). The backward is
    the same for all three.
    """
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"triton_flash_attn: dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    if scale <= 0:  # the row maximum is taken before scaling (and -inf * 0 is NaN)
        raise ValueError(f"triton_flash_attn: scale must be > 0, got {scale}")
    q, k, v = (t.contiguous() for t in (q, k, v))  # saved for backward as they are
    return flash_attn_fwd_op(q, k, v, causal, scale, loads)[0]
