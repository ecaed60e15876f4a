"""ltkd.grading: the assignments' test helpers turn every failure of a student's function into one readable
AssertionError, and stop endless loops (the otter side is tests/test_assignments.py)."""

import time

import numpy as np
import pytest
import torch

from ltkd.grading import TimeLimit, call, close, need, time_limit


def test_call_returns_the_result_and_names_failures():
    assert call(lambda a, b: a + b, "add", 2, b=3) == 5
    with pytest.raises(AssertionError, match=r"^`lt_counts` is not defined"):
        call(None, "lt_counts", 1)
    with pytest.raises(AssertionError, match=r"should be a function, but it is a int"):
        need(3, "lt_counts")
    with pytest.raises(AssertionError, match=r"^soften\(\[\[1\.0, 2\.0\]\], 4\.0\) raised ZeroDivisionError: boom$"):
        call(lambda z, t: (_ for _ in ()).throw(ZeroDivisionError("boom")), "soften", torch.tensor([[1.0, 2.0]]), 4.0)


def test_call_stops_an_endless_loop():
    def forever(x):
        while True:
            x += 1

    t0 = time.monotonic()
    with pytest.raises(AssertionError, match=r"forever\(0\) ran longer than 0\.3 s"):
        call(forever, "forever", 0, seconds=0.3)
    assert time.monotonic() - t0 < 3


def test_time_limits_nest():
    with pytest.raises(TimeoutError, match="outer"):
        with time_limit(0.4, "outer"):
            with time_limit(5, "inner"):  # the outer, shorter limit still applies inside
                time.sleep(2)
    with time_limit(5, "outer"):
        with pytest.raises(TimeoutError, match="inner"):
            with time_limit(0.2, "inner"):
                time.sleep(2)
        time.sleep(0.3)  # the outer limit is restored, not fired early


def test_close():
    assert close(torch.tensor([1.0, 2.0]), [1.0, 2.0 + 1e-7]) and close(np.float32(0.5), 0.5)
    assert not close([1.0, 2.0], [1.0, 2.0, 3.0]) and not close(None, [1.0]) and not close(Ellipsis, 0.0)


def test_time_limit_plugin_puts_a_limit_cell_first():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    out = TimeLimit("sub.ipynb", {}, {"seconds": 7}).before_execution(nb)
    assert len(out.cells) == 2 and "setitimer(signal.ITIMER_REAL, seconds)" in out.cells[0].source
    assert "seconds=7.0" in out.cells[0].source and out.cells[1].source == "x = 1"
    compile(out.cells[0].source, "limit cell", "exec")
