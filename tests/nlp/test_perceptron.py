"""The perceptron and its bias: off-origin data is learned with a bias and provably not without."""

from __future__ import annotations

import numpy as np
import pytest

from deepnotes.nlp.perceptron import off_origin_data, separable_through_origin, train_perceptron


def test_bias_needed_for_off_origin_data(seed):
    rng = np.random.default_rng(seed)
    X, y = off_origin_data(rng, n=40)
    # The claim, checked independently by a linear program:
    assert separable_through_origin(X, y, bias=True)
    assert not separable_through_origin(X, y, bias=False)
    # The rule with a bias converges (Novikoff) ...
    with_b = train_perceptron(X, y, bias=True, max_epochs=1000, shuffle=rng)
    assert with_b.converged and with_b.errors[-1] == 0
    assert (with_b.predict(X) == y).all()
    # ... without it, every epoch has a mistake, however long it runs.
    no_b = train_perceptron(X, y, bias=False, max_epochs=300, shuffle=rng)
    assert not no_b.converged and min(no_b.errors) >= 1 and no_b.b == 0.0
    assert (no_b.predict(X) != y).any()


def test_bias_is_a_weight_on_a_constant_input(seed):
    """w.x + b with a learned b = the no-bias rule on inputs [x, 1] (the note's T moved left)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(50, 3))
    y = np.where(X @ np.array([1.0, -2.0, 0.5]) + 0.7 > 0, 1, -1)
    a = train_perceptron(X, y, bias=True, max_epochs=50)
    Xa = np.concatenate([X, np.ones((len(X), 1))], axis=1)
    b = train_perceptron(Xa, y, bias=False, max_epochs=50)
    np.testing.assert_allclose(np.append(a.w, a.b), b.w, rtol=0, atol=1e-12)
    assert a.errors == b.errors


def test_separable_through_origin_is_learned_without_bias(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(60, 2))
    X = X[np.abs(X @ np.array([1.0, 1.0])) > 0.3]  # a margin around x1 + x2 = 0
    y = np.where(X @ np.array([1.0, 1.0]) > 0, 1, -1)
    assert separable_through_origin(X, y, bias=False)
    res = train_perceptron(X, y, bias=False, max_epochs=1000)
    assert res.converged


def test_bad_labels():
    with pytest.raises(ValueError, match="-1 or \\+1"):
        train_perceptron(np.zeros((2, 2)), np.array([0, 1]))
