"""recall: chance levels match the generators' answer spaces; failed runs are recorded or
raised as asked."""

from __future__ import annotations

import pytest

from deepnotes.data.synthetic import IGNORE
from deepnotes.experiments.ssm.recall import RecallConfig, chance, task_data, task_list, train_run


def small_config(**kw) -> RecallConfig:
    base = dict(
        widths=[16], n_layers=1, mqar_lengths=[32], mqar_pairs=[3], mqar_vocab=20,
        copy_length=30, copy_tokens=5, copy_vocab=7, tasks=["mqar", "copy"], steps=2,
        batch_size=4, warmup=1, train_examples=2000, eval_examples=8, workers=1,
    )  # fmt: skip
    return RecallConfig(**{**base, **kw})


def test_chance_is_one_over_the_number_of_possible_answers(seed):
    cfg = small_config()
    for i, (label, *_) in enumerate(task_list(cfg)):
        _, y, _, _ = task_data(cfg, i, seed)
        answers = y[y != IGNORE].unique()
        assert chance(cfg, label) == pytest.approx(1 / len(answers)), label


def test_a_failing_run_is_recorded_unless_strict(seed):
    data = {i: task_data(small_config(), i, seed) for i in range(2)}
    bad = small_config(ssm_state=15, strict=False)  # odd state size: s4d raises ValueError
    row = train_run(bad, "s4d", 0, 16, seed, "cpu", None, data)
    assert row["status"].startswith("error: ValueError") and row["acc"] is None
    with pytest.raises(ValueError):
        train_run(small_config(ssm_state=15), "s4d", 0, 16, seed, "cpu", None, data)
    ok = train_run(small_config(), "s4d", 1, 16, seed, "cpu", None, data)
    assert ok["status"] == "ok" and 0.0 <= ok["acc"] <= 1.0 and ok["steps"] == 2
