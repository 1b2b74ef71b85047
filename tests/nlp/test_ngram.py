"""N-gram models: counts, every estimator against the dict-based reference, normalisation,
perplexity with unknown words, modified Kneser-Ney discounts, sampling, errors."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from deepnotes.nlp.ngram import (
    MLE,
    AbsoluteDiscounting,
    KneserNey,
    Laplace,
    Lidstone,
    ModifiedKneserNey,
    StupidBackoff,
    Vocabulary,
)
from deepnotes.nlp.ngram.counts import pad_sentences
from deepnotes.nlp.ngram.models import counts_of_counts
from deepnotes.nlp.ngram.naive import NaiveLM, naive_counts


def random_corpus(rng: random.Random, n_sent=40, vocab=12):
    """Sentences of random lengths over a small Zipf-ish vocabulary (plenty of repeats)."""
    words = [f"w{i}" for i in range(vocab)]
    weights = [1 / (i + 1) for i in range(vocab)]
    return [rng.choices(words, weights, k=rng.randint(1, 9)) for _ in range(n_sent)]


def models_and_reference(n, padding, seed):
    """(fast model, NaiveLM kind, reference params) for every estimator."""
    rng = random.Random(seed)
    d = round(rng.uniform(0.2, 0.9), 3)
    k = round(rng.uniform(0.05, 2.0), 3)
    return [
        (MLE(n, padding=padding), "mle", {}),
        (Lidstone(n, k=k, padding=padding), "add-k", {"k": k}),
        (StupidBackoff(n, alpha=0.4, padding=padding), "stupid-backoff", {"alpha": 0.4}),
        (
            AbsoluteDiscounting(n, discount=d, padding=padding),
            "absolute-discounting",
            {"discount": [None] + [d] * n},
        ),
        (KneserNey(n, padding=padding), "kneser-ney", None),
        (ModifiedKneserNey(n, padding=padding), "modified-kneser-ney", None),
    ]


@pytest.mark.parametrize("padding", ["standard", "nltk"])
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_counts_equal_dict_counting(n, padding, seed):
    rng = random.Random(seed)
    sents = random_corpus(rng)
    lm = MLE(n, min_count=2, padding=padding).fit(sents)
    ref = naive_counts(sents, lm.vocab, n, padding)
    for g, c in ref.items():
        assert lm.count(g) == c, g
    # and nothing extra: the positive counts add up per order
    for k in range(1, n + 1):
        want = sum(c for g, c in ref.items() if len(g) == k)
        assert int(lm.tables[k].counts.sum()) == want
        assert lm.num_ngrams()[k - 1] == sum(1 for g, c in ref.items() if len(g) == k and c > 0)


def test_padding_layout():
    v = Vocabulary.build([["a", "b"]])
    tok, pos = pad_sentences([["a", "b"], ["b"]], v, 3, "standard")
    assert v.decode(tok) == ["<s>", "<s>", "a", "b", "</s>", "<s>", "<s>", "b", "</s>"]
    assert pos.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3]
    tok, _ = pad_sentences([["a"]], v, 3, "nltk")
    assert v.decode(tok) == ["<s>", "<s>", "a", "</s>", "</s>"]


@pytest.mark.parametrize("padding", ["standard", "nltk"])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_every_estimator_equals_reference(n, padding, seed):
    rng = random.Random(seed)
    train = random_corpus(rng, n_sent=30, vocab=10)
    test = random_corpus(rng, n_sent=8, vocab=14)  # words w10..w13 are unknown
    for lm, kind, params in models_and_reference(n, padding, seed):
        lm.min_count = 2
        lm.fit(train)
        if kind == "kneser-ney":
            params = {"discount": lm.discount}
        elif kind == "modified-kneser-ney":
            params = {"discount": lm.discounts}
        ref = NaiveLM(kind, n, train, lm.vocab, padding, **params)
        queries = []
        for s in test:
            w = ["<s>"] * (n - 1) + s + ["</s>"]
            queries += [tuple(w[i - n + 1 : i + 1]) for i in range(n - 1, len(w))]
        queries += [("w3",) * (n - 1) + ("w1",), ("<s>",) * n]  # repeated, predicting <s>
        got = lm.score_ngrams(queries)
        want = np.array([ref.prob(q[-1], q[:-1]) for q in queries])
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15, err_msg=kind)


@pytest.mark.parametrize("padding", ["standard", "nltk"])
@pytest.mark.parametrize(
    "make",
    [
        lambda n, p: Laplace(n, padding=p),
        lambda n, p: Lidstone(n, k=0.01, padding=p),
        lambda n, p: AbsoluteDiscounting(n, discount=None, padding=p),
        lambda n, p: KneserNey(n, padding=p),
        lambda n, p: ModifiedKneserNey(n, padding=p),
    ],
    ids=["laplace", "add-0.01", "absdisc", "kn", "mkn"],
)
def test_distributions_sum_to_one(make, padding, kjv, seed):
    rng = random.Random(seed)
    start = rng.randrange(0, len(kjv) - 400)
    lm = make(3, padding).fit(kjv[start : start + 300])
    contexts = [("<s>", "<s>"), ("and", "the"), ("of", "the"), ("zzz", "qqq"), ("the", "zzz")]
    contexts += [tuple(rng.choice(lm.vocab.words[3:]) for _ in range(2)) for _ in range(5)]
    for c in contexts:
        p = lm.distribution(c)
        assert (p >= 0).all()
        assert abs(p.sum() - 1.0) < 1e-12, (c, p.sum())
        if padding == "standard":
            assert p[lm.vocab.lookup("<s>")] == 0.0


def test_mle_normalised_on_seen_contexts_and_stupid_backoff_is_not(kjv):
    train = kjv[:300]
    mle = MLE(3).fit(train)
    assert abs(mle.distribution(("and", "the")).sum() - 1) < 1e-12
    assert mle.distribution(("zzz", "qqq")).sum() == 0.0  # unseen context: no mass (as nltk)
    sb = StupidBackoff(3).fit(train)
    assert not sb.normalised
    assert abs(sb.distribution(("and", "the")).sum() - 1) > 1e-3


def test_perplexity_finite_with_unknown_words(kjv):
    train, test = kjv[:2000], kjv[20000:20200]
    unseen = [["qwzx", "and", "the", "vvvq", "."]]
    for lm in (
        Laplace(3, min_count=2),
        AbsoluteDiscounting(3, min_count=2),
        KneserNey(3, min_count=2),
        ModifiedKneserNey(3, min_count=2),
    ):
        lm.fit(train)
        assert np.isfinite(lm.perplexity(test)) and np.isfinite(lm.perplexity(unseen))
        assert np.isfinite(lm.sentence_logprob(unseen[0]))
    # Without <unk> mass in the unigram level nothing is finite for unseen words.
    mle = MLE(3, min_count=1).fit(train)
    assert mle.perplexity(unseen) == np.inf
    # Smoothing that uses context counts well beats add-one on held-out text.
    ppl = {
        type(lm).__name__: lm.fit(train).perplexity(test)
        for lm in (Laplace(3, min_count=2), KneserNey(3, min_count=2))
    }
    assert ppl["KneserNey"] < 0.5 * ppl["Laplace"], ppl


def test_sentence_logprob_is_sum_of_token_logprobs(kjv):
    lm = KneserNey(3, min_count=2).fit(kjv[:500])
    s = kjv[900]
    toks = ["<s>", "<s>", *s, "</s>"]
    by_ngram = sum(lm.logscore(toks[i], toks[i - 2 : i]) for i in range(2, len(toks)))
    assert abs(lm.sentence_logprob(s) - by_ngram) < 1e-9
    assert len(lm.token_logprobs([s, s])) == 2 * (len(s) + 1)


def test_modified_kn_discounts_follow_chen_goodman(kjv):
    lm = ModifiedKneserNey(3, min_count=2).fit(kjv[:3000])
    assert lm.fallback_orders == []
    for k in (1, 2, 3):
        a = lm.order_counts(k)
        n1, n2, n3, n4 = (int((a == r).sum()) for r in (1, 2, 3, 4))
        Y = n1 / (n1 + 2 * n2)
        want = (1 - 2 * Y * n2 / n1, 2 - 3 * Y * n3 / n2, 3 - 4 * Y * n4 / n3)
        np.testing.assert_allclose(lm.discounts[k], want, rtol=1e-12)
        assert counts_of_counts(a, 4) == [n1, n2, n3, n4]
    # Kneser-Ney's default D is Ney's estimate n1 / (n1 + 2 n2) on the same counts.
    kn = KneserNey(3, min_count=2).fit(kjv[:3000])
    a = kn.order_counts(3)
    n1, n2 = int((a == 1).sum()), int((a == 2).sum())
    assert abs(kn.discount[3] - n1 / (n1 + 2 * n2)) < 1e-12


def test_modified_kn_falls_back_on_tiny_corpora():
    lm = ModifiedKneserNey(2).fit([["a", "b"], ["a", "c"]])
    assert lm.fallback_orders and lm.discounts[2] == ModifiedKneserNey.FALLBACK
    assert abs(lm.distribution(("a",)).sum() - 1) < 1e-12


def test_kneser_ney_continuation_counts_by_hand():
    # "francisco" is frequent but only ever follows "san": its continuation count is 1.
    sents = [["san", "francisco"]] * 5 + [["a", "b"], ["c", "b"], ["d", "b"]]
    lm = KneserNey(2, discount=0.5).fit(sents)
    a1 = lm.order_counts(1)
    assert a1[lm.vocab.lookup("francisco")] == 1 and a1[lm.vocab.lookup("b")] == 3
    # P_1(b) = (3 - .5) / N1+(..) + gamma_0 / |V|, with N1+(..) = number of bigram types
    n_types = len([g for g in naive_counts(sents, lm.vocab, 2, "standard") if len(g) == 2])
    n_cont = int((a1 > 0).sum())
    want = (3 - 0.5) / n_types + 0.5 * n_cont / n_types / (len(lm.vocab) - 1)
    assert abs(lm.score("b") - want) < 1e-15


def test_sampling(kjv, seed):
    train = kjv[:400]
    mle = MLE(3).fit(train)
    for i in range(5):
        s = mle.sample(seed + i, max_len=40)
        assert s, "a sample has at least one word"
        w = ["<s>", "<s>", *s]
        for j in range(2, len(w)):  # MLE can only produce trigrams it has seen
            assert mle.count(w[j - 2 : j + 1]) > 0
    assert mle.sample(seed, max_len=30) == mle.sample(seed, max_len=30)
    # First words follow P(w | <s> <s>): compare frequencies over many draws.
    kn = KneserNey(3).fit(train)
    p = kn.distribution(("<s>", "<s>"))
    rng = np.random.default_rng(seed)
    firsts = Counter((kn.sample(rng, max_len=1) or ["</s>"])[0] for _ in range(400))
    top = int(np.argmax(p))
    freq = firsts[kn.vocab.words[top]] / 400
    assert abs(freq - p[top]) < 5 * np.sqrt(p[top] * (1 - p[top]) / 400) + 1e-9


def test_vocabulary_cutoff_and_unknown():
    v = Vocabulary.build([["a", "a", "b", "c", "c", "c"]], min_count=2)
    assert v.words == ["<unk>", "<s>", "</s>", "c", "a"]
    assert v.encode(["a", "b", "zz"]).tolist() == [4, 0, 0]
    lm = Laplace(2, min_count=2).fit([["a", "a", "b", "c", "c", "c"]])
    assert lm.score("b", ["a"]) == lm.score("<unk>", ["a"]) == lm.score("zz", ["a"])


def test_bad_input_raises():
    with pytest.raises(ValueError, match="order"):
        KneserNey(0)
    with pytest.raises(ValueError, match="padding"):
        KneserNey(2, padding="left")
    with pytest.raises(ValueError, match="not fitted"):
        KneserNey(2).score("a")
    with pytest.raises(ValueError, match="discount"):
        KneserNey(2, discount=1.5)
    with pytest.raises(ValueError, match="one discount per order"):
        KneserNey(3, discount=[0.1, 0.2])
    with pytest.raises(ValueError, match="no sentences"):
        KneserNey(2).fit([])
    with pytest.raises(ValueError, match="k > 0"):
        Lidstone(2, k=0)
    with pytest.raises(ValueError, match="min_count"):
        Vocabulary.build([["a"]], min_count=0)
