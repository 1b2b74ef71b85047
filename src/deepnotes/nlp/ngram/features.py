"""The note's "gram features": n-gram counts as a feature vector, with a frequency threshold.

Slide a window of size N over each text (characters, as in the note's byte-level framing, or
words), count every gram over the whole corpus, keep the grams seen at least `min_count`
times (the "key gram list": the feature space, one dimension per gram), and represent each
text by its counts of those grams.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Literal

import numpy as np


def grams(text: str | Sequence[str], n: int) -> list:
    """All length-n windows of a string (character grams) or a token list (word grams)."""
    if n < 1:
        raise ValueError(f"gram size must be >= 1, got {n}")
    if isinstance(text, str):
        return [text[i : i + n] for i in range(len(text) - n + 1)]
    return [tuple(text[i : i + n]) for i in range(len(text) - n + 1)]


class GramFeatures:
    """fit(texts) builds the key gram list; transform(texts) -> counts [num_texts, num_grams].

    unit: "char" (texts are strings) or "word" (texts are token lists).
    n: the gram size (the note's N; 2 = bigrams, 3 = trigrams).
    min_count: a gram becomes a feature when it occurs at least this often in the corpus.
    """

    def __init__(self, n: int = 2, min_count: int = 2, unit: Literal["char", "word"] = "char"):
        if n < 1:
            raise ValueError(f"gram size must be >= 1, got {n}")
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        if unit not in ("char", "word"):
            raise ValueError(f"unit must be 'char' or 'word', got {unit!r}")
        self.n, self.min_count, self.unit = n, min_count, unit

    def _grams(self, text):
        if self.unit == "char" and not isinstance(text, str):
            raise ValueError("unit='char' takes strings")
        if self.unit == "word" and isinstance(text, str):
            raise ValueError("unit='word' takes token lists")
        return grams(text, self.n)

    def fit(self, texts: Sequence) -> GramFeatures:
        counts = Counter(g for t in texts for g in self._grams(t))
        kept = [g for g, c in counts.items() if c >= self.min_count]
        kept.sort(key=lambda g: (-counts[g], g))
        self.grams_ = kept
        self.frequency_ = np.array([counts[g] for g in kept], dtype=np.int64)
        self.index_ = {g: i for i, g in enumerate(kept)}
        return self

    def transform(self, texts: Sequence) -> np.ndarray:
        """int64 [len(texts), len(grams_)]: how often each key gram occurs in each text."""
        if not hasattr(self, "index_"):
            raise ValueError("GramFeatures is not fitted: call fit(texts) first")
        out = np.zeros((len(texts), len(self.grams_)), dtype=np.int64)
        for i, t in enumerate(texts):
            for g, c in Counter(self._grams(t)).items():
                j = self.index_.get(g)
                if j is not None:
                    out[i, j] = c
        return out

    def fit_transform(self, texts: Sequence) -> np.ndarray:
        return self.fit(texts).transform(texts)
