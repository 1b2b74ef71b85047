"""flash_decode (split-KV Triton kernels) against SDPA and the split algorithm in PyTorch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepnotes.ops.decode import flash_decode, sdpa_decode, torch_split_decode
from deepnotes.ops.decode.flash_decode import _lengths
from tests.helpers import TOLERANCE, assert_close
from tests.ops.kernel_cases import cpu, gpu

f32, bf16 = torch.float32, torch.bfloat16


def _truth(q, k, v, lens, scale=None):
    """fp64 SDPA, row by row over each row's valid keys, GQA by repeating KV heads."""
    g = q.shape[1] // k.shape[1]
    k, v = k.double().repeat_interleave(g, 1), v.double().repeat_interleave(g, 1)
    rows = [
        F.scaled_dot_product_attention(
            q[b : b + 1].double(), k[b : b + 1, :, :L], v[b : b + 1, :, :L], scale=scale
        )
        if L > 0
        else torch.zeros_like(q[b : b + 1], dtype=torch.float64)
        for b, L in enumerate(lens)
    ]
    return torch.cat(rows)


def _inputs(B, H, H_kv, S, D, dtype, device):
    q = torch.randn(B, H, 1, D, device=device, dtype=dtype)
    k = torch.randn(B, H_kv, S, D, device=device, dtype=dtype)
    v = torch.randn(B, H_kv, S, D, device=device, dtype=dtype)
    return q, k, v


CASES = [
    # B, H, H_kv, S (capacity), lengths (None = int S), D, n_splits, dtype
    cpu(1, 2, 2, 37, None, 64, 3, f32, id="S37-D64-3splits"),
    cpu(2, 2, 2, 50, [50, 21], 128, 4, f32, id="ragged-D128"),
    cpu(2, 4, 2, 29, [29, 0], 64, None, f32, id="gqa-empty-row-auto-splits"),
    cpu(1, 1, 1, 70, None, 40, 64, f32, id="D40-more-splits-than-tiles"),
    cpu(1, 2, 2, 45, None, 64, 2, bf16, id="bf16"),
    *[
        gpu(B, 8, 8, S, None, D, None, dt, id=f"B{B}-S{S}-D{D}-{dt}")
        for B, S in [(1, 4097), (16, 1000)]
        for D in (64, 128)
        for dt in (bf16, f32)
    ],
    gpu(4, 8, 2, 3000, [3000, 1, 2999, 1500], 128, None, bf16, id="gqa-ragged"),
]


@pytest.mark.parametrize("B,H,H_kv,S,lens,D,n_splits,dtype,device", CASES)
def test_flash_decode_matches_sdpa(B, H, H_kv, S, lens, D, n_splits, dtype, device, seed):
    q, k, v = _inputs(B, H, H_kv, S, D, dtype, device)
    cache_len = S if lens is None else torch.tensor(lens, device=device)
    lens = [S] * B if lens is None else lens
    truth = _truth(q, k, v, lens)
    out = flash_decode(q, k, v, cache_len, n_splits=n_splits, backend="triton")
    assert out.dtype == dtype and out.shape == (B, H, 1, D)
    tol = TOLERANCE[dtype] * (10 if dtype == f32 else 1)
    assert_close(out, truth, tol=tol, what="triton vs fp64 SDPA")
    split = torch_split_decode(q, k, v, cache_len, n_splits=n_splits or 5)
    assert_close(split, truth, tol=tol, what="split reference vs fp64 SDPA")
    lens_t, S_max = _lengths(cache_len, B, S, q.device)
    torch_path = sdpa_decode(q, k, v, lens_t, S_max, scale=D**-0.5)
    assert_close(torch_path, truth, tol=tol, what="torch path vs fp64 SDPA")


def test_split_reference_is_split_invariant(seed):
    """The combine is exact: 1, 2, 7 or 37 splits give the same output (fp64)."""
    q, k, v = _inputs(2, 2, 2, 37, 16, torch.float64, "cpu")
    lens = torch.tensor([37, 11])
    ref = torch_split_decode(q, k, v, lens, n_splits=1)
    for n in (2, 7, 37):
        assert_close(torch_split_decode(q, k, v, lens, n_splits=n), ref)
    assert_close(ref, _truth(q, k, v, [37, 11]))


def test_sliced_cache_view_and_scale(seed):
    """A KV cache's [.., :t, :] view (strided over its capacity) and a custom scale."""
    q, k, v = _inputs(1, 2, 2, 64, 32, torch.float64, "cpu")
    out = flash_decode(q, k[:, :, :45], v[:, :, :45], 45, scale=0.3, backend="torch")
    assert_close(out, _truth(q, k, v, [45], scale=0.3))


@pytest.mark.parametrize(
    "shapes,cache_len,match",
    [
        (((1, 2, 2, 8), (1, 2, 9, 8), (1, 2, 9, 8)), 9, "T = 1"),
        (((1, 3, 1, 8), (1, 2, 9, 8), (1, 2, 9, 8)), 9, "multiple"),
        (((1, 2, 1, 8), (1, 2, 9, 4), (1, 2, 9, 4)), 9, "B and D as q"),
        (((1, 2, 1, 8), (1, 2, 9, 8), (1, 2, 9, 8)), 10, "not in 1..9"),
        (((2, 2, 1, 8), (2, 2, 9, 8), (2, 2, 9, 8)), torch.tensor([3]), r"\[B\]"),
        (((1, 2, 8), (1, 2, 9, 8), (1, 2, 9, 8)), 9, r"\[B, H, 1, D\]"),
    ],
)
def test_bad_inputs(shapes, cache_len, match):
    q, k, v = (torch.randn(s) for s in shapes)
    with pytest.raises(ValueError, match=match):
        flash_decode(q, k, v, cache_len)


def test_auto_runs_sdpa_and_the_kernel_is_opt_in(monkeypatch, seed):
    """The "auto" backend takes SDPA even where the kernel could run (it measured slower on
    an H200); backend="triton" or $DEEPNOTES_KERNELS=triton still reach the kernel."""
    import importlib

    fd = importlib.import_module("deepnotes.ops.decode.flash_decode")  # the module, not the
    td = importlib.import_module("deepnotes.ops.decode.triton_decode")  # function of that name

    calls = []
    monkeypatch.setattr(fd, "use_triton", lambda *a, **kw: True)  # as if on a CUDA device
    monkeypatch.setattr(td, "triton_flash_decode", lambda q, *a, **kw: calls.append(1) or q)
    q, k, v = _inputs(2, 4, 2, 29, 16, torch.float64, "cpu")
    monkeypatch.delenv("DEEPNOTES_KERNELS", raising=False)
    assert_close(flash_decode(q, k, v, 29), _truth(q, k, v, [29, 29]))
    assert calls == []
    flash_decode(q, k, v, 29, backend="triton")
    monkeypatch.setenv("DEEPNOTES_KERNELS", "triton")
    flash_decode(q, k, v, 29)
    assert calls == [1, 1]


@pytest.mark.parametrize(
    "settings,device",
    [
        cpu({"programs_per_sm": 8, "num_warps": 2, "num_stages": 1}, id="8-per-sm-2-warps"),
        cpu({"programs_per_sm": 1, "num_warps": 8, "num_stages": 3}, id="1-per-sm-8-warps"),
        gpu({"programs_per_sm": 8, "BLOCK_N": 128, "num_warps": 8, "num_stages": 3}, id="tuned"),
        gpu({"programs_per_sm": 16, "BLOCK_N": 32, "num_warps": 4, "num_stages": 1}, id="small"),
    ],
)
def test_launch_settings_keep_the_result(settings, device, monkeypatch, seed):
    """The settings `tune_kernels.py --ops decode` sweeps change the split count, tiles and
    launch, never the result (ragged rows with an empty one, GQA)."""
    import importlib

    td = importlib.import_module("deepnotes.ops.decode.triton_decode")
    for key, value in settings.items():
        monkeypatch.setitem(td.CONFIG, key, value)
    S = 200 if device == "cpu" else 5000
    q, k, v = _inputs(3, 4, 2, S, 64, torch.float32, device)
    lens = [S, 0, S // 3]
    out = flash_decode(q, k, v, torch.tensor(lens, device=device), backend="triton")
    assert_close(out, _truth(q, k, v, lens), tol=TOLERANCE[torch.float32] * 10)
