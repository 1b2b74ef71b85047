"""`deepnotes bench kernels`: a run stopped mid-way keeps what it measured and says where."""

from __future__ import annotations

import json

import pytest
import torch

from deepnotes import jobs
from deepnotes.bench.mixers import kernels


def test_rows_are_saved_before_each_timing_and_the_log_names_it(tmp_path, monkeypatch, capsys):
    cfg = jobs.SUITES.get("kernels").make_config("smoke")
    cfg.ops = ["flash"]
    calls = []
    real = kernels.time_ms

    def stop_on_third(fn, device):  # the third row's timing is stopped, as by a time-out
        calls.append(1)
        if len(calls) == 5:  # two timings per row: rows 1 and 2 done, row 3 started
            raise KeyboardInterrupt
        return real(fn, device)

    monkeypatch.setattr(kernels, "time_ms", stop_on_third)
    ctx = jobs.Context(out=tmp_path, device=torch.device("cpu"), quiet=False)
    with pytest.raises(KeyboardInterrupt):
        kernels.bench_kernels(cfg, ctx)
    saved = json.loads((tmp_path / "rows_so_far.json").read_text())
    assert [(r["impl"], r["T"]) for r in saved["rows"]] == [("sdpa", 32), ("reference", 32)]
    assert all(r["fwd_ms"] > 0 and r["fwdbwd_ms"] > 0 for r in saved["rows"])
    timing = [line for line in capsys.readouterr().err.splitlines() if "timing" in line]
    assert timing[-1].endswith("timing flash_attn sdpa D=16 T=64 ...")  # where it stopped


def test_tuning_plot_leaves_out_the_decode_sweep_and_the_scan_parts():
    """`tune_kernels.py --ops decode` trials (one phase, a peer row) and `--ops scan-parts`
    trials do not break the plot's rows of the other kernels."""
    from deepnotes.bench.mixers.tuning_plot import tuning_points

    ok = {"ms": 0.4, "status": "ok"}
    trials = [
        {"op": "flash_fwd", "shape": "D64 T8192", "config": {}, "ms": 1.5, "status": "ok"},
        {"op": "decode", "shape": "B1 T65536", "config": {"impl": "sdpa"}, **ok},
        {"op": "decode", "shape": "B1 T65536", "config": {"num_warps": 8}, **ok},
        {"op": "scan_parts", "shape": "L2048", "config": {"part": "bwd dh"}, **ok},
    ]
    rows = tuning_points(trials)
    assert [(r["label"], r["fwd"]) for r in rows] == [("flash D=64 T=8k", [1.5])]


def test_scan_smoke_notes_the_skipped_mamba_ssm_peer(tmp_path):
    """On CPU the scan's PyTorch form is timed and the mamba_ssm peer is skipped with a note."""
    cfg = jobs.SUITES.get("kernels").make_config("smoke")
    cfg.ops = ["scan"]
    ctx = jobs.Context(out=tmp_path, device=torch.device("cpu"), quiet=True)
    result = kernels.bench_kernels(cfg, ctx)
    assert {r["impl"] for r in result.table} == {"reference"}
    assert any(n.startswith("mamba_ssm peer skipped: device cpu") for n in result.notes)
    cfg.peers = False
    ctx = jobs.Context(out=tmp_path / "b", device=torch.device("cpu"), quiet=True)
    result = kernels.bench_kernels(cfg, ctx)
    assert not any("mamba_ssm" in n for n in result.notes)


def test_nothing_timed_gives_a_note_and_no_plot(tmp_path):
    """Off CUDA with the PyTorch forms turned off nothing is timed: a note, not a crash."""
    cfg = jobs.SUITES.get("kernels").make_config("smoke")
    cfg.ops, cfg.references = ["scan"], False
    ctx = jobs.Context(out=tmp_path, device=torch.device("cpu"), quiet=True)
    result = kernels.bench_kernels(cfg, ctx)
    assert not any(r.get("fwdbwd_ms") for r in result.table)
    assert any(n.startswith("nothing was timed, so no plot") for n in result.notes)
    assert not (tmp_path / "kernels.png").exists()


def test_mamba_ssm_rows_get_ratios_as_a_peer():
    def row(impl, fwd, fwdbwd):
        return {"op": "selective_scan", "impl": impl, "D": 16, "T": 2048,
                "fwd_ms": fwd, "fwdbwd_ms": fwdbwd}  # fmt: skip

    rows = [row("ours", 1.0, 4.0), row("chunked-64", 2.0, 5.0), row("mamba_ssm", 3.0, 6.0)]
    metrics: dict = {}
    kernels._ratios(rows, metrics)
    assert rows[0]["fwd_x_mamba_ssm"] == 3.0 and rows[0]["fwdbwd_x_mamba_ssm"] == 1.5
    assert rows[1]["fwd_x_mamba_ssm"] == 1.5  # our variants against the peer, too
    assert metrics["selective_scan/D16/T2048/fwdbwd_x_mamba_ssm"] == 1.5


def test_tune_kernels_refuses_an_unknown_op_before_timing(capsys):
    from tests.scripts import load_script

    tune = load_script("tune_kernels")
    with pytest.raises(SystemExit) as e:
        tune.main(["--ops", "scan-parts,scan-part"])
    assert e.value.code == 2
    assert "unknown scan-part" in capsys.readouterr().err
