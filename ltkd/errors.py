"""The one error type ltkd raises for input a user can fix, and the helpers that keep its message on one line."""

from __future__ import annotations


def one_line(text: object) -> str:
    """``text`` on one line: its lines stripped and joined with ``"; "`` (blank lines dropped)."""
    return "; ".join(s.strip() for s in str(text).splitlines() if s.strip())


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first non-blank line of an exception's message (at most ``limit`` characters), or its type's name when
    the message is empty: safe to call in any ``except`` block (``str(e).splitlines()[0]`` fails on an empty
    message, raising from inside the handler)."""
    for s in str(e).splitlines():
        if s.strip():
            return s.strip()[:limit]
    return type(e).__name__


class LtkdError(ValueError):
    """Bad input or missing data: the message says what was wrong and what to do.

    The ``ltkd`` command prints it on one line (``ltkd: error: ...``) and exits with status 2; a message given
    on several lines is joined into one here, so no caller can break that promise.
    """

    def __init__(self, *args: object) -> None:
        if args:
            args = (one_line(args[0]), *args[1:])
        super().__init__(*args)
