"""Helpers for the course assignments' tests (``assignments/``, graded with otter-grader).

The assignments' public and hidden tests (in the master notebooks) call a student's function through
:func:`call`, which turns every way a submission can fail — the function is missing, it raises, it runs
past its time limit, it returns the wrong kind of thing — into an ``AssertionError`` with one readable
line, so otter marks that test failed, prints the line as feedback, and goes on with the other tests.

:class:`TimeLimit` is an otter plugin (named in every master's ``ASSIGNMENT CONFIG``): while a submission
is graded it gives every notebook cell a time limit, so a cell that runs forever is interrupted with a
``TimeoutError`` and the rest of the notebook still runs. Tests themselves use :func:`call`'s own limit.
Both use ``SIGALRM``: on Windows (no such signal) they run without a limit.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

__all__ = ["TEST_SECONDS", "CELL_SECONDS", "TimeLimit", "call", "close", "need", "time_limit"]

# one call of a student's function inside a test; one cell of a submission while it is graded (the TimeLimit
# plugin's default). The environment variables override them (the test suite shortens both).
TEST_SECONDS = float(os.environ.get("LTKD_GRADING_TEST_SECONDS", 10))
CELL_SECONDS = float(os.environ.get("LTKD_GRADING_CELL_SECONDS", 60))


def _can_alarm() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextmanager
def time_limit(seconds: float, what: str = "this code") -> Iterator[None]:
    """Raise ``TimeoutError`` if the block runs longer than ``seconds`` (an outer limit still applies)."""
    if not _can_alarm() or seconds <= 0:
        yield
        return
    outer_left, _ = signal.getitimer(signal.ITIMER_REAL)
    outer_handler = signal.getsignal(signal.SIGALRM)
    start = time.monotonic()

    def _stop(signum, frame):
        raise TimeoutError(f"{what} ran longer than {seconds:g} s (an endless loop?) and was stopped")

    own = seconds if not outer_left else min(seconds, outer_left)
    signal.signal(signal.SIGALRM, _stop if own == seconds else outer_handler)
    signal.setitimer(signal.ITIMER_REAL, own)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, outer_handler)
        if outer_left:
            signal.setitimer(signal.ITIMER_REAL, max(outer_left - (time.monotonic() - start), 1e-3))


def need(fn: Any, name: str) -> Callable:
    """``fn`` if it is a function; otherwise an ``AssertionError`` saying that ``name`` is not defined."""
    if fn is None:
        raise AssertionError(f"`{name}` is not defined: run the cell that defines it (and fix any error it shows)")
    if not callable(fn):
        raise AssertionError(f"`{name}` should be a function, but it is a {type(fn).__name__}")
    return fn


def _show(v: Any) -> str:
    if isinstance(v, np.ndarray) or torch.is_tensor(v):
        v = v.tolist()
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def call(fn: Any, name: str, *args: Any, seconds: float | None = None, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` with a time limit (default TEST_SECONDS); any failure becomes an ``AssertionError``
    naming the call."""
    fn = need(fn, name)
    seconds = TEST_SECONDS if seconds is None else seconds
    shown = ", ".join([_show(a) for a in args] + [f"{k}={_show(v)}" for k, v in kwargs.items()])
    try:
        with time_limit(seconds, f"{name}({shown})"):
            return fn(*args, **kwargs)
    except TimeoutError as e:
        raise AssertionError(str(e)) from None
    except Exception as e:  # the student's error, reported in one line
        raise AssertionError(f"{name}({shown}) raised {type(e).__name__}: {e}") from None


def close(got: Any, want: Any, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Same shape and values within tolerance (tensors, arrays, lists or numbers); never raises."""
    try:
        a = got.detach().double().cpu() if torch.is_tensor(got) else torch.as_tensor(np.asarray(got, dtype=np.float64))
        b = want.detach().double().cpu() if torch.is_tensor(want) else torch.as_tensor(np.asarray(want, dtype=np.float64))
        return tuple(a.shape) == tuple(b.shape) and bool(torch.allclose(a, b, atol=atol, rtol=rtol))
    except Exception:
        return False


# the cell TimeLimit puts first in a submission while it is graded: every later cell gets a time limit
_LIMIT_CELL = '''\
def _ltkd_time_limit(seconds={seconds!r}):
    import signal, threading
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        return
    ip = get_ipython()
    def stop(signum, frame):
        raise TimeoutError(f"this cell ran longer than {{seconds:g}} s (an endless loop?) and was stopped; "
                           "the questions it was meant to answer score 0")
    def pre(info=None):
        if "Checker.check_if_not_already_checked" in (getattr(info, "raw_cell", "") or ""):
            return  # otter's last cell runs the remaining tests, each with its own limit
        signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    def post(result=None):
        signal.setitimer(signal.ITIMER_REAL, 0)
    ip.events.register("pre_run_cell", pre)
    ip.events.register("post_run_cell", post)
_ltkd_time_limit()
del _ltkd_time_limit
'''


try:  # otter-grader is a dev/test dependency; ltkd works without it
    from otter.plugins import AbstractOtterPlugin as _PluginBase
except ImportError:  # pragma: no cover
    _PluginBase = object  # type: ignore[assignment,misc]


class TimeLimit(_PluginBase):  # type: ignore[valid-type,misc]
    """otter plugin: every cell of a graded submission gets a time limit (``seconds``, default 60).

    In a master notebook's ``ASSIGNMENT CONFIG``::

        plugins:
          - ltkd.grading.TimeLimit:
              seconds: 60
    """

    def __init__(self, submission_path=None, submission_metadata=None, plugin_config=None):
        self.submission_path = submission_path
        self.submission_metadata = submission_metadata
        self.plugin_config = plugin_config or {}

    def before_execution(self, submission):
        import nbformat

        seconds = float(os.environ.get("LTKD_GRADING_CELL_SECONDS", self.plugin_config.get("seconds", CELL_SECONDS)))
        if isinstance(submission, str):  # a .py submission: nothing to hook into
            return submission
        submission.cells.insert(0, nbformat.v4.new_code_cell(_LIMIT_CELL.format(seconds=seconds)))
        return submission
