"""ARPA export and import: exact for interpolated models; stupid backoff as documented."""

from __future__ import annotations

import random

import numpy as np
import pytest

from deepnotes.nlp.ngram import (
    MLE,
    AbsoluteDiscounting,
    KneserNey,
    Laplace,
    ModifiedKneserNey,
    StupidBackoff,
    read_arpa,
    write_arpa,
)


def probe_ngrams(lm, rng, n, count=300):
    """Random n-grams over the vocabulary plus unknown words: most contexts unseen."""
    words = [*lm.vocab.words[2:], "zzz"]
    return [tuple(rng.choice(words) for _ in range(n)) for _ in range(count)]


@pytest.mark.parametrize("padding", ["standard", "nltk"])
@pytest.mark.parametrize(
    "make",
    [
        lambda n, p: KneserNey(n, min_count=2, padding=p),
        lambda n, p: ModifiedKneserNey(n, min_count=2, padding=p),
        lambda n, p: AbsoluteDiscounting(n, discount=0.6, min_count=2, padding=p),
    ],
    ids=["kn", "mkn", "absdisc"],
)
@pytest.mark.parametrize("n", [1, 3, 4])
def test_interpolated_roundtrip_is_exact(make, n, padding, kjv, tmp_path, seed):
    rng = random.Random(seed)
    start = rng.randrange(0, len(kjv) - 500)
    train, test = kjv[start : start + 400], kjv[start + 400 : start + 430]
    lm = make(n, padding).fit(train)
    what = write_arpa(lm, tmp_path / "lm.arpa")
    assert "exact" in what
    back = read_arpa(tmp_path / "lm.arpa", padding=padding)
    assert back.order == n and back.vocab.words == lm.vocab.words
    np.testing.assert_allclose(back.token_logprobs(test), lm.token_logprobs(test), atol=1e-9)
    q = probe_ngrams(lm, rng, n)
    with np.errstate(divide="ignore"):  # probability 0 (e.g. </s> at order 1) -> log 0 = -inf
        np.testing.assert_allclose(
            np.log(back.score_ngrams(q)), np.log(lm.score_ngrams(q)), atol=1e-9, rtol=0
        )


def test_arpa_file_layout(kjv, tmp_path):
    lm = KneserNey(3, min_count=2).fit(kjv[:200])
    write_arpa(lm, tmp_path / "lm.arpa")
    text = (tmp_path / "lm.arpa").read_text().splitlines()
    assert text[0] == "\\data\\" and text[-1] == "\\end\\"
    assert text[1:4] == [f"ngram {k}={len(lm.tables[k])}" for k in (1, 2, 3)]
    uni = dict((line.split("\t")[1], line.split("\t")) for line in text if line.count("\t") >= 1)
    assert float(uni["<s>"][0]) == -99.0 and len(uni["<s>"]) == 3  # <s>: no prob, a backoff
    assert abs(10 ** float(uni["the"][0]) - lm.score("the")) < 1e-12


def test_stupid_backoff_export_is_documented(kjv, tmp_path):
    lm = StupidBackoff(3, alpha=0.4, min_count=2).fit(kjv[:400])
    what = write_arpa(lm, tmp_path / "sb.arpa")
    assert "not probabilities" in what
    back = read_arpa(tmp_path / "sb.arpa")
    test = kjv[1000:1030]
    # Sentence n-grams always have seen contexts (<s> ..., and words of the training text
    # or <unk>), except where a context bigram never occurred.
    q = []
    for s in test:
        w = ["<s>", "<s>", *s, "</s>"]
        q += [tuple(w[i - 2 : i + 1]) for i in range(2, len(w))]
    ours, theirs = lm.score_ngrams(q), back.score_ngrams(q)
    ctx_seen = np.array([lm.count(g[:2]) > 0 for g in q])
    full = np.array([lm.count(g) > 0 for g in q])
    same = ctx_seen | full
    np.testing.assert_allclose(np.log(theirs[same]), np.log(ours[same]), atol=1e-9)
    # unseen context, trigram unseen: ARPA skips the penalty alpha that Brants et al. apply
    diff = ~same
    assert diff.any()
    np.testing.assert_allclose(np.log(theirs[diff]), np.log(ours[diff] / 0.4), atol=1e-9)


@pytest.mark.parametrize("cls", [MLE, Laplace])
def test_non_backoff_models_are_refused(cls, tmp_path):
    lm = cls(2).fit([["a", "b"]])
    with pytest.raises(ValueError, match="no exact ARPA"):
        write_arpa(lm, tmp_path / "x.arpa")


def test_bad_arpa_files(tmp_path):
    p = tmp_path / "bad.arpa"
    p.write_text("hello\n\\data\\\n")
    with pytest.raises(ValueError, match="before"):
        read_arpa(p)
    p.write_text("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\ta\n\n\\end\\\n")
    with pytest.raises(ValueError, match="header says"):
        read_arpa(p)
    p.write_text(
        "\\data\\\nngram 1=2\nngram 2=1\n\n\\1-grams:\n-1\ta\n-1\tb\n\n"
        "\\2-grams:\n-0.5\ta c\n\n\\end\\\n"
    )
    with pytest.raises(ValueError, match="missing from the 1-grams"):
        read_arpa(p)
