"""`bench lm-mfu --profile-steps`: each row's step time split by kernel family."""

import json

import pytest

from deepnotes import jobs
from tests.scripts import load_script

jobs.discover()
JOB = jobs.SUITES.get("lm-mfu")


def test_profiled_rows_split_their_step_time(tmp_path):
    job = JOB
    cfg = job.make_config("smoke", profile_steps=2)
    rec = jobs.run_job(job, cfg, out=tmp_path, budget="smoke", quiet=True)
    for row in rec["table"]:
        p = row["profile"]
        assert p["steps"] == 2 and p["by_kind"]["matmul"] > 0
        # the weight matmuls' rate follows from their time: 6 N FLOPs a token
        tokens = row["batch"] * cfg.seq_len
        expect = 6 * row["params_N"] * tokens / (p["by_kind"]["matmul"] * 1e-3) / 1e12
        assert abs(row["matmul_tflops"] / expect - 1) < 1e-9
    assert (tmp_path / "lm_mfu_split.png").stat().st_size > 0  # the split, drawn


def test_the_split_plot_stacks_each_row_to_its_total():
    """Each bar ends at its row's summed family times, families in one order across rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepnotes.utils.profile import draw_by_kind

    fig, ax = plt.subplots()
    splits = [{"matmul": 30.0, "loss": 5.0}, {"attention": 8.0, "matmul": 20.0, "copy": 1.5}]
    draw_by_kind(ax, ["a", "b"], splits)
    ends = {}
    for bar in ax.patches:
        y = round(bar.get_y() + bar.get_height() / 2)
        ends[y] = max(ends.get(y, 0.0), bar.get_x() + bar.get_width())
    assert ends == {0: 35.0, 1: 29.5}
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "matmul",
        "attention",
        "loss",
        "copy",
    ]
    plt.close(fig)


def test_rows_are_not_profiled_by_default(tmp_path):
    job = JOB
    rec = jobs.run_job(job, job.make_config("smoke"), out=tmp_path, budget="smoke", quiet=True)
    assert all("profile" not in r and "matmul_tflops" not in r for r in rec["table"])


def test_the_split_is_redrawn_from_a_result_and_unprofiled_ones_are_refused(tmp_path, capsys):
    plot = load_script("plot_profile_split")
    row = {"model": "ours", "batch": 8, "attention": "sdpa"}
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"table": [row]}))
    with pytest.raises(SystemExit):
        plot.main([str(bare), "--out", str(tmp_path / "x.png")])
    assert "no profiled rows" in capsys.readouterr().err
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"table": [{**row, "profile": {"by_kind": {"matmul": 3.0}}}]}))
    assert plot.main([str(good), "--out", str(tmp_path / "y.png")]) == 0
    assert (tmp_path / "y.png").stat().st_size > 0
