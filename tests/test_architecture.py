"""The layout rules of docs/architecture.md, checked on the source tree."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import deepnotes
import deepnotes.mixers as M
from deepnotes import jobs

SRC = Path(deepnotes.__file__).parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_bench_never_imports_experiments():
    bad = {
        str(p.relative_to(SRC)): sorted(
            m for m in _imports(p) if m.startswith("deepnotes.experiments")
        )
        for p in (SRC / "bench").rglob("*.py")
    }
    assert {k: v for k, v in bad.items() if v} == {}


def test_models_hold_no_process_pools():
    for p in (SRC / "models").rglob("*.py"):
        pools = {m for m in _imports(p) if m in ("multiprocessing", "concurrent.futures")}
        assert not pools, f"{p.relative_to(SRC)} imports {pools}: pools live in utils/pool.py"


def test_a_job_module_is_named_after_the_job_it_registers():
    jobs.discover()
    for reg in (jobs.EXPERIMENTS, jobs.SUITES):
        for name, job in reg.items():
            module = job.fn.__module__.rsplit(".", 1)[-1]
            assert module == name.replace("-", "_"), f"{name} is registered in {module}.py"


def test_op_packages_only_reexport():
    """The dispatcher sits beside its PyTorch form; an op's __init__.py defines nothing."""
    for init in (SRC / "ops").glob("*/__init__.py"):
        defs = [n.name for n in ast.parse(init.read_text()).body
                if isinstance(n, ast.FunctionDef | ast.ClassDef)]  # fmt: skip
        assert defs == [], f"{init.relative_to(SRC)} defines {defs}"


@pytest.mark.parametrize("name", M.names())
def test_mixer_class_flags_say_what_the_constructor_takes(name):
    cls = M.get(name)
    causal = cls.supports_causal
    extra = {} if causal else {"max_len": 32}  # Linformer projects a fixed length
    for flag, kw in (("supports_heads", {"n_heads": 2}), ("supports_scale", {"scale": 1.0})):
        if getattr(cls, flag):
            M.build(name, 16, causal=causal, **extra, **kw)
        else:
            with pytest.raises(TypeError):
                M.build(name, 16, causal=causal, **extra, **kw)
