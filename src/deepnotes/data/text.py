"""Text data for language models: corpus -> documents -> split -> tokens -> windows.

- Documents come from `deepnotes.data.corpora.load_corpus` ("kjv" chapters by default,
  "stdlib" modules, or any UTF-8 file/directory path given as `--data PATH`).
- The train/validation split is by *document*, from a seeded permutation, so no validation
  text is ever a neighbour of training text inside one chapter.
- Training batches are random windows drawn from a seeded generator (`TokenWindows`, which
  saves and restores its position for exact resume); evaluation walks the validation tokens
  in sequential, non-overlapping windows (`eval_windows`).
- Bits per byte = summed next-token loss in nats / (ln 2 * bytes those tokens stand for);
  with the byte tokenizer that is just the loss / ln 2.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch

from deepnotes.data.corpora import load_corpus
from deepnotes.data.lm_tokenizers import (
    BPETokenizer,
    ByteTokenizer,
    build_tokenizer,
    encode_documents,
)

__all__ = [
    "BPETokenizer",
    "ByteTokenizer",
    "TextData",
    "TokenWindows",
    "bits_per_byte",
    "eval_windows",
    "load_text",
    "split_documents",
]


def split_documents(
    docs: Sequence[str], val_fraction: float = 0.05, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Shuffle whole documents with `seed` and hold out `val_fraction` of them (at least one).

    Deterministic: the same docs, fraction and seed always give the same split. Each split
    keeps the corpus order of its documents.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    if len(docs) < 2:
        raise ValueError(f"a split by document needs at least 2 documents, got {len(docs)}")
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    n_val = min(len(docs) - 1, max(1, round(val_fraction * len(docs))))
    val_idx = set(order[:n_val])
    train = [d for i, d in enumerate(docs) if i not in val_idx]
    val = [d for i, d in enumerate(docs) if i in val_idx]
    return train, val


def bits_per_byte(nll_nats: float, n_bytes: int) -> float:
    """Summed next-token loss (nats) over the bytes the predicted tokens encode -> bits/byte."""
    if n_bytes <= 0:
        raise ValueError(f"n_bytes must be positive, got {n_bytes}")
    return float(nll_nats) / (math.log(2) * n_bytes)


class TokenWindows:
    """Endless random training windows: x = tokens[s : s+T], y = tokens[s+1 : s+T+1].

    tokens: [N] integer tensor. Each call draws `batch_size` start positions from one seeded
    generator. Data parallel: with `world_size` > 1 every rank draws the same global batch
    of starts and keeps rows [rank * b, (rank + 1) * b), b = batch_size / world_size, so the
    ranks together see exactly the batch a single process would.

    `state_dict()` / `load_state_dict()` save the position (batches drawn) and the generator
    state, so a resumed run continues with the very batch it would have drawn next.
    Yields (x, y): LongTensor [b, T] each, on `device`.
    """

    def __init__(
        self,
        tokens: torch.Tensor,
        batch_size: int,
        seq_len: int,
        *,
        seed: int = 0,
        device: torch.device | str | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if tokens.dim() != 1:
            raise ValueError(f"tokens must be 1-D [N], got shape {tuple(tokens.shape)}")
        if seq_len <= 0 or batch_size <= 0:
            raise ValueError(f"batch_size and seq_len must be positive: {batch_size}, {seq_len}")
        if tokens.numel() < seq_len + 1:
            raise ValueError(
                f"{tokens.numel()} tokens are too few for windows of seq_len + 1 = {seq_len + 1}"
            )
        if batch_size % world_size or not 0 <= rank < world_size:
            raise ValueError(
                f"global batch_size {batch_size} must split evenly over world_size "
                f"{world_size} (rank {rank})"
            )
        self.tokens = tokens
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.seed = seed
        self.device = device
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator().manual_seed(seed)
        self.position = 0
        self._offsets = torch.arange(seq_len + 1)

    def __iter__(self) -> TokenWindows:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        n_starts = self.tokens.numel() - self.seq_len
        starts = torch.randint(0, n_starts, (self.batch_size,), generator=self.generator)
        b = self.batch_size // self.world_size
        starts = starts[self.rank * b : (self.rank + 1) * b]
        w = self.tokens[starts[:, None] + self._offsets].long()
        self.position += 1
        x, y = w[:, :-1], w[:, 1:]
        if self.device is not None:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        return x, y

    def state_dict(self) -> dict:
        return {
            "position": self.position,
            "seed": self.seed,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed:
            raise ValueError(f"data state was saved with seed {state['seed']}, not {self.seed}")
        self.position = int(state["position"])
        self.generator.set_state(state["generator"])


def eval_windows(
    tokens: torch.Tensor,
    batch_size: int,
    seq_len: int,
    *,
    max_batches: int | None = None,
    device: torch.device | str | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Sequential, non-overlapping windows over `tokens` [N]: (x, y) LongTensor [<=b, T].

    Window i covers tokens[i*T : i*T + T + 1]; the last batch may hold fewer rows, and the
    tail shorter than one window is left out. Every target token is scored once.
    """
    n_windows = (tokens.numel() - 1) // seq_len
    if n_windows == 0:
        raise ValueError(f"{tokens.numel()} tokens are too few for one window of {seq_len + 1}")
    offsets = torch.arange(seq_len + 1)
    for i, first in enumerate(range(0, n_windows, batch_size)):
        if max_batches is not None and i >= max_batches:
            return
        starts = torch.arange(first, min(first + batch_size, n_windows)) * seq_len
        w = tokens[starts[:, None] + offsets].long()
        x, y = w[:, :-1], w[:, 1:]
        if device is not None:
            x, y = x.to(device), y.to(device)
        yield x, y


@dataclass
class TextData:
    """A tokenized corpus split by document.

    train, val: int32 [N] token streams (documents joined by a blank line).
    """

    corpus: str
    tokenizer: ByteTokenizer | BPETokenizer
    train: torch.Tensor
    val: torch.Tensor
    n_train_docs: int
    n_val_docs: int
    seed: int

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def token_bytes(self) -> torch.Tensor:
        """LongTensor [V]: UTF-8 bytes per token (all ones for the byte tokenizer)."""
        return self.tokenizer.token_bytes()

    def train_batches(
        self, batch_size: int, seq_len: int, *, seed: int | None = None, **kw
    ) -> TokenWindows:
        """Random training windows; `kw` goes to TokenWindows (device, rank, world_size)."""
        return TokenWindows(
            self.train, batch_size, seq_len, seed=self.seed if seed is None else seed, **kw
        )

    def val_batches(self, batch_size: int, seq_len: int, **kw):
        return eval_windows(self.val, batch_size, seq_len, **kw)

    def describe(self) -> dict:
        return {
            "corpus": self.corpus,
            "tokenizer": self.tokenizer.name,
            "vocab_size": self.vocab_size,
            "train_docs": self.n_train_docs,
            "val_docs": self.n_val_docs,
            "train_tokens": int(self.train.numel()),
            "val_tokens": int(self.val.numel()),
        }


def load_text(
    corpus: str = "kjv",
    tokenizer: str = "byte",
    *,
    val_fraction: float = 0.05,
    seed: int = 0,
    vocab_size: int = 4096,
    max_docs: int | None = None,
) -> TextData:
    """Load `corpus` ('kjv', 'stdlib' or a path), split by document, tokenize.

    tokenizer: 'byte', 'bpe' (trained on the training documents only, so validation text
    stays unseen) or a saved tokenizers .json path. `max_docs` keeps the first documents of
    the corpus (in corpus order) for quick runs.
    """
    docs = load_corpus(corpus)
    if max_docs is not None:
        docs = docs[:max_docs]
    train_docs, val_docs = split_documents(docs, val_fraction, seed)
    tok = build_tokenizer(tokenizer, train_docs, vocab_size)
    return TextData(
        corpus=corpus,
        tokenizer=tok,
        train=encode_documents(tok, train_docs),
        val=encode_documents(tok, val_docs),
        n_train_docs=len(train_docs),
        n_val_docs=len(val_docs),
        seed=seed,
    )


@lru_cache(maxsize=4)
def cached_text(corpus: str, max_docs: int | None = None) -> TextData:
    """Byte-level text split by document, cached: several jobs in one process share a corpus."""
    return load_text(corpus, "byte", max_docs=max_docs)
