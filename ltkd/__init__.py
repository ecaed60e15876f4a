"""ltkd — long-tailed recognition and knowledge distillation: the book's helper package.

Modules: ``data`` (sources, long tails, samplers, tensor loader), ``models``, ``train`` (the
engine), ``metrics``, ``profiles``, ``experiment`` (one run end to end), ``methods`` (one file
per method), ``viz`` (plots the chapters share) and ``cli`` (the ``ltkd`` command).
"""

import os as _os

from .errors import LtkdError

if _os.environ.get("LTKD_THREADS"):  # e.g. LTKD_THREADS=1 to run two jobs side by side on 2 cores
    import torch as _torch

    _torch.set_num_threads(int(_os.environ["LTKD_THREADS"]))

__version__ = "0.1.0"
__all__ = ["LtkdError", "__version__"]
