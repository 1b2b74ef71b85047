"""One chunk of the selective scan, step by step, with a hand-written backward (the CPU form).

The recurrence of a chunk of l steps, per (batch, channel, state):
    h_t = a_t h_{t-1} + b_t,   a_t = exp(delta_t A),   b_t = delta_t u_t B_t,
    y_t = sum_n C_t[n] h_t[n].
Its backward is the same recurrence run in reverse (the adjoint of a linear scan):
    g_t = dy_t C_t + a_{t+1} g_{t+1}   (g_t = dL/dh_t; g_l gets dL/dh_l too),
then every gradient is a product over the chunk, formed at once:
    dL/da_t = g_t h_{t-1},  dL/db_t = g_t,  dL/dC_t = sum_d dy_t h_t,  dL/dh0 = a_1 g_1,
and through a = exp(delta A), b = delta u B to delta, A, u and B.

Why its own backward: autograd through `scan_chunk_sequential` records two ops a step and,
under the activation checkpointing the chunk needs, runs the forward loop twice and a
backward of several ops a step, each on a strided [Bt, Dm, N] slice of a [Bt, Dm, l, N]
tensor. Here the chunk's tensors are laid out time-major ([l, Bt, Dm, N], so a step is one
contiguous block) and each loop is one fused multiply-add a step, written in place: the
forward loop runs once forward and once again in the backward (nothing but the inputs is
saved, so no checkpointing is needed), and the reverse loop once.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


def _decays_and_inputs(u, delta, A, B):
    """Time-major a, b [l, Bt, Dm, N] of a chunk (u, delta [Bt, Dm, l]; B [Bt, N, l])."""
    # contiguous first: an elementwise op keeps its input's memory order, so permuted views
    # would give [Bt, Dm, l, N]-ordered results and strided steps
    d = delta.permute(2, 0, 1).contiguous()[..., None]  # [l, Bt, Dm, 1]
    a = torch.exp(d * A)
    b = (d * u.permute(2, 0, 1).contiguous()[..., None]) * B.permute(2, 0, 1).contiguous()[
        :, :, None, :
    ]
    return a, b


def _walk(a, b, h0):
    """All states H [l, Bt, Dm, N] of h_t = a_t h_{t-1} + b_t from h0 [Bt, Dm, N]."""
    H = torch.empty(b.shape, dtype=b.dtype, device=b.device)  # contiguous, whatever b is
    h = h0
    for t in range(b.shape[0]):
        h = torch.addcmul(b[t], a[t], h, out=H[t])
    return H


class ChunkScan(torch.autograd.Function):
    """(u, delta [Bt, Dm, l], A [Dm, N], B, C [Bt, N, l], h0 [Bt, Dm, N]) ->
    (y [Bt, Dm, l] before D and z, h_l [Bt, Dm, N]); `scan_chunk`'s contract."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, h0):
        a, b = _decays_and_inputs(u, delta, A, B)
        H = _walk(a, b, h0)
        C_t = C.permute(2, 0, 1).contiguous()[:, :, None, :]  # [l, Bt, 1, N]
        y = (H * C_t).sum(-1)  # [l, Bt, Dm]
        ctx.save_for_backward(u, delta, A, B, C, h0)
        return y.permute(1, 2, 0), H[-1].clone()

    @staticmethod
    @once_differentiable  # in-place reverse scan: a second derivative raises, not misleads
    def backward(ctx, dy, dh_last):
        # sums over a middle axis and permuted views of the results, not einsum: on the CPU
        # einsum's transposes copied the [l, Bt, Dm, N] tensors, half the backward's time
        u, delta, A, B, C, h0 = ctx.saved_tensors
        a, b = _decays_and_inputs(u, delta, A, B)
        H = _walk(a, b, h0)  # recomputed: only the inputs were saved
        dy_t = dy.permute(2, 0, 1).contiguous()  # [l, Bt, Dm]
        C_t = C.permute(2, 0, 1).contiguous()[:, :, None, :]  # [l, Bt, 1, N]
        G = dy_t[..., None] * C_t  # dL/dh_t through y_t; then the reverse scan, in place
        if dh_last is not None:
            G[-1] += dh_last
        for t in range(G.shape[0] - 2, -1, -1):
            G[t].addcmul_(a[t + 1], G[t + 1])
        dh0 = a[0] * G[0]
        dlog = G * a  # dL/d(delta_t A) = g_t h_{t-1} a_t (a_t = exp(delta_t A))
        dlog[1:] *= H[:-1]
        dlog[0] *= h0
        d_t = delta.permute(2, 0, 1).contiguous()  # [l, Bt, Dm]
        du_t = d_t * u.permute(2, 0, 1)  # delta_t u_t
        B_t = B.permute(2, 0, 1).contiguous()[:, :, None, :]
        gB = (G * B_t).sum(-1)  # dL/d(delta_t u_t) [l, Bt, Dm]
        ddelta = (dlog * A).sum(-1) + gB * u.permute(2, 0, 1)
        du = gB * d_t
        dA = (dlog * d_t[..., None]).sum((0, 1))
        dB = (G * du_t[..., None]).sum(2)  # [l, Bt, N]
        dC = (H * dy_t[..., None]).sum(2)
        back = lambda t: t.permute(1, 2, 0)  # [l, Bt, X] -> [Bt, X, l]  # noqa: E731
        return back(du), back(ddelta), dA, back(dB), back(dC), dh0


def scan_chunk_recurrent(u, delta, A, B, C, h):
    """`scan_chunk`'s arguments and results, through `ChunkScan` (saves only its inputs)."""
    return ChunkScan.apply(u, delta, A, B, C, h)
