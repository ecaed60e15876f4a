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
   :class:`LabelRevision` applies this to every sample's *softened* teacher distribution
   p^t = softmax(z_t / T) inside KD's one KL term (β computed from it too) — the recipe ``kd-lr-all``,
   this book's first reading, kept as a variant beside its control ``kd-mix``.
1b. :class:`RevisionSplit` — **the paper's loss**, with weights λ1, λ2 and η (options ``lr_lambda1``,
   ``lr_lambda2``, ``eta``). Where the teacher is right its prediction is kept: CE + λ1 · the distillation
   term; where it is wrong the student is pulled towards the revised label p̃ with weight λ2 (no CE there).
   What the authors do and what we know of it: the paper (arXiv 2404.03693; IEEE TCDS 2025) defines LR
   with λ1, λ2 and η; its full text was not available to us (only its abstract and summaries, which give
   the revision formula and name λ1, λ2, η). The form and the defaults here are those of the public
   re-implementation this book already cited for η (an mdistiller ``REVISION`` distiller): on the teacher's
   right samples CE + λ1 · MSE(student logits, teacher logits), on its wrong samples λ2 · MSE(softmax of the
   student, revised label at T = 1), each a mean over its own subset, λ1 = 4, λ2 = 1, η = 0.8. ltkd uses
   exactly that for ``kd-lr`` / ``kd-lr-ds``; for ``dkd-lr-ds`` the right samples' term is DKD's own
   (α·TCKD + β·NCKD at T = 4, warmed up; λ1 = 1 by default, as DKD's weights are already tuned) —
   our choice, as the re-implementation has no DKD form. If the paper's equations differ, this module
   follows the re-implementation, not the paper.
2. :func:`selection_scores` and :func:`select_fraction` — **data selection**. Only a subset
   of the training samples is supervised by the teacher; the rest get ground-truth CE only.
   The paper scores samples with an influence-function-based criterion; its text (and so its
   equation) was not available to us, so **it is not implemented**, and the default — the only
   value of the option ``ds_criterion`` — is **this project's choice** (documented, not the paper's): the
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
3. :class:`LabelRevision` — all-sample revision as a module, the ``revision`` hook of any
   :class:`~ltkd.methods.distill.Distiller` (KD, DKD, …); :class:`RevisionSplit` is its ``split`` hook.
4. Recipes ``kd-lr``, ``kd-ds``, ``kd-lr-ds``, ``dkd-lr-ds`` (options ``eta``, ``lr_lambda1``, ``lr_lambda2``,
   ``fraction``, ``ds_criterion``; the teacher in ``options["teacher"]``; ``ltkd distill`` runs them), the
   variant ``kd-lr-all`` and the control ``kd-mix``: the label mixed in at the *constant* β = η on every sample
   (``LabelRevision(eta, constant=True)``). With η = 0.8 all-sample revision moves every target a fifth of the
   way to the label and, on top of that, more where the teacher is wrong; ``kd-mix`` does only the first, so
   ``kd-lr-all`` against ``kd-mix`` measures the part that rectifies the teacher's mistakes (where the teacher
   is confidently wrong, KD-mix's target still points at the wrong class). The paper's ``kd-lr`` leaves the
   teacher's right samples unrevised, so it has no uniform shift at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import ImageData
from ..errors import LtkdError
from . import FRACTION, NONNEGATIVE, Context, Recipe, Stage, option, register
from .distill import COSINE_TEACHER_SCALE, _teacher, dkd_objective, kd_objective, soften, teacher_logits

__all__ = [
    "revision_beta",
    "revise",
    "mix_label",
    "LabelRevision",
    "RevisionSplit",
    "logit_mse",
    "selection_scores",
    "select_fraction",
    "selection_mask",
]

DEFAULT_ETA = 0.8
DEFAULT_FRACTION = 0.9
DEFAULT_LAMBDA1 = {"kd": 4.0, "dkd": 1.0}  # kd: the re-implementation's λ1 for its logit term; dkd: DKD's own weights
DEFAULT_LAMBDA2 = 1.0


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
# 1b. The paper's loss: the batch split by whether the teacher is right
# --------------------------------------------------------------------------------------
def logit_mse(zs: torch.Tensor, zt: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared difference of student logits ``zs`` and teacher logits ``zt`` (the KD host's term
    on samples the teacher gets right in the public re-implementation); shape (B,). ``y`` is unused: the
    signature is :class:`RevisionSplit`'s ``right_term(zs, zt, y)``."""
    return ((zs.float() - zt.float()) ** 2).mean(1)


class RevisionSplit(nn.Module):
    """Label revision as the paper uses it: the teacher's right and wrong samples are supervised differently.

    ``forward(distiller, z_s, z_t, y, mask)`` with student logits z_s, teacher logits z_t, labels y and the
    data-selection mask (``None``: all selected). Let R = selected samples the teacher gets right
    (argmax z_t = y), W = selected samples it gets wrong, G = R ∪ unselected samples. Then

        loss = mean_{i∈G} CE(z_s,i, y_i)                                   ("ce")
             + λ1 · mean_{i∈R} D_i                                        ("kd")
             + λ2 · mean_{i∈W} (1/C) ‖softmax(z_s,i) − p̃_i‖²               ("lr")

    with p̃_i = revise(softmax(z_t,i), y_i, η) at T = 1 (:func:`revise`) and D the host's distillation term:
    ``right_term(z_s, z_t, y)`` if given (``kd-lr``: :func:`logit_mse`, the squared logit difference averaged
    over the C classes), else the distiller's own ``distill`` on the softened teacher at its temperature, warmed
    up as the distiller is (``dkd-lr-ds``: α·TCKD + β·NCKD). Each term is a mean over its own subset (an empty
    subset gives 0), as in the public re-implementation; unselected samples get the ground truth only.
    The teacher's *wrong* samples get no CE term: the revised label, whose argmax is y, is their supervision.
    The CE term has weight 1, as in the re-implementation: the host's ``ce_weight`` (KD's 0.1) is not used here,
    and neither is ``kd_weight`` — λ1 takes its place.
    """

    def __init__(self, eta: float = DEFAULT_ETA, lambda1: float = 4.0, lambda2: float = 1.0,
                 right_term: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None):  # fmt: skip
        super().__init__()
        if not 0 < eta < 1:
            raise LtkdError(f"label revision needs 0 < η < 1, got {eta}")
        if lambda1 < 0 or lambda2 < 0:
            raise LtkdError(f"λ1 and λ2 must be ≥ 0, got {lambda1} and {lambda2}")
        self.eta, self.lambda1, self.lambda2, self.right_term = float(eta), float(lambda1), float(lambda2), right_term

    def forward(self, distiller, zs: torch.Tensor, zt: torch.Tensor, y: torch.Tensor,
                mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
        zs32, zt = zs.float(), zt.float()
        sel = torch.ones_like(y, dtype=torch.bool) if mask is None else mask.to(device=y.device, dtype=torch.bool)
        right = zt.argmax(1) == y
        r, w, g = sel & right, sel & ~right, ~sel | right
        zero = zs32.sum() * 0.0  # keeps the graph (and the device) when a subset is empty
        ce = F.cross_entropy(zs32[g], y[g]) if g.any() else zero
        if r.any():
            if self.right_term is not None:
                d1 = self.right_term(zs32[r], zt[r], y[r]).mean()
            else:
                d1 = distiller.warm * distiller.distill(zs[r], soften(zt[r], distiller.T), y[r]).mean()
        else:
            d1 = zero
        if w.any():
            target = revise(torch.softmax(zt[w], 1), y[w], self.eta)
            d2 = ((torch.softmax(zs32[w], 1) - target) ** 2).mean()
        else:
            d2 = zero
        return {"ce": ce, "kd": self.lambda1 * d1, "lr": self.lambda2 * d2}

    def extra_repr(self) -> str:
        return f"eta={self.eta}, lambda1={self.lambda1}, lambda2={self.lambda2}"


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
option("lr_lambda1", "number", None, "label revision (kd-lr, kd-lr-ds, dkd-lr-ds): weight lambda1 of the distillation "
       "term on samples the teacher gets right (KD 4, DKD 1)", **NONNEGATIVE)  # fmt: skip
option("lr_lambda2", "number", DEFAULT_LAMBDA2, "label revision: weight lambda2 of the revised-label term on samples "
       "the teacher gets wrong", **NONNEGATIVE)  # fmt: skip
option("ds_criterion", ("margin",), "margin", "data selection: how samples are scored (margin: the teacher's "
       "true-class margin, this project's criterion; the paper's influence score is not implemented, see "
       "label_revision.py)")  # fmt: skip


def _lr_all(ctx: Context) -> LabelRevision:
    return LabelRevision(ctx.option("eta"))


def _split(ctx: Context, host: str) -> RevisionSplit:
    return RevisionSplit(ctx.option("eta"), ctx.option("lr_lambda1", DEFAULT_LAMBDA1[host]), ctx.option("lr_lambda2"),
                         right_term=logit_mse if host == "kd" else None)  # fmt: skip


def _ds(ctx: Context) -> torch.Tensor:
    ctx.option("ds_criterion")  # checked: "margin" is the only criterion implemented (see the module docstring)
    return selection_mask(_teacher(ctx), ctx.train, ctx.option("fraction"), ctx.device)


def kd_lr_objective(ctx: Context):
    """The paper's loss (:class:`RevisionSplit`) on the KD host: CE + λ1·logit MSE where the teacher is right,
    λ2·MSE to the revised label where it is wrong."""
    return kd_objective(ctx, split=_split(ctx, "kd"))


def kd_lr_all_objective(ctx: Context):
    """The former ``kd-lr``: every sample's T = 4 soft label revised inside KD's one KL term (chapter 5's variant)."""
    return kd_objective(ctx, revision=_lr_all(ctx))


def kd_mix_objective(ctx: Context):
    return kd_objective(ctx, revision=LabelRevision(ctx.option("eta"), constant=True))


def kd_ds_objective(ctx: Context):
    return kd_objective(ctx, selected=_ds(ctx))


def kd_lr_ds_objective(ctx: Context):
    return kd_objective(ctx, split=_split(ctx, "kd"), selected=_ds(ctx))


def dkd_lr_ds_objective(ctx: Context):
    return dkd_objective(ctx, split=_split(ctx, "dkd"), selected=_ds(ctx))


register(Recipe("kd-lr", "KD with label revision as in Lan et al. 2024 (teacher-right samples: CE + λ1·distillation; "
                "teacher-wrong: λ2·revised label); teacher via `ltkd distill`. Differs: loss and defaults from a public "
                "re-implementation (the paper's text was not available)",
                [Stage(objective=kd_lr_objective, name="kd-lr")], chapter="05", teacher=True))  # fmt: skip
register(Recipe("kd-lr-all", "variant: every sample's T = 4 soft label revised inside KD's KL term (this book's former "
                "kd-lr)", [Stage(objective=kd_lr_all_objective, name="kd-lr-all")], chapter="05",
                teacher=True))  # fmt: skip
register(Recipe("kd-mix", "control for label revision: KD with the label mixed in at a constant β = η on every "
                "sample", [Stage(objective=kd_mix_objective, name="kd-mix")], chapter="05", teacher=True))  # fmt: skip
register(Recipe("kd-ds", "KD with data selection (teacher margin; this project's criterion)",
                [Stage(objective=kd_ds_objective, name="kd-ds")], chapter="05", teacher=True))  # fmt: skip
register(Recipe("kd-lr-ds", "KD with label revision and data selection (Lan et al. 2024). Differs: selection by the teacher's "
                "margin, this project's criterion, not the paper's influence score",
                [Stage(objective=kd_lr_ds_objective, name="kd-lr-ds")], chapter="05", teacher=True))  # fmt: skip
register(Recipe("dkd-lr-ds", "DKD with label revision and data selection (teacher-right samples: CE + λ1·DKD)",
                [Stage(objective=dkd_lr_ds_objective, name="dkd-lr-ds")], chapter="05", teacher=True))  # fmt: skip
