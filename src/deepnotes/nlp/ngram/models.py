"""N-gram estimators: MLE, add-k (Lidstone/Laplace), stupid backoff, absolute discounting,
interpolated Kneser-Ney and modified Kneser-Ney.

Notation (order k, context c of k-1 words, word w, counts from `counts.count_ngrams`):
    c(cw)            occurrences of the k-gram cw
    c(c.)            sum_w c(cw), the context total
    N1+(c.)          number of distinct w with c(cw) > 0
    N1+(.cw)         number of distinct v with c(vcw) > 0 (Kneser-Ney continuation count)

- MLE:          P(w|c) = c(cw) / c(c.)
- add-k:        P(w|c) = (c(cw) + k) / (c(c.) + k |V|)            (k = 1: Laplace)
- stupid backoff (Brants et al. 2007, not normalised):
                S(w|c) = c(cw) / c(c.) if c(cw) > 0 else alpha S(w|c'),  S(w) = c(w) / N
- interpolated absolute discounting (Ney et al. 1994) and Kneser-Ney (Chen & Goodman 1998):
                P(w|c) = max(a(cw) - D, 0) / a(c.) + gamma(c) P(w|c'),
                gamma(c) = D N1+(c.) / a(c.)            (gamma = 1 when a(c.) = 0)
  with c' the context without its first word, a = raw counts for absolute discounting and for
  the highest order of Kneser-Ney, a = continuation counts N1+(.cw) for Kneser-Ney's lower
  orders. The unigram level interpolates with the uniform distribution over the predictable
  vocabulary: P(w) = max(a(w) - D_1, 0) / a(.) + D_1 N1+(.) / a(.) / |V|. A discount of 0 at
  the unigram level gives nltk.lm's lowest order (no uniform share).
- modified Kneser-Ney (Chen & Goodman 1998, sec. 3): D depends on the count, D(1), D(2),
  D(3+), estimated per order from counts of counts n_r:
                Y = n1 / (n1 + 2 n2),  D(r) = r - (r + 1) Y n_{r+1} / n_r,
                gamma(c) = (D(1) N1(c.) + D(2) N2(c.) + D(3+) N3+(c.)) / a(c.).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deepnotes.nlp.ngram.base import NgramIndex
from deepnotes.nlp.ngram.counts import Padding, count_ngrams, pad_sentences
from deepnotes.nlp.ngram.vocab import BOS_ID, Vocabulary


class NgramLM(NgramIndex):
    """Counting and fitting; estimators subclass it and fill `_estimate` / `_prob_rows`.

    order: n (>= 1). min_count: words seen fewer times read as `<unk>`. padding: "standard"
    (n-1 `<s>`, one `</s>`) or "nltk" (n-1 of each, as nltk.lm's pipeline).
    """

    name = "ngram"

    def __init__(self, order: int, *, min_count: int = 1, padding: Padding = "standard"):
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        if padding not in ("standard", "nltk"):
            raise ValueError(f"padding must be 'standard' or 'nltk', got {padding!r}")
        self.order = order
        self.min_count = min_count
        self.padding = padding

    def fit(self, sentences: Sequence[Sequence[str]], vocab: Vocabulary | None = None):
        """Count every k-gram (k <= n) of the padded sentences, then estimate. Returns self."""
        if len(sentences) == 0:
            raise ValueError("cannot fit an n-gram model on no sentences")
        self.vocab = vocab if vocab is not None else Vocabulary.build(sentences, self.min_count)
        tok, pos = pad_sentences(sentences, self.vocab, self.order, self.padding)
        self.tables = count_ngrams(tok, pos, self.order, self.V, count_bos=self.padding == "nltk")
        # P(w) of the uniform distribution over the words the model can predict.
        self.uniform = np.ones(self.V)
        if self.padding == "standard":
            self.uniform[BOS_ID] = 0.0
        self.uniform /= self.uniform.sum()
        self._estimate()
        return self

    def _estimate(self) -> None:
        pass

    def context_totals(self, k: int, a: np.ndarray | None = None) -> np.ndarray:
        """sum_w a(cw) for every context row c of table k-1 (a = raw counts by default)."""
        t = self.tables[k]
        a = t.counts if a is None else a
        return np.bincount(t.parent, weights=a, minlength=len(self.tables[k - 1]))

    def num_ngrams(self) -> list[int]:
        """Distinct k-grams with a positive count, k = 1..n."""
        return [int((t.counts > 0).sum()) for t in self.tables[1:]]

    def count(self, ngram: Sequence[str]) -> int:
        """Occurrences of an n-gram (length 1..n) in the padded training text."""
        X = self._ngram_matrix([ngram])
        from deepnotes.nlp.ngram.counts import window_ranks

        k = len(ngram)
        Xk = np.full((1, self.order), -1, dtype=np.int64)
        Xk[0, self.order - k :] = X[0, self.order - k :]
        _, gram = window_ranks(self.tables, Xk, self.V)
        row = int(gram[k][0])
        return int(self.tables[k].counts[row]) if row >= 0 else 0


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b > 0)


def _rows(arr: np.ndarray, rows: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """arr[rows] with `fill` where rows == -1."""
    return np.where(rows >= 0, arr[np.maximum(rows, 0)], fill)


class _RelFreq(NgramLM):
    """Shared by MLE and add-k: the estimate uses only the longest usable context."""

    def _estimate(self) -> None:
        self.totals = [None] + [self.context_totals(k) for k in range(1, self.order + 1)]

    def _at_order(self, k, ctx, gram) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _prob_rows(self, ctx, gram, use, w):
        p = self._at_order(1, ctx, gram)
        for k in range(2, self.order + 1):
            p = np.where(use[k], self._at_order(k, ctx, gram), p)
        return p


class MLE(_RelFreq):
    """P(w|c) = c(cw) / c(c.); 0 for an unseen context (as nltk.lm)."""

    name = "mle"

    def _at_order(self, k, ctx, gram):
        num = _rows(self.tables[k].counts, gram[k]).astype(np.float64)
        return _safe_div(num, _rows(self.totals[k], ctx[k]))


class Lidstone(_RelFreq):
    """Add-k: P(w|c) = (c(cw) + k) / (c(c.) + k |V|); |V| counts `<unk>`, `</s>` and, with
    nltk padding, `<s>` (the words the model can predict)."""

    name = "add-k"

    def __init__(self, order: int, k: float = 1.0, **kw):
        if k <= 0:
            raise ValueError(f"add-k needs k > 0, got {k}")
        super().__init__(order, **kw)
        self.k = k

    def _estimate(self) -> None:
        super()._estimate()
        self.n_predictable = self.V - (1 if self.padding == "standard" else 0)

    def _at_order(self, k, ctx, gram):
        num = _rows(self.tables[k].counts, gram[k]) + self.k
        return num / (_rows(self.totals[k], ctx[k]) + self.k * self.n_predictable)


class Laplace(Lidstone):
    """Add-one smoothing."""

    name = "laplace"

    def __init__(self, order: int, **kw):
        super().__init__(order, k=1.0, **kw)


class StupidBackoff(NgramLM):
    """Brants et al. (2007): relative frequency, else alpha times the shorter context's score.

    Not a probability: scores for one context don't sum to 1 (`normalised = False`).
    """

    name = "stupid-backoff"
    normalised = False

    def __init__(self, order: int, alpha: float = 0.4, **kw):
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        super().__init__(order, **kw)
        self.alpha = alpha

    def _estimate(self) -> None:
        self.totals = [None] + [self.context_totals(k) for k in range(1, self.order + 1)]
        # Relative frequency of every stored k-gram (used by scoring and by ARPA export).
        self.relfreq = [None]
        for k in range(1, self.order + 1):
            t = self.tables[k]
            self.relfreq.append(_safe_div(t.counts.astype(np.float64), self.totals[k][t.parent]))

    def _prob_rows(self, ctx, gram, use, w):
        s = self.relfreq[1][w]
        for k in range(2, self.order + 1):
            seen = _rows(self.tables[k].counts, gram[k]) > 0
            s_k = np.where(seen, _rows(self.relfreq[k], gram[k]), self.alpha * s)
            s = np.where(use[k], s_k, s)
        return s


class _Interpolated(NgramLM):
    """P_k(w|c) = alpha_k(cw) + gamma_k(c) P_{k-1}(w|c'), precomputed per table row."""

    def order_counts(self, k: int) -> np.ndarray:
        """a_k over table k: raw counts here; Kneser-Ney overrides for lower orders."""
        return self.tables[k].counts

    def _discount(self, k: int, a: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """D_k(a) for each row (0 where a == 0)."""
        raise NotImplementedError

    def _estimate(self) -> None:
        self.alpha = [None]
        self.gamma = [None]
        for k in range(1, self.order + 1):
            t = self.tables[k]
            a = self.order_counts(k).astype(np.float64)
            d = np.where(a > 0, self._discount(k, a), 0.0)
            total = self.context_totals(k, a)
            self.alpha.append(_safe_div(np.maximum(a - d, 0.0), total[t.parent]))
            removed = np.bincount(t.parent, weights=d, minlength=len(total))
            self.gamma.append(np.where(total > 0, _safe_div(removed, total), 1.0))
        # Unigram level: the discounted mass goes to the uniform distribution.
        self.p1 = self.alpha[1] + self.gamma[1][0] * self.uniform

    def table_probs(self) -> list[np.ndarray]:
        """P_k(last word | context) for every row of every table (k = 1..n), by recursion
        P_k[g] = alpha_k[g] + gamma_k[parent(g)] P_{k-1}[suffix(g)]. Used for ARPA export."""
        out = [None, self.p1]
        for k in range(2, self.order + 1):
            t = self.tables[k]
            out.append(self.alpha[k] + self.gamma[k][t.parent] * out[k - 1][t.suffix])
        return out

    def _prob_rows(self, ctx, gram, use, w):
        p = self.p1[w]
        for k in range(2, self.order + 1):
            c = ctx[k]
            p_k = _rows(self.alpha[k], gram[k]) + _rows(self.gamma[k], c, 1.0) * p
            p = np.where(use[k] & (c >= 0), p_k, p)
        return p


def _per_order(discount, order: int, what: str) -> list[float | None]:
    """None | float | sequence of n floats (index 0 = unigrams) -> [None, D_1..D_n]."""
    if discount is None:
        return [None] * (order + 1)
    if np.isscalar(discount):
        values = [float(discount)] * order
    else:
        values = [float(d) for d in discount]
        if len(values) != order:
            raise ValueError(f"{what}: give one discount per order ({order}), got {len(values)}")
    for d in values:
        if not 0 <= d <= 1:
            raise ValueError(f"{what}: a discount must be in [0, 1], got {d}")
    return [None, *values]


def counts_of_counts(a: np.ndarray, upto: int = 4) -> list[int]:
    """[n_1 .. n_upto]: how many rows have a == r."""
    a = a[a > 0].astype(np.int64)
    bc = np.bincount(np.minimum(a, upto + 1), minlength=upto + 2)
    return [int(x) for x in bc[1 : upto + 1]]


class AbsoluteDiscounting(_Interpolated):
    """Interpolated absolute discounting on raw counts (Ney, Essen & Kneser 1994).

    discount: one D for every order, one per order (index 0 = unigrams), or None for Ney's
    estimate D = n1 / (n1 + 2 n2) per order.
    """

    name = "absolute-discounting"

    def __init__(self, order: int, discount: float | Sequence[float] | None = 0.75, **kw):
        super().__init__(order, **kw)
        self.discount_arg = discount
        self.discount = _per_order(discount, order, type(self).__name__)

    def _estimate(self) -> None:
        self.discount = _per_order(self.discount_arg, self.order, type(self).__name__)
        super()._estimate()

    def _discount(self, k, a):
        if self.discount[k] is None:
            n1, n2 = counts_of_counts(a, 2)
            self.discount[k] = n1 / (n1 + 2 * n2) if n1 + n2 > 0 else 0.5
        return np.full_like(a, self.discount[k])


class KneserNey(AbsoluteDiscounting):
    """Interpolated Kneser-Ney: absolute discounting with continuation counts below order n.

    discount: as `AbsoluteDiscounting` (default None: Ney's estimate per order). nltk.lm's
    `KneserNeyInterpolated(n, discount=d)` is `KneserNey(n, discount=[0] + [d] * (n - 1),
    padding="nltk")` except where docs/ngram.md says they differ.
    """

    name = "kneser-ney"

    def __init__(self, order: int, discount: float | Sequence[float] | None = None, **kw):
        super().__init__(order, discount=discount, **kw)

    def order_counts(self, k: int) -> np.ndarray:
        if k == self.order:
            return self.tables[k].counts
        up = self.tables[k + 1]
        return np.bincount(up.suffix, weights=up.counts > 0, minlength=len(self.tables[k]))


class ModifiedKneserNey(KneserNey):
    """Chen & Goodman's modified Kneser-Ney: three discounts D(1), D(2), D(3+) per order.

    discounts: None to estimate them from counts of counts (on the counts each order uses);
    or a sequence of n triples. Where the corpus is too small for the estimate (a count of
    counts is 0 or a D falls outside [0, r]), that order uses (0.5, 1.0, 1.5), KenLM's
    fallback, and `fallback_orders` lists it.
    """

    name = "modified-kneser-ney"
    FALLBACK = (0.5, 1.0, 1.5)

    def __init__(self, order: int, discounts: Sequence[Sequence[float]] | None = None, **kw):
        super().__init__(order, discount=None, **kw)
        if discounts is not None:
            if len(discounts) != order or any(len(d) != 3 for d in discounts):
                raise ValueError(f"discounts: give {order} triples (D1, D2, D3+)")
            for r_d in discounts:
                for r, d in enumerate(r_d, start=1):
                    if not 0 <= d <= r:
                        raise ValueError(f"discount D({r}) must be in [0, {r}], got {d}")
        self.given = discounts

    def _estimate(self) -> None:
        self.discounts: list[tuple[float, float, float] | None] = [None] * (self.order + 1)
        self.fallback_orders: list[int] = []
        _Interpolated._estimate(self)

    def estimate_discounts(self, a: np.ndarray) -> tuple[float, float, float] | None:
        n1, n2, n3, n4 = counts_of_counts(a, 4)
        if min(n1, n2, n3, n4) == 0:
            return None
        Y = n1 / (n1 + 2 * n2)
        D = (1 - 2 * Y * n2 / n1, 2 - 3 * Y * n3 / n2, 3 - 4 * Y * n4 / n3)
        if not all(0 <= d <= r for r, d in enumerate(D, start=1)):
            return None
        return D

    def _discount(self, k, a):
        if self.given is not None:
            D = tuple(self.given[k - 1])
        else:
            D = self.estimate_discounts(a)
            if D is None:
                D = self.FALLBACK
                self.fallback_orders.append(k)
        self.discounts[k] = D
        return np.select([a == 1, a == 2, a >= 3], list(D), 0.0)
