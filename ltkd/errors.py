"""The one error type ltkd raises for input a user can fix."""

from __future__ import annotations


class LtkdError(ValueError):
    """Bad input or missing data: the message says what was wrong and what to do.

    The ``ltkd`` command prints it on one line (``ltkd: error: ...``) and exits with status 2.
    """
