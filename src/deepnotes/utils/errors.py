"""One line that names an exception, for notes and error messages."""

from __future__ import annotations


def error_line(e: BaseException, limit: int = 200) -> str:
    """ "TypeName: first line of the message" (the message cut to `limit` characters)."""
    msg = str(e).splitlines()[0][:limit] if str(e) else ""
    return f"{type(e).__name__}: {msg}"
