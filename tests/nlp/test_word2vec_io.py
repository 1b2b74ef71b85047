"""word2vec text and binary files: gensim reads ours, we read gensim's."""

from __future__ import annotations

import numpy as np
import pytest

from deepnotes.nlp.word2vec import Word2Vec, load_word2vec_format, save_word2vec_format

gensim_models = pytest.importorskip("gensim.models")

WORDS = ["the", "lord", "said", "God", "ünïcode", "x", "aaaa"]


@pytest.mark.parametrize("binary", [False, True])
def test_gensim_reads_our_files(tmp_path, binary, seed):
    rng = np.random.default_rng(seed)
    vec = rng.standard_normal((len(WORDS), 13)) * 10.0 ** rng.integers(-4, 4, (1, 13))
    vec = vec.astype(np.float32)
    path = save_word2vec_format(tmp_path / "v.w2v", WORDS, vec, binary=binary)
    kv = gensim_models.KeyedVectors.load_word2vec_format(str(path), binary=binary)
    assert list(kv.index_to_key) == WORDS
    np.testing.assert_array_equal(kv.vectors, vec)  # float32 exactly, text format included
    words, back = load_word2vec_format(path, binary=binary)
    assert words == WORDS and np.array_equal(back, vec)
    other = tmp_path / "gensim.w2v"  # and gensim's own files read back with ours
    kv.save_word2vec_format(str(other), binary=binary)
    words, back = load_word2vec_format(other, binary=binary)
    assert words == WORDS and np.array_equal(back, vec)


def test_trained_model_round_trip(tmp_path):
    sents = [["in", "the", "beginning", "god", "created", "the", "heaven"]] * 30
    w2v = Word2Vec(dim=8, min_count=1, epochs=1, batch_size=64)
    w2v.fit(sents)
    for binary in (False, True):
        path = w2v.save_word2vec_format(tmp_path / f"m{binary}", binary=binary)
        kv = gensim_models.KeyedVectors.load_word2vec_format(str(path), binary=binary)
        assert list(kv.index_to_key) == w2v.vocab.words
        np.testing.assert_array_equal(kv.vectors, w2v.vectors)


def test_bad_words_and_shapes(tmp_path):
    v = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="without whitespace"):
        save_word2vec_format(tmp_path / "a", ["a b", "c"], v)
    with pytest.raises(ValueError, match="expected vectors"):
        save_word2vec_format(tmp_path / "a", ["a"], v)
    with pytest.raises(ValueError, match="distinct"):
        save_word2vec_format(tmp_path / "a", ["a", "a"], v)
    (tmp_path / "bad").write_text("not a header\n")
    with pytest.raises(ValueError, match="is not 'V d'"):
        load_word2vec_format(tmp_path / "bad")
