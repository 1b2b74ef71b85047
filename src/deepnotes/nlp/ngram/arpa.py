"""ARPA (KenLM/SRILM text format) export and import.

    \\data\\
    ngram 1=M1 ...
    \\1-grams:
    log10 P(w)    w    [log10 backoff(w)]
    ...
    \\end\\

An ARPA file is a backoff model: P(w|c) = P*(cw) if the n-gram cw is listed, otherwise
backoff(c) P(w|c'), with backoff(c) = 1 for an unlisted context.

What we export:
- interpolated models (absolute discounting, Kneser-Ney, modified Kneser-Ney): every stored
  n-gram with its full interpolated probability, and gamma(c) as the backoff weight of every
  context. Because alpha(cw) = 0 for an unseen cw, this is exact: the file read back gives
  our scores for every query (tested).
- stupid backoff: not a probability model. We write its relative frequencies as the
  "probabilities" and log10(alpha) as the backoff of every context that was seen. Read back,
  it gives our scores wherever every context met while backing off was seen in training;
  where a context never occurred, ARPA applies no penalty while Brants et al. apply alpha, so
  the file scores alpha^-j higher (j = number of such unseen contexts).
- MLE and add-k have no exact backoff form (MLE has zeros and no lower orders; add-k's share
  for an unseen word is not a context weight times a lower-order probability), so they are
  refused with a ValueError.

Probability 0 is written as -99 (KenLM's convention, e.g. for `<s>`). Padding is not stored
in the format: pass the model's padding to `read_arpa` (default "standard"). The n-grams of
a sentence start keep all n-1 `<s>` ("<s> <s> w" for a trigram); KenLM's own query starts
from a single `<s>`, so KenLM would score first words with its bigram entry.
"""

from __future__ import annotations

import math
import os
from itertools import repeat
from pathlib import Path

import numpy as np

from deepnotes.nlp.ngram.base import NgramIndex
from deepnotes.nlp.ngram.counts import NgramTable, Padding, lookup
from deepnotes.nlp.ngram.models import NgramLM, StupidBackoff, _Interpolated
from deepnotes.nlp.ngram.vocab import BOS, EOS, UNK, Vocabulary
from deepnotes.utils.io import atomic_write

LOG10_ZERO = -99.0


def _log10(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        out = np.log10(p)
    return np.where(np.isfinite(out), out, LOG10_ZERO)


def _table_ids(lm: NgramLM) -> list[np.ndarray]:
    """Word ids [M_k, k] of every row of every table."""
    ids = [None, lm.tables[1].last[:, None]]
    for k in range(2, lm.order + 1):
        t = lm.tables[k]
        ids.append(np.concatenate([ids[k - 1][t.parent], t.last[:, None]], axis=1))
    return ids


def write_arpa(lm: NgramLM, path: str | os.PathLike) -> str:
    """Write `lm` as an ARPA file (atomically). Returns a one-line description of what was
    exported (see the module doc)."""
    lm._check_fitted()
    n = lm.order
    if isinstance(lm, _Interpolated):
        probs = lm.table_probs()
        bows = [None] + [lm.gamma[k + 1] if k < n else None for k in range(1, n + 1)]
        has_followers = [None] + [
            lm.context_totals(k + 1, lm.order_counts(k + 1)) > 0 if k < n else None
            for k in range(1, n + 1)
        ]
        what = f"{lm.name}: interpolated probabilities and gamma backoffs (exact)"
    elif isinstance(lm, StupidBackoff):
        probs = lm.relfreq
        bows = [None] + [
            np.full(len(lm.tables[k]), lm.alpha) if k < n else None for k in range(1, n + 1)
        ]
        has_followers = [None] + [
            np.ones(len(lm.tables[k]), bool) if k < n else None for k in range(1, n + 1)
        ]
        what = f"stupid-backoff scores (not probabilities), backoff log10({lm.alpha})"
    else:
        raise ValueError(
            f"{type(lm).__name__} has no exact ARPA (backoff) form; export an interpolated "
            "model (AbsoluteDiscounting, KneserNey, ModifiedKneserNey) or StupidBackoff"
        )
    ids = _table_ids(lm)
    words = np.array(lm.vocab.words, dtype=object)

    def writer(p: Path) -> None:
        with open(p, "w", encoding="utf-8") as f:
            f.write("\\data\\\n")
            for k in range(1, n + 1):
                f.write(f"ngram {k}={len(lm.tables[k])}\n")
            for k in range(1, n + 1):
                f.write(f"\n\\{k}-grams:\n")
                lp = _log10(probs[k]).tolist()
                names = [" ".join(r) for r in words[ids[k]].tolist()]
                if k < n:
                    lb = _log10(bows[k]).tolist()
                    hf = has_followers[k].tolist()
                    f.writelines(
                        f"{a!r}\t{w}\t{b!r}\n" if h else f"{a!r}\t{w}\n"
                        for a, w, b, h in zip(lp, names, lb, hf, strict=True)
                    )
                else:
                    f.writelines(f"{a!r}\t{w}\n" for a, w in zip(lp, names, strict=True))
            f.write("\n\\end\\\n")

    atomic_write(path, writer)
    return what


class ArpaLM(NgramIndex):
    """A backoff model read from an ARPA file, scored with the same lookups as `NgramLM`."""

    def __init__(self, order, vocab, tables, logp, logbow, padding: Padding = "standard"):
        self.order = order
        self.vocab = vocab
        self.tables = tables
        self.logp = logp  # [None, log10 P per row of table k]
        self.logbow = logbow  # [None, log10 backoff per row of table k (0 if none)]
        self.padding = padding

    def _prob_rows(self, ctx, gram, use, w):
        Q = len(w)
        log10p = np.zeros(Q)  # log10 P* of the longest listed n-gram
        backoff = np.zeros(Q)  # sum of log10 backoffs of the contexts passed on the way down
        done = np.zeros(Q, dtype=bool)
        for k in range(self.order, 0, -1):
            g = gram[k]
            hit = ~done & use[k] & (g >= 0)
            log10p = np.where(hit, self.logp[k][np.maximum(g, 0)], log10p)
            done |= hit
            if k > 1:
                c = ctx[k]
                bow = np.where(c >= 0, self.logbow[k - 1][np.maximum(c, 0)], 0.0)
                backoff = np.where(~done & use[k], backoff + bow, backoff)
        log10p = log10p + backoff
        # -99 is the file's spelling of probability 0 (see LOG10_ZERO); read it back as 0.
        return np.where(log10p <= LOG10_ZERO, 0.0, np.power(10.0, log10p))


def _parse_sections(path) -> tuple[dict[int, int], dict[int, list[str]]]:
    counts: dict[int, int] = {}
    lines: dict[int, list[str]] = {}
    section = None
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line:
                continue
            if line == "\\data\\":
                section = 0
            elif line == "\\end\\":
                break
            elif line.startswith("\\") and line.endswith("-grams:"):
                section = int(line[1 : line.index("-")])
                lines[section] = []
            elif section == 0 and line.startswith("ngram "):
                k, m = line[6:].split("=")
                counts[int(k)] = int(m)
            elif not section:
                raise ValueError(f"{path}:{lineno}: unexpected line before \\data\\: {line!r}")
            else:
                lines[section].append(line)
    if not counts:
        raise ValueError(f"{path}: no \\data\\ section")
    for k in range(1, max(counts) + 1):
        if len(lines.get(k, [])) != counts.get(k, -1):
            raise ValueError(
                f"{path}: header says ngram {k}={counts.get(k)}, found {len(lines.get(k, []))}"
            )
    return counts, lines


def _split(path, k: int, lines: list[str]) -> tuple[np.ndarray, list[str], np.ndarray]:
    """`log10 p  w_1 .. w_k  [log10 backoff]` lines -> (logp [M], words [M * k], bow [M])."""
    parts = [line.split() for line in lines]
    for p in parts:
        if len(p) not in (k + 1, k + 2):
            raise ValueError(f"{path}: expected {k} words in {' '.join(p)!r}")
    logp = np.array([p[0] for p in parts], dtype=np.float64)
    bow = np.array([p[k + 1] if len(p) == k + 2 else "0" for p in parts], dtype=np.float64)
    words = [w for p in parts for w in p[1 : k + 1]]
    return logp, words, bow


def read_arpa(path: str | os.PathLike, padding: Padding = "standard") -> ArpaLM:
    """Parse an ARPA file into an `ArpaLM`. Every listed n-gram's prefix must be listed."""
    counts, lines = _parse_sections(path)
    order = max(counts)
    lp, uni, lb = _split(path, 1, lines[1])
    vocab = Vocabulary([UNK, BOS, EOS, *[w for w in uni if w not in (UNK, BOS, EOS)]])
    V = len(vocab)
    zero = np.zeros(1, dtype=np.int64)
    tables = [NgramTable(zero, zero, zero, zero, zero)]
    # Unigrams: row = word id; words absent from the file (e.g. <unk>) get probability 0.
    ids1 = vocab.encode(uni)
    lp1, lb1 = np.full(V, LOG10_ZERO), np.zeros(V)
    lp1[ids1], lb1[ids1] = lp, lb
    ar = np.arange(V, dtype=np.int64)
    tables.append(NgramTable(ar, np.zeros(V, np.int64), np.zeros(V, np.int64), ar, ar))
    logp: list = [None, lp1]
    logbow: list = [None, lb1]
    for k in range(2, order + 1):
        lp, words, lb = _split(path, k, lines[k])
        ids = np.fromiter(map(vocab.index.get, words, repeat(-1)), np.int64, len(words))
        ids = ids.reshape(-1, k)
        if (ids < 0).any():
            raise ValueError(f"{path}: a {k}-gram uses a word missing from the 1-grams")
        r = ids[:, 0]
        for j in range(1, k - 1):
            r = lookup(tables[j + 1], r, ids[:, j], V)
        if (r < 0).any():
            bad = " ".join(words[k * int(np.flatnonzero(r < 0)[0]) :][:k])
            raise ValueError(f"{path}: the {k}-gram {bad!r} has no listed prefix")
        key = r * V + ids[:, k - 1]
        perm = np.argsort(key, kind="stable")
        key = key[perm]
        if len(key) > 1 and (np.diff(key) == 0).any():
            raise ValueError(f"{path}: duplicate {k}-gram")
        tables.append(NgramTable(key, np.zeros(len(key), np.int64), key // V, key * 0, key % V))
        logp.append(lp[perm])
        logbow.append(lb[perm])
    return ArpaLM(order, vocab, tables, logp, logbow, padding)


def log10_to_ln(x: float) -> float:
    return x * math.log(10.0)
