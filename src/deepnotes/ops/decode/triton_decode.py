"""Flash-decoding (split-KV) Triton kernels: one query per (batch, head) against a KV cache.

A decode step reads the whole cache for a single query row, so FlashAttention's grid of
(query block, batch x head) has only B x H programs: at batch 1 and 12 heads an H100's 132
SMs sit mostly idle while each program walks 64k keys alone. Flash-decoding (Dao, Haziza,
Massa, Sizov 2023) splits the keys too:

1. `decode_split_kernel`, grid (n_splits, B x H): each program walks its slice of the cache
   in BLOCK_N-key tiles with the online softmax of FlashAttention (running max m, sum l,
   output acc, base-2 exponentials with log2(e) folded into the scale) and writes the
   slice's normalised output o_s = acc / l [D] and log-sum-exp lse_s = m + log2(l) (fp32;
   -inf and zeros for a slice past the row's valid length).
2. `decode_combine_kernel`, grid (B x H): o = sum_s 2^(lse_s - M) o_s / sum_s 2^(lse_s - M),
   M = max_s lse_s; a row with no valid key gets zeros.

The query is a single row, so q . k is an elementwise product and a row sum over the
[BLOCK_N, D] tile (no `tl.dot`, whose tiles need 16 rows): the step is bound by reading K and
V, which these loads stream contiguously. GQA: head h reads KV head h // (H / H_kv).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from deepnotes.ops.backend import interpreting
from deepnotes.ops.triton_utils import pow2

LOG2E = 1.4426950408889634
MAX_HEAD_DIM = 256
MAX_SPLITS = 256  # partial results per row (the combine kernel holds them in one tile)
# launch settings of the split kernel (`scripts/tune_kernels.py --ops decode` sweeps them):
# BLOCK_N keys per tile (0 = 8k fp32 elements per tile, `block_n`), warps per program,
# software-pipeline stages of the key loop (None = Triton's default), and the programs per
# SM that the default number of splits aims at
CONFIG = {"BLOCK_N": 0, "num_warps": 4, "num_stages": None, "programs_per_sm": 2}


@triton.jit
def decode_split_kernel(
    Q, K, V, LENS, O_PART, LSE_PART,
    stride_qb, stride_qh,
    stride_kb, stride_kh, stride_kt,
    stride_vb, stride_vh, stride_vt,
    H, GROUP, N_SPLITS, SPLIT_LEN, qk_scale, LENGTH,
    HAS_LENS: tl.constexpr, D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    split = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    kvh = h // GROUP
    if HAS_LENS:  # a length per row; else every row has LENGTH keys
        length = tl.load(LENS + b)
    else:
        length = LENGTH
    lo = split * SPLIT_LEN
    hi = tl.minimum(lo + SPLIT_LEN, length)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    q = tl.load(Q + b.to(tl.int64) * stride_qb + h.to(tl.int64) * stride_qh + offs_d, mask=mask_d)
    q = q.to(tl.float32) * qk_scale  # scale * log2(e): exponentials in base 2
    k_base = K + b.to(tl.int64) * stride_kb + kvh.to(tl.int64) * stride_kh
    v_base = V + b.to(tl.int64) * stride_vb + kvh.to(tl.int64) * stride_vh
    m_i = tl.full([], float("-inf"), tl.float32)
    l_i = tl.full([], 0.0, tl.float32)
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    offs_n0 = tl.arange(0, BLOCK_N)
    for start in range(lo, hi, BLOCK_N):
        offs_n = start + offs_n0
        mask_n = offs_n < hi
        rows = offs_n.to(tl.int64)[:, None]
        tile_mask = mask_n[:, None] & mask_d[None, :]
        k = tl.load(k_base + rows * stride_kt + offs_d[None, :], mask=tile_mask, other=0.0)
        s = tl.sum(k.to(tl.float32) * q[None, :], 1)
        s = tl.where(mask_n, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 0))  # finite: the tile holds a valid key
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new)
        v = tl.load(v_base + rows * stride_vt + offs_d[None, :], mask=tile_mask, other=0.0)
        acc = acc * alpha + tl.sum(p[:, None] * v.to(tl.float32), 0)
        l_i = l_i * alpha + tl.sum(p, 0)
        m_i = m_new
    empty = l_i == 0.0
    o = tl.where(empty, 0.0, acc / tl.where(empty, 1.0, l_i))
    lse = tl.where(empty, float("-inf"), m_i + tl.log2(tl.where(empty, 1.0, l_i)))
    part = bh.to(tl.int64) * N_SPLITS + split
    tl.store(O_PART + part * D + offs_d, o, mask=mask_d)
    tl.store(LSE_PART + part, lse)


@triton.jit
def decode_combine_kernel(
    O_PART, LSE_PART, OUT, stride_ob, stride_oh, H, N_SPLITS,
    D: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    bh = tl.program_id(0)
    b = bh // H
    h = bh % H
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    mask_s = offs_s < N_SPLITS
    base = bh.to(tl.int64) * N_SPLITS
    lse = tl.load(LSE_PART + base + offs_s, mask=mask_s, other=float("-inf"))
    m = tl.max(lse, 0)
    none = m == float("-inf")  # no valid key in the row
    w = tl.where(none, 0.0, tl.exp2(lse - tl.where(none, 0.0, m)))
    mask = mask_s[:, None] & (offs_d[None, :] < D)
    o = tl.load(O_PART + (base + offs_s)[:, None] * D + offs_d[None, :], mask=mask, other=0.0)
    den = tl.sum(w, 0)
    out = tl.sum(w[:, None] * o, 0) / tl.where(none, 1.0, den)
    dst = OUT + b.to(tl.int64) * stride_ob + h.to(tl.int64) * stride_oh + offs_d
    tl.store(dst, out.to(OUT.dtype.element_ty), mask=offs_d < D)


def block_n(D: int) -> int:
    """Keys per tile: CONFIG["BLOCK_N"], else a [BLOCK_N, D] fp32 tile of 8k elements (64 keys
    at D = 128); 16 under the interpreter."""
    if interpreting():
        return 16
    return CONFIG["BLOCK_N"] or max(16, min(128, 8192 // pow2(D)))


def choose_splits(B: int, H: int, S: int, BLOCK_N: int, device: torch.device) -> int:
    """Splits per row so that about CONFIG["programs_per_sm"] programs run per SM, each with
    >= one tile."""
    sms = (
        torch.cuda.get_device_properties(device).multi_processor_count
        if device.type == "cuda"
        else 4
    )
    want = math.ceil(CONFIG["programs_per_sm"] * sms / (B * H))
    return max(1, min(want, math.ceil(S / BLOCK_N), MAX_SPLITS))


def split_len(S: int, n_splits: int, BLOCK_N: int) -> int:
    """Keys per split: S / n_splits rounded up to whole tiles."""
    return math.ceil(math.ceil(S / n_splits) / BLOCK_N) * BLOCK_N


def triton_flash_decode(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lens: torch.Tensor | None, S: int,
    *, scale: float, n_splits: int | None = None,
) -> torch.Tensor:  # fmt: skip
    """q [B, H, 1, D], k/v [B, H_kv, >= S, D] (last dim contiguous), lens [B] int32 on q's
    device (each <= S), or None when every row has S valid keys -> [B, H, 1, D] in q's
    dtype. S: the longest valid length."""
    B, H, _, D = q.shape
    BLOCK_N = block_n(D)
    n = choose_splits(B, H, S, BLOCK_N, q.device) if n_splits is None else n_splits
    n = max(1, min(n, math.ceil(S / BLOCK_N), MAX_SPLITS))
    L = split_len(S, n, BLOCK_N)
    n = math.ceil(S / L)  # rounding L up may leave trailing splits empty: drop them
    o_part = torch.empty(B * H, n, D, device=q.device, dtype=torch.float32)
    lse_part = torch.empty(B * H, n, device=q.device, dtype=torch.float32)
    out = torch.empty_like(q)
    BLOCK_D = pow2(D)
    warps = dict(num_warps=CONFIG["num_warps"])
    stages = {} if CONFIG["num_stages"] is None else dict(num_stages=CONFIG["num_stages"])
    decode_split_kernel[(n, B * H)](
        q, k, v, lens if lens is not None else q, o_part, lse_part,
        q.stride(0), q.stride(1),
        k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        H, H // k.shape[1], n, L, scale * LOG2E, S,
        HAS_LENS=lens is not None, D=D, BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D, **warps, **stages,
    )  # fmt: skip
    decode_combine_kernel[(B * H,)](
        o_part, lse_part, out, out.stride(0), out.stride(1), H, n,
        D=D, BLOCK_S=pow2(n, 2), BLOCK_D=BLOCK_D, **warps,
    )  # fmt: skip
    return out
