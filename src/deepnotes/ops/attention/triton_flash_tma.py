"""The FlashAttention-2 forward with Hopper's tensor-memory-accelerator (TMA) loads.

The same algorithm and outputs as `triton_flash.flash_attn_fwd_kernel` (o and lse, so the
backward is shared), but q, k, v and o are read and written through host-built tensor
descriptors over [B*H, T, D] instead of pointer arithmetic. On sm_90 Triton then lowers each
tile load to one asynchronous bulk copy issued by a single thread into shared memory (with
an mbarrier to wait on), where pointer loads become per-thread `cp.async` copies: fewer
instructions in the loop and address generation off the warps that run the matrix products.
TMA also clips tiles at the tensor's edges (zero-filled reads, dropped writes), so ragged
T and D < BLOCK_D need no load masks; the score mask still hides keys past T_k.

`warp_specialize=True` asks Triton to split the key loop into a producer warp group (the TMA
loads) and consumer warp groups (matrix products and softmax), FlashAttention-3's
producer/consumer layout (Shah et al. 2024, section 3.1). Whether Triton 3.6 does so on
sm_90 for this loop, and whether either variant is faster than the pointer kernel, is what
`deepnotes bench kernels --flash-variants tma,tma-ws` measures; neither is the default.

Descriptors need 16-byte aligned strides: D * itemsize must be a multiple of 16 (D % 8 == 0
in fp16/bf16); `tma_problem` says why not otherwise.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from deepnotes.ops.attention.triton_flash import (
    LOG2E,
    _finish,
    _key_range,
    _online_softmax,
    fwd_config,
)
from deepnotes.ops.backend import interpreting
from deepnotes.ops.triton_utils import dot_precision, dot_upcast, mm, pow2

VARIANTS = {"tma": False, "tma-ws": True}  # name -> warp_specialize


def tma_problem(q: torch.Tensor) -> str | None:
    """Why the TMA forward cannot take q (and k, v of its shape and dtype); None if it can."""
    if not interpreting():
        if q.device.type != "cuda":
            return "TMA loads need a CUDA device"
        if torch.cuda.get_device_capability(q.device)[0] < 9:
            return "TMA loads need sm_90 or newer"
    try:
        from triton.tools.tensor_descriptor import TensorDescriptor  # noqa: F401
    except ImportError:
        return f"Triton {triton.__version__} has no host tensor descriptors"
    if (q.shape[-1] * q.element_size()) % 16:
        return f"D * itemsize = {q.shape[-1] * q.element_size()} bytes, not a multiple of 16"
    return None


@triton.jit
def _fwd_inner_tma(
    acc,
    l_i,
    m_i,
    q,
    k_desc,
    v_desc,
    bh,
    offs_m,
    lo,
    hi,
    T_k,
    off,
    qk_scale,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    MASKED: tl.constexpr,
    CAUSAL: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    WS: tl.constexpr,
):
    offs_n0 = tl.arange(0, BLOCK_N)
    for start_n in tl.range(lo, hi, BLOCK_N, warp_specialize=WS):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        k = k_desc.load([bh, start_n, 0]).reshape(BLOCK_N, BLOCK_D)
        s = mm(q, tl.trans(k), None, PRECISION, UPCAST)
        p, acc, l_i, m_i = _online_softmax(
            s, qk_scale, acc, l_i, m_i, offs_m, start_n + offs_n0, T_k, off, MASKED, CAUSAL
        )
        v = v_desc.load([bh, start_n, 0]).reshape(BLOCK_N, BLOCK_D)
        acc = mm(p.to(v.dtype), v, acc, PRECISION, UPCAST)
    return acc, l_i, m_i


@triton.jit
def flash_attn_fwd_tma_kernel(
    q_desc,
    k_desc,
    v_desc,
    o_desc,
    LSE,
    T_q,
    T_k,
    off,
    qk_scale,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    CAUSAL: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    WS: tl.constexpr,
):
    # Heaviest (last) query blocks first, as in the pointer kernel.
    start_m = (tl.num_programs(0) - 1 - tl.program_id(0)) * BLOCK_M
    bh = tl.program_id(1)
    offs_m = start_m + tl.arange(0, BLOCK_M)
    q = q_desc.load([bh, start_m, 0]).reshape(BLOCK_M, BLOCK_D)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    n_full, hi = _key_range(start_m, T_k, off, BLOCK_M, BLOCK_N, CAUSAL)
    acc, l_i, m_i = _fwd_inner_tma(
        acc, l_i, m_i, q, k_desc, v_desc, bh, offs_m, 0, n_full, T_k, off, qk_scale,
        BLOCK_N, BLOCK_D, False, CAUSAL, PRECISION, UPCAST, WS,
    )  # fmt: skip
    acc, l_i, m_i = _fwd_inner_tma(
        acc, l_i, m_i, q, k_desc, v_desc, bh, offs_m, n_full, hi, T_k, off, qk_scale,
        BLOCK_N, BLOCK_D, True, CAUSAL, PRECISION, UPCAST, WS,
    )  # fmt: skip
    o, lse = _finish(acc, l_i, m_i)
    o_desc.store([bh, start_m, 0], o.to(q.dtype).reshape(1, BLOCK_M, BLOCK_D))
    tl.store(LSE + bh.to(tl.int64) * T_q + offs_m, lse, mask=offs_m < T_q)


def _descriptor(t: torch.Tensor, rows: int, cols: int):
    """A TMA descriptor over contiguous t [B, H, T, D] as [B*H, T, D], tiles [1, rows, cols]."""
    from triton.tools.tensor_descriptor import TensorDescriptor

    B, H, T, D = t.shape
    flat = t.view(B * H, T, D)
    return TensorDescriptor(flat, list(flat.shape), list(flat.stride()), [1, rows, cols])


def flash_attn_fwd_tma(q, k, v, causal: bool, scale: float, warp_specialize: bool = False):
    """As `triton_flash.flash_attn_fwd` (q, k, v contiguous [B, H, T, D] of one dtype) ->
    (o [B, H, T_q, D], lse [B, H, T_q] fp32, log2 units), with TMA loads."""
    why = tma_problem(q)
    if why is not None:
        raise ValueError(f"flash_attn_fwd_tma: {why}")
    B, H, T_q, D = q.shape
    T_k = k.shape[2]
    o = torch.empty_like(q)
    lse = torch.empty(B, H, T_q, device=q.device, dtype=torch.float32)
    cfg = fwd_config(D)
    BM, BN, BD = cfg.pop("BLOCK_M"), cfg.pop("BLOCK_N"), pow2(D)
    flash_attn_fwd_tma_kernel[(triton.cdiv(T_q, BM), B * H)](
        _descriptor(q, BM, BD),
        _descriptor(k, BN, BD),
        _descriptor(v, BN, BD),
        _descriptor(o, BM, BD),
        lse,
        T_q,
        T_k,
        T_k - T_q,
        scale * LOG2E,
        BLOCK_M=BM,
        BLOCK_N=BN,
        BLOCK_D=BD,
        CAUSAL=causal,
        PRECISION=dot_precision(q.dtype),
        UPCAST=dot_upcast(q.dtype),
        WS=warp_specialize,
        **cfg,
    )
    return o, lse
