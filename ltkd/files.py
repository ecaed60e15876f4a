"""The one atomic write: a file is written whole or not at all. The lowest layer, so that every module that writes
(data caches, model files, run records) shares it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike, content: str | bytes | Callable[[IO[bytes]], Any]) -> Path:
    """Write ``path`` whole or not at all: into a temporary file beside it (named by this process, so two
    processes never share one), then renamed over it. ``content``: text, bytes, or ``f(file)`` writing to an
    open binary file (``lambda f: torch.save(obj, f)``, ``lambda f: np.savez(f, **arrays)``)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f"{p.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            if isinstance(content, str):
                f.write(content.encode())
            elif isinstance(content, bytes):
                f.write(content)
            else:
                content(f)
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p
