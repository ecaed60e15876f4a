"""Shared plumbing for chapters 6 and 7's sweeps (``compact_tissuenet.py``, ``compact_binary.py``):
a seeded balanced subsample, one training run with the quick profile's stage-1 recipe, and a
results file rewritten after every run (so a stopped sweep keeps what it finished)."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import cifar10_jpeg, write_results

from ltkd.data import ImageData, load
from ltkd.metrics import count_flops, count_params
from ltkd.profiles import get_profile
from ltkd.train import LossObjective, fit, get_device, predict

CIFAR_JPEG = cifar10_jpeg()  # $LTKD_CIFAR10_JPEG, ../shared/data/cifar10-jpeg or benchmarks/out/


def balanced_subsample(data: ImageData, per_class: int, seed: int = 0) -> ImageData:
    """``per_class`` images of every class, drawn with NumPy seed ``seed`` (sorted indices)."""
    rng = np.random.RandomState(seed)
    labels = data.labels.numpy()
    idx = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in range(data.num_classes)])
    return data.subset(np.sort(idx), subsample=f"{per_class} per class, seed {seed}")


def get_data(name: str, per_class: int) -> tuple[ImageData, ImageData] | None:
    """(train subsample, full test) of ``fashion-mnist`` or ``cifar10-jpeg``; None when absent."""
    if name == "cifar10-jpeg":
        if not CIFAR_JPEG.exists():
            return None
        train, test = load(str(CIFAR_JPEG))
    else:
        train, test = load(name)
    return balanced_subsample(train, per_class), test


BATCH = 32  # the quick profile's batch 128 gives too few SGD steps on a few thousand images


def train_eval(model: torch.nn.Module, train: ImageData, test: ImageData, epochs: int, seed: int = 0) -> dict:
    """Train with the quick profile's stage-1 config (``epochs`` and batch size ``BATCH`` replaced),
    CE, instance sampling; return test accuracy, parameters, FLOPs and the wall time."""
    cfg = get_profile("quick").stage1.replace(epochs=epochs, batch_size=BATCH)
    dev = get_device()
    t0 = time.perf_counter()
    hist = fit(model, LossObjective(F.cross_entropy), train, cfg, seed=seed, device=dev, progress=False)
    seconds = time.perf_counter() - t0
    logits = predict(model, test, dev)
    acc = float((logits.argmax(1) == test.labels).float().mean())
    return {"acc": acc, "params": count_params(model), "flops": count_flops(model, tuple(train.images.shape[1:])),
            "train_seconds": round(seconds, 1), "final_train_loss": hist[-1]["loss"], "epochs": epochs,
            "seed": seed, "batch_size": BATCH}  # fmt: skip


def trained(build: Callable[[], torch.nn.Module], train: ImageData, test: ImageData, epochs: int,
            seed: int) -> tuple[torch.nn.Module, dict, float]:  # fmt: skip
    """``build()`` under ``torch.manual_seed(seed)``, then :func:`train_eval`: ``(network, its results, seconds)``."""
    torch.manual_seed(seed)
    net = build()
    t0 = time.perf_counter()
    return net, train_eval(net, train, test, epochs, seed), time.perf_counter() - t0


def environment() -> dict:
    dev = get_device()
    return {"device": str(dev), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
            "LTKD_THREADS": os.environ.get("LTKD_THREADS")}  # fmt: skip


def write(path: Path, payload: dict) -> None:
    write_results(path, payload)


def record(path: Path, payload: dict, row: dict, message: str) -> None:
    """One finished run into ``payload["runs"]``, the results file rewritten at once, and ``message`` printed."""
    payload["runs"].append(row)
    write(path, payload)
    print(message, flush=True)
