"""A simple word tokeniser and sentence splitter, shared by our models and their peers.

Rules (chosen for the KJV text, but general):
- text is lowercased;
- a token is either a run of word characters with internal apostrophes kept
  (``"father's"`` is one token) or a single punctuation character (``","``, ``":"``);
- whitespace separates tokens and is dropped;
- a sentence ends after a ``.``, ``?`` or ``!`` token (the terminator stays in the sentence).

The same tokenised sentences are fed to deepnotes, nltk.lm and gensim, so any comparison
between them is on identical input.
"""

from __future__ import annotations

import re
from functools import lru_cache

TOKEN = re.compile(r"\w+(?:'\w+)*|[^\w\s]")
SENTENCE_END = frozenset({".", "?", "!"})


def word_tokenize(text: str) -> list[str]:
    """Lowercased words and single punctuation characters, in order."""
    return TOKEN.findall(text.lower())


def split_sentences(tokens: list[str]) -> list[list[str]]:
    """Split a token list after each sentence terminator; a trailing remainder is kept."""
    out: list[list[str]] = []
    start = 0
    for i, t in enumerate(tokens):
        if t in SENTENCE_END:
            out.append(tokens[start : i + 1])
            start = i + 1
    if start < len(tokens):
        out.append(tokens[start:])
    return out


def tokenize_documents(docs: list[str]) -> list[list[str]]:
    """Documents -> sentences (lists of tokens), in document order."""
    return [s for d in docs for s in split_sentences(word_tokenize(d))]


@lru_cache(maxsize=4)
def _corpus_sentences(name: str) -> tuple[tuple[str, ...], ...]:
    from deepnotes.data.corpora import load_corpus

    return tuple(tuple(s) for s in tokenize_documents(load_corpus(name)))


def corpus_sentences(name: str = "kjv", max_tokens: int | None = None) -> list[list[str]]:
    """Tokenised sentences of a corpus (`deepnotes.data.corpora.load_corpus` names/paths).

    `max_tokens` keeps whole sentences from the start until that many tokens are reached.
    The KJV gives about 30k sentences and 934k tokens (words and punctuation).
    """
    sents = _corpus_sentences(name)
    if max_tokens is None:
        return [list(s) for s in sents]
    out, n = [], 0
    for s in sents:
        if n >= max_tokens:
            break
        out.append(list(s))
        n += len(s)
    return out
