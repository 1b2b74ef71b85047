"""Our ARPA files in KenLM: it loads them and agrees with our probabilities.

Slow (KenLM builds from source: `pip install kenlm`); runs where `kenlm` is importable.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from deepnotes.nlp.ngram import KneserNey, ModifiedKneserNey, write_arpa

kenlm = pytest.importorskip(
    "kenlm", reason="KenLM is optional (it builds from source: pip install kenlm)"
)


def kenlm_log10(model, context, word) -> float:
    """log10 P(word | context) by KenLM's state API, from a null context (no <s>)."""
    state, out = kenlm.State(), kenlm.State()
    model.NullContextWrite(state)
    for w in context:
        model.BaseScore(state, w, out)
        state, out = out, state
    return model.BaseScore(state, word, out)


@pytest.mark.slow
@pytest.mark.parametrize("make", [KneserNey, ModifiedKneserNey], ids=["kn", "mkn"])
def test_kenlm_agrees_on_in_vocabulary_trigrams(make, kjv, tmp_path, seed):
    rng = random.Random(seed)
    start = rng.randrange(0, len(kjv) - 3000)
    lm = make(3, min_count=2).fit(kjv[start : start + 3000])
    path = tmp_path / "lm.arpa"
    write_arpa(lm, path)
    model = kenlm.Model(str(path))
    assert model.order == 3
    # Trigrams listed in the file: KenLM returns the stored value, rounded once to float32.
    seen = {tuple(s[i : i + 3]) for s in kjv[start : start + 3000] for i in range(len(s) - 2)}
    seen = sorted(g for g in seen if all(w in lm.vocab.index for w in g))
    ours = np.log10(lm.score_ngrams(seen))
    theirs = np.array([kenlm_log10(model, g[:2], g[2]) for g in seen])
    err = np.abs(ours - theirs)
    assert err.max() <= 5e-7, f"max |log10 difference| {err.max():.2e} at {seen[err.argmax()]}"
    # Random in-vocabulary trigrams, mostly backed off: KenLM adds up to three float32 values
    # (two backoffs and a probability), each rounded; allow their half-ulps beyond 5e-7.
    words = lm.vocab.words[3:]  # real words: no <unk>, <s>, </s>
    probes = [tuple(rng.choice(words) for _ in range(3)) for _ in range(2000)]
    ours = np.log10(lm.score_ngrams(probes))
    theirs = np.array([kenlm_log10(model, g[:2], g[2]) for g in probes])
    bound = np.maximum(5e-7, 1.5 * np.spacing(np.abs(ours).astype(np.float32)))
    err = np.abs(ours - theirs)
    assert (err <= bound).all(), f"max |log10 difference| {err.max():.2e}"
