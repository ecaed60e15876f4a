"""Label revision (LR) and data selection (DS) for knowledge distillation (Lan, Cheung et al. 2024,
"Improve knowledge distillation via label revision and data selection").

Chapter 5 (``notebooks/05_label_revision_and_data_selection.ipynb``) builds both by hand and
checks them against this file. Read top to bottom:

1. :func:`revise` — **label revision**. A teacher is sometimes wrong, also on training images;
   its soft label then teaches the student a wrong class. Revision mixes in the one-hot label y:

       p = β · p^t + (1 − β) · y,   β = η / (p^t_max − p^t_y + 1),   0 < η < 1 (η = 0.8).

   Where the teacher is right, p^t_max = p^t_y and β = η; the more confidently wrong it is,
   the smaller β and the more ground truth goes in. The revised argmax is always y:
   p_y − p_j ≥ 1 − β (p^t_max − p^t_y + 1) = 1 − η > 0 for every j ≠ y. Rows still sum to 1.
   We revise the *softened* teacher distribution p^t = softmax(z_t / T) the student matches
   (β computed from it too), on the same augmented batch the student sees.
2. :func:`selection_scores` and :func:`select_fraction` — **data selection**. Only a subset
   of the training samples is supervised by the teacher; the rest get ground-truth CE only.
   The paper scores samples with an influence-function-style criterion whose exact formula
   was not available to us. **This project's choice** (documented, not the paper's): the
   teacher's *true-class margin* on the un-augmented training image at T = 1,

       s_i = p^t_{y_i} − max_{j ≠ y_i} p^t_j  ∈ [−1, 1],

   computed once before training; the teacher supervises the ⌊r · N + ½⌋ samples with the
   largest margin (ties by index), r = ``fraction`` (default 0.9). Why this score: (a) it is
   the quantity that decides whether the teacher's soft label points at the right class
   (s < 0 ⇔ the teacher is wrong), so the lowest-scored samples are exactly where KD would pull
   the student away from the label — the harm the paper's selection is meant to remove;
   (b) among correct samples a small margin marks ambiguous images, where the teacher's
   soft label is least reliable; (c) it needs one forward pass of the teacher, no student,
   no held-out set and no Hessian, and it is deterministic. Its weakness: it cannot see
   samples where a right-but-unhelpful teacher hurts the student, which an influence estimate
   could. The chapter ablates r.
3. :class:`LabelRevision` — revision as a module, the ``revision`` hook of any
   :class:`~ltkd.methods.distill.Distiller` (KD, DKD, …).
4. Recipes ``kd-lr``, ``kd-ds``, ``kd-lr-ds``, ``dkd-lr-ds`` (options ``eta``, ``fraction``;
   the teacher in ``options["teacher"]``; ``ltkd distill`` runs them), and the control ``kd-mix``:
   the label mixed in at the *constant* β = η on every sample (``LabelRevision(eta, constant=True)``).
   With η = 0.8 label revision moves every target a fifth of the way to the label and, on top of that,
   more where the teacher is wrong; ``kd-mix`` does only the first, so KD-LR against KD-mix measures the
   part that rectifies the teacher's mistakes (where the teacher is confidently wrong, KD-mix's target
   still points at the wrong class).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..data import ImageData
from ..errors import LtkdError
from . import FRACTION, Context, Recipe, Stage, option, register
from .distill import COSINE_TEACHER_SCALE, _teacher, dkd_objective, kd_objective, teacher_logits

__all__ = [
    "revision_beta",
    "revise",
    "mix_label",
    "LabelRevision",
    "selection_scores",
    "select_fraction",
    "selection_mask",
]

DEFAULT_ETA = 0.8
DEFAULT_FRACTION = 0.9


# --------------------------------------------------------------------------------------
# 1. Label revision
# --------------------------------------------------------------------------------------
def revision_beta(teacher_probs: torch.Tensor, y: torch.Tensor, eta: float = DEFAULT_ETA) -> torch.Tensor:
    """β = η / (p_max − p_y + 1) per sample, shape (B,): η where the teacher is right, smaller where wrong."""
    p_max = teacher_probs.max(1).values
    p_y = teacher_probs.gather(1, y[:, None]).squeeze(1)
    return eta / (p_max - p_y + 1)


def mix_label(teacher_probs: torch.Tensor, y: torch.Tensor, beta: torch.Tensor | float) -> torch.Tensor:
    """β · p^t + (1 − β) · onehot(y), with β a number or one per sample (shape (B,))."""
    beta = torch.as_tensor(beta, dtype=teacher_probs.dtype, device=teacher_probs.device)
    beta = beta[:, None] if beta.dim() == 1 else beta
    onehot = torch.zeros_like(teacher_probs).scatter_(1, y[:, None], 1.0)
    return beta * teacher_probs + (1 - beta) * onehot


def revise(teacher_probs: torch.Tensor, y: torch.Tensor, eta: float = DEFAULT_ETA) -> torch.Tensor:
    """Revised targets p = β · p^t + (1 − β) · onehot(y), β from :func:`revision_beta`; argmax p = y."""
    if not 0 < eta < 1:
        raise LtkdError(f"label revision needs 0 < η < 1, got {eta}")
    return mix_label(teacher_probs, y, revision_beta(teacher_probs, y, eta))


class LabelRevision(nn.Module):
    """``revision(p_teacher, y)`` for a :class:`~ltkd.methods.distill.Distiller`.

    ``constant=True`` is the control, not the method: β = η on every sample, whether the teacher is right
    or wrong (the recipe ``kd-mix``)."""

    def __init__(self, eta: float = DEFAULT_ETA, constant: bool = False):
        super().__init__()
        if not 0 < eta < 1:
            raise LtkdError(f"label revision needs 0 < η < 1, got {eta}")
        self.eta, self.constant = float(eta), bool(constant)

    def forward(self, teacher_probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.constant:
            return mix_label(teacher_probs, y, self.eta)
        return revise(teacher_probs, y, self.eta)

    def extra_repr(self) -> str:
        return f"eta={self.eta}" + (", constant=True" if self.constant else "")


# --------------------------------------------------------------------------------------
# 2. Data selection
# --------------------------------------------------------------------------------------
@torch.no_grad()
def selection_scores(teacher: nn.Module, data: ImageData, device=None, batch_size: int = 1024,
                     cosine_scale: float = COSINE_TEACHER_SCALE) -> torch.Tensor:  # fmt: skip
    """The teacher's true-class margin s_i = p_y − max_{j≠y} p_j (T = 1, no augmentation), shape (N,), on the CPU."""
    from ..data import TensorLoader
    from ..device import get_device

    dev = get_device(device)
    was = teacher.training
    teacher.to(dev).eval()
    out = []
    for x, y, _ in TensorLoader(data, batch_size, train=False, device=dev):
        p = torch.softmax(teacher_logits(teacher, x, cosine_scale), 1)
        p_y = p.gather(1, y[:, None]).squeeze(1)
        other = p.scatter(1, y[:, None], -1.0).max(1).values
        out.append((p_y - other).cpu())
    teacher.train(was)
    return torch.cat(out) if out else torch.empty(0)


def select_fraction(scores: torch.Tensor | np.ndarray, fraction: float) -> torch.Tensor:
    """Boolean mask keeping exactly ⌊fraction · N + ½⌋ samples: the highest scores, ties broken by index."""
    if not 0 <= fraction <= 1:
        raise LtkdError(f"selected fraction must be in [0, 1], got {fraction}")
    s = torch.as_tensor(np.asarray(scores), dtype=torch.float64).flatten()
    k = int(math.floor(fraction * len(s) + 0.5))
    order = torch.argsort(-s, stable=True)
    mask = torch.zeros(len(s), dtype=torch.bool)
    mask[order[:k]] = True
    return mask


def selection_mask(teacher: nn.Module, data: ImageData, fraction: float = DEFAULT_FRACTION, device=None) -> torch.Tensor:
    """:func:`selection_scores` then :func:`select_fraction`: which samples the teacher supervises."""
    return select_fraction(selection_scores(teacher, data, device), fraction)


# --------------------------------------------------------------------------------------
# 4. Recipes
# --------------------------------------------------------------------------------------
option("eta", "number", DEFAULT_ETA, "label revision: eta in (0, 1)", **{**FRACTION, "low_in": False, "high_in": False})
option("fraction", "number", DEFAULT_FRACTION, "data selection: fraction of samples the teacher supervises, in [0, 1]",
       **FRACTION)  # fmt: skip


def _lr(ctx: Context) -> LabelRevision:
    return LabelRevision(ctx.option("eta"))


def _ds(ctx: Context) -> torch.Tensor:
    return selection_mask(_teacher(ctx), ctx.train, ctx.option("fraction"), ctx.device)


def kd_lr_objective(ctx: Context):
    return kd_objective(ctx, revision=_lr(ctx))


def kd_mix_objective(ctx: Context):
    return kd_objective(ctx, revision=LabelRevision(ctx.option("eta"), constant=True))


def kd_ds_objective(ctx: Context):
    return kd_objective(ctx, selected=_ds(ctx))


def kd_lr_ds_objective(ctx: Context):
    return kd_objective(ctx, revision=_lr(ctx), selected=_ds(ctx))


def dkd_lr_ds_objective(ctx: Context):
    return dkd_objective(ctx, revision=_lr(ctx), selected=_ds(ctx))


register(Recipe("kd-lr", "KD with label revision (Lan et al. 2024); teacher via `ltkd distill`",
                [Stage(objective=kd_lr_objective, name="kd-lr")], chapter="05", teacher=True))  # fmt: skip
register(Recipe("kd-mix", "control for label revision: KD with the label mixed in at a constant β = η on every "
                "sample", [Stage(objective=kd_mix_objective, name="kd-mix")], chapter="05", teacher=True))  # fmt: skip
register(Recipe("kd-ds", "KD with data selection (teacher margin; this project's criterion)",
                [Stage(objective=kd_ds_objective, name="kd-ds")], chapter="05", teacher=True))  # fmt: skip
register(Recipe("kd-lr-ds", "KD with label revision and data selection (Lan et al. 2024)",
                [Stage(objective=kd_lr_ds_objective, name="kd-lr-ds")], chapter="05", teacher=True))  # fmt: skip
register(Recipe("dkd-lr-ds", "DKD with label revision and data selection",
                [Stage(objective=dkd_lr_ds_objective, name="dkd-lr-ds")], chapter="05", teacher=True))  # fmt: skip
