"""The types and ranges of the Python API's arguments (:func:`ltkd.experiment.run`, :func:`~ltkd.experiment.distill`),
each wrong one an :class:`LtkdError` naming the argument and what it got, before anything is read or trained."""

from __future__ import annotations

import math

import numpy as np
import torch

from .errors import LtkdError

__all__ = ["SEED_MAX", "check_seed", "check_arguments"]


SEED_MAX = 2**63 - 1  # torch takes seeds < 2**64; a stage adds 1000 per stage index, a DDP rank 7919 per rank


def check_seed(seed: object) -> int:
    """``seed`` if it is a whole number in 0..2**63 − 1 (what every generator ltkd seeds accepts), else
    :class:`LtkdError`."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise LtkdError(f"seed must be a whole number from 0 to 2**63 - 1, got {seed!r}")
    return seed


def _whole(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_arguments(*, epochs=None, imbalance=1, eval_every=0, device=None, stage1_state=None, overwrite=False,
                    teacher_epochs=None) -> None:  # fmt: skip
    """The types of :func:`run`'s and :func:`distill`'s arguments, each an :class:`LtkdError` naming the argument and
    what it got (``epochs=True`` would otherwise train one epoch, ``device=0`` be ignored)."""
    for name, v in (("epochs", epochs), ("teacher_epochs", teacher_epochs)):
        if v is not None and not (_whole(v) and v > 0):
            raise LtkdError(f"{name} must be a positive whole number (or None: the profile's), got {v!r}")
    if imbalance is not None and (isinstance(imbalance, (bool, np.bool_))
                                  or not isinstance(imbalance, (int, float, np.number))
                                  or not math.isfinite(imbalance) or imbalance < 1):  # fmt: skip
        raise LtkdError(f"imbalance must be a finite number ≥ 1 (n_max / n_min), got {imbalance!r} "
                        "(None: the data set's default)")  # fmt: skip
    if not (_whole(eval_every) and eval_every >= 0):
        raise LtkdError(f"eval_every must be a whole number ≥ 0 (0 = off), got {eval_every!r}")
    if device is not None and not isinstance(device, (str, torch.device)):
        raise LtkdError(f"device must be a name ('cpu', 'cuda', 'cuda:1', 'mps') or a torch.device, got "
                        f"{type(device).__name__} {device!r}")  # fmt: skip
    if stage1_state is not None and not (isinstance(stage1_state, dict)
                                         and all(isinstance(t, torch.Tensor) for t in stage1_state.values())):
        raise LtkdError(f"stage1_state must be a model's state dict (names to tensors), got "
                        f"{type(stage1_state).__name__}")  # fmt: skip
    if not isinstance(overwrite, bool):
        raise LtkdError(f"overwrite must be True or False, got {overwrite!r}")
