"""Where training runs and how fast: the device, seeds, memory format and ``torch.compile``."""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from torch import nn

from .errors import LtkdError, first_line

__all__ = ["get_device", "seed_everything", "use_channels_last", "compile_mode", "compiled", "env_flag"]


def get_device(preferred: str | torch.device | None = None) -> torch.device:
    """``preferred``, else ``$LTKD_DEVICE``, else CUDA, else MPS, else CPU."""
    if isinstance(preferred, torch.device):
        return preferred
    name = preferred or os.environ.get("LTKD_DEVICE")
    if name:
        try:
            dev = torch.device(name)
        except RuntimeError as e:
            raise LtkdError(f"unknown device {name!r} (try cpu, cuda, cuda:1, mps)") from e
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise LtkdError(f"device {name!r} asked for, but CUDA is not available here")
        if dev.type not in ("cpu", "cuda"):  # mps, xpu, ...: usable only if this torch build and machine have it
            try:  # and only if it holds data: a tensor made there must come back (``meta`` holds none)
                torch.ones(1, device=dev).cpu()
            except Exception as e:  # RuntimeError, AssertionError, NotImplementedError (meta), ...
                raise LtkdError(f"device {name!r} asked for, but it is not available here (or holds no data): "
                                f"{first_line(e, 160)}") from e  # fmt: skip
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator for batch order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def env_flag(name: str, default: bool) -> bool:
    """``$name`` read as a switch (``0``/``false``/``no``/``off`` = off); ``default`` when unset or empty."""
    v = os.environ.get(name)
    if v is None or v.strip() == "":
        return default
    return v.strip().lower() not in ("0", "false", "no", "off")


def use_channels_last(device: torch.device, channels_last: bool | None = None) -> bool:
    """Channels-last (NHWC) memory format: on by default, on CUDA (tensor cores want it) and on CPU,
    where ``benchmarks/throughput.py --ab`` on 2 quiet cores measured 1.28× for cnn6, 1.20× for
    ResNet-32, 2.28× for the TissueNet-style ResNet (grouped convolutions) and 1.15× for the
    binary-stacked net (``benchmarks/results/fastpath_ab_cpu_quiet.json``). Off on other devices
    (MPS), where it was not measured. ``$LTKD_CHANNELS_LAST`` (0/1) overrides the default; an
    explicit argument overrides both."""
    if channels_last is not None:
        return bool(channels_last)
    return env_flag("LTKD_CHANNELS_LAST", device.type in ("cpu", "cuda"))


def compile_mode(compile: bool | str | None = None) -> str | None:
    """``torch.compile`` switch: ``None`` reads ``$LTKD_COMPILE`` (default ``0``: off, everywhere).

    ``1``/``True`` → the default mode; a mode name (``reduce-overhead`` = CUDA graphs,
    ``max-autotune``) → that mode; ``0``/``False`` → off. Returns the mode or ``None`` (off).
    """
    if compile is None:
        compile = os.environ.get("LTKD_COMPILE", "0")
    if isinstance(compile, bool):
        return "default" if compile else None
    c = str(compile).strip().lower()
    if c in ("", "0", "false", "no", "off"):
        return None
    if c in ("1", "true", "yes", "on", "default"):
        return "default"
    if c in ("reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"):
        return c
    raise LtkdError(f"LTKD_COMPILE/compile={compile!r}: use 0, 1, reduce-overhead or max-autotune")


def compiled(model: nn.Module, mode: str | None) -> nn.Module:
    """The model with its ``forward`` compiled (attributes such as ``.head``/``.embed`` pass through
    to the original; state dicts are the original's). Backend from ``$LTKD_COMPILE_BACKEND``."""
    if mode is None:
        return model
    backend = os.environ.get("LTKD_COMPILE_BACKEND", "inductor")
    return torch.compile(model, mode=None if mode == "default" else mode, backend=backend)
