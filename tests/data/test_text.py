"""Tokenizers, the split by document, and token-window batching."""

from __future__ import annotations

import math
import random

import pytest
import torch

from deepnotes.data.corpora import kjv_chapters
from deepnotes.data.lm_tokenizers import encode_documents
from deepnotes.data.text import (
    BPETokenizer,
    ByteTokenizer,
    TokenWindows,
    bits_per_byte,
    eval_windows,
    load_text,
    split_documents,
)

ALPHABET = "abcdefghij klmnop\nQRST.,;'äöüßé中文字😀"


def random_text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(n))


def test_byte_tokenizer_round_trip(seed):
    rng = random.Random(seed)
    tok = ByteTokenizer()
    text = random_text(rng, 301)
    ids = tok.encode(text)
    assert tok.vocab_size == 256 and all(0 <= i < 256 for i in ids)
    assert len(ids) == len(text.encode("utf-8")) > len(text)  # multi-byte characters
    assert tok.decode(ids) == text
    assert tok.encode_tensor(text).tolist() == ids
    assert torch.equal(tok.token_bytes(), torch.ones(256, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 256\)"):
        tok.decode([300])


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer.train(list(kjv_chapters()[:40]), vocab_size=600)


def test_bpe_round_trip_and_token_bytes(bpe, seed):
    rng = random.Random(seed)
    assert bpe.vocab_size == 600
    held_out = kjv_chapters()[1000][:400] + random_text(rng, 50)  # unseen text and symbols
    ids = bpe.encode(held_out)
    assert bpe.decode(ids) == held_out
    assert len(ids) < len(held_out.encode("utf-8"))  # merges compress
    # token_bytes gives each token's byte length: they sum to the text's UTF-8 length.
    assert int(bpe.token_bytes()[torch.tensor(ids)].sum()) == len(held_out.encode("utf-8"))


def test_bpe_save_load(bpe, tmp_path):
    path = bpe.save(tmp_path / "tok.json")
    again = BPETokenizer.load(path)
    text = kjv_chapters()[500][:200]
    assert again.encode(text) == bpe.encode(text)


def test_encode_documents_joins_with_separator(bpe):
    docs = ["In the beginning", "God created the heaven"]
    for tok in (ByteTokenizer(), bpe):
        ids = encode_documents(tok, docs)
        assert ids.dtype == torch.int32
        assert tok.decode(ids.tolist()) == "In the beginning\n\nGod created the heaven"


def test_split_by_document_is_deterministic_and_disjoint(seed):
    docs = [f"doc {i} " + "x" * (i % 7) for i in range(97)]
    train, val = split_documents(docs, 0.1, seed)
    assert (train, val) == split_documents(docs, 0.1, seed)
    assert len(val) == 10 and len(train) == 87
    assert sorted(train + val) == sorted(docs)  # whole documents, none lost or shared
    assert not set(train) & set(val)
    # split order follows the corpus; another seed holds out other documents
    assert train == [d for d in docs if d in set(train)]
    assert split_documents(docs, 0.1, seed + 1)[1] != val
    with pytest.raises(ValueError, match="val_fraction"):
        split_documents(docs, 1.5)
    with pytest.raises(ValueError, match="at least 2"):
        split_documents(docs[:1], 0.5)


def test_token_windows_are_shifted_slices(seed):
    tokens = torch.randint(0, 256, (1001,), dtype=torch.int32)
    win = TokenWindows(tokens, 5, 63, seed=seed)
    x, y = next(win)
    assert x.shape == y.shape == (5, 63) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    t = tokens.long()
    for row in range(5):
        hits = [s for s in range(1001 - 63) if torch.equal(t[s : s + 63], x[row])]
        assert hits and any(torch.equal(t[s + 1 : s + 64], y[row]) for s in hits)


def test_token_windows_resume_and_ranks(seed):
    tokens = torch.randint(0, 256, (5000,), dtype=torch.int32)
    a = TokenWindows(tokens, 8, 16, seed=seed)
    for _ in range(3):
        next(a)
    state = a.state_dict()
    expected = [next(a) for _ in range(2)]
    b = TokenWindows(tokens, 8, 16, seed=seed)
    b.load_state_dict(state)
    assert b.position == 3
    for (x1, y1), (x2, y2) in zip(expected, [next(b) for _ in range(2)], strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    # two ranks together see the single-process global batch, rows in order
    full = next(TokenWindows(tokens, 8, 16, seed=seed))[0]
    parts = [next(TokenWindows(tokens, 8, 16, seed=seed, rank=r, world_size=2))[0] for r in (0, 1)]
    assert torch.equal(torch.cat(parts), full)
    with pytest.raises(ValueError, match="split evenly"):
        TokenWindows(tokens, 7, 16, world_size=2)
    with pytest.raises(ValueError, match="seed"):
        TokenWindows(tokens, 8, 16, seed=seed + 1).load_state_dict(state)


def test_eval_windows_score_every_target_once():
    tokens = torch.arange(1000, dtype=torch.int32)
    batches = list(eval_windows(tokens, 4, 63))
    xs = torch.cat([x for x, _ in batches])
    ys = torch.cat([y for _, y in batches])
    n = (1000 - 1) // 63
    assert xs.shape == (n, 63)
    assert torch.equal(ys.flatten(), torch.arange(1, n * 63 + 1))  # sequential, no overlap
    assert len(list(eval_windows(tokens, 4, 63, max_batches=2))) == 2


def test_bits_per_byte():
    # byte tokens: 1 byte each, so bpb = mean nats / ln 2
    assert bits_per_byte(100 * math.log(2) * 3.0, 100) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        bits_per_byte(1.0, 0)


def test_load_text_from_a_directory(tmp_path, seed):
    rng = random.Random(seed)
    # no whitespace: the loader strips documents and splits files on blank lines
    docs = ["".join(rng.choice("abcXYZäö中😀.,") for _ in range(80)) for _ in range(12)]
    for i, d in enumerate(docs):
        (tmp_path / f"{i:02d}.txt").write_text(d, encoding="utf-8")
    data = load_text(str(tmp_path), val_fraction=0.25, seed=seed)
    assert (data.n_train_docs, data.n_val_docs) == (9, 3)
    text = ByteTokenizer().decode(data.val.tolist())
    assert all(d in docs for d in text.split("\n\n"))
    assert data.train.numel() + data.val.numel() == sum(len(d.encode()) for d in docs) + 2 * 10
