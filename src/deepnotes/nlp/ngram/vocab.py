"""The n-gram vocabulary: `<unk>`, `<s>`, `</s>` and the words seen at least `min_count` times."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import chain, repeat

import numpy as np

UNK, BOS, EOS = "<unk>", "<s>", "</s>"  # KenLM's spellings
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2


class Vocabulary:
    """Word <-> id. Ids 0, 1, 2 are `<unk>`, `<s>`, `</s>`; words follow by falling count.

    A word is in the vocabulary when it occurs at least `min_count` times in the training
    text (nltk's `unk_cutoff` has the same meaning); every other word reads as `<unk>`.
    """

    def __init__(self, words: Sequence[str]) -> None:
        words = list(words)
        if words[:3] != [UNK, BOS, EOS]:
            raise ValueError(f"a vocabulary starts with {UNK}, {BOS}, {EOS}; got {words[:3]}")
        if len(set(words)) != len(words):
            raise ValueError("vocabulary words must be unique")
        self.words = words
        self.index = {w: i for i, w in enumerate(words)}

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_count: int = 1) -> Vocabulary:
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counts = Counter(chain.from_iterable(sentences))
        for special in (UNK, BOS, EOS):
            counts.pop(special, None)
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: -counts[w])
        return cls([UNK, BOS, EOS, *kept])

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def lookup(self, word: str) -> int:
        return self.index.get(word, UNK_ID)

    def encode(self, tokens: Iterable[str], count: int = -1) -> np.ndarray:
        """tokens -> int64 ids [len(tokens)], unknown words -> `<unk>`."""
        return np.fromiter(map(self.index.get, tokens, repeat(UNK_ID)), np.int64, count=count)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.words[int(i)] for i in ids]
