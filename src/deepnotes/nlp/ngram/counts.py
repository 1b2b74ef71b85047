"""Integer-encoded n-gram counting with numpy: no Python dicts of tuples.

Sentences are padded (see `pad_sentences`) and concatenated into one int64 array. Every
k-gram (k = 1..n) inside one padded sentence is counted ("everygrams", as nltk.lm does).

Encoding. A k-gram g = (w_1..w_k) gets the key

    key_k(g) = rank_{k-1}(w_1..w_{k-1}) * V + w_k,

where rank_{k-1} is the row of its (k-1)-gram prefix in the sorted table of order k-1 and
V the vocabulary size. Keys are exact (no hashing, no collisions) and stay below
(#(k-1)-grams) * V, far inside int64, for any order. Each order is one `np.unique` over the
window keys; `return_inverse` gives every window's rank, which keys the next order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Literal

import numpy as np

from deepnotes.nlp.ngram.vocab import BOS_ID, EOS_ID, Vocabulary

Padding = Literal["standard", "nltk"]


def pad_sentences(
    sentences: Sequence[Sequence[str]], vocab: Vocabulary, order: int, padding: Padding
) -> tuple[np.ndarray, np.ndarray]:
    """Encode and pad sentences into one flat array.

    - "standard": n-1 `<s>` on the left, one `</s>` on the right (Jurafsky & Martin);
    - "nltk": n-1 `<s>` and n-1 `</s>` (nltk.lm's `pad_both_ends`).

    Returns `tok: int64 [L]` and `pos: int64 [L]`, each token's offset in its padded sentence.
    """
    if padding not in ("standard", "nltk"):
        raise ValueError(f"padding must be 'standard' or 'nltk', got {padding!r}")
    left = order - 1
    right = 1 if padding == "standard" else order - 1
    lens = np.fromiter((len(s) for s in sentences), dtype=np.int64, count=len(sentences))
    ids = vocab.encode(chain.from_iterable(sentences), count=int(lens.sum()))
    padded = lens + left + right
    L = int(padded.sum())
    starts = np.cumsum(padded) - padded
    tok = np.full(L, EOS_ID, dtype=np.int64)
    pos = np.arange(L, dtype=np.int64) - np.repeat(starts, padded)
    tok[pos < left] = BOS_ID
    word_start = np.cumsum(lens) - lens
    where = np.repeat(starts + left, lens) + (np.arange(len(ids)) - np.repeat(word_start, lens))
    tok[where] = ids
    return tok, pos


@dataclass
class NgramTable:
    """All distinct k-grams of one order, sorted by key.

    keys:   int64 [M]  key_k (see module doc); for k = 1 the word id itself
    counts: int64 [M]  occurrences (0 for windows kept only as contexts, see `count_ngrams`)
    parent: int64 [M]  row of the (k-1)-gram prefix (the context) in the table of order k-1
    suffix: int64 [M]  row of the (k-1)-gram suffix (w_2..w_k) in the table of order k-1
    last:   int64 [M]  w_k
    """

    keys: np.ndarray
    counts: np.ndarray
    parent: np.ndarray
    suffix: np.ndarray
    last: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)


def count_ngrams(
    tok: np.ndarray, pos: np.ndarray, order: int, V: int, *, count_bos: bool
) -> list[NgramTable]:
    """Tables for orders 0..n from a padded flat array (order 0: one empty context).

    With `count_bos=False` ("standard" padding), k-grams whose last word is `<s>` keep
    count 0: `<s>` is only ever a context, never a predicted word. They stay in the tables
    because longer n-grams are keyed by their prefixes.
    """
    L = len(tok)
    weight = np.ones(L, dtype=np.int64) if count_bos else (tok != BOS_ID).astype(np.int64)
    zero = np.zeros(1, dtype=np.int64)
    tables = [NgramTable(zero, np.array([int(weight.sum())]), zero, zero, zero)]
    uni_counts = np.bincount(tok, weights=weight, minlength=V).astype(np.int64)
    ar = np.arange(V, dtype=np.int64)
    tables.append(NgramTable(ar, uni_counts, np.zeros(V, np.int64), np.zeros(V, np.int64), ar))
    rank_prev = tok  # rank of the (k-1)-gram ending at each position (-1: none)
    for k in range(2, order + 1):
        valid = np.flatnonzero(pos >= k - 1)
        key = rank_prev[valid - 1] * V + tok[valid]
        uniq, inv = np.unique(key, return_inverse=True)
        counts = np.bincount(inv, weights=weight[valid], minlength=len(uniq)).astype(np.int64)
        some = np.empty(len(uniq), dtype=np.int64)
        some[inv] = valid  # one occurrence of each k-gram; all share the same suffix
        suffix = rank_prev[some]
        tables.append(NgramTable(uniq, counts, uniq // V, suffix, uniq % V))
        rank = np.full(L, -1, dtype=np.int64)
        rank[valid] = inv
        rank_prev = rank
    return tables


def lookup(table: NgramTable, parent: np.ndarray, word: np.ndarray, V: int) -> np.ndarray:
    """Rows of the k-grams (prefix row `parent`, last word `word`) in `table`; -1 if absent.

    parent, word: int64 [Q] (parent -1 = prefix absent, so the k-gram is absent too).
    """
    q = parent * V + word
    idx = np.searchsorted(table.keys, q)
    idx_c = np.minimum(idx, len(table.keys) - 1)
    found = (parent >= 0) & (idx < len(table.keys)) & (table.keys[idx_c] == q)
    return np.where(found, idx_c, -1)


def window_ranks(
    tables: Sequence[NgramTable], X: np.ndarray, V: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Rows of every suffix of each query n-gram and of its context.

    X: int64 [Q, n], each row a context (columns 0..n-2, -1 = no word there, left side
    only) followed by the predicted word (column n-1).
    Returns `ctx[k]`, `gram[k]` for k = 1..n (index 0 unused): int64 [Q], the row in table
    k-1 of the (k-1)-word context and the row in table k of the k-gram that ends with the
    predicted word; -1 where absent.
    """
    Q, n = X.shape
    # R[l][j]: row in table l of the l-gram ending at column j.
    word = np.maximum(X, 0)
    R: list[dict] = [{}, {j: np.where(X[:, j] >= 0, X[:, j], -1) for j in range(n)}]
    for l in range(2, n + 1):
        R.append({j: lookup(tables[l], R[l - 1][j - 1], word[:, j], V) for j in range(l - 1, n)})
    zero = np.zeros(Q, dtype=np.int64)
    ctx = [zero] + [zero if k == 1 else R[k - 1][n - 2] for k in range(1, n + 1)]
    gram = [zero] + [R[k][n - 1] for k in range(1, n + 1)]
    return ctx, gram
