"""What every n-gram model shares: vocabulary, padding, table lookups, sentence scoring."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deepnotes.nlp.ngram.counts import NgramTable, Padding, pad_sentences, window_ranks
from deepnotes.nlp.ngram.vocab import BOS_ID, EOS_ID, Vocabulary


class NgramIndex:
    """An order-n model over integer-keyed n-gram tables (see `counts`).

    Subclasses set `order`, `padding`, `vocab`, `tables` and implement `_prob_rows`.
    Scores are natural-log probabilities unless a name says otherwise (nltk.lm's `logscore`
    is log2, ARPA files hold log10).
    """

    order: int
    padding: Padding
    vocab: Vocabulary
    tables: list[NgramTable]
    normalised: bool = True  # False for stupid backoff: its scores don't sum to 1

    @property
    def V(self) -> int:
        return len(self.vocab)

    def _check_fitted(self) -> None:
        if not hasattr(self, "tables"):
            raise ValueError(f"{type(self).__name__} is not fitted: call fit(sentences) first")

    # --- the estimator, on integer rows -------------------------------------------------
    def _prob_rows(self, ctx, gram, use, w) -> np.ndarray:  # pragma: no cover - abstract
        """P(w | context) for each query row. ctx[k], gram[k]: rows from `window_ranks`;
        use[k]: bool [Q], the query has a context long enough for order k; w: word ids."""
        raise NotImplementedError

    def prob_ids(self, X: np.ndarray) -> np.ndarray:
        """X: int64 [Q, n] (context ids, -1 = absent on the left; last column = word) -> P [Q].

        Rows shorter than the model order may be given with -1 on the left; the model then
        uses only the orders the context supports (as nltk.lm does for short contexts).
        """
        self._check_fitted()
        X = np.asarray(X, dtype=np.int64)
        if X.ndim != 2 or X.shape[1] != self.order:
            raise ValueError(f"X must be [Q, {self.order}], got {X.shape}")
        ctx, gram = window_ranks(self.tables, X, self.V)
        have = (X[:, :-1] >= 0)[:, ::-1].cumprod(axis=1).sum(axis=1)  # usable context length
        use = [None] + [have >= k - 1 for k in range(1, self.order + 1)]
        w = X[:, -1]
        p = self._prob_rows(ctx, gram, use, w)
        if self.padding == "standard":
            p = np.where(w == BOS_ID, 0.0, p)  # <s> is a context, never predicted
        return p

    # --- strings in, scores out ----------------------------------------------------------
    def _ngram_matrix(self, ngrams: Sequence[Sequence[str]]) -> np.ndarray:
        self._check_fitted()
        n = self.order
        X = np.full((len(ngrams), n), -1, dtype=np.int64)
        for i, g in enumerate(ngrams):
            g = list(g)[-n:]
            if not g:
                raise ValueError("an n-gram needs at least the predicted word")
            X[i, n - len(g) :] = [self.vocab.lookup(t) for t in g]
        return X

    def score_ngrams(self, ngrams: Sequence[Sequence[str]]) -> np.ndarray:
        """Probabilities of the last word of each n-gram given the words before it."""
        return self.prob_ids(self._ngram_matrix(ngrams))

    def logscore_ngrams(self, ngrams: Sequence[Sequence[str]]) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.score_ngrams(ngrams))

    def score(self, word: str, context: Sequence[str] = ()) -> float:
        return float(self.score_ngrams([(*context, word)])[0])

    def logscore(self, word: str, context: Sequence[str] = ()) -> float:
        """Natural log of `score` (-inf for probability 0)."""
        return float(self.logscore_ngrams([(*context, word)])[0])

    # --- sentences -----------------------------------------------------------------------
    def token_logprobs(self, sentences: Sequence[Sequence[str]]) -> np.ndarray:
        """Natural-log probability of every predicted token (words and `</s>`), in order.

        float64 [sum over sentences of (len + number of `</s>` pads)].
        """
        self._check_fitted()
        n = self.order
        tok, pos = pad_sentences(sentences, self.vocab, n, self.padding)
        where = np.flatnonzero(pos >= n - 1)
        X = np.lib.stride_tricks.sliding_window_view(tok, n)[where - (n - 1)]
        with np.errstate(divide="ignore"):
            return np.log(self.prob_ids(X))

    def sentence_logprob(self, tokens: Sequence[str]) -> float:
        """log P(sentence) = sum of the token log-probabilities, `</s>` included."""
        return float(self.token_logprobs([tokens]).sum())

    def perplexity(self, sentences: Sequence[Sequence[str]]) -> float:
        """exp(-mean token log-probability) over all predicted tokens (words and `</s>`).

        Unknown words read as `<unk>`, which every smoothed model gives a positive
        probability, so the perplexity is finite (MLE and stupid backoff can give inf).
        """
        lp = self.token_logprobs(sentences)
        return float(np.exp(-lp.mean()))

    def distribution(self, context: Sequence[str] = ()) -> np.ndarray:
        """P(w | context) for every vocabulary id w: float64 [V]."""
        keep = list(context)[-(self.order - 1) :] if self.order > 1 else []
        ctx = [self.vocab.lookup(t) for t in keep]
        X = np.full((self.V, self.order), -1, dtype=np.int64)
        if ctx:
            X[:, self.order - 1 - len(ctx) : self.order - 1] = ctx
        X[:, -1] = np.arange(self.V)
        return self.prob_ids(X)

    def sample(self, rng: np.random.Generator | int | None = None, max_len: int = 50) -> list[str]:
        """Draw one sentence word by word from P(w | previous n-1 words), until `</s>`."""
        rng = np.random.default_rng(rng)
        ctx = ["<s>"] * (self.order - 1)
        out: list[str] = []
        for _ in range(max_len):
            p = self.distribution(ctx)
            if p.sum() <= 0:
                break
            w = int(rng.choice(self.V, p=p / p.sum()))
            if w == EOS_ID:
                break
            word = self.vocab.words[w]
            out.append(word)
            ctx = (ctx + [word])[1:] if self.order > 1 else []
        return out
