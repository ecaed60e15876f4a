"""Where the benchmark scripts find the CIFAR-10 JPEG copy (a local stand-in for torchvision's CIFAR-10).

In this order: ``$LTKD_CIFAR10_JPEG``; ``../shared/data/cifar10-jpeg`` beside the checkout (this
project's machines); ``benchmarks/out/cifar10-jpeg`` (git-ignored, where ``gpu_prepare.sh`` puts a
copy for a GPU machine to carry). The package itself never looks for it: users get CIFAR-10 from
torchvision.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_JPEG = ROOT.parent / "shared" / "data" / "cifar10-jpeg"


def cifar10_jpeg() -> Path:
    """The first of the places above that exists; the shared path (for messages) when none does."""
    env = os.environ.get("LTKD_CIFAR10_JPEG")
    places = ([Path(env)] if env else []) + [SHARED_JPEG, ROOT / "benchmarks" / "out" / "cifar10-jpeg"]
    return next((p for p in places if p.exists()), SHARED_JPEG)
