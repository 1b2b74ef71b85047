"""S4 / S4D kernels: Vandermonde and Cauchy forms against the definition K_j = C dA^j dB, and
the FFT, chunked and explicit (Toeplitz) convolutions against each other."""

from __future__ import annotations

import math

import pytest
import torch

from deepnotes.ops.ssm.hippo import discretize, discretize_diag, legs
from deepnotes.ops.ssm.s4 import (
    cauchy_conj,
    chunk_lti_conv,
    dense_chunk_terms,
    diag_chunk_terms,
    dplr_full,
    fft_conv,
    kernel_by_powers,
    legs_nplr,
    s4_kernel,
    s4d_init,
    toeplitz_conv,
    vandermonde_kernel,
)
from tests.helpers import assert_close

real = torch.view_as_real


def random_dt(H):
    return torch.exp(torch.rand(H, dtype=torch.float64) * math.log(100)) * 1e-3


def s4d_system(H, N, init="lin", disc="zoh"):
    A = s4d_init(N, init).expand(H, -1)
    B = torch.randn(H, N // 2, dtype=torch.complex128)
    C = torch.randn(H, N // 2, dtype=torch.complex128)
    dt = random_dt(H)[:, None]
    dA, dB = discretize_diag(A, B, dt, disc)
    return dA, dB, 2 * C, (dt * A if disc == "zoh" else torch.log(dA))


def s4_system(H, N):
    Lam, P, B = (t.expand(H, -1) for t in legs_nplr(N))
    C = torch.randn(H, N // 2, dtype=torch.complex128)
    dt = random_dt(H)
    A_full, B_full = dplr_full(Lam, P, B)
    dA, dB = discretize(A_full, B_full, dt, "bilinear")
    return (Lam, P, B, C, dt), (dA, dB, torch.cat([C, C.conj()], -1))


def test_s4d_inits():
    N = 10
    lin, inv = s4d_init(N, "lin"), s4d_init(N, "inv")
    n = torch.arange(N // 2, dtype=torch.float64)
    assert torch.all(lin.real == -0.5) and torch.all(inv.real == -0.5)
    assert_close(lin.imag, math.pi * n)
    assert_close(inv.imag, N / math.pi * (N / (2 * n + 1) - 1))
    with pytest.raises(ValueError, match="even"):
        s4d_init(7)
    with pytest.raises(ValueError, match="unknown S4D init"):
        s4d_init(8, "real")


def test_legs_nplr_is_similar_to_legs():
    """Similarity invariants B^* A^k B agree (V is unitary), and so do the spectra."""
    N = 12
    A, B = legs(N)
    A_full, B_full = dplr_full(*legs_nplr(N))
    x, y = B.clone(), B_full.clone()
    for k in range(6):
        ref = (B * x).sum()
        got = (B_full.conj() * y).sum()
        assert abs(got.imag) < 1e-8 * abs(ref)
        assert got.real.item() == pytest.approx(ref.item(), rel=1e-9), k
        x, y = A @ x, A_full @ y
    eig = torch.linalg.eigvals(A_full).real.sort().values
    assert_close(eig, -torch.arange(N, 0, -1, dtype=torch.float64), tol=1e-4)


def test_cauchy_conj_is_the_full_sum(seed):
    v = torch.randn(3, 5, dtype=torch.complex128)
    w = torch.randn(3, 5, dtype=torch.complex128)
    z = torch.randn(3, 7, dtype=torch.complex128)
    vf, wf = torch.cat([v, v.conj()], -1), torch.cat([w, w.conj()], -1)
    ref = (vf[:, :, None] / (z[:, None, :] - wf[:, :, None])).sum(1)
    assert_close(real(cauchy_conj(v, z, w)), real(ref))


@pytest.mark.parametrize("init,disc", [("lin", "zoh"), ("inv", "zoh"), ("lin", "bilinear")])
@pytest.mark.parametrize("L", [1, 63, 128])
def test_vandermonde_kernel(init, disc, L, seed):
    dA, dB, Cout, log_dA = s4d_system(4, 16, init, disc)
    K = vandermonde_kernel(Cout * dB, log_dA, L)
    assert_close(K, kernel_by_powers(dA, dB, Cout, L))


@pytest.mark.parametrize("L", [1, 2, 63, 128])
def test_s4_cauchy_kernel_matches_powers(L, seed):
    (Lam, P, B, C, dt), (dA, dB, C_full) = s4_system(3, 16)
    C2 = torch.stack([C, torch.randn_like(C)])  # two output matrices (bidirectional)
    K = s4_kernel(Lam, P, B, C2, dt, L)
    assert K.shape == (2, 3, L)
    assert_close(K[0], kernel_by_powers(dA, dB, C_full, L), what="Cauchy vs powers")
    C_rev = torch.cat([C2[1], C2[1].conj()], -1)
    assert_close(K[1], kernel_by_powers(dA, dB, C_rev, L), what="second C")


def test_s4_kernel_fp32(seed):
    (Lam, P, B, C, dt), (dA, dB, C_full) = s4_system(4, 16)
    c64 = lambda t: t.to(torch.complex64)
    K32 = s4_kernel(c64(Lam), c64(P), c64(B), c64(C), dt.float(), 300)
    assert_close(K32, kernel_by_powers(dA, dB, C_full, 300).float(), tol=1e-4)


@pytest.mark.parametrize("T", [1, 63, 100])
def test_fft_conv_matches_toeplitz(T, seed):
    u = torch.randn(2, 3, T, dtype=torch.float64)
    K, K_rev = torch.randn(3, T, dtype=torch.float64), torch.randn(3, T, dtype=torch.float64)
    assert_close(fft_conv(u, K), toeplitz_conv(u, K), what="causal")
    assert_close(fft_conv(u, K, K_rev), toeplitz_conv(u, K, K_rev), what="bidirectional")
    # the anti-causal half reads strictly future inputs: y_t += sum_j K_rev[j] u[t+1+j]
    t = T // 2
    y = toeplitz_conv(u, torch.zeros_like(K), K_rev)[..., t]
    assert_close(y, (K_rev[:, : T - t - 1] * u[..., t + 1 :]).sum(-1))


@pytest.mark.parametrize("T,l", [(100, 16), (64, 64), (63, 64), (70, 7)])
def test_chunked_diag_matches_toeplitz(T, l, seed):
    dA, dB, Cout, log_dA = s4d_system(4, 8)
    u = torch.randn(2, 4, T, dtype=torch.float64)
    y = chunk_lti_conv(u, *diag_chunk_terms(log_dA, dB, Cout, min(l, T)))
    assert_close(y, toeplitz_conv(u, kernel_by_powers(dA, dB, Cout, T)))


@pytest.mark.parametrize("T,l", [(100, 16), (45, 8)])
def test_chunked_dense_matches_toeplitz(T, l, seed):
    _, (dA, dB, C_full) = s4_system(3, 8)
    u = torch.randn(2, 3, T, dtype=torch.float64)
    y = chunk_lti_conv(u, *dense_chunk_terms(dA, dB, C_full, l))
    assert_close(y, toeplitz_conv(u, kernel_by_powers(dA, dB, C_full, T)))


def test_chunked_is_causal_bit_exact(seed):
    dA, dB, Cout, log_dA = s4d_system(4, 8)
    dA, dB, Cout, log_dA = (t.to(torch.complex64) for t in (dA, dB, Cout, log_dA))
    terms = diag_chunk_terms(log_dA, dB, Cout, 16)
    u = torch.randn(2, 4, 70)
    y = chunk_lti_conv(u, *terms)
    for t in (0, 15, 16, 40):
        u2 = u.clone()
        u2[..., t + 1 :] = torch.randn_like(u2[..., t + 1 :])
        assert torch.equal(chunk_lti_conv(u2, *terms)[..., : t + 1], y[..., : t + 1])
