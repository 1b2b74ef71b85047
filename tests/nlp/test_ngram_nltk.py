"""Agreement with nltk.lm on the same tokenised KJV sentences (padding="nltk").

Equal to 1e-9 in log space: MLE, Laplace, add-k, stupid backoff, absolute discounting and
interpolated Kneser-Ney, except one documented difference in nltk's Kneser-Ney (first words
of a sentence for n >= 3), which is checked here to be exactly what docs/ngram.md says.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from deepnotes.nlp.ngram import (
    MLE,
    AbsoluteDiscounting,
    KneserNey,
    Laplace,
    Lidstone,
    StupidBackoff,
)

nltk_lm = pytest.importorskip("nltk.lm")
from nltk.lm.preprocessing import pad_both_ends, padded_everygram_pipeline  # noqa: E402
from nltk.util import ngrams  # noqa: E402

CUTOFF = 2


def nltk_model(cls, n, train, **kw):
    text, vocab_text = padded_everygram_pipeline(n, train)
    lm = cls(order=n, vocabulary=nltk_lm.Vocabulary(vocab_text, unk_cutoff=CUTOFF), **kw)
    lm.fit(text)
    return lm


def split(kjv, seed, n_train=150, n_test=12):
    rng = random.Random(seed)
    start = rng.randrange(0, len(kjv) - n_train - n_test)
    return kjv[start : start + n_train], kjv[start + n_train : start + n_train + n_test]


def queries(test, n):
    return [g for s in test for g in ngrams(pad_both_ends(s, n=n), n)]


def assert_log_equal(ours, theirs, what, tol=1e-9):
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    both_zero = (ours == 0) & (theirs == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = np.where(both_zero, 0.0, np.abs(np.log(ours) - np.log(theirs)))
    assert diff.max() <= tol, f"{what}: max |log p - log p_nltk| = {diff.max():.3e}"


CASES = {
    "mle": (lambda n: MLE(n, min_count=CUTOFF, padding="nltk"), nltk_lm.MLE, {}),
    "laplace": (lambda n: Laplace(n, min_count=CUTOFF, padding="nltk"), nltk_lm.Laplace, {}),
    "add-0.3": (
        lambda n: Lidstone(n, k=0.3, min_count=CUTOFF, padding="nltk"),
        nltk_lm.Lidstone,
        {"gamma": 0.3},
    ),
    "stupid-backoff": (
        lambda n: StupidBackoff(n, alpha=0.4, min_count=CUTOFF, padding="nltk"),
        nltk_lm.StupidBackoff,
        {"alpha": 0.4},
    ),
    "absolute-discounting": (
        lambda n: AbsoluteDiscounting(
            n, [0.0] + [0.75] * (n - 1), min_count=CUTOFF, padding="nltk"
        ),
        nltk_lm.AbsoluteDiscountingInterpolated,
        {"discount": 0.75},
    ),
}


@pytest.mark.parametrize("n", [2, 3, 4])
@pytest.mark.parametrize("name", list(CASES))
def test_scores_equal_nltk(name, n, kjv, seed):
    make, nltk_cls, kw = CASES[name]
    train, test = split(kjv, seed)
    ours = make(n).fit(train)
    theirs = nltk_model(nltk_cls, n, train, **kw)
    assert len(ours.vocab) == len(theirs.vocab)
    qs = queries(test, n)
    qs += [("zzz",) * (n - 1) + ("the",), ("the",) * (n - 1) + ("zzz",)]  # unseen context / word
    got = ours.score_ngrams(qs)
    want = [theirs.score(q[-1], q[:-1]) for q in qs]
    assert_log_equal(got, want, name)
    if name == "laplace":  # the same perplexity over the same n-grams
        ppl_nltk = theirs.perplexity(queries(test, n))
        assert abs(np.log(ours.perplexity(test)) - np.log(ppl_nltk)) < 1e-9


@pytest.mark.parametrize("n", [2, 3, 4])
def test_kneser_ney_equals_nltk_except_first_words(n, kjv, seed):
    """nltk's KneserNeyInterpolated(n, discount=d) = KneserNey(n, [0] + [d] * (n-1)) with
    nltk padding, for every n-gram whose context is not all `<s>`.

    For the first word of a sentence (context <s>^{n-1}), n >= 3, nltk's order-(n-1) weight
    gamma(<s>^{n-2}) counts distinct followers in the raw counts, which include `<s>` (the
    (n-1)-gram <s>^{n-1}, at the very start of each padded sentence, so with no word before
    it and continuation count 0). Kneser-Ney's normaliser counts followers with positive
    continuation count, so nltk's weight is gamma * (N + 1) / N where ours is gamma with
    N followers, and nltk's P( . | <s>^{n-1}) sums to more than 1.
    """
    d = 0.1
    train, test = split(kjv, seed)
    ours = KneserNey(n, discount=[0.0] + [d] * (n - 1), min_count=CUTOFF, padding="nltk")
    ours.fit(train)
    theirs = nltk_model(nltk_lm.KneserNeyInterpolated, n, train, discount=d)
    qs = queries(test, n)
    got = ours.score_ngrams(qs)
    want = np.array([theirs.score(q[-1], q[:-1]) for q in qs])
    first = np.array([all(t == "<s>" for t in q[:-1]) for q in qs])
    assert_log_equal(got[~first], want[~first], "kneser-ney (context not all <s>)")
    if n == 2:
        assert_log_equal(got[first], want[first], "kneser-ney first words, n = 2")
        return
    # The documented difference, reproduced exactly.
    V = len(ours.vocab)
    bos = ours.vocab.lookup("<s>")
    ctx = np.full((1, n), -1)
    ctx[0, :-1] = bos
    from deepnotes.nlp.ngram.counts import window_ranks

    c, _ = window_ranks(ours.tables, ctx, V)
    g_top = ours.gamma[n][c[n][0]]  # gamma_n(<s>^{n-1})
    row = c[n - 1][0]  # <s>^{n-2} in table n-2
    gamma = ours.gamma[n - 1][row]
    a = ours.order_counts(n - 1)
    N = int((a[ours.tables[n - 1].parent == row] > 0).sum())
    nltk_gamma = gamma * (N + 1) / N
    words = [q[-1] for q in np.array(qs, dtype=object)[first]]
    lower = ours.score_ngrams([("<s>",) * (n - 3) + (w,) for w in words])  # P_{n-2}
    predicted = got[first] + g_top * (nltk_gamma - gamma) * lower
    assert_log_equal(predicted, want[first], "kneser-ney first words, nltk's weight")
    assert (np.abs(np.log(got[first]) - np.log(want[first])) > 1e-9).any()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mle", "laplace", "kneser-ney"])
def test_full_size_agreement(name, kjv, seed):
    """5,000 KJV sentences (about 150k tokens), trigrams; KN on 300 random n-grams."""
    rng = np.random.default_rng(seed)
    train, test = kjv[:5000], kjv[5000:5300]
    n = 3
    if name == "kneser-ney":
        ours = KneserNey(n, discount=[0.0, 0.1, 0.1], min_count=CUTOFF, padding="nltk")
        theirs = nltk_model(nltk_lm.KneserNeyInterpolated, n, train, discount=0.1)
    else:
        make, nltk_cls, kw = CASES[name]
        ours, theirs = make(n), nltk_model(nltk_cls, n, train, **kw)
    ours.fit(train)
    qs = [q for q in queries(test, n) if not all(t == "<s>" for t in q[:-1])]
    if name == "kneser-ney":
        qs = [qs[i] for i in rng.choice(len(qs), 300, replace=False)]
    assert_log_equal(ours.score_ngrams(qs), [theirs.score(q[-1], q[:-1]) for q in qs], name)
