"""`flash_decode`: one new query per row against a KV cache, split over the keys
(`triton_decode.py`) when the Triton backend is asked for, through SDPA otherwise;
`torch_split_decode` is the kernel's math in PyTorch (same splits, same log-sum-exp
combine), for the tests."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from deepnotes.ops.backend import cast_inputs, requested_backend, use_triton

TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _check(q, k, v) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            "flash_decode: q must be [B, H, 1, D] and the caches [B, H_kv, S, D]; got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    B, H, T, D = q.shape
    if T != 1:
        raise ValueError(f"flash_decode: one query per row (T = 1), got T = {T}")
    if k.shape != v.shape or k.shape[0] != B or k.shape[3] != D:
        raise ValueError(
            "flash_decode: k and v caches must both be [B, H_kv, S, D], B and D as q's; got "
            f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if H % k.shape[1]:
        raise ValueError(f"flash_decode: {H} query heads are not a multiple of {k.shape[1]}")


def _lengths(cache_len, B: int, S: int, device) -> tuple[torch.Tensor | None, int]:
    """-> (lengths [B] int32 on device, or None for an int: every row that long; the longest
    length as an int, without a sync: a tensor's longest is taken as S, the capacity)."""
    if isinstance(cache_len, int):
        if not 0 < cache_len <= S:
            raise ValueError(f"flash_decode: cache_len = {cache_len} not in 1..{S}")
        return None, cache_len
    if not isinstance(cache_len, torch.Tensor) or cache_len.shape != (B,):
        raise ValueError(f"flash_decode: cache_len must be an int or a [B] = [{B}] tensor")
    if cache_len.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"flash_decode: cache_len must be int32/int64, got {cache_len.dtype}")
    return cache_len.to(device=device, dtype=torch.int32), S


def _valid(lens: torch.Tensor, S: int) -> torch.Tensor:
    """[B, 1, 1, S] bool: key j of row b is valid iff j < lens[b]."""
    return (torch.arange(S, device=lens.device) < lens[:, None])[:, None, None, :]


def _expand_heads(k, v, H):
    g = H // k.shape[1]
    return (k, v) if g == 1 else (k.repeat_interleave(g, 1), v.repeat_interleave(g, 1))


def sdpa_decode(q, k, v, lens: torch.Tensor | None, S: int, *, scale: float) -> torch.Tensor:
    """The PyTorch path: SDPA over the first S keys, keys past a row's length (lens [B], or
    None: none) masked; a row with no valid key gets zeros, as from the kernel."""
    k, v = _expand_heads(k[:, :, :S], v[:, :, :S], q.shape[1])
    if lens is None:
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    valid = _valid(lens, S)
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=valid, scale=scale)
    return torch.where(valid.any(-1, keepdim=True), o, 0)


def torch_split_decode(
    q, k, v, cache_len, *, scale: float | None = None, n_splits: int = 4, split_len=None
) -> torch.Tensor:
    """The kernel's algorithm in PyTorch, fp32 inside: the keys cut into n_splits slices of
    split_len (default S / n_splits, rounded up), each slice's softmax output o_s and
    log-sum-exp lse_s, then o = sum_s exp(lse_s - M) o_s / sum_s exp(lse_s - M)."""
    _check(q, k, v)
    B, H, _, D = q.shape
    S = k.shape[2]
    lens, S = _lengths(cache_len, B, S, q.device)
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    L = split_len or math.ceil(S / n_splits)
    n = math.ceil(S / L)
    k, v = _expand_heads(k[:, :, :S], v[:, :, :S], H)
    acc = torch.promote_types(q.dtype, torch.float32)
    s = (q.to(acc) @ k.to(acc).transpose(-1, -2))[:, :, 0] * scale  # [B, H, S]
    if lens is not None:
        s = s.masked_fill(~_valid(lens, S)[:, :, 0], float("-inf"))
    pad = n * L - S
    s = F.pad(s, (0, pad), value=float("-inf")).view(B, H, n, L)
    vp = F.pad(v.to(acc), (0, 0, 0, pad)).view(B, H, n, L, D)
    m = s.amax(-1, keepdim=True)  # [B, H, n, 1]; -inf for an empty slice
    m_safe = torch.where(torch.isfinite(m), m, 0)
    p = torch.exp(s - m_safe)
    l = p.sum(-1, keepdim=True)
    o_s = (p[..., None, :] @ vp)[..., 0, :] / torch.where(l > 0, l, 1)  # [B, H, n, D]
    lse = torch.where(l > 0, m_safe + torch.log(torch.where(l > 0, l, 1)), float("-inf"))
    M = lse.amax(2, keepdim=True)
    w = torch.exp(lse - torch.where(torch.isfinite(M), M, 0))  # [B, H, n, 1]
    o = (w * o_s).sum(2) / torch.where(w.sum(2) > 0, w.sum(2), 1)
    return o[:, :, None].to(q.dtype)


def triton_problem(q, *, forced: bool) -> str | None:
    from deepnotes.ops.decode.triton_decode import MAX_HEAD_DIM

    if q.shape[-1] > MAX_HEAD_DIM:
        return f"head dim {q.shape[-1]} > {MAX_HEAD_DIM}"
    if q.dtype not in TRITON_DTYPES:
        return f"dtype {q.dtype}; the kernel runs fp16/bf16/fp32"
    return None


def flash_decode(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    cache_len: int | torch.Tensor,
    *,
    scale: float | None = None,
    n_splits: int | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """softmax(q k^T * scale) v for one query per row over the valid part of a KV cache.

    q: [B, H, 1, D]; k_cache, v_cache: [B, H_kv, S, D] with H a multiple of H_kv (GQA: query
    head h reads KV head h // (H / H_kv)); cache_len: int (every row's valid length) or a
    [B] int tensor (keys j >= cache_len[b] are ignored; a row of length 0 gets zeros)
    -> [B, H, 1, D] in the inputs' common dtype (`cast_inputs`). scale: 1/sqrt(D) by
    default. n_splits: key slices per row for the kernel (None = about two programs per
    SM). backend: "auto" (SDPA: on an H200 the kernel ran at 0.21-0.45x SDPA's speed,
    docs/kernels.md) | "triton" (the kernel; also with $DEEPNOTES_KERNELS=triton) | "torch".
    """
    _check(q, k_cache, v_cache)
    q, k, v = cast_inputs(q, k_cache, v_cache)
    B, _, _, D = q.shape
    lens, S = _lengths(cache_len, B, k.shape[2], q.device)
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    if requested_backend(backend) == "auto":  # measured slower than SDPA: opt-in only
        return sdpa_decode(q, k, v, lens, S, scale=scale)
    if use_triton("flash_decode", backend, (q, k, v), lambda f: triton_problem(q, forced=f)):
        from deepnotes.ops.decode.triton_decode import triton_flash_decode

        q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
        return triton_flash_decode(q, k, v, lens, S, scale=scale, n_splits=n_splits)
    return sdpa_decode(q, k, v, lens, S, scale=scale)
