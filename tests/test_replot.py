"""scripts/replot.py redraws committed plots from committed results JSON."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from tests.scripts import ROOT, load_script

BENCH = ROOT / "benchmarks"


def _replot():
    return load_script("replot")


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; fails on anything that is not a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.mark.parametrize(
    "stem,expected",
    [
        ("kernels-h100-gau", ["kernels-h100-gau.png"]),  # one plot: PREFIX.png
        ("sde-toy-cpu", ["sde-toy-cpu-swd.png"]),  # a committed name from NAMES
        ("rl-actor-critic", ["rl-actor-critic.png"]),  # data from the side file -curves.json
    ],
)
def test_replot_writes_the_committed_names(stem, expected, tmp_path):
    rp = _replot()
    src = BENCH / f"{stem}.json"
    written = rp.replot(json.loads(src.read_text()), tmp_path, stem, path=src)
    assert sorted(p.name for p in written) == expected
    for name in expected:
        w, h = _png_size(tmp_path / name)
        assert w > 300 and h > 200
        assert (BENCH / name).exists(), "the name matches a committed PNG"


def test_replot_all_rewrites_only_existing_pngs(tmp_path):
    rp = _replot()
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    for stem in ("kernels-h100-scan", "mixers-cpu-run1"):  # the second has no committed PNG
        shutil.copy(BENCH / f"{stem}.json", src)
    (src / "kernels-h100-scan.png").write_bytes(b"placeholder")
    written = rp.replot_all(src, out)
    assert [p.name for p in written] == ["kernels-h100-scan.png"]
    assert sorted(p.name for p in out.iterdir()) == ["kernels-h100-scan.png"]
    _png_size(out / "kernels-h100-scan.png")


def test_replot_refuses_a_job_without_plotter(tmp_path):
    rp = _replot()
    with pytest.raises(SystemExit, match="no plotter"):
        rp.replot({"name": "no-such-job", "kind": "experiment"}, tmp_path, "x")


@pytest.mark.parametrize(
    "kind,name,expected",
    [
        ("bench", "training", ["x.png"]),
        ("experiment", "video-temporal", ["x.png"]),
        ("experiment", "detr", ["x-detr_training.png"]),
    ],
)
def test_jobs_save_the_plot_data_replot_needs(kind, name, expected, tmp_path):
    """A smoke run writes curves.json beside results.json; copied as <stem>-curves.json, it
    lets scripts/replot.py redraw the run's plot (without it, nothing is drawn)."""
    from deepnotes import jobs

    jobs.discover()
    job = (jobs.SUITES if kind == "bench" else jobs.EXPERIMENTS).get(name)
    run = tmp_path / "run"
    jobs.run_job(job, job.make_config("smoke"), out=run, budget="smoke", quiet=True)
    bench, out = tmp_path / "bench", tmp_path / "out"
    bench.mkdir()
    out.mkdir()
    shutil.copy(run / "results.json", bench / "x.json")
    res = json.loads((bench / "x.json").read_text())
    rp = _replot()
    assert rp.replot(res, out, "x", path=bench / "x.json") == []  # no side file: nothing
    shutil.copy(run / "curves.json", bench / "x-curves.json")
    written = rp.replot(res, out, "x", path=bench / "x.json")
    assert [p.name for p in written] == expected
    w, h = _png_size(out / expected[0])
    assert w > 300 and h > 200
