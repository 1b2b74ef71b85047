"""The public kernel ops under bf16 autocast with inputs of different dtypes.

Under autocast a model hands the ops mixed dtypes: the GAU mixer's q/k roles are fp32
(z * gamma + beta with fp32 parameters) while its v is bf16; rotary or a softplus can leave
fp32 beside bf16. `flash_attn`, `chunk_linear_attn` and `chunk_gau` cast their inputs to one
dtype at entry (`deepnotes.ops.backend.cast_inputs`); `selective_scan` reads each input in
its own dtype. Each check: the kernel against the float64 reference with the kernel rule of
`tests.ops.kernel_cases`, gradients returned in every input's own dtype, and `flash_attn` as an
opaque custom op under `torch.compile`.
"""

from __future__ import annotations

import pytest
import torch

import deepnotes.mixers as M
from deepnotes.ops.attention import flash_attn, naive_softmax_attn
from deepnotes.ops.gau import chunk_gau, naive_gau
from deepnotes.ops.linear_attention import chunk_linear_attn, naive_linear_attn
from deepnotes.ops.ssm import naive_selective_scan, selective_scan
from tests.helpers import assert_close
from tests.ops.kernel_cases import assert_rule, cpu, cpu_only, gpu, values_and_grads

bf16, f32 = torch.bfloat16, torch.float32
DEVICES = [cpu(id="interp"), gpu(id="cuda")]


def autocast_bf16(fn, device):
    """fn run under bf16 autocast (the backward then runs outside it, as in training)."""

    def run(*xs):
        with torch.autocast(device, dtype=torch.bfloat16):
            return fn(*xs)

    return run


def check(op, ref_op, xs, cot, names, device):
    """op(*xs, backend=...) under autocast: kernel vs torch path vs float64 reference."""
    ours = values_and_grads(autocast_bf16(lambda *a: op(*a, backend="triton"), device), xs, cot)
    lowp = values_and_grads(autocast_bf16(lambda *a: op(*a, backend="torch"), device), xs, cot)
    ref = values_and_grads(ref_op, [t.double() for t in xs], cot)
    assert ours[0].dtype == lowp[0].dtype == bf16, "the output takes the autocast dtype"
    for x, g in zip(xs, ours[1:], strict=False):
        assert g.dtype == x.dtype, "each gradient comes back in its input's dtype"
    assert_rule(ours, lowp, ref, names, bf16)


@pytest.mark.parametrize("device", DEVICES)
def test_flash_attn_mixed_dtypes_under_autocast(device, seed):
    B, H, T, D = 1, 2, 40, 32
    q, k, v = (torch.randn(B, H, T, D, device=device) for _ in range(3))
    xs = [q, k.to(bf16), v]  # fp32 q and v (e.g. after an fp32 rotary), bf16 k
    cot = [torch.randn(B, H, T, D, device=device)]

    def op(q, k, v, backend):
        return flash_attn(q, k, v, causal=True, backend=backend)

    def ref(q, k, v):
        return naive_softmax_attn(q, k, v, causal=True)

    check(op, ref, xs, cot, ["o", "dq", "dk", "dv"], device)


@cpu_only
def test_flash_attn_mixed_dtypes_without_autocast_promote():
    q, k, v = (torch.randn(1, 1, 24, 16) for _ in range(3))
    o = flash_attn(q, k.to(bf16), v, causal=False, backend="triton")
    assert o.dtype == f32  # fp32 with bf16 -> fp32, no error
    ref = naive_softmax_attn(q.double(), k.to(bf16).double(), v.double(), causal=False)
    assert_close(o, ref, tol=1e-5, what="promoted fp32 kernel")


@cpu_only
@pytest.mark.filterwarnings("error:Dynamo detected a call to a `functools")  # no cached calls
def test_flash_attn_is_one_opaque_op_under_torch_compile(seed):
    """Dynamo sees the custom op, not the Triton launches; aot_eager (fake tensors for the
    shapes, register_autograd for backward) gives the eager values and gradients."""
    torch._dynamo.reset()
    seen = []

    def record(gm, example_inputs):
        seen.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm

    def fn(q, k, v):
        return flash_attn(q, k, v, causal=True, backend="triton")

    xs = [torch.randn(1, 2, 33, 16) for _ in range(3)]
    xs[1] = xs[1].to(bf16)
    cot = [torch.randn(1, 2, 33, 16)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.compile(fn, backend=record, fullgraph=True)(*xs)
    assert "deepnotes.flash_attn_fwd.default" in seen, seen
    eager = values_and_grads(autocast_bf16(fn, "cpu"), xs, cot)
    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    traced = values_and_grads(autocast_bf16(compiled, "cpu"), xs, cot)
    for name, a, b in zip(["o", "dq", "dk", "dv"], traced, eager, strict=True):
        assert a.dtype == b.dtype
        assert_close(a, b, tol=1e-6, what=f"compiled {name}")


@pytest.mark.parametrize("device", DEVICES)
def test_chunk_linear_attn_mixed_dtypes_under_autocast(device, seed):
    B, H, T, K = 1, 2, 40, 16
    q, k = (torch.randn(B, H, T, K, device=device).sigmoid() for _ in range(2))  # phi >= 0
    v = torch.randn(B, H, T, K, device=device)
    xs = [q, k, v.to(bf16)]
    cot = [torch.randn(B, H, T, K, device=device)]

    def op(q, k, v, backend):
        return chunk_linear_attn(q, k, v, chunk_size=16, backend=backend)[0]

    def ref(q, k, v):
        return naive_linear_attn(q, k, v, causal=True)

    check(op, ref, xs, cot, ["o", "dq", "dk", "dv"], device)


@pytest.mark.parametrize("device", DEVICES)
def test_chunk_gau_mixed_dtypes_under_autocast(device, seed):
    """The GAU mixer's situation: fp32 roles, bf16 v (before the cast the kernel was skipped)."""
    B, T, S, E, C = 1, 40, 16, 32, 16
    roles = [torch.randn(B, T, S, device=device) for _ in range(4)]
    xs = [*roles, torch.randn(B, T, E, device=device).to(bf16)]
    cot = [torch.randn(B, T, E, device=device)]

    def op(*a, backend):
        return chunk_gau(*a, chunk_size=C, causal=True, backend=backend)

    def ref(*a):
        return naive_gau(*a, chunk_size=C, causal=True)

    check(op, ref, xs, cot, ["o", "dq_quad", "dk_quad", "dq_lin", "dk_lin", "dv"], device)


@pytest.mark.parametrize("device", DEVICES)
def test_gau_mixer_kernel_path_under_autocast(device, seed, monkeypatch):
    """FLASH's parameter gradients with the kernels forced (DEEPNOTES_KERNELS=triton) under
    bf16 autocast, against the torch path and a float64 run of the same mixer."""
    m = M.build("gau_flash", 32, causal=True, qk_dim=16, chunk_size=16, rotary=True)
    m = m.to(device)
    x = torch.randn(2, 40, 32, device=device)

    def grads(module, x, kernels, autocast):
        monkeypatch.setenv("DEEPNOTES_KERNELS", kernels)
        module.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            y = module(x)
        y.double().square().sum().backward()
        return [y.detach()] + [p.grad.clone() for _, p in module.named_parameters()]

    names = ["y"] + [n for n, _ in m.named_parameters()]
    ours = grads(m, x, "triton", True)
    lowp = grads(m, x, "torch", True)
    m64 = M.build("gau_flash", 32, causal=True, qk_dim=16, chunk_size=16, rotary=True)
    m64.load_state_dict(m.state_dict())
    ref = grads(m64.to(device).double(), x.double(), "torch", False)
    assert all(torch.count_nonzero(g) > 0 for g in ours[1:]), "every parameter gets a gradient"
    assert_rule(ours, lowp, ref, names, bf16)


@pytest.mark.parametrize("device", DEVICES)
def test_selective_scan_mixed_dtypes_under_autocast(device, seed):
    """No cast here: each input is read in its own dtype (weights fp32, sequences bf16)."""
    Bt, Dm, N, L = 2, 8, 4, 37
    u, delta, z = (torch.randn(Bt, Dm, L, device=device) for _ in range(3))
    A = -torch.rand(Dm, N, device=device) - 0.5
    B, C = (torch.randn(Bt, N, L, device=device) for _ in range(2))
    D, bias = torch.randn(Dm, device=device), 0.1 * torch.randn(Dm, device=device)
    xs = [u.to(bf16), 0.5 * delta, A, B.to(bf16), C.to(bf16), D, z, bias]
    cot = [torch.randn(Bt, Dm, L, device=device)]

    def op(u, delta, A, B, C, D, z, bias, backend="torch"):
        kw = dict(D=D, z=z, delta_bias=bias, delta_softplus=True)
        return selective_scan(u, delta, A, B, C, **kw, backend=backend)

    def run(backend):
        return values_and_grads(autocast_bf16(lambda *a: op(*a, backend=backend), device), xs, cot)

    ours, lowp = run("triton"), run("torch")
    ref = values_and_grads(
        lambda u, delta, A, B, C, D, z, bias: naive_selective_scan(
            u, delta, A, B, C, D=D, z=z, delta_bias=bias, delta_softplus=True
        ),
        [t.double() for t in xs],
        cot,
    )
    assert ours[0].dtype == lowp[0].dtype == bf16  # u's dtype
    for x, g in zip(xs, ours[1:], strict=True):
        assert g.dtype == x.dtype
    names = ["y", "du", "ddelta", "dA", "dB", "dC", "dD", "dz", "dbias"]
    assert_rule(ours, lowp, ref, names, bf16)
