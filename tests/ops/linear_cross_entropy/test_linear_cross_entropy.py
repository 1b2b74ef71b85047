"""linear_cross_entropy (chunked LM head + loss) against F.cross_entropy on full logits."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from deepnotes.ops.cross_entropy import (
    linear_cross_entropy,
    peak_bytes,
    torch_linear_cross_entropy,
)
from tests.helpers import TOLERANCE, assert_close, rel_rms

f32, f64 = torch.float32, torch.float64


def _inputs(N, D, V, dtype, *, bias, ignore_frac=0.0):
    h = torch.randn(N, D, dtype=dtype, requires_grad=True)
    w = (torch.randn(V, D, dtype=dtype) / D**0.5).requires_grad_(True)
    b = torch.randn(V, dtype=dtype, requires_grad=True) if bias else None
    t = torch.randint(0, V, (N,))
    if ignore_frac:
        t[torch.rand(N) < ignore_frac] = -100
    return h, w, b, t


def _loss_and_grads(fn, h, w, b, t, g_out, **kw):
    leaves = [x.detach().clone().requires_grad_(True) for x in (h, w, b) if x is not None]
    hh, ww, *bb = leaves
    loss = fn(hh, ww, t, bias=bb[0] if bb else None, **kw)
    grads = torch.autograd.grad(loss * g_out, leaves)
    return [loss.detach(), *grads]


@pytest.mark.parametrize("dtype", [f32, f64])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(
    "N,D,V,chunk,bias,ignore",
    [
        (37, 16, 50, 8, False, 0.0),  # 37 rows = 4 chunks of 8 + 5
        (64, 24, 33, 64, True, 0.0),  # one chunk
        (50, 8, 101, 7, True, 0.3),  # awkward chunk, ignored targets, bias
        (10, 16, 40, 1000, False, 0.5),  # chunk larger than N
    ],
)
def test_matches_full_logits(N, D, V, chunk, bias, ignore, reduction, dtype, seed):
    """Loss and every gradient equal the plain full-logits form, scaled by a random grad."""
    h, w, b, t = _inputs(N, D, V, dtype, bias=bias, ignore_frac=ignore)
    g_out = torch.rand((), dtype=dtype) + 0.5  # backward must scale by the incoming gradient
    ours = _loss_and_grads(
        linear_cross_entropy, h, w, b, t, g_out, chunk_size=chunk, reduction=reduction
    )
    ref = _loss_and_grads(torch_linear_cross_entropy, h, w, b, t, g_out, reduction=reduction)
    names = ["loss", "dh", "dw", "db"]
    for name, a, r in zip(names, ours, ref, strict=False):
        assert a.dtype == r.dtype, name
        assert_close(a, r, tol=10 * TOLERANCE[dtype], what=f"{name} {dtype} {reduction}")


def test_ignored_rows_get_zero_grad_and_do_not_count(seed):
    h, w, _, t = _inputs(20, 8, 30, f64, bias=False)
    t[::3] = 7  # never ignored by default; make some rows ignored with a custom index
    t[1::4] = 5
    ours = _loss_and_grads(linear_cross_entropy, h, w, None, t, 1.0, chunk_size=6, ignore_index=5)
    ref = _loss_and_grads(torch_linear_cross_entropy, h, w, None, t, 1.0, ignore_index=5)
    for a, r in zip(ours, ref, strict=True):
        assert_close(a, r, tol=10 * TOLERANCE[f64])
    assert (ours[1][t == 5] == 0).all()


def test_only_some_inputs_need_grad(seed):
    """weight frozen: no dW is formed, dh still right; no_grad: just the loss."""
    h, w, _, t = _inputs(30, 8, 20, f64, bias=False)
    w = w.detach()
    hh = h.detach().requires_grad_(True)
    (dh,) = torch.autograd.grad(linear_cross_entropy(hh, w, t, chunk_size=7), [hh])
    hr = h.detach().requires_grad_(True)
    (dh_ref,) = torch.autograd.grad(torch_linear_cross_entropy(hr, w, t), [hr])
    assert_close(dh, dh_ref, tol=10 * TOLERANCE[f64])
    with torch.no_grad():
        loss = linear_cross_entropy(h, w, t, chunk_size=7)
    assert not loss.requires_grad
    assert_close(loss, torch_linear_cross_entropy(h.detach(), w, t), tol=10 * TOLERANCE[f64])


def test_autocast_bf16_close_to_fp64(seed):
    """Under bf16 autocast the matmuls run in bf16, like the LM's head: close to fp64, and
    no further from it than the plain form under the same autocast (2x margin)."""
    h, w, _, t = _inputs(96, 32, 300, f32, bias=False)
    h64, w64 = h.detach().double(), w.detach().double()
    ref = _loss_and_grads(torch_linear_cross_entropy, h64, w64, None, t, 1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = _loss_and_grads(linear_cross_entropy, h, w, None, t, 1.0, chunk_size=40)
        plain = _loss_and_grads(torch_linear_cross_entropy, h, w, None, t, 1.0)
    assert ours[1].dtype == f32 and ours[2].dtype == f32  # grads in the leaves' dtype
    for name, a, p, r in zip(["loss", "dh", "dw"], ours, plain, ref, strict=True):
        tol = max(TOLERANCE[torch.bfloat16], 2 * rel_rms(p, r))
        assert_close(a, r, tol=tol, what=name)


@pytest.mark.parametrize(
    "bad,match",
    [
        (dict(h=torch.randn(2, 3, 4)), "must be \\[N, D\\]"),
        (dict(w=torch.randn(5, 3)), "D = 4 but weight has D = 3"),
        (dict(t=torch.zeros(3, dtype=torch.long)), "targets must be"),
        (dict(t=torch.zeros(4)), "targets must be"),
        (dict(b=torch.zeros(4)), "bias must be"),
        (dict(chunk_size=0), "chunk_size"),
        (dict(reduction="none"), "reduction"),
        (dict(h=torch.zeros(4, 4, dtype=torch.long)), "floating point"),
    ],
)
def test_bad_inputs(bad, match):
    args = dict(h=torch.randn(4, 4), w=torch.randn(5, 4), t=torch.zeros(4, dtype=torch.long))
    kw = {k: bad.pop(k) for k in ("b", "chunk_size", "reduction") if k in bad}
    args.update(bad)
    if "b" in kw:
        kw["bias"] = kw.pop("b")
    with pytest.raises(ValueError, match=match):
        linear_cross_entropy(args["h"], args["w"], args["t"], **kw)


class _LargestTensor(TorchDispatchMode):
    """Records the most elements of any tensor an op produces."""

    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.numel = max(self.numel, t.numel())
        return out


def _largest(fn, h, w, t, **kw):
    h = h.detach().requires_grad_(True)
    w = w.detach().requires_grad_(True)
    with _LargestTensor() as probe:
        fn(h, w, t, **kw).backward()
    return probe.numel


def test_never_makes_full_logits(seed):
    """No op of the forward or backward makes a tensor as large as the [N, V] logits: the
    largest is a chunk's [C, V] (or dW [V, D]). The plain form does make [N, V] (the probe
    works). peak_bytes turns this into bytes."""
    N, D, V, C = 256, 8, 100, 32
    h, w, _, t = _inputs(N, D, V, f32, bias=False)
    assert _largest(torch_linear_cross_entropy, h, w, t) >= N * V
    assert _largest(linear_cross_entropy, h, w, t, chunk_size=C) == max(C * V, V * D, N * D)
    assert peak_bytes(N, V, D, chunk_size=C) < peak_bytes(N, V, D, fused=False)
