"""`bench lm-mfu --profile-steps`: each row's step time split by kernel family."""

from deepnotes import jobs

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


def test_rows_are_not_profiled_by_default(tmp_path):
    job = JOB
    rec = jobs.run_job(job, job.make_config("smoke"), out=tmp_path, budget="smoke", quiet=True)
    assert all("profile" not in r and "matmul_tflops" not in r for r in rec["table"])
