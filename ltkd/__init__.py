"""ltkd — long-tailed recognition and knowledge distillation: the book's helper package.

Modules: ``data`` (sources, long tails, samplers, tensor loader), ``models``, ``objective`` (what the
engine trains under), ``train`` (the engine), ``checkpoint`` (model files, checkpoints, the atomic write),
``device``, ``progress``, ``metrics``, ``profiles``, ``experiment`` (one run end to end, a distillation),
``methods`` (one file per method), ``viz`` (plots the chapters share) and ``cli`` (the ``ltkd`` command) and ``grading``
(helpers for the graded assignments' tests, in ``assignments/``).
CONTRIBUTING.md draws their layers.
"""

import os as _os

from .errors import LtkdError

if _os.environ.get("LTKD_THREADS", "").strip():  # e.g. LTKD_THREADS=1 to run two jobs side by side on 2 cores
    _threads = _os.environ["LTKD_THREADS"].strip()
    if _threads.isdigit() and int(_threads) > 0:
        try:
            import torch as _torch
        except KeyboardInterrupt:  # Ctrl-C while the `ltkd` command starts: a quiet exit, not a traceback
            import sys as _sys

            if _sys.argv and (_sys.argv[0] == "-m" or _os.path.basename(_sys.argv[0]) == "ltkd"):
                print("ltkd: interrupted", file=_sys.stderr)
                raise SystemExit(130) from None
            raise

        _torch.set_num_threads(int(_threads))
    else:
        import warnings as _warnings

        _warnings.warn(f"LTKD_THREADS={_threads!r} is not a positive whole number; ignored (torch's default threads)",
                       stacklevel=2)  # fmt: skip

__version__ = "0.1.0"
__all__ = ["LtkdError", "__version__"]
