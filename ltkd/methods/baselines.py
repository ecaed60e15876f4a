"""Baselines: plain cross-entropy and classifier re-training (cRT).

* **CE** — instance sampling, cross-entropy; the model every long-tail paper starts from.
* **cRT** (Kang et al., ICLR 2020, "Decoupling representation and classifier"): stage 1 is
  CE; stage 2 freezes the backbone, puts in a fresh classifier and trains it alone with
  class-balanced sampling (draw a class uniformly, then one of its images).

Chapter 1 (``notebooks/01_long_tailed_data.ipynb``) builds both.

Chapter 2 (``notebooks/02_gaussian_clouded_logits.ipynb``) adds the baselines every long-tail
paper compares with, each one loss trained with instance sampling:

* **reweight** — class-balanced re-weighting by the effective number of samples (Cui et al., CVPR 2019).
* **la** — logit adjustment, CE(z + τ log prior) (Menon et al., ICLR 2021; τ = 1 is the balanced softmax).
* **ldam-drw** — label-distribution-aware margins with deferred re-weighting (Cao et al., NeurIPS 2019).

Under the ``paper`` profile, ``ce`` (and cRT's stage 1, the same stage) is the CE baseline of Cao et al.'s code
(LDAM-DRW's ``cifar_train.py``): ResNet-32 with zero-padded shortcuts, 200 epochs at batch 128, lr 0.1 with a 5-epoch
warm-up, ×0.01 at epoch 160 and ×0.0001 at 180 (option ``ce_schedule``; :func:`cao_step_schedule`), weight decay 2e-4;
``ldam-drw`` steps the same way. Where ltkd differs from the authors: the learning rate is set every iteration (the
warm-up a linear ramp over its iterations) where their code sets it once per epoch; ``reweight`` keeps the profile's
×0.1 steps, where their code steps its re-weighting baseline as its CE; ``la`` follows the profile, not Menon et al.'s
TensorFlow runs (another data split and schedule); cRT has no CIFAR recipe of its authors (Kang et al. train
ImageNet-LT and others), so its stage 2 is the profile's.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LtkdError
from ..objective import LossObjective
from . import FRACTION, NONNEGATIVE, Context, Recipe, Stage, option, register


def ce_objective(ctx: Context) -> LossObjective:
    """Cross-entropy on the model's logits (with mixup when the profile's config asks for it)."""
    return LossObjective(F.cross_entropy, name="ce")


def cao_step_schedule(cfg):
    """Cao et al.'s step schedule (LDAM-DRW's ``cifar_train.py``, ``adjust_learning_rate``, for every loss it trains,
    CE included): the learning rate ×0.01 at each milestone (×0.01 from epoch 160, ×0.0001 from 180 of 200), where
    GCL, H2T and the paper profile step ×0.1. A cosine schedule (the quick profile) is left as it is."""
    return cfg.replace(gamma=0.01) if cfg.schedule == "step" else cfg


option("ce_schedule", ("profile", "cao"), "profile", "CE (and cRT's stage 1): the profile's step schedule, or Cao "
       "et al.'s CE baseline (lr x0.01 at each step: x0.01 at 160, x0.0001 at 180 of 200; the paper profile sets "
       "cao)")  # fmt: skip


def ce_schedule(cfg, ctx: Context | None):
    """CE's stage config: with option ``ce_schedule`` = cao (the ``paper`` profile's stage-1 default, so that its CE
    is the baseline Cao et al. report, 70.4 % on CIFAR-10-LT IF 100) :func:`cao_step_schedule`; else the profile's."""
    kind = ctx.option("ce_schedule") if ctx is not None else cfg.option_defaults.get("ce_schedule", "profile")
    return cao_step_schedule(cfg) if kind == "cao" else cfg


CE_STAGE = Stage(objective=ce_objective, sampler="instance", name="stage1", adjust=ce_schedule)
CRT_STAGE = Stage(
    objective=ce_objective, sampler="class-balanced", head="linear", trainable="head", bn="frozen",
    config="stage2", name="crt",
)  # fmt: skip

register(Recipe("ce", "cross-entropy with instance sampling; under paper Cao et al.'s CE baseline (lr ×0.01 at each "
                "step). Differs from their code: lr set every iteration, not every epoch", [CE_STAGE],
                chapter="01"))  # fmt: skip
register(Recipe("crt", "CE, then classifier re-training with class-balanced sampling (Kang et al. 2020). Differs: "
                "their code has no CIFAR recipe; stage 1 is ltkd's ce, stage 2 the profile's (paper: 10 epochs from "
                "lr 0.02)",
                [CE_STAGE, CRT_STAGE], chapter="01"))  # fmt: skip


# --------------------------------------------------------------------------------------
# Chapter 2: the long-tail baselines every paper compares with
# --------------------------------------------------------------------------------------
def effective_number_class_weights(counts, beta: float = 0.9999) -> torch.Tensor:
    """Class-balanced weights (Cui et al., CVPR 2019, eq. 3–4): w_j ∝ (1 − β) / (1 − β^{n_j}),
    normalised so that Σ_j w_j = C (the number of classes). E_n = (1 − β^n)/(1 − β) is the
    "effective number" of samples of a class; β → 1 gives inverse frequency, β = 0 no weighting."""
    n = np.asarray(counts, dtype=np.float64)
    if (n <= 0).any():
        raise LtkdError("class-balanced weights need a positive count for every class")
    w = (1.0 - beta) / (1.0 - np.power(beta, n))
    w = w / w.sum() * len(n)
    return torch.tensor(w, dtype=torch.float32)


class ClassBalancedCE(nn.Module):
    """Cross-entropy weighted per class by :func:`effective_number_class_weights`.

    The batch loss is PyTorch's weighted mean Σ_i w_{y_i} ℓ_i / Σ_i w_{y_i} (as in Cao et al.'s
    LDAM-DRW code, which this baseline follows).
    """

    def __init__(self, counts, beta: float = 0.9999):
        super().__init__()
        self.register_buffer("weight", effective_number_class_weights(counts, beta))
        self.beta = beta

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), y, weight=self.weight)


class LogitAdjustedCE(nn.Module):
    """Logit-adjusted loss (Menon et al., ICLR 2021, eq. 10): CE(z + τ · log π, y), π_j = n_j / N.

    With τ = 1 this is the balanced softmax (Ren et al., NeurIPS 2020). Only the *loss* sees the
    adjustment; the model's own logits z are used at test time, and they come out calibrated for a
    balanced test set.
    """

    def __init__(self, counts, tau: float = 1.0):
        super().__init__()
        n = torch.as_tensor(np.asarray(counts), dtype=torch.float32)
        self.register_buffer("log_prior", torch.log(n / n.sum()))
        self.tau = float(tau)

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float() + self.tau * self.log_prior, y)


class LDAMLoss(nn.Module):
    """LDAM with deferred re-weighting (Cao et al., NeurIPS 2019, eq. 13 and Alg. 1).

    Margins Δ_j = C / n_j^{1/4}, scaled so the largest is ``max_margin`` (0.5); on cos θ from a
    cosine head: z = s · (cos θ − Δ_y · onehot(y)), s = 30. DRW: plain CE weights until epoch
    ``int(drw_at · epochs)`` (160 of 200 in the paper: 0.8), then class-balanced weights
    (:func:`effective_number_class_weights`, β = 0.9999); :meth:`on_epoch` switches.
    """

    def __init__(self, counts, max_margin: float = 0.5, scale: float = 30.0, drw_at: float = 0.8,
                 beta: float = 0.9999):  # fmt: skip
        super().__init__()
        n = torch.as_tensor(np.asarray(counts), dtype=torch.float32)
        m = 1.0 / n**0.25
        self.register_buffer("margins", m * (max_margin / m.max()))
        self.register_buffer("cb_weight", effective_number_class_weights(counts, beta))
        self.scale, self.drw_at = float(scale), float(drw_at)
        self.reweight = False

    def on_epoch(self, epoch: int, epochs: int) -> None:
        self.reweight = epoch >= int(self.drw_at * epochs)

    def forward(self, cosine: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = cosine.float() - self.margins[y].unsqueeze(1) * F.one_hot(y, cosine.shape[1]).float()
        return F.cross_entropy(self.scale * z, y, weight=self.cb_weight if self.reweight else None)


option("cb_beta", "number", 0.9999, "re-weighting: beta of the class-balanced weights", **{**FRACTION, "high_in": False})
option("la_tau", "number", 1.0, "logit adjustment: tau", **NONNEGATIVE)


def reweight_objective(ctx: Context) -> LossObjective:
    return LossObjective(ClassBalancedCE(ctx.counts, ctx.option("cb_beta")), name="cb_ce")


def la_objective(ctx: Context) -> LossObjective:
    return LossObjective(LogitAdjustedCE(ctx.counts, ctx.option("la_tau")), name="la_ce")


def ldam_drw_objective(ctx: Context) -> LossObjective:
    return LossObjective(LDAMLoss(ctx.counts), name="ldam")


REWEIGHT_STAGE = Stage(objective=reweight_objective, sampler="instance", name="stage1")
LA_STAGE = Stage(objective=la_objective, sampler="instance", name="stage1")


LDAM_DRW_STAGE = Stage(objective=ldam_drw_objective, sampler="instance", name="stage1", adjust=cao_step_schedule)

register(Recipe("reweight", "CE re-weighted by class-balanced effective-number weights, β = 0.9999 (Cui et al. 2019). "
                "Differs: under paper the profile's ×0.1 steps, where Cao et al.'s code steps its re-weighting "
                "baseline ×0.01",
                [REWEIGHT_STAGE], chapter="02"))  # fmt: skip
register(Recipe("la", "logit-adjusted loss CE(z + τ log prior), τ = 1 (Menon et al. 2021; = balanced softmax). "
                "Differs: the paper profile's schedule, not the authors' (TensorFlow, another data split)",
                [LA_STAGE], chapter="02"))  # fmt: skip
register(Recipe("ldam-drw", "LDAM margins on a cosine head, s = 30, deferred re-weighting from 80 % of the epochs, "
                "lr ×0.01 at each step of a step schedule (Cao et al. 2019). Differs: lr set every iteration, not every "
                "epoch", [LDAM_DRW_STAGE], head="cosine",
                chapter="02"))  # fmt: skip
