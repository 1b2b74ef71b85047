"""`python -m deepnotes.train`: train, checkpoint, resume and sample from the command line."""

from __future__ import annotations

import json

from deepnotes.train.__main__ import main


def test_train_entry_point_runs_and_resumes(tmp_path, seed):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(6):
        (corpus / f"{i}.txt").write_text(f"document {i}: " + "the quick brown fox " * 20)
    common = ["--data", str(corpus), "--batch-size", "2", "--seq-len", "32", "--d-model", "32",
              "--n-layers", "1", "--warmup", "1", "--eval-batches", "2", "--sample-tokens", "8",
              "--device", "cpu", "--ckpt-dir", str(tmp_path / "ck"), "--val-fraction", "0.3",
              "--progress", "false", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(["--steps", "4", *common]) == 0
    first = json.loads((tmp_path / "out" / "results.json").read_text())
    assert first["summary"]["steps"] == 4 and first["data"]["val_docs"] == 2
    assert first["lm_config"]["vocab_size"] == 256 and len(first["sample"]) > 0
    assert main(["--steps", "6", "--resume", "auto", *common]) == 0
    second = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [h["step"] for h in second["history"]] == list(range(1, 7))
    assert second["history"][:4] == first["history"][:4]  # the resumed run kept the past
    # the schedule follows the new config: 6 steps of cosine, not the saved 4
    from deepnotes.train.schedule import WarmupCosine

    f = WarmupCosine(1, 6, 0.1)
    assert [h["lr"] for h in second["history"][4:]] == [3e-4 * f(4), 3e-4 * f(5)]
