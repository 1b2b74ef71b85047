"""Word vectors in the word2vec C tool's file formats, which gensim, fastText and most
embedding tools read (`gensim.models.KeyedVectors.load_word2vec_format`).

Both start with a text header line "V d". Then one line per word:
- text (`binary=False`): the word and its d values in decimal, separated by spaces;
- binary: the word, one space, d little-endian float32 values, and a newline (as word2vec.c
  writes it; readers also accept the file without the newline).

Words are UTF-8 and may not contain whitespace (the format splits on it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deepnotes.utils.io import atomic_write


def _check(words: Sequence[str], vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[0] != len(words):
        raise ValueError(f"expected vectors [V={len(words)}, d], got shape {vectors.shape}")
    bad = [w for w in words if not w or any(c.isspace() for c in w)]
    if bad:
        raise ValueError(f"word2vec format words must be non-empty without whitespace: {bad[:5]}")
    if len(set(words)) != len(words):
        raise ValueError("word2vec format needs distinct words")
    return vectors.astype("<f4", copy=False)


def save_word2vec_format(
    path: str | os.PathLike, words: Sequence[str], vectors: np.ndarray, *, binary: bool = False
) -> Path:
    """Write `vectors` [V, d] (row i = words[i]) in word2vec text or binary format."""
    vec = _check(words, vectors)

    def write(p):
        with open(p, "wb") as f:
            f.write(f"{vec.shape[0]} {vec.shape[1]}\n".encode())
            for w, row in zip(words, vec, strict=True):
                if binary:
                    f.write(w.encode("utf-8") + b" " + row.tobytes() + b"\n")
                else:  # repr of float32 values: 9 significant digits round-trip exactly
                    f.write((w + " " + " ".join(f"{x:.9g}" for x in row) + "\n").encode("utf-8"))

    return atomic_write(path, write)


def load_word2vec_format(
    path: str | os.PathLike, *, binary: bool = False
) -> tuple[list[str], np.ndarray]:
    """Read a word2vec text or binary file: (words, float32 vectors [V, d])."""
    data = Path(path).read_bytes()
    head, _, body = data.partition(b"\n")
    try:
        V, d = (int(x) for x in head.split())
    except ValueError:
        raise ValueError(f"{path}: header {head[:40]!r} is not 'V d'") from None
    words, out = [], np.empty((V, d), dtype=np.float32)
    pos = 0
    for i in range(V):
        if binary:
            while body[pos : pos + 1] in (b"\n", b" "):
                pos += 1
            space = body.index(b" ", pos)
            words.append(body[pos:space].decode("utf-8"))
            start = space + 1
            out[i] = np.frombuffer(body[start : start + 4 * d], dtype="<f4")
            pos = start + 4 * d
        else:
            end = body.index(b"\n", pos) if b"\n" in body[pos:] else len(body)
            parts = body[pos:end].decode("utf-8").split()
            if len(parts) != d + 1:
                raise ValueError(f"{path}: line {i + 2} has {len(parts) - 1} values, expected {d}")
            words.append(parts[0])
            out[i] = np.array(parts[1:], dtype=np.float32)
            pos = end + 1
    return words, out
