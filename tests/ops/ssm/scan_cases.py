"""Random selective-scan inputs shared by the Triton scan tests."""

from __future__ import annotations

import torch

# Mamba keeps A, D and delta_bias in fp32 whatever the activations' dtype.
PARAMS_FP32 = {"A", "D", "delta_bias"}


def scan_inputs(Bt, Dm, N, L, names, dtype=torch.float32, device="cpu", softplus=True):
    """The named inputs of `selective_scan` (u, delta, z: [Bt, Dm, L]; A: [Dm, N]; B, C:
    [Bt, N, L]; D, delta_bias: [Dm]) in `dtype`, except PARAMS_FP32 which stay fp32."""
    delta = torch.randn(Bt, Dm, L) * 0.5 - 1.0
    full = {
        "u": torch.randn(Bt, Dm, L),
        # a step size must be positive; without the softplus inside, apply it here
        "delta": delta if softplus else torch.nn.functional.softplus(delta),
        "A": -torch.exp(torch.randn(Dm, N) * 0.5),
        "B": torch.randn(Bt, N, L),
        "C": torch.randn(Bt, N, L),
        "D": torch.randn(Dm),
        "z": torch.randn(Bt, Dm, L),
        "delta_bias": torch.randn(Dm) * 0.3,
    }
    f32 = torch.float32
    return {k: full[k].to(device=device, dtype=f32 if k in PARAMS_FP32 else dtype) for k in names}


def scan_fn(impl, names, softplus: bool, last: bool, **kw):
    """impl (a selective_scan form) as a function of the named inputs in order, returning a
    tuple (y,) or (y, last state), as `values_and_grads` expects."""

    def fn(*args):
        r = impl(
            **dict(zip(names, args, strict=True)),
            delta_softplus=softplus,
            return_last_state=last,
            **kw,
        )
        return r if last else (r,)

    return fn


def scan_cotangents(Bt, Dm, N, L, last: bool, dtype=torch.float32, device="cpu"):
    """Random incoming gradients for `scan_fn`'s outputs: dy [Bt, Dm, L] in dtype, and, with
    the last state, d(h_last) [Bt, Dm, N] in fp32 (the state's dtype)."""
    cot = [torch.randn(Bt, Dm, L, device=device, dtype=dtype)]
    if last:
        cot.append(torch.randn(Bt, Dm, N, device=device))
    return cot
