"""Methods: each is a *recipe* — one or more stages of (objective, sampler, what trains).

The registry maps the names ``ltkd train --method NAME`` accepts to recipes; the engine
(``ltkd.train.fit``) only ever sees an objective and a sampler. One file per method, read
top to bottom beside its chapter:

* ``baselines.py`` — CE, cRT (chapter 1), and the long-tail baselines (chapter 2)
* ``gcl.py``, ``h2t.py``, ``distill.py``, ``label_revision.py``, ``tissuenet.py``,
  ``binary_stack.py`` — chapters 2–8.

A method file registers its recipes with :func:`register`; importing this package imports
them all.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import ClassSampler, ImageData
from ..errors import LtkdError
from ..profiles import Profile

__all__ = ["Context", "Stage", "Recipe", "METHODS", "register", "get_method"]


@dataclass
class Context:
    """What an objective or sampler factory may look at: the training data, its class counts,
    the profile, the device and method options (``options``, e.g. ``fusion_ratio``)."""

    train: ImageData
    profile: Profile
    device: torch.device
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> np.ndarray:
        return self.train.counts


@dataclass
class Stage:
    """One call of ``fit``.

    * ``objective(ctx) -> nn.Module`` with ``forward(model, x, y) -> (logits, losses)``
    * ``sampler``: a name (``instance``, ``class-balanced``, ``sqrt``) or ``f(ctx) -> ClassSampler``
    * ``head``: ``None`` keeps the model's head; ``"linear"``/``"cosine"`` puts a fresh one in
    * ``trainable``: ``"all"`` or ``"head"`` (classifier re-training); ``bn`` as in ``fit``, or
      ``f(ctx) -> str`` where it depends on the profile or the options
    * ``config``: which of the profile's configs to use, ``"stage1"`` or ``"stage2"``
    """

    objective: Callable[[Context], nn.Module]
    sampler: str | Callable[[Context], ClassSampler] = "instance"
    head: str | None = None
    trainable: str = "all"
    bn: str | Callable[[Context], str] = "frozen"
    config: str = "stage1"
    name: str = "stage1"


@dataclass
class Recipe:
    name: str
    description: str
    stages: list[Stage]
    head: str = "linear"  # the head the model is built with
    chapter: str = ""


METHODS: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    METHODS[recipe.name] = recipe
    return recipe


_MODULES = ["baselines", "gcl", "h2t", "distill", "label_revision"]


def _load_all() -> None:
    for m in _MODULES:
        try:
            importlib.import_module(f"{__name__}.{m}")
        except ModuleNotFoundError as e:  # a method file not written yet
            if e.name != f"{__name__}.{m}":
                raise


def get_method(name: str) -> Recipe:
    _load_all()
    if name not in METHODS:
        raise LtkdError(f"unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}")
    return METHODS[name]
