import numpy as np
import pytest

from deepnotes.utils.stats import mcnemar_exact, paired


def test_mcnemar_exact_by_hand():
    # 0 vs 5 discordant pairs: 2 * (1/2)^5
    assert mcnemar_exact(5, 0) == pytest.approx(2 / 32)
    # 1 vs 9: 2 * (1 + 10) / 2^10
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)
    assert mcnemar_exact(4, 4) == 1.0 and mcnemar_exact(0, 0) == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_paired_counts_only_the_discordant_examples():
    rng = np.random.default_rng()
    a = rng.random(97) < 0.6
    b = rng.random(97) < 0.4
    out = paired(a, b)
    assert out["a_only"] == sum(x and not y for x, y in zip(a, b, strict=True))
    assert out["b_only"] == sum(y and not x for x, y in zip(a, b, strict=True))
    # agreeing examples change nothing
    both = np.ones(10, bool)
    assert paired(np.r_[a, both], np.r_[b, both]) == out
    with pytest.raises(ValueError):
        paired(a, b[:-1])
