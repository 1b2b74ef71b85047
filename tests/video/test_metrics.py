import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from deepnotes.video import average_precision, per_frame_map


@pytest.mark.parametrize("n", [7, 100, 333])
def test_ap_matches_sklearn(n):
    rng = np.random.default_rng()
    s = rng.normal(size=n)
    s[: n // 3] = np.round(s[: n // 3], 1)  # ties
    p = rng.random(n) < 0.3
    p[0] = True
    assert abs(average_precision(s, p) - average_precision_score(p, s)) < 1e-12


def test_per_frame_map_excludes_background():
    rng = np.random.default_rng()
    labels = rng.integers(0, 4, size=200)
    scores = rng.random((200, 4))
    m, aps = per_frame_map(scores, labels, background=0)
    assert set(aps) == {1, 2, 3}
    ref = np.mean([average_precision_score(labels == c, scores[:, c]) for c in (1, 2, 3)])
    assert abs(m - ref) < 1e-12
    perfect = np.eye(4)[labels]
    assert per_frame_map(perfect, labels)[0] == 1.0


def test_metrics_reject_bad_inputs():
    with pytest.raises(ValueError, match="no positive"):
        average_precision(np.ones(3), np.zeros(3, bool))
    with pytest.raises(ValueError, match="labels must lie"):
        per_frame_map(np.ones((3, 2)), np.array([0, 1, 2]))
