"""How training reports its epochs: a tqdm bar, one line per epoch, or nothing (:func:`progress_mode`)."""

from __future__ import annotations

import os
import sys
import time

from .errors import LtkdError

__all__ = ["progress_mode", "progress_enabled", "epoch_progress"]


def progress_mode(progress: bool | str | None = None) -> str | None:
    """How training reports its epochs: ``"bar"`` (tqdm), ``"log"`` or ``None`` (quiet).

    ``progress``: ``True``/``False``, ``"log"``, or ``None`` for ``$LTKD_PROGRESS`` (``0`` quiet,
    ``1`` bars, ``log`` one line per epoch: for log files of long runs, where a bar is noise; any other value
    is an error),
    else bars in a terminal or a notebook and quiet under CI or when piped.
    """
    if progress is None:
        env = os.environ.get("LTKD_PROGRESS")
        if env is not None:
            env = env.strip().lower()
            if env in ("log", "bar"):
                return env
            if env in ("0", "false", "no", "off", "none", ""):
                return None
            if env in ("1", "true", "yes", "on"):
                return "bar"
            raise LtkdError(f"LTKD_PROGRESS={os.environ['LTKD_PROGRESS']!r} is not one of 0, 1, log, bar (also "
                            "false / true, no / yes, off / on, none)")  # fmt: skip
        if os.environ.get("CI"):
            return None
        if "ipykernel" in sys.modules:
            return "bar"
        return "bar" if sys.stderr.isatty() else None
    if isinstance(progress, str):
        if progress not in ("log", "bar"):
            raise LtkdError(f"progress must be True, False, 'bar' or 'log', got {progress!r}")
        return progress
    return "bar" if progress else None


def progress_enabled() -> bool:
    """Bars or epoch lines (:func:`progress_mode`) are on."""
    return progress_mode() is not None


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class EpochLines:
    """``LTKD_PROGRESS=log``: one flushed line per epoch on stderr: that epoch's time, and the time left at
    the median of the last 10 epochs (an epoch slowed or paused by other work on the machine does not
    inflate the estimate, as a running mean would for the rest of a long run)."""

    def __init__(self, total: int, desc: str, initial: int = 0):
        self.total, self.desc, self.n, self.postfix = total, desc, initial, {}
        self.t, self.recent = time.perf_counter(), []
        if initial:
            print(f"{desc}: resuming at epoch {initial + 1}/{total}", file=sys.stderr, flush=True)

    def set_postfix(self, **kw) -> None:
        self.postfix = kw

    def update(self, k: int = 1) -> None:
        now = time.perf_counter()
        per, self.t = (now - self.t) / k, now
        self.n += k
        self.recent = (self.recent + [per] * k)[-10:]
        typical = sorted(self.recent)[len(self.recent) // 2]  # the median (upper, for an even count)
        extra = "  ".join(f"{key} {val}" for key, val in self.postfix.items())
        print(f"{self.desc}: epoch {self.n}/{self.total}  {extra}  {per:.1f} s/epoch, "
              f"{_hms(typical * (self.total - self.n))} left", file=sys.stderr, flush=True)  # fmt: skip

    def close(self) -> None:
        pass


def epoch_progress(total: int, desc: str, mode: str | None, initial: int = 0):
    """A progress display counting epochs: :class:`EpochLines` for ``"log"``, else a tqdm bar (disabled for
    ``None``); both have ``set_postfix``, ``update`` and ``close``."""
    if mode == "log":
        return EpochLines(total, desc, initial)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=mode is None, leave=True, dynamic_ncols=True, file=sys.stderr,
                unit="epoch", initial=initial)  # fmt: skip
