"""What the experiment scripts share: where things are, resuming a results file, writing it safely, and which
of a run's metrics a results file keeps.

* :data:`RESULTS` — ``experiments/results/``: the result files the chapters read (the models they load are in ``experiments/models/``: shipped.py).
* :func:`cifar10_jpeg` — the CIFAR-10 JPEG copy (a local stand-in for torchvision's CIFAR-10).
* :func:`load_results` — a results file as it stands (``{}`` if there is none yet): a rerun resumes from it.
* :func:`write_results` — the file rewritten whole or not at all (:func:`ltkd.checkpoint.atomic_write`), after
  every run, so a stopped script keeps what it finished.
* :data:`REPORT_KEYS` / :func:`report` — the accuracy entries of a run's metrics that a results file keeps.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ltkd.checkpoint import atomic_write
from ltkd.errors import LtkdError

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
SHARED_JPEG = ROOT.parent / "shared" / "data" / "cifar10-jpeg"

# overall and balanced accuracy, shot groups, thirds by class rank, and every class's own
REPORT_KEYS = ("overall", "balanced", "many", "medium", "few", "head", "middle", "tail", "per_class")


def cifar10_jpeg() -> Path:
    """``$LTKD_CIFAR10_JPEG``; else ``../shared/data/cifar10-jpeg`` beside the checkout (this project's machines);
    else ``benchmarks/out/cifar10-jpeg`` (git-ignored, where ``benchmarks/gpu_prepare.sh`` puts a copy for a GPU
    machine to carry). The first that exists, or the shared path (for messages) when none does. The package
    itself never looks for it: users get CIFAR-10 from torchvision."""
    env = os.environ.get("LTKD_CIFAR10_JPEG")
    places = ([Path(env)] if env else []) + [SHARED_JPEG, ROOT / "benchmarks" / "out" / "cifar10-jpeg"]
    return next((p for p in places if p.exists()), SHARED_JPEG)


def table_parser(doc: str | None, seeds: tuple[int, ...] = (0, 1, 2)) -> argparse.ArgumentParser:
    """The arguments the long-tailed table scripts share: data set and imbalance, profile, seeds."""
    ap = argparse.ArgumentParser(description=(doc or "").splitlines()[0] if doc else None)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--imbalance", type=float, default=100)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(seeds))
    return ap


def load_results(path: str | os.PathLike) -> dict:
    """The results file at ``path`` as it stands, or ``{}`` if it does not exist yet."""
    p = Path(path)
    return json.loads(p.read_text()) if p.is_file() else {}


def write_results(path: str | os.PathLike, doc: Any, indent: int = 1, end: str = "") -> None:
    """``doc`` as JSON at ``path`` (then ``end``), written atomically: a crash leaves the previous file, never
    half of one."""
    atomic_write(path, json.dumps(doc, indent=indent) + end)


def report(metrics: dict) -> dict:
    """The entries of ``metrics`` (an ``ltkd`` accuracy report or ``metrics.json``) a results file keeps."""
    return {k: metrics[k] for k in REPORT_KEYS}


def script_main(main: Callable[[], int], name: str) -> None:
    """Run a script's ``main()`` and exit with its status; an ``LtkdError`` is one line, ``NAME: error: ...``,
    and status 2."""
    try:
        sys.exit(main())
    except LtkdError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        sys.exit(2)
