"""Methods: each is a *recipe* — one or more stages of (objective, sampler, what trains).

The registry maps the names ``ltkd train --method NAME`` accepts to recipes; the engine
(``ltkd.train.fit``) only ever sees an objective and a sampler. One file per method, read
top to bottom beside its chapter:

* ``baselines.py`` — CE, cRT (chapter 1), and the long-tail baselines (chapter 2)
* ``gcl.py``, ``h2t.py``, ``distill.py``, ``label_revision.py``, ``tissuenet.py``,
  ``binary_stack.py`` — chapters 2–7.

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

__all__ = ["Context", "Stage", "Recipe", "METHODS", "OPTIONS", "register", "get_method", "parse_option", "check_options"]


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
    * ``adjust``: ``f(TrainConfig) -> TrainConfig``, the method's own change to that config where its
      published recipe differs (e.g. LDAM-DRW's ×0.01 learning-rate steps); see :func:`stage_config`
    """

    objective: Callable[[Context], nn.Module]
    sampler: str | Callable[[Context], ClassSampler] = "instance"
    head: str | None = None
    trainable: str = "all"
    bn: str | Callable[[Context], str] = "frozen"
    config: str = "stage1"
    name: str = "stage1"
    adjust: Callable[[Any], Any] | None = None


def stage_config(profile, stage: Stage):
    """The :class:`~ltkd.profiles.TrainConfig` a stage trains with: the profile's, changed by ``stage.adjust``."""
    cfg = getattr(profile, stage.config)
    return stage.adjust(cfg) if stage.adjust is not None else cfg


@dataclass
class Recipe:
    name: str
    description: str
    stages: list[Stage]
    head: str = "linear"  # the head the model is built with
    chapter: str = ""
    options: tuple[str, ...] = ()  # keys of its own a recipe reads beyond OPTIONS (any other key is an error)


METHODS: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    METHODS[recipe.name] = recipe
    return recipe


# The methods' options (``run(..., options={...})``, ``ltkd train --set KEY=VALUE``): key -> (values, help).
# ``values`` is "number" or a tuple of the accepted words. (``teacher``, a model, is passed in Python or
# by ``ltkd distill --teacher``.)
OPTIONS: dict[str, tuple[str | tuple[str, ...], str]] = {
    "cb_beta": ("number", "re-weighting: beta of the class-balanced weights (0.9999)"),
    "la_tau": ("number", "logit adjustment: tau (1)"),
    "gcl_eps": ("number", "GCL stage 1: cloud size epsilon (0.5; angular form 0.1)"),
    "gcl_scale": ("number", "GCL stage 1: scale s (30)"),
    "gcl_margin": ("number", "GCL stage 1: margin m (0; angular form 0.5)"),
    "gcl_mixup": ("number", "GCL stage 1: mixup alpha (1 in the paper profile, 0 in quick)"),
    "gcl_eps2": ("number", "GCL stage 2: cloud size (0.5; angular form 0.1)"),
    "gcl_scale2": ("number", "GCL stage 2: scale (20)"),
    "gcl_margin2": ("number", "GCL stage 2: margin (0.1)"),
    "gcl_gamma": ("number", "GCL stage 2: focal gamma (1)"),
    "gcl_sampler": (("effective-number", "class-balanced"), "GCL stage 2 sampler (effective-number)"),
    "fusion_ratio": ("number", "H2T: fraction rho of channels fused, in [0, 1] (0.25)"),
    "h2t_donor": (("instance", "class-balanced", "sqrt"), "H2T: how donor images are sampled (instance)"),
    "h2t_mixup": ("number", "H2T stage 1: mixup alpha (1 in the paper profile, 0 in quick)"),
    "h2t_bn": (("frozen", "train"), "H2T stage 2: backbone BatchNorm statistics (train in paper, frozen in quick)"),
    "T": ("number", "KD / DKD: temperature (4)"),
    "ce_weight": ("number", "KD / DKD: weight of the cross-entropy term (KD 0.1, DKD 1)"),
    "kd_weight": ("number", "KD: weight of the distillation term (0.9)"),
    "alpha": ("number", "DKD: weight of the target-class term (1)"),
    "beta": ("number", "DKD: weight of the non-target term (8)"),
    "warmup": ("number", "DKD: warm-up epochs (20/240 of the run)"),
    "eta": ("number", "label revision: eta in (0, 1) (0.8)"),
    "fraction": ("number", "data selection: fraction of samples the teacher supervises, in [0, 1] (0.9)"),
}


INF = float("inf")
# the values each number may take: (low, high, low included, high included)
RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "cb_beta": (0, 1, True, False),
    "fusion_ratio": (0, 1, True, True),
    "eta": (0, 1, False, False),
    "fraction": (0, 1, True, True),
    "T": (0, INF, False, False),
    "gcl_scale": (0, INF, False, False),
    "gcl_scale2": (0, INF, False, False),
    **{k: (0, INF, True, False) for k in ("la_tau", "gcl_eps", "gcl_margin", "gcl_mixup", "gcl_eps2", "gcl_margin2",
                                          "gcl_gamma", "h2t_mixup", "ce_weight", "kd_weight", "alpha", "beta",
                                          "warmup")},  # fmt: skip
}


def check_option(key: str, number: float, flag: str | None = None) -> float:
    """``number`` if it is finite and inside :data:`RANGES` for ``key``, else :class:`LtkdError` naming the range
    (``flag``: how the user spelt it, e.g. ``--eta``)."""
    name = flag or f"option {key}"
    if number != number or number in (INF, -INF):
        raise LtkdError(f"{name} must be finite, got {number!r}")
    if key in RANGES:
        lo, hi, lo_in, hi_in = RANGES[key]
        if not ((number >= lo if lo_in else number > lo) and (number <= hi if hi_in else number < hi)):
            span = f"{'[' if lo_in else '('}{lo:g}, {hi:g}{']' if hi_in else ')'}" if hi != INF else (
                f"{'≥' if lo_in else '>'} {lo:g}")
            raise LtkdError(f"{name} must be {'in ' if hi != INF else ''}{span}, got {number:g}")
    return number


def check_options(options: dict[str, Any] | None, own: tuple[str, ...] = ()) -> dict[str, Any]:
    """``options`` (``run(..., options=...)``) checked as ``--set`` checks them: every key is one of :data:`OPTIONS`
    (or ``own``, a recipe's own keys, or ``teacher``, a model), numbers are real numbers inside :data:`RANGES`,
    choices one of their values. Raises :class:`LtkdError` naming the option; returns the options."""
    options = dict(options or {})
    unknown = sorted(k for k in options if k not in OPTIONS and k not in own and k != "teacher")
    if unknown:
        raise LtkdError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                        f"known: {', '.join(OPTIONS)} (see `ltkd methods`)")  # fmt: skip
    for key, v in options.items():
        if key == "teacher":
            if v is not None and not isinstance(v, nn.Module):
                raise LtkdError(f"option teacher must be a model (an nn.Module), got {type(v).__name__}")
            continue
        if key not in OPTIONS or v is None:
            continue
        kind = OPTIONS[key][0]
        if kind == "number":
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise LtkdError(f"option {key} takes a number, got {v!r}")
            check_option(key, float(v))
        elif v not in kind:
            raise LtkdError(f"option {key} takes one of {', '.join(kind)}, got {v!r}")
    return options


def parse_option(text: str) -> tuple[str, float | str]:
    """``"KEY=VALUE"`` -> ``(key, value)``, checked against :data:`OPTIONS` (numbers become floats)."""
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key or not value:
        raise LtkdError(f"--set expects KEY=VALUE, got {text!r}")
    if key not in OPTIONS:
        raise LtkdError(f"unknown option {key!r}; known: {', '.join(OPTIONS)} (see `ltkd methods`)")
    kind = OPTIONS[key][0]
    if kind == "number":
        try:
            number = float(value)
        except ValueError:
            raise LtkdError(f"option {key} takes a number, got {value!r}") from None
        return key, check_option(key, number)
    if value not in kind:
        raise LtkdError(f"option {key} takes one of {', '.join(kind)}, got {value!r}")
    return key, value


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
