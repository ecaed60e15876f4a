"""The output folder of a run: checked before anything trains, never another finished run's, locked while in use.

* :func:`check_output_folder` — a folder that can be made and written in, with nothing odd in the places of
  ``metrics.json``, ``model.pt`` and ``checkpoints``.
* :func:`refuse_finished_run` — a folder holding a finished run (``model.pt`` or ``metrics.json``) is replaced
  only when asked (``--overwrite``, ``overwrite=True``).
* :func:`locked` — an ``fcntl`` lock on ``OUT/.ltkd.lock`` for the length of a run: a second run into the same
  folder fails at once, naming the first (its process id and command); the kernel drops the lock of a process
  that dies, so a lock file left by a killed run blocks nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import LtkdError, first_line

__all__ = ["check_output_folder", "finished_run", "refuse_finished_run", "locked", "LOCK_NAME"]

LOCK_NAME = ".ltkd.lock"
_HELD: dict[str, list] = {}  # resolved folder -> [open lock file, depth]: a run inside a run (distill's student)


def check_output_folder(out: str | os.PathLike) -> Path:
    """The output folder, checked before anything is trained or written: a non-empty path that is a folder or can
    be made as one (nothing on its way is a file) and that can be written in; ``metrics.json``, ``model.pt`` and
    ``checkpoints`` inside it, where they exist, are what their names say. Creates nothing (a probe file in the
    nearest existing folder is made and removed at once)."""
    if not isinstance(out, (str, os.PathLike)):
        raise LtkdError(f"out must be a folder path (str or pathlib.Path), got {type(out).__name__} {out!r}")
    text = os.fspath(out)
    if not str(text).strip():
        raise LtkdError("the output folder is an empty path; give a folder (--out FOLDER)")
    p = Path(text).expanduser()
    try:
        q = _nearest_existing(p)
    except OSError as e:  # a name over the file system's limit (255 bytes), a path too long, ...
        raise LtkdError(f"output folder {_short(p)} cannot be made: {e.strerror or first_line(e)}") from e
    if not q.is_dir():
        raise LtkdError(f"output folder {p} cannot be made: {q} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=q, prefix=".ltkd-probe-"):
            pass
    except OSError as e:
        raise LtkdError(f"output folder {p} is not writable ({q}: {first_line(e)})") from e
    for name, want_dir in (("metrics.json", False), ("model.pt", False), ("checkpoints", True)):
        f = p / name
        if f.exists() and f.is_dir() != want_dir:
            raise LtkdError(f"output folder {p}: {f} is a {'file' if want_dir else 'folder'}; move it away")
    return p


def _nearest_existing(p: Path) -> Path:
    """``p`` or its nearest existing parent (``OSError`` for a name the file system cannot hold)."""
    if p.exists() and not p.is_dir():
        raise LtkdError(f"output folder {p} is a file, not a folder")
    q = p
    while not q.exists():
        if q.is_symlink():
            raise LtkdError(f"output folder {p}: {q} is a dangling symbolic link")
        q = q.parent
    return q


def _short(p: Path) -> str:
    s = str(p)
    return s if len(s) <= 80 else f"{s[:60]}…({len(s)} characters)"


def finished_run(outdir: Path) -> str | None:
    """What finished run ``outdir`` holds (its method, data and seed, from ``metrics.json`` where readable, and the
    files), or ``None`` if it holds neither ``model.pt`` nor ``metrics.json``."""
    files = [n for n in ("model.pt", "metrics.json") if (outdir / n).is_file()]
    if not files:
        return None
    what = "a finished run"
    try:
        m = json.loads((outdir / "metrics.json").read_text())
        what = f"a finished run ({m['method']} on {m['dataset']}, seed {m['seed']})"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return f"{what}: {', '.join(files)}"


def refuse_finished_run(outdir: Path, overwrite: bool) -> None:
    """Refuse (one line) to run into a folder that holds a finished run, unless ``overwrite`` — the same command
    run again after it finished included: a finished run is replaced only when asked."""
    if overwrite:
        return
    held = finished_run(outdir)
    if held is not None:
        raise LtkdError(f"output folder {outdir} holds {held}; it is not replaced unasked: give another --out, or "
                        "pass --overwrite (overwrite=True) to replace it")  # fmt: skip


@contextlib.contextmanager
def locked(outdir: Path) -> Iterator[None]:
    """Hold ``OUT/.ltkd.lock`` (an exclusive ``fcntl`` lock) for the block, making ``OUT`` if needed; another
    process holding it is an :class:`LtkdError` naming it. Re-entrant within one process. On leaving, the lock
    file goes, and so do an empty ``OUT/checkpoints`` and the folders this call made that were left empty (a
    run that failed on a full disk leaves nothing behind)."""
    key = str(outdir.resolve())
    try:
        import fcntl  # noqa: F401  (POSIX; elsewhere runs go unlocked)
    except ImportError:
        yield
        return
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield
        finally:
            _HELD[key][1] -= 1
        return
    made = [d for d in (outdir, *outdir.parents) if not d.exists()]  # the folders this call makes, deepest first
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        f = _acquire(outdir / LOCK_NAME)
    except OSError as e:
        _tidy(outdir, made)
        raise LtkdError(f"cannot use output folder {_short(outdir)} ({first_line(e)})") from e
    except BaseException:
        _tidy(outdir, made)
        raise
    _HELD[key] = [f, 1]
    try:
        yield
    finally:
        del _HELD[key]
        with contextlib.suppress(OSError):
            (outdir / LOCK_NAME).unlink()
        f.close()  # the lock goes with the file (after the unlink: no one locks a file about to vanish)
        _tidy(outdir, made)


def _acquire(path: Path):
    """The lock file, open and locked (the file at ``path`` when it is locked: one unlinked meanwhile by the run
    that held it is let go and taken afresh)."""
    import fcntl

    while True:
        f = open(path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise LtkdError(f"output folder {path.parent} is in use by another run ({holder}); wait for it to "
                            "finish, or give this run another --out") from None  # fmt: skip
        except BaseException:
            f.close()
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()}: {' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300]}")
            f.flush()
            return f
        f.close()


def _tidy(outdir: Path, made: list[Path]) -> None:
    """Remove an empty ``OUT/checkpoints``, and the folders this run made (``made``, deepest first) left empty."""
    for d in (outdir / "checkpoints", *made):
        try:
            d.rmdir()
        except OSError:  # not empty (a finished run's files), or gone: the folders above stay too
            if d != outdir / "checkpoints":
                break
