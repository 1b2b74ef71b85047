from __future__ import annotations

import json

import pytest
import torch

from deepnotes.registry import Registry
from deepnotes.utils.fit import power_law_exponent
from deepnotes.utils.io import atomic_write_json, atomic_write_text
from deepnotes.utils.table import format_table
from deepnotes.utils.timing import peak_memory_bytes
from tests.helpers import rel_rms


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    p = tmp_path / "x.txt"
    atomic_write_text(p, "old")

    def boom(path):
        path.write_text("partial")
        raise RuntimeError("crash mid-write")

    from deepnotes.utils.io import atomic_write

    with pytest.raises(RuntimeError):
        atomic_write(p, boom)
    assert p.read_text() == "old"
    assert [q.name for q in tmp_path.iterdir()] == ["x.txt"]


def test_atomic_json_handles_tensors_and_nan(tmp_path):
    p = atomic_write_json(tmp_path / "r.json", {"a": torch.tensor([1.0, 2.0]), "b": float("nan")})
    assert json.loads(p.read_text()) == {"a": [1.0, 2.0], "b": "nan"}


def test_registry_errors():
    r = Registry("widget")
    r.add("a", 1)
    with pytest.raises(ValueError, match="unknown widget 'b'; valid names: a"):
        r.get("b")
    with pytest.raises(ValueError, match="registered twice"):
        r.add("a", 2)


def test_power_law_exponent():
    xs = [1, 2, 4, 8]
    assert abs(power_law_exponent(xs, [3 * x**1.5 for x in xs]) - 1.5) < 1e-12


def test_peak_memory_cpu_counts_allocations():
    n = 512

    def f():
        a = torch.randn(n, n)
        b = torch.randn(n, n)
        return (a @ b).sum()

    peak = peak_memory_bytes(f)
    # a, b and a @ b are live together; randn's and matmul's scratch may add a few more.
    assert 3 * n * n * 4 <= peak < 12 * n * n * 4
    m = 2 * n
    peak_big = peak_memory_bytes(lambda: (torch.randn(m, m) @ torch.randn(m, m)).sum())
    assert 3 * m * m * 4 <= peak_big < 12 * m * m * 4


def test_rel_rms_nan_is_inf():
    assert rel_rms(torch.tensor([float("nan")]), torch.tensor([1.0])) == float("inf")


def test_format_table():
    s = format_table([{"a": 1, "b": 0.5}, {"a": 22}])
    assert s.splitlines()[0].split() == ["a", "b"] and "-" in s.splitlines()[-1]
