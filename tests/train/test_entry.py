"""`deepnotes run train-lm`: train, checkpoint, resume and sample from the command line."""

from __future__ import annotations

import json

from deepnotes.cli import main


def test_train_lm_job_runs_and_resumes(tmp_path, seed):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(6):
        (corpus / f"{i}.txt").write_text(f"document {i}: " + "the quick brown fox " * 20)
    common = ["--data", str(corpus), "--batch-size", "2", "--seq-len", "32", "--d-model", "32",
              "--n-layers", "1", "--warmup", "1", "--eval-batches", "2", "--sample-tokens", "8",
              "--device", "cpu", "--val-fraction", "0.3", "--progress", "false"]  # fmt: skip
    out1 = tmp_path / "out1"
    assert main(["run", "train-lm", "--steps", "4", *common, "--out", str(out1)]) == 0
    first = json.loads((out1 / "results.json").read_text())
    hist1 = json.loads((out1 / "history.json").read_text())
    assert first["metrics"]["steps"] == 4 and first["metrics"]["data"]["val_docs"] == 2
    assert first["metrics"]["lm_config"]["vocab_size"] == 256
    assert len(first["metrics"]["sample"]) > 0 and first["plots"] == ["loss.png"]
    args = ["run", "train-lm", "--steps", "6", *common, "--out", str(out1)]
    assert main(args) == 2  # the folder holds a run: refused without --resume or --force
    assert main([*args, "--resume"]) == 0  # continues from out1/checkpoints
    second = json.loads((out1 / "results.json").read_text())
    assert second["resumed"] and second["notes"][0].startswith("resumed from")
    hist2 = json.loads((out1 / "history.json").read_text())
    assert [h["step"] for h in hist2] == list(range(1, 7))
    assert hist2[:4] == hist1  # the resumed run kept the past
    # the schedule follows the new config: 6 steps of cosine, not the saved 4
    from deepnotes.train.schedule import WarmupCosine

    f = WarmupCosine(1, 6, 0.1)
    assert [h["lr"] for h in hist2[4:]] == [3e-4 * f(4), 3e-4 * f(5)]
