"""The objective: what ``fit`` trains a model under, as an explicit base class.

An objective's :meth:`Objective.forward` takes ``(model, x, y)`` (plus ``idx``, the batch's indices into
the training set, when :attr:`Objective.wants_index` is set) and returns ``(logits, {name: loss})``: the
engine sums the losses, logs each, and never asks which method it is running. Every other hook is
optional and does nothing by default:

* :meth:`Objective.configure` — once before training, with the stage's config (mixup reads it);
* :meth:`Objective.on_epoch` — at each epoch's start (deferred re-weighting, KD warm-up);
* :meth:`Objective.rng_state` / :meth:`Objective.set_rng_state` — the objective's own random streams,
  which a checkpoint saves and a resumed run continues (H2T's donors).

:class:`LossObjective` turns a plain criterion ``f(logits, y)`` into an objective (with optional mixup);
distillers and H2T subclass :class:`Objective` too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from .profiles import TrainConfig

__all__ = ["Objective", "LossObjective"]


class Objective(nn.Module):
    """Base class of every objective ``fit`` trains under; subclasses implement :meth:`forward`."""

    wants_index: bool = False  #: ``forward`` is called with the batch's indices into the training set

    def forward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                idx: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # fmt: skip
        """``(logits, {name: loss})`` for one batch; the engine back-propagates the sum of the losses."""
        raise NotImplementedError(f"{type(self).__name__} must define forward(model, x, y)")

    def configure(self, config: TrainConfig) -> None:
        """Called once by ``fit`` before training, with the stage's config. Default: nothing."""

    def on_epoch(self, epoch: int, epochs: int) -> None:
        """Called at the start of every epoch (``epoch`` counted from 0). Default: nothing."""

    def rng_state(self) -> Any:
        """The objective's own random streams, for a checkpoint; ``None`` (the default) = it has none."""
        return None

    def set_rng_state(self, state: Any) -> None:
        """Continue the streams :meth:`rng_state` returned (a resumed run). Default: nothing."""


class LossObjective(Objective):
    """``logits = model(x)``; loss = ``criterion(logits, y)``, with optional mixup.

    Mixup (Zhang et al. 2018): x̃ = λ x + (1 − λ) x[perm], λ ~ Beta(α, α); the loss mixes the
    criterion on both labels with the same λ, so any criterion (GCL, LDAM, …) works. A config
    with ``mixup`` > 0 sets α (:meth:`configure`).
    """

    def __init__(self, criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], mixup: float = 0.0,
                 name: str = "ce"):  # fmt: skip
        super().__init__()
        self.criterion = criterion
        self.mixup = mixup
        self.name = name
        if isinstance(criterion, nn.Module):
            self.add_module("criterion_module", criterion)

    def configure(self, config: TrainConfig) -> None:
        if config.mixup:
            self.mixup = config.mixup

    def on_epoch(self, epoch: int, epochs: int) -> None:
        if hasattr(self.criterion, "on_epoch"):  # a criterion is any callable; re-weighting ones switch here
            self.criterion.on_epoch(epoch, epochs)

    def forward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None = None):
        if self.training and self.mixup > 0:
            lam = float(np.random.beta(self.mixup, self.mixup))
            perm = torch.randperm(len(x), device=x.device)
            logits = model(lam * x + (1 - lam) * x[perm])
            loss = lam * self.criterion(logits, y) + (1 - lam) * self.criterion(logits, y[perm])
            return logits, {self.name: loss}
        logits = model(x)
        return logits, {self.name: self.criterion(logits, y)}
