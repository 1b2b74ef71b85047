"""S4D and S4 convolution kernels, and the three ways to apply a linear time-invariant SSM.

A discrete LTI SSM x_t = dA x_{t-1} + dB u_t, y_t = Re(C x_t) is the causal convolution
y = K * u with kernel K_j = Re(C dA^j dB). Computing K is the heart of S4:

- S4D (Gu, Gupta, Goel, Re 2022): diagonal dA, so K_j = Re(sum_n C_n dB_n dA_n^j) is a
  Vandermonde product (`vandermonde_kernel`), O(N L).
- S4 (Gu, Goel, Re 2022): A = Lambda - P P^* (diagonal plus low rank, from HiPPO-LegS), bilinear
  discretisation. The kernel's generating function at the L roots of unity w_k,
      K^(w) = sum_j K_j w^j = C~ (I - dA w)^-1 dB,       C~ = C (I - dA^L),
  becomes, after the bilinear transform and the Woodbury identity, four Cauchy sums
      K^(w) = 2/(1+w) [k00 - k01 k10 / (1 + k11)],  k_ab = sum_n a_n b_n / (g(w) - Lambda_n),
      g(w) = (2/dt) (1-w)/(1+w),
  and K = iFFT(K^) (`s4_kernel`, Algorithm 1 of the paper), O((N + L) log) per channel.

Complex states come in conjugate pairs: we store the half with Im > 0 and sum both halves
(`cauchy_conj`, factor 2 Re for diagonal systems).

Applying the kernel:
- `fft_conv`: y = iFFT(FFT(u) FFT(K)) in O(L log L), causal or bidirectional. Causal only up
  to rounding: every output picks up ~1e-16-relative noise from every input.
- `chunk_lti_conv`: chunks of length l, an exact l x l Toeplitz product inside a chunk and the
  recurrent state passed between chunks; O(L (l + N)) work, and outputs depend on past inputs
  only, bit for bit.
- the recurrence itself, one step at a time (the mixers' `step` and `reference`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from deepnotes.ops.ssm.hippo import legs

S4D_INITS = ("lin", "inv")
_LOW = (torch.float16, torch.bfloat16, torch.complex32)


def _check_precision(name: str, *ts: torch.Tensor) -> None:
    """Kernels need fp32 or fp64: torch has no complex-half exp/FFT, and 8-11 mantissa bits
    cannot hold dA^j over thousands of steps. The mixers upcast; direct callers get told."""
    for t in ts:
        if t.dtype in _LOW:
            raise ValueError(
                f"{name}: {t.dtype} inputs are not supported; compute SSM kernels in "
                "float32 or float64 (the s4/s4d mixers upcast themselves)"
            )


# ----------------------------------------------------------------------- initialisations
def s4d_init(N: int, kind: str = "lin") -> torch.Tensor:
    """Diagonal A (the N/2 modes with Im > 0) of S4D-Lin or S4D-Inv: [N/2] complex128.

    lin: A_n = -1/2 + i pi n;  inv: A_n = -1/2 + i (N/pi) (N/(2n+1) - 1).
    """
    if N < 2 or N % 2:
        raise ValueError(f"s4d_init: state size N must be even and >= 2, got {N}")
    n = torch.arange(N // 2, dtype=torch.float64)
    if kind == "lin":
        imag = math.pi * n
    elif kind == "inv":
        imag = N / math.pi * (N / (2 * n + 1) - 1)
    else:
        raise ValueError(f"unknown S4D init {kind!r}; valid: {list(S4D_INITS)}")
    return torch.complex(torch.full_like(n, -0.5), imag)


def legs_nplr(N: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """HiPPO-LegS in diagonal-plus-low-rank form: (Lambda, P, B), each [N/2] complex128.

    A_legs = V (Lambda - P P^*) V^* with V unitary: A + p p^T (p_n = sqrt(n + 1/2)) is
    -I/2 plus a skew-symmetric matrix, whose eigenvectors V diagonalise it; P = V^* p,
    B = V^* B_legs. Only the N/2 eigenvalues with Im > 0 are kept (the rest are conjugates).
    """
    if N < 2 or N % 2:
        raise ValueError(f"legs_nplr: state size N must be even and >= 2, got {N}")
    A, B = legs(N)
    p = torch.sqrt(torch.arange(N, dtype=torch.float64) + 0.5)
    skew = A + p[:, None] * p[None, :] + 0.5 * torch.eye(N, dtype=torch.float64)
    w, V = torch.linalg.eigh(-1j * skew.to(torch.complex128))  # skew = V (i w) V^*
    keep = torch.argsort(w)[N // 2 :]  # Im(Lambda) = w > 0
    V = V[:, keep]
    Lambda = torch.complex(torch.full((N // 2,), -0.5, dtype=torch.float64), w[keep])
    Vh = V.conj().T
    return Lambda, Vh @ p.to(V.dtype), Vh @ B.to(V.dtype)


def dplr_full(Lambda, P, B):
    """Full N-dim complex system from the conjugate halves.

    Lambda, P, B: [..., N/2] -> A: [..., N, N] = diag(Lambda, conj Lambda) - p p^*, and
    B: [..., N] with p = (P, conj P), B = (B, conj B).
    """
    lam = torch.cat([Lambda, Lambda.conj()], -1)
    p = torch.cat([P, P.conj()], -1)
    A = torch.diag_embed(lam) - p[..., :, None] * p.conj()[..., None, :]
    return A, torch.cat([B, B.conj()], -1)


# ----------------------------------------------------------------------- kernels
def vandermonde_kernel(coef: torch.Tensor, log_dA: torch.Tensor, L: int) -> torch.Tensor:
    """K_j = Re(sum_n coef_n exp(j log_dA_n)), j < L. coef, log_dA: [..., M] -> [..., L].

    With coef = 2 C dB and dA = exp(log_dA), this is the S4D kernel (conjugate pairs summed).
    Memory O(M L) per channel (the Vandermonde matrix is formed explicitly).
    """
    _check_precision("vandermonde_kernel", coef, log_dA)
    j = torch.arange(L, device=log_dA.device, dtype=log_dA.real.dtype)
    V = torch.exp(log_dA[..., None] * j)  # [..., M, L]
    return torch.einsum("...m,...ml->...l", coef, V).real


def cauchy_conj(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """sum_n v_n / (z - w_n) + conj(v_n) / (z - conj(w_n)).

    v, w: [..., M]; z: [..., Lz] (broadcast against v's batch) -> [..., Lz].
    """
    zz = z[..., None, :]
    return (
        v[..., None] / (zz - w[..., None]) + v.conj()[..., None] / (zz - w.conj()[..., None])
    ).sum(-2)


def krylov(dA: torch.Tensor, b: torch.Tensor, L: int) -> torch.Tensor:
    """Columns dA^j b for j < L. dA: [..., N, N], b: [..., N] -> [..., N, L]."""
    out = [b]
    for _ in range(L - 1):
        out.append(torch.einsum("...nm,...m->...n", dA, out[-1]))
    return torch.stack(out, -1)


def s4_kernel(Lambda, P, B, C, dt, L: int) -> torch.Tensor:
    """S4 convolution kernel of length L via Cauchy sums + Woodbury + iFFT (bilinear dA).

    Lambda, P, B: [H, M] complex (conjugate halves, M = N/2); C: [..., H, M] complex
    (leading dims, e.g. directions, share A and B); dt: [H] real. Returns K: [..., H, L]
    with K_j = C_full dA^j dB (real).
    """
    _check_precision("s4_kernel", Lambda, P, B, C, dt)
    from deepnotes.ops.ssm.hippo import discretize

    M = Lambda.shape[-1]
    A_full, B_full = dplr_full(Lambda, P, B)
    dA, _ = discretize(A_full, B_full, dt, "bilinear")  # [H, N, N]
    C_full = torch.cat([C, C.conj()], -1)
    dAL = torch.linalg.matrix_power(dA, L)
    Ct = (C_full - torch.einsum("...hn,hnm->...hm", C_full, dAL))[..., :M]  # C (I - dA^L)
    k = torch.arange(L // 2 + 1, device=dt.device, dtype=dt.dtype)
    omega = torch.exp(torch.complex(torch.zeros_like(k), -2 * math.pi * k / L))  # [Lf]
    g = (2.0 / dt[:, None]) * (1 - omega) / (1 + omega)  # [H, Lf]
    k00 = cauchy_conj(Ct * B, g, Lambda)
    k01 = cauchy_conj(Ct * P, g, Lambda)
    k10 = cauchy_conj(P.conj() * B, g, Lambda)
    k11 = cauchy_conj(P.conj() * P, g, Lambda)
    Khat = 2.0 / (1 + omega) * (k00 - k01 * k10 / (1 + k11))
    return torch.fft.irfft(Khat, n=L)


def kernel_by_powers(dA: torch.Tensor, dB: torch.Tensor, C: torch.Tensor, L: int) -> torch.Tensor:
    """The definition K_j = Re(C dA^j dB) by repeated multiplication (for tests/references).

    Diagonal dA: [..., M] with dB, C: [..., M]; dense dA: [..., N, N] with dB, C: [..., N].
    Returns [..., L].
    """
    if dA.dim() == dB.dim():
        x, out = dB, []
        for _ in range(L):
            out.append((C * x).sum(-1).real)
            x = dA * x
        return torch.stack(out, -1)
    return torch.einsum("...n,...nl->...l", C, krylov(dA, dB, L)).real


# ----------------------------------------------------------------------- applying K
def fft_conv(u: torch.Tensor, K: torch.Tensor, K_rev: torch.Tensor | None = None) -> torch.Tensor:
    """Convolution by FFT. u: [B, H, T] real; K, K_rev: [H, T].

    y_t = sum_{j<=t} K_j u_{t-j}  (+ sum_{j>=0} K_rev_j u_{t+1+j} when K_rev is given: the
    strictly anti-causal half of a bidirectional SSM, as in S4's bidirectional layer).
    """
    _check_precision("fft_conv", u, K)
    T = u.shape[-1]
    k = F.pad(K, (0, T))
    if K_rev is not None:
        k = k + F.pad(K_rev.flip(-1), (T, 0))
    y = torch.fft.irfft(torch.fft.rfft(u, n=2 * T) * torch.fft.rfft(k, n=2 * T), n=2 * T)
    return y[..., :T]


def toeplitz_conv(
    u: torch.Tensor, K: torch.Tensor, K_rev: torch.Tensor | None = None
) -> torch.Tensor:
    """The same convolution as `fft_conv`, by an explicit T x T matrix (reference, O(T^2))."""
    T = u.shape[-1]
    i = torch.arange(T, device=u.device)
    lag = i[:, None] - i[None, :]  # t - s
    W = torch.where(lag >= 0, K[:, lag.clamp(min=0)], torch.zeros((), dtype=K.dtype))
    if K_rev is not None:
        fut = (-lag - 1).clamp(min=0)
        W = W + torch.where(lag < 0, K_rev[:, fut], torch.zeros((), dtype=K.dtype))
    return torch.einsum("hts,bhs->bht", W, u)


def diag_chunk_terms(log_dA, dB, Cout, l: int):
    """Chunk matrices of a diagonal system (S4D), all [H, ...] complex except K.

    log_dA, dB, Cout: [H, M] (y = Re(Cout x)). Returns (K [H, l] real, W_in [H, M, l],
    W_out [H, l, M], A_chunk [H, M]) as used by `chunk_lti_conv`.
    """
    j = torch.arange(l + 1, device=log_dA.device, dtype=log_dA.real.dtype)
    V = torch.exp(log_dA[..., None] * j)  # dA^j: [H, M, l+1]
    K = torch.einsum("hm,hml->hl", Cout * dB, V[..., :l]).real
    W_in = V[..., :l].flip(-1) * dB[..., None]  # dA^(l-1-s) dB
    W_out = (Cout[..., None] * V[..., 1:]).transpose(-1, -2)  # Cout dA^(t+1)
    return K, W_in, W_out, V[..., l]


def dense_chunk_terms(dA, dB, Cout, l: int):
    """Chunk matrices of a dense system (S4): dA [H, N, N], dB, Cout [H, N]; see above."""
    k = krylov(dA, dB, l)  # dA^j dB: [H, N, l]
    K = torch.einsum("hn,hnl->hl", Cout, k).real
    rows, r = [], Cout
    for _ in range(l):
        r = torch.einsum("hn,hnm->hm", r, dA)
        rows.append(r)
    return K, k.flip(-1), torch.stack(rows, 1), torch.linalg.matrix_power(dA, l)


def chunk_lti_conv(u, K, W_in, W_out, A_chunk) -> torch.Tensor:
    """Causal LTI SSM by chunks: exact within a chunk, recurrent across chunks.

    u: [B, H, T] real; K: [H, l] real (first l kernel taps); W_in: [H, M, l] (state at the
    chunk's end from each input); W_out: [H, l, M] (each output from the state before the
    chunk); A_chunk: [H, M] (diagonal) or [H, M, M]: dA^l. Returns y: [B, H, T].
    """
    Bsz, H, T = u.shape
    l = K.shape[-1]
    nc = -(-T // l)
    uc = F.pad(u, (0, nc * l - T)).view(Bsz, H, nc, l)
    i = torch.arange(l, device=u.device)
    lag = i[:, None] - i[None, :]
    Tk = torch.where(lag >= 0, K[:, lag.clamp(min=0)], torch.zeros((), dtype=K.dtype))
    y = torch.einsum("hts,bhcs->bhct", Tk, uc)
    if nc > 1:
        local = torch.einsum("hms,bhcs->bhcm", W_in, uc.to(W_in.dtype))  # [B, H, nc, M]
        s = torch.zeros_like(local[:, :, 0])
        starts = [s]
        for c in range(nc - 1):
            s = A_chunk * s if A_chunk.dim() == 2 else torch.einsum("hmn,bhn->bhm", A_chunk, s)
            s = s + local[:, :, c]
            starts.append(s)
        y = y + torch.einsum("htm,bhcm->bhct", W_out, torch.stack(starts, 2)).real
    return y.reshape(Bsz, H, nc * l)[..., :T]
