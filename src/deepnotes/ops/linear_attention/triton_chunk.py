"""Causal chunked linear attention in Triton (forward and backward), with the elu+1 feature
map and the normaliser fused.

Definitions as in `naive.py`: with S_t = sum_{s<=t} k_s v_s^T, z_t = sum_{s<=t} k_s,

    o_t = q_t S_t / (q_t . z_t + eps)      (normalize=True; o_t = q_t S_t otherwise).

Tiling. A program owns one (batch, head) and a block of BV value columns and walks the
sequence chunk by chunk (BT rows), keeping the running state S [K, BV] and z [K] in fp32
registers, so nothing of size T x K x V is ever written. For chunk c with state S, z before
it (Katharopoulos et al. 2020, eq. 9, split into intra- and inter-chunk parts as in fla):

    A = tril(q k^T)                num = A v + q S         den = A 1 + q . z
    o = num / (den + eps)          S += k^T v              z += k^T 1

Backward, with r = 1/(den + eps), g = do * r (the gradient of num) and
gden = -r rowsum(do * o) (the gradient of den):

    dq = (tril(g v^T) + gden 1^T) k + g S^T + gden z^T            (chunks in order)
    dv = tril(q k^T)^T g + k dS                                    (chunks in reverse,
    dk = (tril(g v^T) + gden 1^T)^T q + v dS^T + 1 dz^T             dS = sum_later q^T g,
                                                                    dz = sum_later q^T gden)

The dq walk (forward in time) and the dk/dv walk (backward in time) are independent, so
one launch runs both: the first NV programs of axis 0 do dq, the next NV do dk and dv.
When V is split into NV > 1 blocks, dq and dk are partial sums over the blocks (fp32
buffers summed afterwards); dv is complete in its own block.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from deepnotes.ops.backend import interpreting
from deepnotes.ops.triton_utils import dot_precision, dot_upcast, mm, pow2, row_dot_kernel

# (K bucket) -> settings, from scripts/tune_kernels.py on an H100 (bf16, B*T = 65,536,
# H*D = 2048; docs/kernels.md). For K > 64 a whole 128-wide value block per program is
# faster while the grid still has >= WIDE_V_MIN_PROGRAMS programs (4.7 vs 8.0 ms fwd+bwd at
# T = 8k); with fewer (long T, small batch) 64-wide blocks double the parallelism (9.3 vs
# 9.8 ms at T = 32k). Small tiles under the interpreter so the CPU tests cross several
# chunks and value blocks.
CONFIGS = {
    64: dict(BT=64, BV=64, num_warps=4, num_stages=3),
    128: dict(BT=64, BV=64, num_warps=8, num_stages=2),
}
WIDE_V = 128
WIDE_V_MIN_PROGRAMS = 128
# Sequence-parallel dispatch (triton_segmented.py), from `deepnotes bench kernels` on an H100
# (benchmarks/kernels-h100-linear-seg.json, fwd+bwd, B*T = 65,536, H*D = 2048): for K > 64
# the one walk loses once there are fewer than SEGMENT_BELOW_ROWS (batch, head) rows
# (B*H = 32: 9.29 ms, 4 segments 7.58, 16 segments 7.51, fla 8.98) and wins from it on
# (B*H = 128: 4.68 ms against 7.49 with 4 segments). For K <= 64 it wins at every measured
# shape (B*H = 64: 3.38 against 4.7 ms), so that case stays one walk. The segment count
# brings the rows up to SEGMENT_ROWS, at most MAX_SEGMENTS, each at least MIN_SEGMENT_CHUNKS
# chunks long.
SEGMENT_BELOW_ROWS = 64
SEGMENT_ROWS = 128
MAX_SEGMENTS = 16
MIN_SEGMENT_CHUNKS = 16
INTERPRET_CONFIG = dict(BT=16, BV=16, num_warps=4, num_stages=1)
MAX_K = 256
MAX_V = 256


def config(K: int, V: int, BH: int = 1) -> dict:
    if interpreting():
        cfg = dict(INTERPRET_CONFIG)
    else:
        cfg = dict(CONFIGS[64 if K <= 64 else 128])
        if K > 64 and V >= WIDE_V and BH * triton.cdiv(V, WIDE_V) >= WIDE_V_MIN_PROGRAMS:
            cfg["BV"] = WIDE_V
    cfg["BV"] = min(cfg["BV"], pow2(V))
    return cfg


@triton.jit
def _feature(x, FEATURE: tl.constexpr):
    """phi(x) in fp32: elu(x) + 1 when FEATURE == 1, x itself otherwise."""
    x = x.to(tl.float32)
    if FEATURE == 1:
        x = tl.where(x > 0, x + 1.0, tl.exp(tl.minimum(x, 0.0)))
    return x


@triton.jit
def _feature_grad(x, FEATURE: tl.constexpr):
    """phi'(x) for elu+1: 1 for x > 0, exp(x) otherwise."""
    x = x.to(tl.float32)
    return tl.where(x > 0, 1.0, tl.exp(tl.minimum(x, 0.0)))


@triton.jit
def chunk_linear_attn_fwd_kernel(
    Q,
    K,
    V,
    O,
    DEN,
    S0,
    Z0,
    ST,
    ZT,
    stride_qb,
    stride_qh,
    stride_qt,
    stride_vb,
    stride_vh,
    stride_vt,
    H,
    T,
    eps,
    DK: tl.constexpr,
    DV: tl.constexpr,
    BT: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    NORMALIZE: tl.constexpr,
    FEATURE: tl.constexpr,
    HAS_INIT: tl.constexpr,
    STORE_FINAL: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """q, k: [B, H, T, DK] (stride_q*), v, o: [B, H, T, DV] (stride_v*); states contiguous."""
    vb = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    offs_t = tl.arange(0, BT)
    offs_k = tl.arange(0, BK)
    offs_v = vb * BV + tl.arange(0, BV)
    k_ok = offs_k < DK
    v_ok = offs_v < DV
    q_base = b.to(tl.int64) * stride_qb + h.to(tl.int64) * stride_qh
    v_base = b.to(tl.int64) * stride_vb + h.to(tl.int64) * stride_vh
    dtype = Q.dtype.element_ty
    causal = offs_t[:, None] >= offs_t[None, :]

    s_ptrs = bh.to(tl.int64) * DK * DV + offs_k[:, None] * DV + offs_v[None, :]
    s_mask = k_ok[:, None] & v_ok[None, :]
    if HAS_INIT:
        S = tl.load(S0 + s_ptrs, mask=s_mask, other=0.0).to(tl.float32)
        z = tl.load(Z0 + bh.to(tl.int64) * DK + offs_k, mask=k_ok, other=0.0).to(tl.float32)
    else:
        S = tl.zeros([BK, BV], dtype=tl.float32)
        z = tl.zeros([BK], dtype=tl.float32)

    for t0 in range(0, T, BT):
        rows = t0 + offs_t
        r_ok = rows < T
        qk_mask = r_ok[:, None] & k_ok[None, :]
        qk_off = rows[:, None] * stride_qt + offs_k[None, :]
        # padded rows/columns load as 0 and phi(0) = 1 for elu+1, so re-zero them
        q = tl.load(Q + q_base + qk_off, mask=qk_mask, other=0.0)
        k = tl.load(K + q_base + qk_off, mask=qk_mask, other=0.0)
        q = tl.where(qk_mask, _feature(q, FEATURE), 0.0)
        k = tl.where(qk_mask, _feature(k, FEATURE), 0.0)
        vo_mask = r_ok[:, None] & v_ok[None, :]
        vo_off = rows[:, None] * stride_vt + offs_v[None, :]
        v = tl.load(V + v_base + vo_off, mask=vo_mask, other=0.0)
        qd = q.to(dtype)
        kd = k.to(dtype)
        A = tl.where(causal, mm(qd, tl.trans(kd), None, PRECISION, UPCAST), 0.0)
        num = mm(A.to(dtype), v, None, PRECISION, UPCAST)
        num = mm(qd, S.to(dtype), num, PRECISION, UPCAST)
        if NORMALIZE:
            den = tl.sum(A, 1) + tl.sum(qd.to(tl.float32) * z[None, :], 1)
            num = num / (den + eps)[:, None]
            if vb == 0:
                tl.store(DEN + bh.to(tl.int64) * T + rows, den, mask=r_ok)
        tl.store(O + v_base + vo_off, num.to(O.dtype.element_ty), mask=vo_mask)
        S = mm(tl.trans(kd), v, S, PRECISION, UPCAST)
        z = z + tl.sum(kd.to(tl.float32), 0)

    if STORE_FINAL:
        tl.store(ST + s_ptrs, S, mask=s_mask)
        if vb == 0:
            tl.store(ZT + bh.to(tl.int64) * DK + offs_k, z, mask=k_ok)


@triton.jit
def chunk_linear_attn_bwd_kernel(
    Q,
    K,
    V,
    DO,
    DEN,
    DELTA,
    S0,
    Z0,
    DST,
    DZT,
    DQ,
    DK_,
    DVO,
    DS0,
    DZ0,
    stride_qb,
    stride_qh,
    stride_qt,
    stride_vb,
    stride_vh,
    stride_vt,
    stride_part,
    H,
    T,
    eps,
    DK: tl.constexpr,
    DV: tl.constexpr,
    BT: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    NV: tl.constexpr,
    NORMALIZE: tl.constexpr,
    FEATURE: tl.constexpr,
    HAS_INIT: tl.constexpr,
    HAS_DFINAL: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """Programs 0..NV-1 of axis 0: dq for value block pid (chunks in order).
    Programs NV..2NV-1: dk, dv for value block pid - NV (chunks in reverse), and the
    gradient of the initial state. DQ and DK_ are [NV, B, H, T, DK] partial sums (fp32)
    when NV > 1, else gradients in the input dtype laid out like q."""
    pid = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    is_dq = pid < NV
    vb = tl.where(is_dq, pid, pid - NV)
    offs_t = tl.arange(0, BT)
    offs_k = tl.arange(0, BK)
    offs_v = vb * BV + tl.arange(0, BV)
    k_ok = offs_k < DK
    v_ok = offs_v < DV
    q_base = b.to(tl.int64) * stride_qb + h.to(tl.int64) * stride_qh
    v_base = b.to(tl.int64) * stride_vb + h.to(tl.int64) * stride_vh
    part = vb.to(tl.int64) * stride_part
    dtype = Q.dtype.element_ty
    lower = offs_t[:, None] >= offs_t[None, :]  # [i, j]: j <= i
    s_ptrs = bh.to(tl.int64) * DK * DV + offs_k[:, None] * DV + offs_v[None, :]
    s_mask = k_ok[:, None] & v_ok[None, :]
    NT = tl.cdiv(T, BT)

    if is_dq:
        if HAS_INIT:
            S = tl.load(S0 + s_ptrs, mask=s_mask, other=0.0).to(tl.float32)
            z = tl.load(Z0 + bh.to(tl.int64) * DK + offs_k, mask=k_ok, other=0.0).to(tl.float32)
        else:
            S = tl.zeros([BK, BV], dtype=tl.float32)
            z = tl.zeros([BK], dtype=tl.float32)
    else:
        if HAS_DFINAL:
            S = tl.load(DST + s_ptrs, mask=s_mask, other=0.0).to(tl.float32)  # dS
            z = tl.load(DZT + bh.to(tl.int64) * DK + offs_k, mask=k_ok, other=0.0)
            z = tl.where(vb == 0, z.to(tl.float32), 0.0)  # dz, carried by value block 0
        else:
            S = tl.zeros([BK, BV], dtype=tl.float32)
            z = tl.zeros([BK], dtype=tl.float32)

    for it in range(0, NT):
        c = tl.where(is_dq, it, NT - 1 - it)
        rows = c * BT + offs_t
        r_ok = rows < T
        qk_mask = r_ok[:, None] & k_ok[None, :]
        qk_off = rows[:, None] * stride_qt + offs_k[None, :]
        q_raw = tl.load(Q + q_base + qk_off, mask=qk_mask, other=0.0)
        k_raw = tl.load(K + q_base + qk_off, mask=qk_mask, other=0.0)
        qd = tl.where(qk_mask, _feature(q_raw, FEATURE), 0.0).to(dtype)
        kd = tl.where(qk_mask, _feature(k_raw, FEATURE), 0.0).to(dtype)
        vo_mask = r_ok[:, None] & v_ok[None, :]
        vo_off = rows[:, None] * stride_vt + offs_v[None, :]
        v = tl.load(V + v_base + vo_off, mask=vo_mask, other=0.0)
        do = tl.load(DO + v_base + vo_off, mask=vo_mask, other=0.0)
        if NORMALIZE:
            r = 1.0 / (tl.load(DEN + bh.to(tl.int64) * T + rows, mask=r_ok, other=0.0) + eps)
            g = (do.to(tl.float32) * r[:, None]).to(dtype)
            # DELTA = rowsum(do * o) over all of V; gden = -r * DELTA. The normaliser's terms
            # do not depend on V: value block 0 carries them, the others get gden = 0.
            gden = -r * tl.load(DELTA + bh.to(tl.int64) * T + rows, mask=r_ok, other=0.0)
            gden = tl.where(vb == 0, gden, 0.0)
        else:
            g = do
            gden = tl.zeros([BT], dtype=tl.float32)
        if is_dq:
            dA = mm(g, tl.trans(v), None, PRECISION, UPCAST) + gden[:, None]
            dA = tl.where(lower, dA, 0.0)
            dq = mm(dA.to(dtype), kd, None, PRECISION, UPCAST)
            dq = mm(g, tl.trans(S.to(dtype)), dq, PRECISION, UPCAST)
            dq = dq + gden[:, None] * z[None, :]
            if FEATURE == 1:
                dq = dq * _feature_grad(q_raw, FEATURE)
            if NV == 1:
                tl.store(DQ + q_base + qk_off, dq.to(DQ.dtype.element_ty), mask=qk_mask)
            else:
                tl.store(DQ + part + q_base + qk_off, dq, mask=qk_mask)
            S = mm(tl.trans(kd), v, S, PRECISION, UPCAST)
            z = z + tl.sum(kd.to(tl.float32), 0)
        else:
            # S, z hold dS, dz: the gradients flowing into the state after this chunk
            A = tl.where(lower, mm(qd, tl.trans(kd), None, PRECISION, UPCAST), 0.0)
            dv = mm(tl.trans(A.to(dtype)), g, None, PRECISION, UPCAST)
            dv = mm(kd, S.to(dtype), dv, PRECISION, UPCAST)
            tl.store(DVO + v_base + vo_off, dv.to(DVO.dtype.element_ty), mask=vo_mask)
            dA = mm(g, tl.trans(v), None, PRECISION, UPCAST) + gden[:, None]
            dA = tl.where(lower, dA, 0.0)
            dk = mm(tl.trans(dA.to(dtype)), qd, None, PRECISION, UPCAST)
            dk = mm(v, tl.trans(S.to(dtype)), dk, PRECISION, UPCAST)
            dk = dk + z[None, :]
            if FEATURE == 1:
                dk = dk * _feature_grad(k_raw, FEATURE)
            if NV == 1:
                tl.store(DK_ + q_base + qk_off, dk.to(DK_.dtype.element_ty), mask=qk_mask)
            else:
                tl.store(DK_ + part + q_base + qk_off, dk, mask=qk_mask)
            S = mm(tl.trans(qd), g, S, PRECISION, UPCAST)
            z = z + tl.sum(qd.to(tl.float32) * gden[:, None], 0)

    if HAS_INIT and not is_dq:
        tl.store(DS0 + s_ptrs, S, mask=s_mask)
        if vb == 0:
            tl.store(DZ0 + bh.to(tl.int64) * DK + offs_k, z, mask=k_ok)


def _feature_id(feature_map: str | None) -> int:
    return {None: 0, "elu1": 1}[feature_map]


def chunk_linear_attn_fwd(q, k, v, s0, z0, normalize, eps, feature_map, output_final_state):
    B, H, T, K = q.shape
    V = v.shape[-1]
    cfg = config(K, V, B * H)
    BT, BV = cfg.pop("BT"), cfg.pop("BV")
    o = torch.empty_like(v)
    den = torch.empty(B, H, T, device=q.device, dtype=torch.float32) if normalize else o
    st = torch.empty(B, H, K, V, device=q.device, dtype=torch.float32) if output_final_state else o
    zt = torch.empty(B, H, K, device=q.device, dtype=torch.float32) if output_final_state else o
    has_init = s0 is not None
    grid = (triton.cdiv(V, BV), B * H)
    chunk_linear_attn_fwd_kernel[grid](
        q,
        k,
        v,
        o,
        den,
        s0 if has_init else o,
        z0 if has_init else o,
        st,
        zt,
        q.stride(0),
        q.stride(1),
        q.stride(2),
        v.stride(0),
        v.stride(1),
        v.stride(2),
        H,
        T,
        eps,
        DK=K,
        DV=V,
        BT=BT,
        BK=pow2(K),
        BV=BV,
        NORMALIZE=normalize,
        FEATURE=_feature_id(feature_map),
        HAS_INIT=has_init,
        STORE_FINAL=output_final_state,
        PRECISION=dot_precision(q.dtype),
        UPCAST=dot_upcast(q.dtype),
        **cfg,
    )
    return o, (den if normalize else None), ((st, zt) if output_final_state else None)


def chunk_linear_attn_bwd(q, k, v, o, den, s0, z0, do, dst, dzt, normalize, eps, feature_map):
    B, H, T, K = q.shape
    V = v.shape[-1]
    cfg = config(K, V, B * H)
    BT, BV = cfg.pop("BT"), cfg.pop("BV")
    NV = triton.cdiv(V, BV)
    if normalize:
        delta = torch.empty(B, H, T, device=q.device, dtype=torch.float32)
        row_dot_kernel[(triton.cdiv(T, 64), B * H)](
            o,
            do,
            delta,
            *o.stride()[:3],
            *do.stride()[:3],
            H,
            T,
            D=V,
            BLOCK_M=64,
            BLOCK_D=pow2(V),
        )
    else:
        delta = den = o  # unused
    if NV == 1:
        dq, dk = torch.empty_like(q), torch.empty_like(k)
        stride_part = 0
    else:
        dq = torch.empty(NV, *q.shape, device=q.device, dtype=torch.float32)
        dk = torch.empty(NV, *k.shape, device=q.device, dtype=torch.float32)
        stride_part = dq.stride(0)
    dv = torch.empty_like(v)
    has_init = s0 is not None
    has_dfinal = dst is not None
    ds0 = torch.empty(B, H, K, V, device=q.device, dtype=torch.float32) if has_init else o
    dz0 = torch.empty(B, H, K, device=q.device, dtype=torch.float32) if has_init else o
    chunk_linear_attn_bwd_kernel[(2 * NV, B * H)](
        q,
        k,
        v,
        do,
        den,
        delta,
        s0 if has_init else o,
        z0 if has_init else o,
        dst if has_dfinal else o,
        dzt if has_dfinal else o,
        dq,
        dk,
        dv,
        ds0,
        dz0,
        q.stride(0),
        q.stride(1),
        q.stride(2),
        v.stride(0),
        v.stride(1),
        v.stride(2),
        stride_part,
        H,
        T,
        eps,
        DK=K,
        DV=V,
        BT=BT,
        BK=pow2(K),
        BV=BV,
        NV=NV,
        NORMALIZE=normalize,
        FEATURE=_feature_id(feature_map),
        HAS_INIT=has_init,
        HAS_DFINAL=has_dfinal,
        PRECISION=dot_precision(q.dtype),
        UPCAST=dot_upcast(q.dtype),
        **cfg,
    )
    if NV > 1:
        dq = dq.sum(0).to(q.dtype)
        dk = dk.sum(0).to(k.dtype)
    return dq, dk, dv, (ds0 if has_init else None), (dz0 if has_init else None)


class ChunkLinearAttnFunction(torch.autograd.Function):
    """Causal chunked linear attention with the Triton kernels; see the module docstring."""

    @staticmethod
    def forward(ctx, q, k, v, s0, z0, normalize, eps, feature_map, output_final_state):
        q, k, v = (t.contiguous() for t in (q, k, v))
        if s0 is not None:
            s0, z0 = s0.float().contiguous(), z0.float().contiguous()
        o, den, final = chunk_linear_attn_fwd(
            q, k, v, s0, z0, normalize, eps, feature_map, output_final_state
        )
        ctx.save_for_backward(q, k, v, o, den, s0, z0)
        ctx.cfg = (normalize, eps, feature_map)
        if final is None:
            return o, None, None
        return o, final[0], final[1]

    @staticmethod
    def backward(ctx, do, dst, dzt):
        q, k, v, o, den, s0, z0 = ctx.saved_tensors
        normalize, eps, feature_map = ctx.cfg
        if dst is not None or dzt is not None:
            B, H, T, K = q.shape
            V = v.shape[-1]
            dst = torch.zeros(B, H, K, V, device=q.device) if dst is None else dst.float()
            dzt = torch.zeros(B, H, K, device=q.device) if dzt is None else dzt.float()
            dst, dzt = dst.contiguous(), dzt.contiguous()
        dq, dk, dv, ds0, dz0 = chunk_linear_attn_bwd(
            q, k, v, o, den, s0, z0, do.contiguous(), dst, dzt, normalize, eps, feature_map
        )
        return dq, dk, dv, ds0, dz0, None, None, None, None


def segments_for(B: int, H: int, T: int, K: int, BT: int = 64) -> int:
    """How many sequence segments the kernel path runs at once: 1 (one walk) unless K > 64
    and B*H < SEGMENT_BELOW_ROWS, then enough for ~SEGMENT_ROWS rows, at most MAX_SEGMENTS
    and at least MIN_SEGMENT_CHUNKS chunks of BT positions per segment (see above)."""
    if K <= 64 or B * H >= SEGMENT_BELOW_ROWS:
        return 1
    by_rows = -(-SEGMENT_ROWS // (B * H))
    by_length = T // (MIN_SEGMENT_CHUNKS * BT)
    return max(1, min(by_rows, MAX_SEGMENTS, by_length))


def triton_chunk_linear_attn(
    q,
    k,
    v,
    *,
    normalize=True,
    initial_state=None,
    output_final_state=False,
    eps=1e-6,
    feature_map=None,
    segments=None,
):
    """Kernel path of `chunk_linear_attn` (same arguments and results, minus chunk_size).

    segments: None picks `segments_for` the shape (the interpreter always walks once, as its
    tiles are not the GPU's); an int > 1 runs the sequence-parallel form
    (`triton_segmented.py`) with that many segments, 1 the one-walk kernel."""
    if segments is None:
        B, H, T, K = q.shape
        segments = 1 if interpreting() else segments_for(B, H, T, K, config(K, v.shape[-1])["BT"])
    if segments > 1:
        from deepnotes.ops.linear_attention.triton_segmented import segmented_chunk_linear_attn

        return segmented_chunk_linear_attn(
            q, k, v, segments=segments, normalize=normalize, initial_state=initial_state,
            output_final_state=output_final_state, eps=eps, feature_map=feature_map,
        )  # fmt: skip
    s0 = z0 = None
    if initial_state is not None:
        s0, z0 = initial_state
    o, st, zt = ChunkLinearAttnFunction.apply(
        q, k, v, s0, z0, normalize, eps, feature_map, output_final_state
    )
    if not output_final_state:
        return o, None
    # the state is accumulated in fp32 and returned in the inputs' dtype, like the torch form
    return o, (st.to(q.dtype), zt.to(q.dtype))
