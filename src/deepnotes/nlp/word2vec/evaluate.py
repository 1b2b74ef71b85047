"""Word-vector evaluation: analogies (3CosAdd) and word similarity (Spearman rho).

The data sets ship inside gensim's wheel (`gensim.test.utils.datapath`):
`questions-words.txt` (Mikolov's analogies), `wordsim353.tsv`, `simlex999.txt`.
Words are compared lowercased, and only the first `restrict_vocab` words count as known, as
gensim's `evaluate_word_pairs` / `evaluate_word_analogies` do, so the same vectors give the
same numbers in both (tested). Coverage says how much of each set the vocabulary reaches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def gensim_datapath(name: str) -> str:
    try:
        from gensim.test.utils import datapath
    except ImportError as e:
        raise ImportError("the evaluation sets ship with gensim: pip install gensim") from e
    return datapath(name)


@dataclass
class SimilarityResult:
    spearman: float  # rho between cosine similarity and the human score, over covered pairs
    pairs: int  # pairs with both words known
    total: int  # pairs in the file

    @property
    def coverage(self) -> float:
        return self.pairs / self.total if self.total else 0.0


@dataclass
class AnalogyResult:
    accuracy: float  # correct / covered (0 when nothing is covered)
    correct: int
    covered: int  # questions with all four words known
    total: int

    @property
    def coverage(self) -> float:
        return self.covered / self.total if self.total else 0.0


def _known(words: Sequence[str], restrict_vocab: int) -> dict[str, int]:
    known: dict[str, int] = {}
    for i, w in enumerate(words[:restrict_vocab]):
        known.setdefault(w.lower(), i)  # the most frequent spelling wins, as in gensim
    return known


def _unit(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float64)
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(n > 0, n, 1.0)


def word_similarity(
    words: Sequence[str], vectors: np.ndarray, path: str, restrict_vocab: int = 300_000
) -> SimilarityResult:
    """Spearman rho of cosine similarities against a `word1<TAB>word2<TAB>score` file."""
    from scipy.stats import spearmanr

    known = _known(words, restrict_vocab)
    unit = _unit(vectors)
    model, human, total = [], [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            a, b, score = line.strip().split("\t")
            total += 1
            a, b = a.lower(), b.lower()
            if a in known and b in known:
                model.append(float(unit[known[a]] @ unit[known[b]]))
                human.append(float(score))
    rho = float(spearmanr(model, human).statistic) if len(model) > 1 else float("nan")
    return SimilarityResult(rho, len(model), total)


def analogy_accuracy(
    words: Sequence[str], vectors: np.ndarray, path: str, restrict_vocab: int = 300_000
) -> AnalogyResult:
    """a : b :: c : ?  answered by argmax_x cos(x, b - a + c) over unit vectors, excluding a,
    b and c (3CosAdd), on questions whose four words are all known."""
    known = _known(words, restrict_vocab)
    quads, total = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith(":") or not line.strip():
                continue
            total += 1
            q = [w.lower() for w in line.split()]
            if all(w in known for w in q):
                quads.append([known[w] for w in q])
    if not quads:
        return AnalogyResult(0.0, 0, 0, total)
    unit = _unit(vectors[:restrict_vocab])
    Q = np.array(quads)
    correct = 0
    for s in range(0, len(Q), 512):
        q = Q[s : s + 512]
        target = unit[q[:, 1]] - unit[q[:, 0]] + unit[q[:, 2]]
        sims = target @ unit.T  # [B, V]
        rows = np.arange(len(q))[:, None]
        sims[rows, q[:, :3]] = -np.inf
        correct += int((sims.argmax(1) == q[:, 3]).sum())
    return AnalogyResult(correct / len(Q), correct, len(Q), total)


def nearest(words: Sequence[str], vectors: np.ndarray, word: str, k: int = 5) -> list[str]:
    """The k words with the highest cosine similarity to `word` (itself excluded)."""
    idx = {w: i for i, w in enumerate(words)}
    if word not in idx:
        return []
    unit = _unit(vectors)
    sims = unit @ unit[idx[word]]
    sims[idx[word]] = -np.inf
    return [words[i] for i in np.argsort(-sims)[:k]]
