"""FAVOR+ (Choromanski et al. 2021, "Rethinking Attention with Performers"): softmax attention
approximated by positive orthogonal random features.

exp(q . k) = E_w[phi(q) . phi(k)] with phi(x)_i = exp(w_i . x - |x|^2 / 2) / sqrt(m), w_i ~ N(0, I)
(Lemma 1 of the paper); the m rows of W are drawn in orthogonal blocks (sec. 2.4). With
q, k scaled by K^(-1/4), phi(q) . phi(k) estimates exp(q . k / sqrt(K)), and attention
becomes linear attention with these features.

Stabilisers. exp(w . x - |x|^2/2) overflows easily, so constants are subtracted in log space.
A constant per query cancels between numerator and denominator (we subtract each query's
max over features). For keys the constant must be shared by every key a query sees:
- non-causal: one global max over keys and features;
- causal: c_j = max over keys s <= j and features, a running (prefix) max. Query i uses keys
  scaled by exp(-c_i), so it never looks at later positions. In the chunked form the
  accumulated state is rescaled by exp(c_old - c_new) whenever the running max grows; every
  exponent is <= 0, so nothing overflows.
The stabilisers are constants of the estimate (the output does not depend on them), so they
are detached from autograd.

Shapes: q, k: [B, H, T, K], v: [B, H, T, V], W: [m, K].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from deepnotes.ops.attention.masked import masked_softmax


def orthogonal_random_features(
    m: int, d: int, *, generator: torch.Generator | None = None, device=None, dtype=None
) -> torch.Tensor:
    """W: [m, d], rows in blocks of d mutually orthogonal vectors, each row's norm drawn as the
    norm of a d-dimensional standard Gaussian (so rows are marginally N(0, I))."""
    blocks = []
    for _ in range(math.ceil(m / d)):
        g = torch.randn(d, d, generator=generator, dtype=torch.float64)
        Q, _ = torch.linalg.qr(g)
        blocks.append(Q.T)
    W = torch.cat(blocks, 0)[:m]
    norms = torch.randn(m, d, generator=generator, dtype=torch.float64).norm(dim=1)
    return (W * norms[:, None]).to(device=device, dtype=dtype or torch.get_default_dtype())


def favor_logits(x: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """log(sqrt(m) phi(x)) = x' W^T - |x'|^2 / 2 with x' = x K^(-1/4). x: [.., K] -> [.., m]."""
    x = x * x.shape[-1] ** -0.25
    return x @ W.T - x.square().sum(-1, keepdim=True) / 2


# Causal FAVOR+ runs over blocks of this many tokens (a multiple of the chunk length).
BLOCK_TOKENS = 1024


def finite_neg_inf(dtype) -> float:
    return torch.finfo(dtype).min / 4  # finite "minus infinity": exp() of it is 0, no NaN


def safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den with rows whose denominator is 0 (no visible key) giving 0, not NaN."""
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def favor_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    W: torch.Tensor,
    *,
    causal: bool,
    key_mask: torch.Tensor | None = None,
    chunk_size: int = 64,
) -> torch.Tensor:
    """FAVOR+ attention in O(T m V) time. key_mask: [B, T] bool (True = real) -> o [B, H, T, V]."""
    if not causal:
        phi_q, ak, valid, v1 = _features(q, k, v, W, key_mask)
        c = ak.detach().amax(dim=(-2, -1), keepdim=True)  # one constant for all keys
        phi_k = torch.exp(ak - c) * valid[..., None]
        num = phi_q @ (phi_k.transpose(-1, -2) @ v1)
        return safe_div(num[..., :-1], num[..., -1:])
    # Blocks of `block` tokens, the state (S, c) carried between them: the same sums, but
    # each block's [.., block, m] features and temporaries stay cache-sized, so the time per
    # token does not grow once a whole sequence's features would outgrow the CPU caches.
    block = max(chunk_size, BLOCK_TOKENS // chunk_size * chunk_size)
    state, outs = None, []
    for s0 in range(0, q.shape[2], block):
        sl = slice(s0, s0 + block)
        mask = None if key_mask is None else key_mask[:, sl]
        phi_q, ak, valid, v1 = _features(q[:, :, sl], k[:, :, sl], v[:, :, sl], W, mask)
        num, state = _causal_favor(phi_q, ak, valid, v1, chunk_size, state)
        outs.append(safe_div(num[..., :-1], num[..., -1:]))
    return torch.cat(outs, 2) if len(outs) > 1 else outs[0]


def _features(q, k, v, W, key_mask):
    """-> phi_q [B, H, T, m] (per-query stabilised), key logits ak [B, H, T, m] (padded keys
    at a finite -inf), valid [B, H, T] and v1 = [v, 1] [B, H, T, V+1]."""
    aq = favor_logits(q, W)
    phi_q = torch.exp(aq - aq.amax(-1, keepdim=True).detach())  # per-query constant cancels
    ak = favor_logits(k, W)  # [B, H, T, m]
    valid = torch.ones_like(ak[..., 0], dtype=torch.bool)
    if key_mask is not None:
        valid = valid & key_mask[:, None, :]
    ak = ak.masked_fill(~valid[..., None], finite_neg_inf(ak.dtype))
    v1 = torch.cat([v, torch.ones_like(v[..., :1])], -1)  # last column carries the normaliser
    return phi_q, ak, valid, v1


def _causal_favor(phi_q, ak, valid, v1, C: int, state=None):
    """sum_{j<=i} phi_q_i . exp(ak_j - c_i) v1_j by chunks, c = running max of ak.

    state: None, or (S, c) after the earlier positions: S [B, H, m, V+1] normalised at c
    [B, H], their running max. Returns (o [B, H, T, V+1], state after these positions).
    """
    B, H, T, m = ak.shape
    pad = (-T) % C
    neg = finite_neg_inf(ak.dtype)
    if pad:
        phi_q = F.pad(phi_q, (0, 0, 0, pad))
        ak = F.pad(ak, (0, 0, 0, pad), value=neg)
        valid = F.pad(valid, (0, pad), value=False)
        v1 = F.pad(v1, (0, 0, 0, pad))
    c = ak.detach().amax(-1)
    if state is not None:  # the running max continues from the earlier positions
        c = torch.maximum(c, state[1][..., None])
    c = c.cummax(-1).values  # [B, H, T'], non-decreasing
    phi_k = torch.exp(ak - c[..., None]) * valid[..., None]  # entries <= 1
    G = phi_q.shape[2] // C
    qc, kc, vc = (t.reshape(B, H, G, C, -1) for t in (phi_q, phi_k, v1))
    cc = c.view(B, H, G, C)
    # Intra-chunk: A_ij = phi_q_i . phi_k_j * exp(c_j - c_i), j <= i (exponent <= 0).
    diff = cc[..., None, :] - cc[..., :, None]  # [.., i, j] = c_j - c_i
    causal = torch.ones(C, C, dtype=torch.bool, device=ak.device).tril()
    decay = torch.exp(diff.masked_fill(~causal, float("-inf")))
    out = ((qc @ kc.transpose(-1, -2)) * decay) @ vc
    # Inter-chunk: state of earlier chunks, kept normalised at the running max of its end.
    c_end = cc[..., -1]  # [B, H, G]
    to_end = torch.exp(cc - c_end[..., None])[..., None]  # exp(c_j - c_end) <= 1, j in chunk
    dS = (kc * to_end).transpose(-1, -2) @ vc  # [B, H, G, m, V+1]
    c0 = torch.full_like(c_end[..., :1], neg) if state is None else state[1][..., None]
    c_prev = torch.cat([c0, c_end[..., :-1]], -1)
    rescale = torch.exp(c_prev - c_end)[..., None, None].unbind(2)  # factors <= 1
    # unbind, not dS[:, :, g]: each indexing op's backward would fill a full-size gradient.
    S = torch.zeros_like(dS[:, :, 0]) if state is None else state[0]
    S_before = []
    for dS_g, r_g in zip(dS.unbind(2), rescale, strict=True):
        S_before.append(S)
        S = S * r_g + dS_g  # state after chunk g, renormalised from c_end(g-1) to c_end(g)
    S_before = torch.stack(S_before, 2)  # [B, H, G, m, V+1]
    from_prev = torch.exp(c_prev[..., None] - cc)[..., None]  # exp(c_end(g-1) - c_i) <= 1
    out = out + (qc @ S_before) * from_prev
    return out.reshape(B, H, G * C, -1)[:, :, :T], (S, c_end[..., -1])


def naive_favor_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    W: torch.Tensor,
    *,
    causal: bool,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The explicit T x T form: A_ij = phi(q_i) . phi(k_j), o = A v / A 1, in log space.

    log A_ij = logsumexp_r(a_q[i, r] + a_k[j, r]) - log m, normalised over the allowed j by a
    softmax (which is A v / A 1 without any overflow). Memory O(T^2 m): for tests.
    """
    aq, ak = favor_logits(q, W), favor_logits(k, W)
    logA = torch.logsumexp(aq[..., :, None, :] + ak[..., None, :, :], dim=-1)
    T = q.shape[-2]
    allowed = torch.ones(T, T, dtype=torch.bool, device=q.device)
    if causal:
        allowed = allowed.tril()
    allowed = allowed[None, None]
    if key_mask is not None:
        allowed = allowed & key_mask[:, None, None, :]
    return masked_softmax(logA, allowed) @ v
