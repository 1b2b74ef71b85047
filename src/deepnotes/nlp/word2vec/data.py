"""word2vec data: vocabulary, frequent-word subsampling, the noise distribution, and
(center, context) pairs with word2vec's shrunk ("reduced") windows, all vectorised.

As in word2vec.c and gensim:
- words seen fewer than `min_count` times are dropped before windows are formed;
- subsampling (Mikolov et al. 2013b, the code's form): a word with count c is kept with
  probability min(1, (sqrt(c / t) + 1) t / c), t = sample * (number of kept training words);
  dropped words free their window slots;
- each center draws its window size b uniformly from 1..window;
- negatives come from the unigram distribution raised to 0.75.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, repeat

import numpy as np


@dataclass
class W2VVocab:
    words: list[str]  # by falling count (ties: first seen), as gensim sorts them
    counts: np.ndarray  # int64 [V]

    @classmethod
    def build(cls, sentences: Sequence[Sequence[str]], min_count: int = 5) -> W2VVocab:
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        c = Counter(chain.from_iterable(sentences))
        kept = [w for w, n in c.items() if n >= min_count]  # first-seen order
        kept.sort(key=lambda w: -c[w])  # stable: ties keep first-seen order
        if not kept:
            raise ValueError(f"no word occurs min_count={min_count} times")
        return cls(kept, np.array([c[w] for w in kept], dtype=np.int64))

    def __post_init__(self) -> None:
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, sentences: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Known words only: ids int64 [N] and their sentence numbers int64 [N]."""
        lens = np.fromiter(map(len, sentences), np.int64, len(sentences))
        ids = np.fromiter(map(self.index.get, chain.from_iterable(sentences), repeat(-1)), np.int64)
        sent = np.repeat(np.arange(len(sentences)), lens)
        keep = ids >= 0
        return ids[keep], sent[keep]

    def keep_probability(self, sample: float) -> np.ndarray:
        """P(keep) per word, float64 [V] (1 when sample == 0)."""
        if sample <= 0:
            return np.ones(len(self))
        t = sample * self.counts.sum()
        c = self.counts.astype(np.float64)
        return np.minimum(1.0, (np.sqrt(c / t) + 1) * t / c)

    def noise_distribution(self, power: float = 0.75) -> np.ndarray:
        """Negative-sampling distribution counts^power / Z, float64 [V]."""
        p = self.counts.astype(np.float64) ** power
        return p / p.sum()

    def noise_table(self, power: float = 0.75, size: int = 2**22) -> np.ndarray:
        """word2vec.c's sampling table: word i fills about size * P(i) slots, int64 [size], so
        a negative is table[uniform slot] (a gather instead of a search). Every word gets
        at least one slot; P is matched to within 1 / size."""
        p = self.noise_distribution(power)
        edges = np.round(np.cumsum(p) * size).astype(np.int64)
        slots = np.maximum(np.diff(edges, prepend=0), 1)
        return np.repeat(np.arange(len(self), dtype=np.int64), slots)


def subsample(
    ids: np.ndarray, sent: np.ndarray, keep_prob: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    keep = rng.random(len(ids)) < keep_prob[ids]
    return ids[keep], sent[keep]


def skipgram_pairs(
    ids: np.ndarray, sent: np.ndarray, window: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(center, context) id pairs, int64 [P] each, within sentences and shrunk windows."""
    b = rng.integers(1, window + 1, size=len(ids))
    centers, contexts = [], []
    for o in range(1, min(window, len(ids) - 1) + 1):
        # right neighbours at distance o, and left ones (the same pairs seen from the right)
        ok = sent[o:] == sent[:-o]
        i = np.flatnonzero(ok & (b[:-o] >= o))  # center i, context i + o
        centers.append(ids[i])
        contexts.append(ids[i + o])
        j = np.flatnonzero(ok & (b[o:] >= o)) + o  # center j, context j - o
        centers.append(ids[j])
        contexts.append(ids[j - o])
    if not centers:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(centers), np.concatenate(contexts)


def cbow_windows(
    ids: np.ndarray, sent: np.ndarray, window: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Centers int64 [N'] and their contexts int64 [N', 2 window] (-1 = empty slot); centers
    without any context word are left out."""
    n = len(ids)
    b = rng.integers(1, window + 1, size=n)
    ctx = np.full((n, 2 * window), -1, dtype=np.int64)
    pos = np.arange(n)
    for k, o in enumerate([*range(-window, 0), *range(1, window + 1)]):
        j = pos + o
        ok = (j >= 0) & (j < n) & (abs(o) <= b)
        jc = np.clip(j, 0, n - 1)
        ok &= sent[jc] == sent
        ctx[:, k] = np.where(ok, ids[jc], -1)
    has = (ctx >= 0).any(axis=1)
    return ids[has], ctx[has]
