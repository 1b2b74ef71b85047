"""mamba_ssm's CUDA selective scan as a benchmark peer (not a code path of the library).

`mamba_selective_scan` calls the compiled extension `selective_scan_cuda` (mamba_ssm 2.3.2's
csrc/selective_scan, built alone by scripts/build_mamba_scan.sh) the way mamba_ssm's
`SelectiveScanFn` does (mamba_ssm/ops/selective_scan_interface.py, `SelectiveScanFn.forward`
and `.backward`), without importing mamba_ssm itself (which pulls in einops, causal_conv1d and
transformers). Inputs, outputs and layout are those of `deepnotes.ops.ssm.selective_scan`:
u, delta, z: [Bt, Dm, L]; A: [Dm, N] fp32; B, C: [Bt, N, L] in u's dtype; D, delta_bias: [Dm]
fp32. It returns y: [Bt, Dm, L] in u's dtype, and with `return_last_state` also the last
state [Bt, Dm, N] (fp32, no gradient flows through it, as in mamba_ssm).
"""

from __future__ import annotations

import importlib

import torch

from deepnotes.utils.errors import error_line

EXTENSION = "selective_scan_cuda"


def _ext():
    return importlib.import_module(EXTENSION)


def available() -> str | None:
    """None when `selective_scan_cuda` imports, else why not."""
    try:
        _ext()
    except Exception as e:  # noqa: BLE001 - an ImportError or a bad build (OSError): absent
        return (
            f"{EXTENSION} not importable ({error_line(e)}); build it with "
            "scripts/build_mamba_scan.sh and put its output folder on PYTHONPATH"
        )
    return None


class MambaSelectiveScanFn(torch.autograd.Function):
    """mamba_ssm's `SelectiveScanFn` (selective_scan_interface.py), for 3-d B and C."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state):
        if u.stride(-1) != 1:
            u = u.contiguous()
        if delta.stride(-1) != 1:
            delta = delta.contiguous()
        if D is not None:
            D = D.contiguous()
        if B.stride(-1) != 1:
            B = B.contiguous()
        if C.stride(-1) != 1:
            C = C.contiguous()
        if z is not None and z.stride(-1) != 1:
            z = z.contiguous()
        # [Bt, N, L] -> [Bt, 1, N, L]: one group of B and C shared by all channels
        ctx.squeeze_B = B.dim() == 3
        ctx.squeeze_C = C.dim() == 3
        if ctx.squeeze_B:
            B = B.unsqueeze(1)
        if ctx.squeeze_C:
            C = C.unsqueeze(1)
        out, x, *rest = _ext().fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        ctx.delta_softplus = delta_softplus
        ctx.has_z = z is not None
        last_state = x[:, :, -1, 1::2]  # x: [Bt, Dm, chunks, 2N], (decay, state) pairs
        if not ctx.has_z:
            ctx.save_for_backward(u, delta, A, B, C, D, delta_bias, x)
            return (out, last_state) if return_last_state else out
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, x, out)
        out_z = rest[0]
        return (out_z, last_state) if return_last_state else out_z

    @staticmethod
    def backward(ctx, dout, *args):
        if not ctx.has_z:
            u, delta, A, B, C, D, delta_bias, x = ctx.saved_tensors
            z = out = None
        else:
            u, delta, A, B, C, D, z, delta_bias, x, out = ctx.saved_tensors
        if dout.stride(-1) != 1:
            dout = dout.contiguous()
        # dz=None: the extension allocates it; recompute_out_z=False, as in mamba_ssm
        du, ddelta, dA, dB, dC, dD, ddelta_bias, *rest = _ext().bwd(
            u, delta, A, B, C, D, z, delta_bias, dout, x, out, None, ctx.delta_softplus, False
        )
        dz = rest[0] if ctx.has_z else None
        dB = dB.squeeze(1) if ctx.squeeze_B else dB
        dC = dC.squeeze(1) if ctx.squeeze_C else dC
        return (
            du,
            ddelta,
            dA,
            dB,
            dC,
            dD if D is not None else None,
            dz,
            ddelta_bias if delta_bias is not None else None,
            None,
            None,
        )


def mamba_selective_scan(
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
    """mamba_ssm's `selective_scan_fn` through `selective_scan_cuda` (benchmarks only).

    Same arguments and results as `deepnotes.ops.ssm.selective_scan`; CUDA tensors only, and
    the extension's own dtype rules (A, D, delta_bias fp32; delta, B, C, z in u's dtype).
    """
    return MambaSelectiveScanFn.apply(
        u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state
    )


__all__ = ["MambaSelectiveScanFn", "available", "mamba_selective_scan"]
