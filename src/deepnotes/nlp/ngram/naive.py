"""Reference n-gram estimators: Python dicts of tuples and the textbook recursions.

Slow and plain on purpose; `models.py` is checked against it (tests/nlp/test_ngram.py).
Equations as in `models.py`'s module doc.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from deepnotes.nlp.ngram.vocab import BOS, EOS, Vocabulary


def naive_counts(
    sentences: Sequence[Sequence[str]], vocab: Vocabulary, order: int, padding: str
) -> Counter:
    """Counter of every k-gram (tuple of words, k = 1..n) of the padded sentences."""
    right = 1 if padding == "standard" else order - 1
    c: Counter = Counter()
    for s in sentences:
        words = [BOS] * (order - 1) + [vocab.words[vocab.lookup(t)] for t in s] + [EOS] * right
        for k in range(1, order + 1):
            for i in range(len(words) - k + 1):
                g = tuple(words[i : i + k])
                if padding == "standard" and g[-1] == BOS:
                    continue  # <s> is never predicted
                c[g] += 1
    return c


class NaiveLM:
    """kind: mle | add-k | stupid-backoff | absolute-discounting | kneser-ney |
    modified-kneser-ney. `discount[k]` (k = 1..n) is D for the interpolated kinds, a triple
    for modified Kneser-Ney; `k` for add-k; `alpha` for stupid backoff."""

    def __init__(self, kind, order, sentences, vocab, padding="standard", **params):
        self.kind, self.n, self.vocab, self.padding = kind, order, vocab, padding
        self.params = params
        self.c = naive_counts(sentences, vocab, order, padding)
        self.words = [w for w in vocab.words if not (padding == "standard" and w == BOS)]
        # followers[context] = {w: count}; cont[(g)] = N1+(. g)
        self.followers: dict[tuple, dict[str, int]] = defaultdict(dict)
        self.cont: Counter = Counter()
        for g, n in self.c.items():
            self.followers[g[:-1]][g[-1]] = n
            if len(g) >= 2 and n > 0:
                self.cont[g[1:]] += 1

    def a(self, g: tuple) -> int:
        """Counts used at order len(g): raw, or continuation for Kneser-Ney's lower orders."""
        kn = self.kind in ("kneser-ney", "modified-kneser-ney")
        return self.cont[g] if kn and len(g) < self.n else self.c[g]

    def D(self, k: int, a: int) -> float:
        if a == 0:
            return 0.0
        d = self.params["discount"][k]
        if self.kind == "modified-kneser-ney":
            return d[min(a, 3) - 1]
        return d

    def prob(self, word: str, context: Sequence[str]) -> float:
        word = self.vocab.words[self.vocab.lookup(word)]
        if self.padding == "standard" and word == BOS:
            return 0.0
        ctx = tuple(self.vocab.words[self.vocab.lookup(t)] for t in context)[-(self.n - 1) :]
        ctx = ctx if self.n > 1 else ()
        if self.kind == "mle":
            tot = sum(self.followers.get(ctx, {}).values())
            return self.c[(*ctx, word)] / tot if tot else 0.0
        if self.kind == "add-k":
            tot = sum(self.followers.get(ctx, {}).values())
            k = self.params["k"]
            return (self.c[(*ctx, word)] + k) / (tot + k * len(self.words))
        if self.kind == "stupid-backoff":
            return self._sb(word, ctx)
        return self._interp(word, ctx)

    def _sb(self, word, ctx):
        if not ctx:
            return self.c[(word,)] / sum(self.followers[()].values())
        tot = sum(self.followers.get(ctx, {}).values())
        if self.c[(*ctx, word)] > 0:
            return self.c[(*ctx, word)] / tot
        return self.params["alpha"] * self._sb(word, ctx[1:])

    def _interp(self, word, ctx):
        k = len(ctx) + 1
        followers = [(*ctx, v) for v in self.followers.get(ctx, {})]
        a_all = [self.a(g) for g in followers]
        total = sum(a_all)
        if k == 1:
            lower = 1.0 / len(self.words)
        else:
            lower = self._interp(word, ctx[1:])
            if total == 0:
                return lower  # unseen context: back off with weight 1
        if total == 0:
            return lower
        a = self.a((*ctx, word))
        alpha = max(a - self.D(k, a), 0.0) / total
        gamma = sum(self.D(k, x) for x in a_all if x > 0) / total
        return alpha + gamma * lower
