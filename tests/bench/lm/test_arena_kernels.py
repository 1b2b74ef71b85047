"""`deepnotes bench arena-kernels`: the path each op took is recorded truthfully, the
environment is restored, and (under Triton's interpreter) the kernel side really runs the
kernel and trains the same model as the PyTorch side."""

from __future__ import annotations

import os
from collections import Counter

import pytest
import torch

from deepnotes import jobs
from deepnotes.bench.lm.arena_kernels import (
    bench_arena_kernels,
    describe_paths,
    kernels_env,
    record_paths,
)
from deepnotes.ops.attention import flash_attn
from deepnotes.ops.backend import ENV_VAR
from tests.ops.kernel_cases import cpu_only

jobs.discover()


def test_record_paths_sees_each_decision_and_restores(seed):
    q, k, v = (torch.randn(1, 2, 9, 8) for _ in range(3))
    log = Counter()
    with record_paths(log):
        flash_attn(q, k, v, causal=True, backend="torch")
        flash_attn(q, k, v, causal=True, backend="torch")
    assert log == Counter({("flash_attn", "torch"): 2})
    assert describe_paths(log) == "flash_attn: torch"
    flash_attn(q, k, v, causal=True, backend="torch")  # after the block: not recorded
    assert sum(log.values()) == 2
    assert describe_paths(Counter()) == "no kernel op"
    mixed = Counter({("chunk_gau", "torch"): 1, ("chunk_gau", "triton"): 3})
    assert describe_paths(mixed) == "chunk_gau: triton+torch"


def test_kernels_env_sets_and_restores(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "auto")
    with kernels_env("torch"):
        assert os.environ[ENV_VAR] == "torch"
    assert os.environ[ENV_VAR] == "auto"
    monkeypatch.delenv(ENV_VAR)
    with kernels_env("triton"):
        assert os.environ[ENV_VAR] == "triton"
    assert ENV_VAR not in os.environ


def _run(tmp_path, **kw):
    cfg = jobs.SUITES.get("arena-kernels").make_config("smoke", **kw)
    ctx = jobs.Context(out=tmp_path, device=torch.device("cpu"), quiet=True)
    return bench_arena_kernels(cfg, ctx)


def test_cpu_auto_runs_the_torch_forms_on_both_sides(tmp_path):
    res = _run(tmp_path, mixers=["softmax", "performer"])
    rows = {r["mixer"]: r for r in res.table}
    assert rows["softmax"]["kernel_path"] == rows["softmax"]["torch_path"] == "flash_attn: torch"
    assert rows["performer"]["kernel_path"] == "no kernel op"  # FAVOR+ has no kernel
    for r in rows.values():
        assert r["first_loss_rel_diff"] == 0.0  # identical computation on both sides
        assert r["first_grad_norm_rel_diff"] == 0.0
        assert r["train_tok_s_torch"] > 0 and r["gen_tok_s_kernel"] > 0


@cpu_only
def test_forced_triton_runs_the_kernel_and_trains_the_same_model(tmp_path):
    res = _run(tmp_path, mixers=["softmax", "linear"], kernel_backend="triton")
    rows = {r["mixer"]: r for r in res.table}
    assert rows["softmax"]["kernel_path"] == "flash_attn: triton"
    assert rows["linear"]["kernel_path"] == "chunk_linear_attn: triton"
    assert rows["linear"]["torch_path"] == "chunk_linear_attn: torch"
    for r in rows.values():
        assert r["first_loss_rel_diff"] < 1e-4, r
        assert r["first_grad_norm_rel_diff"] < 1e-3, r


def test_bad_kernel_backend_is_refused(tmp_path):
    with pytest.raises(ValueError, match="kernel_backend"):
        _run(tmp_path, kernel_backend="torch")
