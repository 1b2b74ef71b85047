"""scripts/ncu_report.py: Nsight Compute's CSV read into one record per kernel launch."""

from __future__ import annotations

import pytest

from tests.scripts import load_script

HEAD = ('"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream",'
        '"Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit",'
        '"Metric Value"')  # fmt: skip


def _row(i, kernel, section, name, unit, value):
    return (f'"{i}","1","python3","h","{kernel}","1","7","(128, 1, 1)","(64, 256, 1)","0","9.0",'
            f'"{section}","{name}","{unit}","{value}"')  # fmt: skip


def test_launches_keep_their_metrics_and_ranked_stalls():
    nr = load_script("ncu_report")
    stall = nr.STALL_METRIC.format
    text = "\n".join([
        "==PROF== Connected to process 1",  # ncu's own lines are skipped
        HEAD,
        _row(0, "flash_attn_fwd_kernel", "SOL", "Duration", "us", "1,234.5"),
        _row(0, "flash_attn_fwd_kernel", "SOL", "Compute (SM) Throughput", "%", "71.2"),
        _row(0, "flash_attn_fwd_kernel", "LaunchStats", "Registers Per Thread", "register/thread",
             "168"),
        _row(0, "flash_attn_fwd_kernel", "cmd", stall("barrier"), "", "2.5"),
        _row(0, "flash_attn_fwd_kernel", "cmd", stall("long_scoreboard"), "", "3.5"),
        _row(0, "flash_attn_fwd_kernel", "cmd", next(iter(nr.PIPES)), "%", "55"),
        _row(1, "cudnn_generated_sdpa", "SOL", "Duration", "ms", "1.1"),
    ])  # fmt: skip
    a, b = nr.parse(text)
    assert a["kernel"] == "flash_attn_fwd_kernel" and a["grid"] == "(64, 256, 1)"
    assert a["duration_us"] == 1234.5 and a["sm_throughput_pct"] == pytest.approx(71.2)
    assert a["registers_per_thread"] == 168
    assert list(a["stalls"].items()) == [("long_scoreboard", 3.5), ("barrier", 2.5)]
    assert a["tensor_gmma_pct"] == 55
    assert b == {"kernel": "cudnn_generated_sdpa", "grid": "(64, 256, 1)",
                 "block": "(128, 1, 1)", "stalls": {}, "duration_ms": 1.1}  # fmt: skip


def test_unknown_targets_are_refused_before_any_profiling(capsys):
    nr = load_script("ncu_report")
    with pytest.raises(SystemExit):
        nr.main(["--targets", "flash,nope"])
    assert "unknown target(s) ['nope']" in capsys.readouterr().err


def test_a_refused_metric_list_falls_back_to_the_sections(tmp_path):
    """An ncu that rejects --metrics (a name its version lacks) is asked again without them;
    the sections still give the launch's record. A failing ncu is reported, not raised."""
    nr = load_script("ncu_report")
    csv_rows = "\n".join([HEAD, _row(0, "selective_scan_bwd_kernel", "SOL", "Duration", "ms",
                                     "17.6")])  # fmt: skip
    fake = tmp_path / "ncu"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$*" in *--metrics*) echo "==ERROR== unknown metric" >&2; exit 1;; esac\n'
        'case "$*" in *--clock-control\\ none*--profile-from-start\\ off*--section\\ WarpStateStats'
        "*--workload\\ scan*) ;;\n"
        '  *) echo "unexpected: $*" >&2; exit 2;; esac\n'
        f"cat <<'CSV'\n{csv_rows}\nCSV\n"
    )
    fake.chmod(0o755)
    r = nr.profile("scan", str(fake))
    assert r["status"] == "ok", r
    assert r["launches"][0]["kernel"] == "selective_scan_bwd_kernel"
    assert r["launches"][0]["duration_ms"] == 17.6
    fake.write_text("#!/bin/sh\necho 'no GPU' >&2\nexit 3\n")
    r = nr.profile("scan", str(fake))
    assert r["status"] == "ncu exited 3" and r["tail"] == ["no GPU"]
