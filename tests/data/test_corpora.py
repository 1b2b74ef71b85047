from __future__ import annotations

import re

import pytest

from deepnotes.data.corpora import load_corpus, text_documents


def test_kjv_chapters_are_clean_text():
    docs = load_corpus("kjv")
    assert len(docs) == 1189  # chapters of the 66 books
    assert docs[0].startswith("In the beginning God created")
    assert not any(re.search(r"\d+:\d+", d) for d in docs), "verse markers left in the text"
    assert 780_000 < sum(len(d.split()) for d in docs) < 800_000


def test_text_path_and_errors(tmp_path):
    (tmp_path / "a.txt").write_text("first block\n\nsecond block\n")
    assert text_documents(tmp_path / "a.txt") == ["first block", "second block"]
    assert load_corpus(str(tmp_path)) == ["first block\n\nsecond block"]
    with pytest.raises(ValueError, match="unknown corpus"):
        load_corpus("no-such-corpus")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="holds no text"):
        text_documents(tmp_path / "empty.txt")
