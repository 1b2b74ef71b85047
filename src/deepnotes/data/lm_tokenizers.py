"""Tokenizers for the language-model stack.

- `ByteTokenizer`: the UTF-8 bytes of the text are the tokens (vocabulary 256). Needs no
  vocabulary file, never meets an unknown symbol, and makes bits per byte equal to the loss
  in bits per token.
- `BPETokenizer`: byte-level BPE (the GPT-2 scheme: merges learned on bytes, so every string
  still encodes) trained with the Hugging Face `tokenizers` package on the training documents.

Both expose `vocab_size`, `encode(text) -> list[int]`, `decode(ids) -> str` and
`token_bytes() -> LongTensor[V]` (how many UTF-8 bytes each token stands for), which the
bits-per-byte helper needs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from deepnotes.utils.io import atomic_write_text


class ByteTokenizer:
    """Token = one UTF-8 byte. `decode` replaces invalid byte sequences with U+FFFD."""

    name = "byte"
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_tensor(self, text: str) -> torch.Tensor:
        """text -> int32 tensor [N] without a Python list in between (fast for big corpora)."""
        data = bytearray(text.encode("utf-8"))
        if not data:
            return torch.zeros(0, dtype=torch.int32)
        return torch.frombuffer(data, dtype=torch.uint8).to(torch.int32)

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        ids = list(ids)
        bad = [i for i in ids if not 0 <= int(i) < 256]
        if bad:
            raise ValueError(f"ByteTokenizer.decode: ids must lie in [0, 256), got {bad[:5]}")
        return bytes(ids).decode("utf-8", errors="replace")

    def token_bytes(self) -> torch.Tensor:
        return torch.ones(256, dtype=torch.long)


class BPETokenizer:
    """Byte-level BPE from `tokenizers` (ByteLevel pre-tokenizer and decoder, no specials)."""

    name = "bpe"

    def __init__(self, tokenizer) -> None:
        self.tok = tokenizer

    @staticmethod
    def _lib():
        try:
            import tokenizers
        except ImportError as e:
            raise ImportError(
                "BPE needs the 'tokenizers' package: pip install tokenizers (deepnotes[lm])"
            ) from e
        return tokenizers

    @classmethod
    def train(
        cls, docs: Sequence[str], vocab_size: int = 4096, min_frequency: int = 2
    ) -> BPETokenizer:
        """Learn merges on `docs` until the vocabulary holds `vocab_size` tokens (>= 257)."""
        if vocab_size <= 256:
            raise ValueError(f"BPE vocab_size must exceed the 256 byte tokens, got {vocab_size}")
        tk = cls._lib()
        tok = tk.Tokenizer(tk.models.BPE())
        tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = tk.decoders.ByteLevel()
        trainer = tk.trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(docs, trainer=trainer, length=len(docs))
        return cls(tok)

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        return cls(cls._lib().Tokenizer.from_file(str(path)))

    def save(self, path: str | os.PathLike) -> Path:
        return atomic_write_text(path, self.tok.to_str())

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(list(texts))]

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return self.tok.decode(list(ids))

    def token_bytes(self) -> torch.Tensor:
        # ByteLevel maps each byte to one printable character, so a token's length in
        # characters is its length in bytes.
        out = torch.zeros(self.vocab_size, dtype=torch.long)
        for piece, i in self.tok.get_vocab().items():
            out[i] = len(piece)
        return out


def build_tokenizer(
    name: str, train_docs: Sequence[str] | None = None, vocab_size: int = 4096
) -> ByteTokenizer | BPETokenizer:
    """'byte', 'bpe' (trained on `train_docs`) or a path to a saved tokenizers JSON file."""
    if name == "byte":
        return ByteTokenizer()
    if name == "bpe":
        if not train_docs:
            raise ValueError("a BPE tokenizer needs training documents")
        return BPETokenizer.train(train_docs, vocab_size=vocab_size)
    if name.endswith(".json") and os.path.exists(name):
        return BPETokenizer.load(name)
    raise ValueError(f"unknown tokenizer {name!r}: use 'byte', 'bpe' or a tokenizer .json path")


def encode_documents(tok, docs: Sequence[str], sep: str = "\n\n") -> torch.Tensor:
    """Encode each document and join them with `sep` between: int32 tensor [N].

    Documents are encoded one by one so that no BPE token spans a document boundary.
    """
    if isinstance(tok, ByteTokenizer):
        return tok.encode_tensor(sep.join(docs))
    ids = tok.encode_batch(docs) if hasattr(tok, "encode_batch") else [tok.encode(d) for d in docs]
    sep_ids = tok.encode(sep) if sep else []
    flat: list[int] = []
    for i, d in enumerate(ids):
        if i:
            flat.extend(sep_ids)
        flat.extend(d)
    return torch.tensor(flat, dtype=torch.int32)
