"""The note's gram features and the tokeniser."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from deepnotes.nlp.ngram import GramFeatures
from deepnotes.nlp.ngram.features import grams
from deepnotes.nlp.words import corpus_sentences, split_sentences, word_tokenize


def test_char_gram_features_equal_brute_force(seed):
    rng = random.Random(seed)
    texts = ["".join(rng.choices("abcde ", k=rng.randint(0, 30))) for _ in range(25)]
    n, threshold = rng.choice([1, 2, 3]), rng.choice([1, 2, 5])
    f = GramFeatures(n=n, min_count=threshold, unit="char")
    X = f.fit_transform(texts)
    total = Counter(t[i : i + n] for t in texts for i in range(len(t) - n + 1))
    assert set(f.grams_) == {g for g, c in total.items() if c >= threshold}
    assert X.shape == (len(texts), len(f.grams_))
    for i, t in enumerate(texts):
        for j, g in enumerate(f.grams_):
            assert X[i, j] == sum(t[p : p + n] == g for p in range(len(t) - n + 1))
    np.testing.assert_array_equal(X.sum(0), f.frequency_)
    # unseen text: only known grams count
    assert f.transform(["zzzz"]).sum() == 0


def test_word_gram_features():
    docs = [["in", "the", "beginning"], ["in", "the", "end"], ["the", "end"]]
    f = GramFeatures(n=2, min_count=2, unit="word").fit(docs)
    assert f.grams_ == [("in", "the"), ("the", "end")]
    assert f.transform(docs).tolist() == [[1, 0], [1, 1], [0, 1]]
    assert grams(["a", "b", "c"], 2) == [("a", "b"), ("b", "c")]
    with pytest.raises(ValueError, match="token lists"):
        f.transform(["a string"])
    with pytest.raises(ValueError, match=">= 1"):
        GramFeatures(n=0)


def test_tokeniser_rules():
    assert word_tokenize("And God said, Let there be light: and there was light.") == [
        "and", "god", "said", ",", "let", "there", "be", "light", ":", "and", "there", "was",
        "light", ".",
    ]  # fmt: skip
    assert word_tokenize("my father's house?") == ["my", "father's", "house", "?"]
    assert split_sentences(["a", ".", "b", "?", "c"]) == [["a", "."], ["b", "?"], ["c"]]


def test_kjv_corpus_size():
    sents = corpus_sentences("kjv")
    n_tokens = sum(map(len, sents))
    assert 25_000 < len(sents) < 35_000 and 900_000 < n_tokens < 1_000_000
    assert sents[0][:3] == ["in", "the", "beginning"]
    assert sum(map(len, corpus_sentences("kjv", max_tokens=1000))) < 1000 + max(map(len, sents))
