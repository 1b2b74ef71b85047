"""`deepnotes bench scan-forms`: the selective scan's PyTorch forms timed side by side."""

from __future__ import annotations

import pytest

from deepnotes import jobs
from deepnotes.bench.mixers import scan_forms  # noqa: F401 - registers the suite

JOB = jobs.SUITES.get("scan-forms")


def test_smoke_times_every_form_on_the_same_inputs(tmp_path):
    cfg = JOB.make_config("smoke")
    rec = jobs.run_job(JOB, cfg, out=tmp_path, budget="smoke", quiet=True)
    rows = rec["table"]
    assert [r["algorithm"] for r in rows] == ["parallel", "sequential", "recurrent"]
    assert all(r["fwd_ms"] > 0 and r["fwdbwd_ms"] > 0 and r["max_rel_diff"] < 1e-4 for r in rows)
    seq = next(r for r in rows if r["algorithm"] == "sequential")
    assert seq["fwdbwd_x_sequential"] == 1.0
    assert (tmp_path / "scan_forms.png").exists()


@pytest.mark.parametrize(
    "field,value,match",
    [("shapes", ["2x8x4"], "expected 'Bt x Dm x N x L'"), ("shapes", ["2x8x0x9"], "expected"),
     ("algorithms", ["fast"], "choose among"), ("threads", 0, ">= 1")],
)  # fmt: skip
def test_bad_options_raise_before_any_work(field, value, match):
    with pytest.raises(ValueError, match=match):
        JOB.check(JOB.make_config("smoke", **{field: value}))
