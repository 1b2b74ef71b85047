"""Reference selective scan (Mamba, Gu & Dao 2023, Algorithm 2): the sequential loop.

Per channel d and state index n, with input-dependent step delta_t, B_t and C_t:

    dA_t = exp(delta_t * A[d, n])                     (zero-order hold for A)
    h_t  = dA_t * h_{t-1} + delta_t * B_t[n] * u_t    (Euler step for B)
    y_t  = sum_n C_t[n] * h_t[n] + D[d] * u_t
    out  = y * silu(z)                                (when z is given)

The signature follows mamba_ssm's `selective_scan_fn` / `selective_scan_ref`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def check_scan_inputs(u, delta, A, B, C, D=None, z=None, delta_bias=None) -> None:
    """Raise ValueError naming the first argument whose shape does not fit the others."""
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be [Bt, Dm, L], got shape {tuple(u.shape)}")
    Bt, Dm, L = u.shape
    if L == 0:
        raise ValueError("selective_scan: empty sequence (L = 0)")
    if delta.shape != u.shape:
        raise ValueError(
            f"selective_scan: delta must match u {tuple(u.shape)}, got {tuple(delta.shape)}"
        )
    if A.dim() != 2 or A.shape[0] != Dm:
        raise ValueError(f"selective_scan: A must be [Dm={Dm}, N], got {tuple(A.shape)}")
    if A.is_complex():
        raise ValueError("selective_scan: A must be real (complex A is not supported)")
    N = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.shape != (Bt, N, L):
            raise ValueError(
                f"selective_scan: {name} must be [Bt, N, L] = {(Bt, N, L)}, got {tuple(t.shape)}"
            )
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (Dm,):
            raise ValueError(f"selective_scan: {name} must be [Dm] = ({Dm},), got {tuple(t.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"selective_scan: z must match u {tuple(u.shape)}, got {tuple(z.shape)}")
    for name, t in (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C)):
        if not t.is_floating_point():
            raise ValueError(f"selective_scan: {name} must be floating point, got {t.dtype}")


def compute_dtype(u: torch.Tensor) -> torch.dtype:
    """fp64 stays fp64; everything else is accumulated in fp32 (as mamba_ssm does)."""
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def prepare_delta(delta, delta_bias, delta_softplus: bool) -> torch.Tensor:
    """delta + bias, then softplus if asked: the step size actually used. [Bt, Dm, L]."""
    if delta_bias is not None:
        delta = delta + delta_bias.to(delta.dtype)[:, None]
    return F.softplus(delta) if delta_softplus else delta


def finish_output(y, u, D, z, dtype_in):
    """y + D u, gated by silu(z), cast back to the input dtype."""
    if D is not None:
        y = y + u * D.to(y.dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y.to(dtype_in)


def naive_selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
):
    """Sequential reference selective scan, one time step per loop iteration.

    u, delta, z: [Bt, Dm, L]; A: [Dm, N] real (negative for a stable scan);
    B, C: [Bt, N, L] (input-dependent, shared across channels); D, delta_bias: [Dm].
    Returns y: [Bt, Dm, L] in u's dtype, and with `return_last_state` also the final
    state h_L: [Bt, Dm, N] (fp32, or fp64 for fp64 inputs).
    """
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    dtype_in = u.dtype
    cd = compute_dtype(u)
    u, delta, A, B, C = (t.to(cd) for t in (u, delta, A, B, C))
    delta = prepare_delta(delta, delta_bias, delta_softplus)
    Bt, Dm, L = u.shape
    h = u.new_zeros(Bt, Dm, A.shape[1])
    ys = []
    for t in range(L):
        dA = torch.exp(delta[:, :, t, None] * A)  # [Bt, Dm, N]
        dBu = (delta[:, :, t] * u[:, :, t])[:, :, None] * B[:, None, :, t]
        h = dA * h + dBu
        ys.append((h * C[:, None, :, t]).sum(-1))  # [Bt, Dm]
    out = finish_output(torch.stack(ys, dim=-1), u, D, z, dtype_in)
    return (out, h) if return_last_state else out
