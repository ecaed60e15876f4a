"""Methods: each is a *recipe* — one or more stages of (objective, sampler, what trains).

The registry maps the names ``ltkd train --method NAME`` accepts to recipes; the engine
(``ltkd.train.fit``) only ever sees an objective and a sampler. One file per method, read
top to bottom beside its chapter:

* ``baselines.py`` — CE, cRT (chapter 1), and the long-tail baselines (chapter 2)
* ``gcl.py``, ``h2t.py``, ``distill.py``, ``label_revision.py``, ``tissuenet.py``,
  ``binary_stack.py`` — chapters 2–7.

A method file registers its recipes with :func:`register` and declares the options it reads with
:func:`option` (name, kind, default, help, range) beside the code that reads them (``ctx.option(name)``:
the user's value, else the profile's stage config's ``option_defaults``, else the declared default);
:meth:`Option.check` is the one validation of a setting. Importing this package imports every method
file (plain imports: a missing one is an error); the compact networks' files register their models.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import ClassSampler, ImageData
from ..errors import LtkdError
from ..profiles import Profile

__all__ = ["Context", "Stage", "Recipe", "METHODS", "Option", "OPTIONS", "option", "register", "get_method",
           "parse_option", "check_option", "check_options", "stage_config", "stage_head", "unread_options"]


@dataclass
class Context:
    """What an objective or sampler factory may look at: the training data, its class counts,
    the profile, the device and method options (``options``, e.g. ``fusion_ratio``)."""

    train: ImageData
    profile: Profile
    device: torch.device
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    read: set[str] = field(default_factory=set)  # the option keys asked for (:func:`unread_options`)

    @property
    def counts(self) -> np.ndarray:
        return self.train.counts

    def option(self, key: str, default: Any = None) -> Any:
        """The value of option ``key`` for this run: the user's (``options``), else the profile's stage config's
        (``TrainConfig.option_defaults`` of the config the option names), else ``default`` (where a method's
        forms differ, e.g. GCL's ε), else the option's declared default. Numbers come back as floats."""
        spec = OPTIONS.get(key)
        if spec is None:
            raise LtkdError(f"option {key!r} is read but not declared (declare it with ltkd.methods.option)")
        self.read.add(key)
        v = self.options.get(key)
        if v is None:
            v = getattr(self.profile, spec.config).option_defaults.get(key)
        if v is None:
            v = spec.default if default is None else default
        return v if v is None else spec.check(v)


@dataclass
class Stage:
    """One call of ``fit``.

    * ``objective(ctx) -> nn.Module`` with ``forward(model, x, y) -> (logits, losses)``
    * ``sampler``: a name (``instance``, ``class-balanced``, ``sqrt``) or ``f(ctx) -> ClassSampler``
    * ``head``: ``None`` keeps the model's head; ``"linear"``/``"cosine"`` puts a fresh one in; or
      ``f(ctx) -> str | None`` where it depends on the options (H2T's ``h2t_head``)
    * ``trainable``: ``"all"`` or ``"head"`` (classifier re-training); ``bn`` as in ``fit``, or
      ``f(ctx) -> str`` where it depends on the profile or the options
    * ``config``: which of the profile's configs to use, ``"stage1"`` or ``"stage2"``
    * ``adjust``: ``f(TrainConfig) -> TrainConfig``, the method's own change to that config where its
      published recipe differs (e.g. LDAM-DRW's ×0.01 learning-rate steps), or
      ``f(TrainConfig, Context) -> TrainConfig`` where the change depends on the profile or the data
      (GCL's and H2T's stage 2 in the ``paper`` profile); see :func:`stage_config`
    """

    objective: Callable[[Context], nn.Module]
    sampler: str | Callable[[Context], ClassSampler] = "instance"
    head: str | Callable[[Context], str | None] | None = None
    trainable: str = "all"
    bn: str | Callable[[Context], str] = "frozen"
    config: str = "stage1"
    name: str = "stage1"
    adjust: Callable[[Any], Any] | None = None


def stage_config(profile, stage: Stage, ctx: Context | None = None):
    """The :class:`~ltkd.profiles.TrainConfig` a stage trains with: the profile's, changed by ``stage.adjust``.

    An ``adjust`` of two parameters also gets ``ctx`` (the run's :class:`Context`; without one, a context
    with no data: such an ``adjust`` must then fall back to the profile alone)."""
    cfg = getattr(profile, stage.config)
    if stage.adjust is None:
        return cfg
    if len(inspect.signature(stage.adjust).parameters) >= 2:
        return stage.adjust(cfg, ctx)
    return stage.adjust(cfg)


def stage_head(stage: Stage, ctx: Context) -> str | None:
    """The head a stage puts in: ``stage.head``, or ``stage.head(ctx)`` when it is a function."""
    return stage.head(ctx) if callable(stage.head) else stage.head


@dataclass
class Recipe:
    name: str
    description: str
    stages: list[Stage]
    head: str = "linear"  # the head the model is built with
    chapter: str = ""
    teacher: bool = False  # distils a teacher (options["teacher"]): `ltkd distill` runs it
    options: tuple[str, ...] = ()  # keys of its own a recipe reads beyond OPTIONS (any other key is an error)


METHODS: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    METHODS[recipe.name] = recipe
    return recipe


INF = float("inf")


@dataclass(frozen=True)
class Option:
    """One method option (``run(..., options={name: value})``, ``ltkd train --set NAME=VALUE``), declared by
    the method file that reads it, next to the code that uses it (:func:`option`).

    * ``kind``: ``"number"`` or a tuple of the accepted words.
    * ``default``: the value when neither the user nor the profile gives one; ``None`` where the method
      computes it (its help says how), or passes a default of its own where two forms differ.
    * ``range``: ``(low, high, low included, high included)`` for a number.
    * ``config``: which of the profile's stage configs may hold a default of its own for this option
      (``TrainConfig.option_defaults``: the paper profile's published mixup, H2T's BatchNorm).
    """

    name: str
    kind: str | tuple[str, ...]
    default: Any
    help: str
    range: tuple[float, float, bool, bool] = (-INF, INF, False, False)
    config: str = "stage1"

    def span(self) -> str:
        lo, hi, lo_in, hi_in = self.range
        if hi == INF:
            return "" if lo == -INF else f"{'≥' if lo_in else '>'} {lo:g}"
        return f"in {'[' if lo_in else '('}{lo:g}, {hi:g}{']' if hi_in else ')'}"

    def check(self, value: Any, spelt: str | None = None) -> float | str:
        """``value`` (a number, a word, or the text of either) if this option accepts it, else
        :class:`LtkdError` naming what it accepts (``spelt``: how the user wrote the option, e.g. ``--eta``).
        The one place a setting is validated: ``--set``, a flag of its own, and ``run(options=...)``."""
        name = spelt or f"option {self.name}"
        if self.kind != "number":
            if value not in self.kind:
                raise LtkdError(f"{name} takes one of {', '.join(self.kind)}, got {value!r}")
            return value
        if isinstance(value, bool):
            raise LtkdError(f"{name} takes a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise LtkdError(f"{name} takes a number, got {value!r}") from None
        if number != number or number in (INF, -INF):
            raise LtkdError(f"{name} must be finite, got {number!r}")
        lo, hi, lo_in, hi_in = self.range
        if not ((number >= lo if lo_in else number > lo) and (number <= hi if hi_in else number < hi)):
            raise LtkdError(f"{name} must be {self.span()}, got {number:g}")
        return number


OPTIONS: dict[str, Option] = {}  # every declared option, by name: what `ltkd methods` lists and --set accepts


def option(name: str, kind: str | tuple[str, ...], default: Any, help: str, *, low: float = -INF,
           high: float = INF, low_in: bool = True, high_in: bool = True, config: str = "stage1") -> Option:  # fmt: skip
    """Declare a method option (in the method file that reads it); the same name twice must mean the same."""
    opt = Option(name, kind, default, help, (low, high, low_in, high_in), config)
    if name in OPTIONS and OPTIONS[name] != opt:
        raise LtkdError(f"option {name!r} is declared twice, differently")
    OPTIONS[name] = opt
    return opt


POSITIVE = {"low": 0.0, "low_in": False}  # > 0
NONNEGATIVE = {"low": 0.0}  # ≥ 0
FRACTION = {"low": 0.0, "high": 1.0}  # [0, 1]


def check_option(key: str, value: Any, flag: str | None = None) -> float | str:
    """``value`` checked against the declared option ``key`` (:meth:`Option.check`)."""
    if key not in OPTIONS:
        raise LtkdError(f"unknown option {key!r}; known: {', '.join(OPTIONS)} (see `ltkd methods`)")
    return OPTIONS[key].check(value, flag)


def parse_option(text: str) -> tuple[str, float | str]:
    """``"KEY=VALUE"`` -> ``(key, value)``, checked against :data:`OPTIONS` (numbers become floats)."""
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key or not value:
        raise LtkdError(f"--set expects KEY=VALUE, got {text!r}")
    return key, check_option(key, value)


def check_options(options: dict[str, Any] | None, own: tuple[str, ...] = ()) -> dict[str, Any]:
    """``run``'s options checked as ``--set`` checks them: every declared one's value validated
    (:meth:`Option.check`; a number becomes a float); an undeclared key is an error naming it, as the README
    promises (a recipe of your own lists the keys it reads in ``Recipe.options``, passed here as ``own``);
    ``teacher`` must be a model."""
    out = dict(options or {})
    unknown = sorted(k for k in out if k not in OPTIONS and k not in own and k != "teacher")
    if unknown:
        raise LtkdError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                        f"known: {', '.join(OPTIONS)} (see `ltkd methods`)")  # fmt: skip
    if out.get("teacher") is not None and not isinstance(out["teacher"], nn.Module):
        raise LtkdError(f"option teacher must be a model (an nn.Module), got {type(out['teacher']).__name__}")
    for k, v in out.items():
        if k in OPTIONS and v is not None:
            out[k] = OPTIONS[k].check(v)
    return out


def unread_options(recipe: Recipe, ctx: Context, skip: int = 0) -> list[str]:
    """The options given in ``ctx`` that no stage of ``recipe`` (from index ``skip``) reads: each stage's config,
    head, sampler, objective and BatchNorm mode are built once on a copy of ``ctx`` that records what they ask for
    (:meth:`Context.option`), with every random stream restored after, and dropped. A recipe's own keys
    (``Recipe.options``) and ``teacher`` are not asked about."""
    given = [k for k in ctx.options if k != "teacher" and k not in recipe.options]
    if not given:
        return []
    probe = Context(train=ctx.train, profile=ctx.profile, device=ctx.device, seed=ctx.seed, options=ctx.options)
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        for stage in recipe.stages[skip:]:
            stage_config(ctx.profile, stage, probe)
            stage_head(stage, probe)
            for part in (stage.sampler, stage.objective, stage.bn):
                if callable(part):
                    part(probe)
    np.random.set_state(np_state)
    return sorted(set(given) - probe.read)


def get_method(name: str) -> Recipe:
    if name not in METHODS:
        raise LtkdError(f"unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}")
    return METHODS[name]


# The method files: plain imports (a missing or broken one is an error), after the names they import from here.
from . import baselines, binary_stack, distill, gcl, h2t, label_revision, tissuenet  # noqa: E402, F401
