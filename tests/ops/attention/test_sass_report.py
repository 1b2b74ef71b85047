"""scripts/sass_report.py: the flash forward compiled ahead of time for sm_90a, read back."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _script():
    spec = importlib.util.spec_from_file_location(
        "sass_report", ROOT / "scripts" / "sass_report.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_counts_and_loops_are_read_from_the_sass():
    sr = _script()
    pad = "        /*0a10*/                  "
    lines = [pad + "HGMMA.64x64x16.F32.BF16 R24, gdesc[UR4] ;",
             pad + "@!P0 LDGSTS.E.BYPASS.128 [R1], desc[UR6][R2.64] ;",
             pad + "LDG.E R5, desc[UR4][R2.64] ;"]  # fmt: skip
    expect = {**dict.fromkeys(sr.OPS, 0), "HGMMA": 1, "LDGSTS": 1, "LDG": 1}
    assert sr._count(lines) == expect
    (row,) = [r for r in sr.flash_kernels([64]) if r["kernel"] == "flash fwd"]
    # Hopper's warp-group products, pipelined (asynchronous) loads, and the two key loops
    # (blocks under the diagonal, then the masked ones), each with its matrix products
    assert row["counts"]["HGMMA"] > 0 and row["counts"]["HMMA"] == 0
    assert row["counts"]["LDGSTS"] > 0 and row["registers"] > 0
    assert len(row["loops"]) == 2 and all(lp["HGMMA"] > 0 for lp in row["loops"])
