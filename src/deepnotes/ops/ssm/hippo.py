"""HiPPO (Gu, Dao, Ermon, Rudra, Re 2020): online function approximation as a linear ODE.

HiPPO keeps coefficients c(t) in R^N of the projection of the history f(s), s <= t, onto N
orthogonal polynomials under a measure. The coefficients obey a linear ODE. We return (A, B)
with the *signs folded in*, so the dynamics read

    LegT, LagT:   c'(t) = A c(t) + B f(t)
    LegS:         c'(t) = (1/t) (A c(t) + B f(t))

(the paper writes c' = -A c + B f with positive A; here A is already negated, as in the S4
code base). The closed forms:

- LegS (scaled Legendre, uniform measure on [0, t]; Theorem 2):
    A[n, k] = -sqrt(2n+1) sqrt(2k+1) if n > k,  -(n+1) if n == k,  0 if n < k;
    B[n] = sqrt(2n+1).
  Reconstruction: f(s) ~ sum_n c_n sqrt(2n+1) P_n(2 s/t - 1).
- LegT (translated Legendre, uniform measure on the window [t - theta, t]; Theorem 1, in
  the Legendre Memory Unit's normalisation, Voelker et al. 2019):
    A[n, k] = -(2n+1)/theta * (1 if n < k else (-1)^(n-k));   B[n] = (2n+1)(-1)^n / theta.
  Reconstruction: f(t - theta r) ~ sum_n c_n P_n(2r - 1), r in [0, 1] (r = 0 is now).
- LagT (Laguerre, exponentially decaying measure exp(-(t - s))):
    A[n, k] = -1 if n >= k else 0;   B[n] = 1.
  Reconstruction: f(t - x) ~ sum_n c_n L_n(x), x >= 0.

Discretisations of x' = A x + B f with step dt (`discretize`, dense A; `discretize_diag`,
diagonal A):
- forward Euler:  dA = I + dt A,                     dB = dt B
- backward Euler: dA = (I - dt A)^-1,                 dB = (I - dt A)^-1 dt B
- bilinear:       dA = (I - dt/2 A)^-1 (I + dt/2 A),  dB = (I - dt/2 A)^-1 dt B
- ZOH:            dA = exp(dt A),                     dB = A^-1 (exp(dt A) - I) B
  (computed as one matrix exponential of the block matrix [[A, B], [0, 0]] dt, which stays
  valid when A is singular).
"""

from __future__ import annotations

import torch

MEASURES = ("legs", "legt", "lagt")
METHODS = ("forward_euler", "backward_euler", "bilinear", "zoh")


def legs(N: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """HiPPO-LegS (A [N, N], B [N]): c' = (1/t)(A c + B f)."""
    q = torch.arange(N, dtype=dtype)
    r = torch.sqrt(2 * q + 1)
    A = -torch.where(q[:, None] > q[None, :], r[:, None] * r[None, :], torch.zeros((), dtype=dtype))
    A = A - torch.diag(q + 1)
    return A, r.clone()


def legt(N: int, theta: float = 1.0, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """HiPPO-LegT (A [N, N], B [N]) for a window of length theta: c' = A c + B f."""
    q = torch.arange(N, dtype=dtype)
    n, k = q[:, None], q[None, :]
    sign = torch.where(n < k, torch.ones((), dtype=dtype), (-1.0) ** (n - k))
    A = -(2 * n + 1) * sign / theta
    B = (2 * q + 1) * (-1.0) ** q / theta
    return A, B


def lagt(N: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """HiPPO-LagT (A [N, N], B [N]): c' = A c + B f, measure exp(-(t - s))."""
    return -torch.ones(N, N, dtype=dtype).tril(), torch.ones(N, dtype=dtype)


def transition(measure: str, N: int, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) of `measure` in "legs" | "legt" | "lagt" (kw: theta for legt)."""
    if N <= 0:
        raise ValueError(f"transition: N must be positive, got {N}")
    fns = {"legs": legs, "legt": legt, "lagt": lagt}
    if measure not in fns:
        raise ValueError(f"unknown HiPPO measure {measure!r}; valid: {list(fns)}")
    return fns[measure](N, **kw)


def _as_dt(dt, like: torch.Tensor, extra_dims: int) -> torch.Tensor:
    dt = torch.as_tensor(dt, dtype=like.real.dtype if like.is_complex() else like.dtype)
    return dt.to(like.device).reshape(dt.shape + (1,) * extra_dims)


def discretize(A, B, dt, method: str = "bilinear") -> tuple[torch.Tensor, torch.Tensor]:
    """Discretise x' = A x + B u with step dt.

    A: [..., N, N] (real or complex), B: [..., N], dt: float or tensor broadcastable to the
    batch shape [...]. Returns dA: [..., N, N], dB: [..., N].
    """
    if method not in METHODS:
        raise ValueError(f"unknown discretisation {method!r}; valid: {list(METHODS)}")
    if A.dim() < 2 or A.shape[-1] != A.shape[-2] or B.shape[-1] != A.shape[-1]:
        raise ValueError(f"discretize: need A [..., N, N], B [..., N]; got {A.shape}, {B.shape}")
    N = A.shape[-1]
    I = torch.eye(N, dtype=A.dtype, device=A.device)
    dtA = _as_dt(dt, A, 2) * A
    dtB = _as_dt(dt, A, 1) * B
    if method == "forward_euler":
        return I + dtA, dtB
    if method == "backward_euler":
        M = I - dtA
        return torch.linalg.inv(M), torch.linalg.solve(M, dtB)
    if method == "bilinear":
        M = I - dtA / 2
        return torch.linalg.solve(M, I + dtA / 2), torch.linalg.solve(M, dtB)
    # ZOH: exp([[A, B], [0, 0]] dt) = [[exp(A dt), A^-1 (exp(A dt) - I) B], [0, 1]]
    batch = torch.broadcast_shapes(dtA.shape[:-2], dtB.shape[:-1])
    top = torch.cat([dtA.expand(*batch, N, N), dtB.expand(*batch, N)[..., None]], -1)
    M = torch.cat([top, torch.zeros(*batch, 1, N + 1, dtype=top.dtype, device=top.device)], -2)
    E = torch.linalg.matrix_exp(M)
    return E[..., :N, :N], E[..., :N, N]


def discretize_diag(A, B, dt, method: str = "zoh") -> tuple[torch.Tensor, torch.Tensor]:
    """Discretise a diagonal system x_n' = A_n x_n + B_n u elementwise.

    A, B: [..., N] (real or complex); dt broadcastable to A. Returns dA, dB: [..., N].
    """
    if method not in METHODS:
        raise ValueError(f"unknown discretisation {method!r}; valid: {list(METHODS)}")
    dtA = dt * A
    if method == "forward_euler":
        return 1 + dtA, dt * B
    if method == "backward_euler":
        return 1 / (1 - dtA), dt * B / (1 - dtA)
    if method == "bilinear":
        return (1 + dtA / 2) / (1 - dtA / 2), dt * B / (1 - dtA / 2)
    return torch.exp(dtA), torch.expm1(dtA) / A * B


# ----------------------------------------------------------------------------- memory
def legendre(N: int, x: torch.Tensor) -> torch.Tensor:
    """Legendre polynomials P_0..P_{N-1} at x: [..., N] (Bonnet's recursion)."""
    P = [torch.ones_like(x), x]
    for n in range(1, N - 1):
        P.append(((2 * n + 1) * x * P[n] - n * P[n - 1]) / (n + 1))
    return torch.stack(P[:N], -1)


def laguerre(N: int, x: torch.Tensor) -> torch.Tensor:
    """Laguerre polynomials L_0..L_{N-1} at x: [..., N]."""
    L = [torch.ones_like(x), 1 - x]
    for n in range(1, N - 1):
        L.append(((2 * n + 1 - x) * L[n] - n * L[n - 1]) / (n + 1))
    return torch.stack(L[:N], -1)


def basis(measure: str, N: int, s: torch.Tensor) -> torch.Tensor:
    """Evaluation matrix E: [len(s), N] with f(s) ~ E @ c for HiPPO coefficients c.

    s is where to evaluate: for "legs" the relative position in the history (0 = start,
    1 = now); for "legt" the relative position in the window (0 = t - theta, 1 = now); for
    "lagt" the lag x >= 0 in the ODE's time units (0 = now).
    """
    if measure == "legs":
        return legendre(N, 2 * s - 1) * torch.sqrt(2 * torch.arange(N, dtype=s.dtype) + 1)
    if measure == "legt":
        return legendre(N, 1 - 2 * s)  # P_n(2r - 1) with r = 1 - s
    if measure == "lagt":
        return laguerre(N, s)
    raise ValueError(f"unknown HiPPO measure {measure!r}; valid: {list(MEASURES)}")


def hippo_online(
    f: torch.Tensor,
    measure: str,
    N: int,
    *,
    method: str = "bilinear",
    theta: float | None = None,
    dt: float = 1.0,
) -> torch.Tensor:
    """Run the discrete HiPPO memory over samples f: [..., L]; return states c: [..., L, N].

    Time advances one unit per sample. LegS uses step 1 at time k+1 (dA_k, dB_k discretise
    A/(k+1), B/(k+1)); LegT a window of `theta` samples; LagT a step of `dt` ODE time units
    per sample.
    """
    L = f.shape[-1]
    kw = {}
    if measure == "legt":
        if theta is None:
            raise ValueError("hippo_online: LegT needs the window length theta (in samples)")
        kw["theta"] = float(theta)
    A, B = transition(measure, N, **kw)
    A, B = A.to(f.dtype), B.to(f.dtype)
    if measure != "legs":
        dA, dB = discretize(A, B, dt if measure == "lagt" else 1.0, method)
    c = f.new_zeros(*f.shape[:-1], N)
    out = []
    block = 256  # LegS: discretise a block of steps at once (batched solves)
    for k in range(L):
        if measure == "legs":  # time-varying: c' = (1/t)(A c + B f) at t = k + 1
            if k % block == 0:
                t = torch.arange(k + 1, min(k + block, L) + 1, dtype=f.dtype)
                dAs, dBs = discretize(A, B, 1.0 / t, method)
            dA, dB = dAs[k % block], dBs[k % block]
        c = c @ dA.T + f[..., k, None] * dB
        out.append(c)
    return torch.stack(out, -2)


__all__ = [
    "MEASURES",
    "METHODS",
    "basis",
    "discretize",
    "discretize_diag",
    "hippo_online",
    "lagt",
    "laguerre",
    "legendre",
    "legs",
    "legt",
    "transition",
]
