"""scripts/sass_report.py: the flash forward compiled ahead of time for sm_90a, read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.scripts import ROOT, load_script

SCRIPT, SRC = ROOT / "scripts" / "sass_report.py", str(ROOT / "src")


def _script():
    return load_script("sass_report")


def test_instructions_are_counted_by_family():
    sr = _script()
    pad = "        /*0a10*/                  "
    lines = [pad + "HGMMA.64x64x16.F32.BF16 R24, gdesc[UR4] ;",
             pad + "@!P0 LDGSTS.E.BYPASS.128 [R1], desc[UR6][R2.64] ;",
             pad + "LDG.E R5, desc[UR4][R2.64] ;"]  # fmt: skip
    expect = {**dict.fromkeys(sr.OPS, 0), "HGMMA": 1, "LDGSTS": 1, "LDG": 1}
    assert sr._count(lines) == expect


def test_the_flash_forward_compiled_for_hopper(tmp_path):
    """Run as a script (the tests interpret kernels; the script compiles them)."""
    out = tmp_path / "sass.json"
    cmd = [sys.executable, str(SCRIPT), "--dims", "64", "--kernels", "fwd", "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": SRC})
    (row,) = json.loads(out.read_text())["rows"]
    # Hopper's warp-group products, pipelined (asynchronous) loads, and the two key loops
    # (blocks under the diagonal, then the masked ones), each with its matrix products
    assert row["kernel"] == "flash fwd" and row["counts"]["HMMA"] == 0
    assert row["counts"]["HGMMA"] > 0 and row["counts"]["LDGSTS"] > 0 and row["registers"] > 0
    assert len(row["loops"]) == 2 and all(lp["HGMMA"] > 0 for lp in row["loops"])


def test_the_scan_backward_compiled_for_hopper(tmp_path):
    """The scan's walk backward: the loop over states nests in the loop over tiles, and dB,
    dC are its only atomic adds (none without them)."""
    out = tmp_path / "sass.json"
    cmd = [sys.executable, str(SCRIPT), "--kernels", "scan-bwd", "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": SRC})
    rows = json.loads(out.read_text())["rows"]
    assert [r["kernel"] for r in rows] == ["scan bwd (all)", "scan bwd (no-bc)"] * 2
    for r in rows:
        tiles, states = r["loops"][-1], r["loops"][0]
        assert tiles["span"][0] < states["span"][0] <= states["span"][1] < tiles["span"][1]
        assert (states["REDG"] > 0) == (r["kernel"] == "scan bwd (all)")
