"""GCL — Gaussian clouded logit adjustment (Li, Cheung & Lu, CVPR 2022) and the angular form of
its journal extension ("Adjusting logit in Gaussian form", IEEE TAI 2024).

Chapter 2 (``notebooks/02_gaussian_clouded_logits.ipynb``) builds everything here by hand and
checks it against this file with ``assert_close``. Read top to bottom:

1. :func:`cloud_sizes` — a_j = (log n_max − log n_j) / (log n_max − log n_min) ∈ [0, 1]
   (0 for the largest class, 1 for the smallest).
2. :func:`gaussian_noise` — δ_ij ~ N(0, (1/3)²) clipped to [−1, 1], fresh for every sample i and
   class column j at every training step.
3. :class:`GCLLoss` — the cosine form (CVPR 2022, eq. for the clouded logit):
   z_ij = s · (cos θ_ij − ε · |δ_ij| · a_j − m · [j = y_i]), loss CE(z, y). Stage 1: m = 0, s = 30,
   ε = 0.5; stage 2: m = 0.1, s = 20, ε = 0.5 and the per-sample loss weighted focal-style by
   (1 − p_y)^γ, γ = 1. The noise is drawn only in training mode; in evaluation mode (and at test
   time, where the loss is not used at all) the logits are the clean s · cos θ.
4. :class:`GCLAngularLoss` — the angular form (the authors' code for the journal version): an
   angular offset Δ_ij = (π/2) · ε · a_j · |δ_ij| plus a margin m on the target,
   z_ij = s · cos(θ_ij + Δ_ij + m · [j = y_i]), with the authors' fallback cos θ − sin(π − Δ) = cos θ − sin Δ
   where θ + Δ would pass π (so the logit keeps falling and stays finite; :func:`cos_plus`).
   Defaults m = 0.5, ε = 0.1, s = 30.
5. :func:`effective_number_weights` / :func:`effective_number_sampler` — GCL's stage-2 "class-based
   effective number" sampler: β_j = 0.9999 + 1e-5 · a_j, per-image weight
   w_j = (1 − β_j) / (1 − β_j^{n_j}), images drawn with replacement, so class j is drawn with
   probability ∝ n_j · w_j (nearly class-balanced). The plain class-balanced sampler is the other
   choice (``options["gcl_sampler"] = "class-balanced"``; the authors' README uses it).
6. The stages and recipes: :data:`GCL_STAGE1` (GCL stage 1 on a cosine head; other methods, e.g.
   ``gcl-h2t``, reuse it), :data:`GCL_STAGE2` (classifier re-training, backbone frozen in eval
   mode, keeps the stage-1 cosine classifier and fine-tunes it), :data:`GCL_ANGULAR_STAGE1`,
   :data:`GCL_ANGULAR_STAGE2`; ``ltkd train --method gcl`` and ``--method gcl-angular``.

Options (``Context.options``): ``gcl_eps``, ``gcl_scale``, ``gcl_margin`` override stage 1's ε, s, m; ``gcl_batch``
stage 1's batch size (64 under ``paper``, as the authors; the profile's batch under ``quick``);
``gcl_eps2``, ``gcl_scale2``, ``gcl_margin2``, ``gcl_gamma`` stage 2's; ``gcl_sampler`` =
``effective-number`` (default) or ``class-balanced``; ``gcl_mixup`` = stage-1 mixup α (default 1.0
under the ``paper`` profile, as the authors train, and 0 under ``quick``, whose 6 epochs are too few
for mixup to pay off); ``gcl_mixup2`` = stage-2 mixup α (1.0 under ``paper``, as the authors'
classifier stage; 0 under ``quick``, where one seed measured it 1.3 points worse).

Under ``paper`` ltkd trains as the authors' ``cifar_train_backbone.py`` and ``cifar_train_classifier.py`` do: the
ResNet-32 of their ``resnet_cifar.py`` (``resnet32``: zero-padded shortcuts, fan-in initialisation), stage 1 at batch
64 from lr 0.1 with a 5-epoch warm-up, ×0.1 at epochs 160 and 180, weight decay 2e-4 and mixup α = 1; the loss, the
noise and the cloud sizes as their ``losses.py``.

Where ltkd differs from the authors (what they do / what ltkd does / why):

* learning rate: the authors set it once per epoch (the warm-up too); ltkd's engine steps every iteration;
* stage-2 sampler: the authors' README runs the classifier stage with ``BalancedRS`` (class-balanced);
  ltkd defaults to the effective-number sampler the paper describes (``gcl_sampler`` switches);
* stage-2 schedule: the authors' ``cifar_train_classifier.py`` trains 30 epochs, batch 64, cosine from
  0.002 set per epoch, weight decay 2e-4 — the ``paper`` profile does the same (stepped per iteration);
  ``quick`` trains 3 epochs from 0.02 with batch 128 (the book's CPU budget) and no stage-2 mixup;
* noise: the authors draw δ from ``Normal(0, 1/3)`` and clip to [−1, 1] — as here; cloud sizes: the
  authors divide log n_max − log n_j by its maximum, as :func:`cloud_sizes` does;
* the angular form's stage 2 (m = 0.1, s = 20, ε = 0.1, γ = 1) is the book's choice by analogy with
  the cosine form: the authors' classifier script builds only the cosine ``GCLLoss`` for stage 2.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import ClassSampler
from ..errors import LtkdError
from ..objective import LossObjective
from . import NONNEGATIVE, POSITIVE, Context, Recipe, Stage, option, register

__all__ = [
    "cloud_sizes",
    "gaussian_noise",
    "GCLLoss",
    "GCLAngularLoss",
    "focal_weighting",
    "effective_number_weights",
    "effective_number_class_probs",
    "effective_number_sampler",
    "cos_plus",
    "gcl_stage1_objective",
    "gcl_stage2_objective",
    "gcl_angular_stage1_objective",
    "gcl_angular_stage2_objective",
    "gcl_sampler",
    "GCL_HEAD",
    "GCL_STAGE1",
    "GCL_STAGE2",
    "GCL_ANGULAR_STAGE1",
    "GCL_ANGULAR_STAGE2",
    "angular_spread",
]

NOISE_STD = 1.0 / 3.0


# --------------------------------------------------------------------------------------
# 1–2. Cloud sizes and the clipped Gaussian
# --------------------------------------------------------------------------------------
def cloud_sizes(counts) -> torch.Tensor:
    """a_j = (log n_max − log n_j) / (log n_max − log n_min): 0 for the largest class, 1 for the smallest.

    All zeros when every class has the same count (a balanced set needs no clouds).
    """
    n = torch.as_tensor(np.asarray(counts), dtype=torch.float64)
    if (n <= 0).any():
        raise LtkdError("cloud sizes need a positive count for every class (drop empty classes first)")
    gap = torch.log(n.max()) - torch.log(n)
    span = gap.max()
    return (gap / span if span > 0 else torch.zeros_like(gap)).float()


def gaussian_noise(shape, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """δ ~ N(0, (1/3)²) clipped to [−1, 1] (three standard deviations), one draw per entry."""
    return (torch.randn(shape, device=device, generator=generator) * NOISE_STD).clamp_(-1.0, 1.0)


def focal_weighting(ce: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample CE weighted by (1 − p_y)^γ with p_y = exp(−CE), mean over the batch — the authors'
    ``focal_loss`` (GCLLoss repository, ``losses.py``): the weight is computed from a *detached* p_y, so
    it rescales each sample's CE gradient and adds no gradient of its own. (Letting the gradient flow
    through p_y as well, as ltkd did before, roughly doubles the gradient on easy samples.)"""
    if gamma == 0:
        return ce.mean()
    p = torch.exp(-ce).detach()
    return ((1 - p) ** gamma * ce).mean()


# --------------------------------------------------------------------------------------
# 3. The cosine form
# --------------------------------------------------------------------------------------
class GCLLoss(nn.Module):
    """The GCL loss on cos θ (a :class:`~ltkd.models.CosineHead` with scale 1 gives it).

    ``forward(cosine, y)``: z = s · (cos θ − ε·|δ|·a − m·onehot(y)), δ fresh per entry in training
    mode (no noise in ``eval()`` mode); returns CE(z, y), focal-weighted when ``gamma > 0``.
    :meth:`logits` gives z itself.
    """

    def __init__(self, counts, scale: float = 30.0, eps: float = 0.5, margin: float = 0.0, gamma: float = 0.0):
        super().__init__()
        self.register_buffer("cloud", cloud_sizes(counts))
        self.scale, self.eps, self.margin, self.gamma = float(scale), float(eps), float(margin), float(gamma)

    def logits(self, cosine: torch.Tensor, y: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        cosine = cosine.float()
        if noise is None and self.training and self.eps > 0:
            noise = gaussian_noise(cosine.shape, device=cosine.device)
        z = cosine
        if noise is not None:
            z = z - self.eps * noise.abs() * self.cloud
        if self.margin:
            z = z - self.margin * F.one_hot(y, cosine.shape[1]).to(z.dtype)
        return self.scale * z

    def forward(self, cosine: torch.Tensor, y: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        z = self.logits(cosine, y, noise)
        return focal_weighting(F.cross_entropy(z, y, reduction="none"), self.gamma)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, eps={self.eps}, margin={self.margin}, gamma={self.gamma}"


# --------------------------------------------------------------------------------------
# 4. The angular form
# --------------------------------------------------------------------------------------
def cos_plus(cosine: torch.Tensor, delta: torch.Tensor, tiny: float = 1e-7) -> torch.Tensor:
    """cos(θ + Δ) from cos θ, with the authors' fallback cos θ − sin(π − Δ) = cos θ − sin Δ where θ + Δ > π.

    Computed as cos θ cos Δ − sin θ sin Δ with sin θ = sqrt(max(1 − cos²θ, tiny)), so neither the
    value nor its gradient is infinite at θ = 0 or π. Where θ > π − Δ (i.e. cos θ < cos(π − Δ))
    cos(θ + Δ) would start rising again; there the authors' ``GCLAngLoss`` (GCLLoss repository,
    ``losses.py``, ``easy_margin=False``) switches to the CosFace-style ``cos θ − sin(π − Δ)``, which keeps
    the logit decreasing in θ. (ArcFace's own fallback is ``cos θ − sin(π − m)·m``; ltkd used that form
    before — the authors subtract sin(π − Δ) without the factor Δ.) The authors' ``sin θ`` clamps
    1 − cos²θ at 0; ltkd clamps it at ``tiny`` so the gradient stays finite at θ = 0 (values differ by ≤ 3e-4).
    """
    sine = torch.sqrt((1.0 - cosine * cosine).clamp_min(tiny))
    phi = cosine * torch.cos(delta) - sine * torch.sin(delta)
    threshold = torch.cos(math.pi - delta)
    fallback = cosine - torch.sin(math.pi - delta)
    return torch.where(cosine > threshold, phi, fallback)


class GCLAngularLoss(nn.Module):
    """The angular GCL form: z = s · cos(θ + (π/2)·ε·a·|δ| + m·onehot(y)), CE(z, y).

    Noise only in training mode; focal weighting with ``gamma > 0`` (stage 2).
    """

    def __init__(self, counts, scale: float = 30.0, eps: float = 0.1, margin: float = 0.5, gamma: float = 0.0):
        super().__init__()
        self.register_buffer("cloud", cloud_sizes(counts))
        self.scale, self.eps, self.margin, self.gamma = float(scale), float(eps), float(margin), float(gamma)

    def logits(self, cosine: torch.Tensor, y: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        cosine = cosine.float()
        if noise is None and self.training and self.eps > 0:
            noise = gaussian_noise(cosine.shape, device=cosine.device)
        delta = torch.zeros_like(cosine)
        if noise is not None:
            delta = delta + (math.pi / 2) * self.eps * noise.abs() * self.cloud
        if self.margin:
            delta = delta + self.margin * F.one_hot(y, cosine.shape[1]).to(cosine.dtype)
        return self.scale * cos_plus(cosine, delta)

    def forward(self, cosine: torch.Tensor, y: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        z = self.logits(cosine, y, noise)
        return focal_weighting(F.cross_entropy(z, y, reduction="none"), self.gamma)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, eps={self.eps}, margin={self.margin}, gamma={self.gamma}"


# --------------------------------------------------------------------------------------
# 5. The stage-2 sampler
# --------------------------------------------------------------------------------------
def effective_number_weights(counts, beta: float = 0.9999, beta_step: float = 1e-5) -> np.ndarray:
    """Per-image weight w_j = (1 − β_j) / (1 − β_j^{n_j}) with β_j = β + beta_step · a_j (a_j: cloud size)."""
    n = np.asarray(counts, dtype=np.float64)
    b = beta + beta_step * cloud_sizes(n).double().numpy()
    return (1.0 - b) / (1.0 - np.power(b, n))


def effective_number_class_probs(counts, beta: float = 0.9999, beta_step: float = 1e-5) -> np.ndarray:
    """Probability of drawing each class: p_j ∝ n_j · w_j (images drawn with their weights)."""
    n = np.asarray(counts, dtype=np.float64)
    p = n * effective_number_weights(n, beta, beta_step)
    return p / p.sum()


def effective_number_sampler(labels: torch.Tensor, num_classes: int | None = None, beta: float = 0.9999,
                             beta_step: float = 1e-5) -> ClassSampler:  # fmt: skip
    """GCL's class-based effective-number sampler (with replacement), as a :class:`~ltkd.data.ClassSampler`."""
    labels = torch.as_tensor(labels)
    counts = torch.bincount(labels, minlength=num_classes or 0).numpy()
    return ClassSampler(labels, effective_number_class_probs(counts, beta, beta_step))


option("gcl_sampler", ("effective-number", "class-balanced", "instance", "sqrt"), "effective-number",
       "GCL stage 2 sampler", config="stage2")  # fmt: skip


def gcl_sampler(ctx: Context) -> ClassSampler | str:
    """The stage-2 sampler ``ctx.option("gcl_sampler")`` names (default: effective number)."""
    kind = ctx.option("gcl_sampler")  # checked against the declared words
    return effective_number_sampler(ctx.train.labels, ctx.train.num_classes) if kind == "effective-number" else kind


# --------------------------------------------------------------------------------------
# 6. Stages and recipes
# --------------------------------------------------------------------------------------
GCL_HEAD = "cosine"  # the head GCL's stage 1 is built with (a CosineHead returning cos θ)


option("gcl_eps", "number", None, "GCL stage 1: cloud size epsilon (0.5; angular form 0.1)", **NONNEGATIVE)
option("gcl_scale", "number", 30.0, "GCL stage 1: scale s", **POSITIVE)
option("gcl_margin", "number", None, "GCL stage 1: margin m (0; angular form 0.5)", **NONNEGATIVE)
option("gcl_mixup", "number", 0.0, "GCL stage 1: mixup alpha (the paper profile's stage 1 sets 1, as the authors "
       "train)", **NONNEGATIVE)  # fmt: skip
option("gcl_eps2", "number", None, "GCL stage 2: cloud size (0.5; angular form 0.1)", config="stage2", **NONNEGATIVE)
option("gcl_scale2", "number", 20.0, "GCL stage 2: scale", config="stage2", **POSITIVE)
option("gcl_margin2", "number", 0.1, "GCL stage 2: margin", config="stage2", **NONNEGATIVE)
option("gcl_gamma", "number", 1.0, "GCL stage 2: focal gamma", config="stage2", **NONNEGATIVE)
# Stage-2 mixup: the authors' classifier stage mixes images before the frozen backbone (α = 1; the paper profile's
# stage 2 sets it). Under quick it stays 0, where it was measured to hurt: Fashion-MNIST-LT IF 100, seed 0,
# ``ltkd train --method gcl``, 83.42 % with α = 1 against 84.71 % without (middle third 71.5 against 77.2 %) —
# more than the 0.3–0.7-point spread of GCL's three seeds; 3 stage-2 epochs are too few to pay off.
option("gcl_mixup2", "number", 0.0, "GCL stage 2: mixup alpha on the images before the frozen backbone (the paper "
       "profile's stage 2 sets 1, as the authors; 0 in quick, measured to hurt there)", config="stage2",
       **NONNEGATIVE)


def gcl_stage1_objective(ctx: Context) -> LossObjective:
    """Stage 1: the cosine-form GCL loss (m = 0, s = 30, ε = 0.5) on the cosine head's cos θ."""
    loss = GCLLoss(ctx.counts, scale=ctx.option("gcl_scale"), eps=ctx.option("gcl_eps", 0.5),
                   margin=ctx.option("gcl_margin", 0.0))  # fmt: skip
    return LossObjective(loss, mixup=ctx.option("gcl_mixup"), name="gcl")


def gcl_stage2_objective(ctx: Context) -> LossObjective:
    """Stage 2: m = 0.1, s = 20, ε = 0.5, focal γ = 1, and mixup on the images before the frozen backbone, as the
    authors' ``cifar_train_classifier.py`` does (``--mixup`` on by default, ``mixup_data`` with α = 1; both labels'
    losses mixed with the same λ) — α = ``gcl_mixup2``: 1 under ``paper``, 0 under
    ``quick`` (see the option's declaration)."""
    loss = GCLLoss(ctx.counts, scale=ctx.option("gcl_scale2"), eps=ctx.option("gcl_eps2", 0.5),
                   margin=ctx.option("gcl_margin2"), gamma=ctx.option("gcl_gamma"))  # fmt: skip
    return LossObjective(loss, mixup=ctx.option("gcl_mixup2"), name="gcl2")


# The authors' classifier stage on CIFAR-LT (``cifar_train_classifier.py``): 30 epochs, batch 64, SGD momentum 0.9,
# weight decay 2e-4, and a learning rate 0.1 · [0.1 · lr · (1 + cos(π · epoch / 30))] with lr = 0.1, i.e. a
# cosine from 0.002 towards 0, set once per epoch.
GCL_PAPER_STAGE2 = {"epochs": 30, "batch_size": 64, "lr": 0.002, "weight_decay": 2e-4, "warmup_epochs": 0,
                    "schedule": "cosine", "milestones": ()}  # fmt: skip


option("gcl_schedule2", ("profile", "authors"), "profile", "GCL stage 2: the profile's stage-2 schedule, or the "
       "authors' classifier stage (30 epochs, batch 64, cosine from 0.002; the paper profile sets authors)",
       config="stage2")  # fmt: skip


def gcl_stage2_schedule(cfg, ctx: Context | None):
    """GCL's stage-2 schedule: with option ``gcl_schedule2`` = authors (the ``paper``
    profile's stage-2 default) the authors' (:data:`GCL_PAPER_STAGE2`; ltkd steps the
    cosine every iteration where the authors step it every epoch — over 30 epochs the two differ by less than one
    epoch's step); under ``quick`` the profile's own short stage 2 (3 epochs at 0.02: the authors' 0.002 would
    barely move a classifier in 3 epochs)."""
    if ctx is not None and ctx.option("gcl_schedule2") == "authors":
        return cfg.replace(**GCL_PAPER_STAGE2)
    return cfg


def gcl_angular_stage1_objective(ctx: Context) -> LossObjective:
    """Angular stage 1: m = 0.5, ε = 0.1, s = 30."""
    loss = GCLAngularLoss(ctx.counts, scale=ctx.option("gcl_scale"), eps=ctx.option("gcl_eps", 0.1),
                          margin=ctx.option("gcl_margin", 0.5))  # fmt: skip
    return LossObjective(loss, mixup=ctx.option("gcl_mixup"), name="gcl_angular")


def gcl_angular_stage2_objective(ctx: Context) -> LossObjective:
    """Angular stage 2 (the book's choice, by analogy with the cosine form): m = 0.1, s = 20, ε = 0.1, γ = 1."""
    loss = GCLAngularLoss(ctx.counts, scale=ctx.option("gcl_scale2"), eps=ctx.option("gcl_eps2", 0.1),
                          margin=ctx.option("gcl_margin2"), gamma=ctx.option("gcl_gamma"))  # fmt: skip
    return LossObjective(loss, mixup=ctx.option("gcl_mixup2"), name="gcl_angular2")


option("gcl_batch", "number", None, "GCL stage 1: batch size (default the profile's; the paper profile's stage 1 "
       "sets 64, as the authors train)", low=1)  # fmt: skip


def gcl_stage1_schedule(cfg, ctx: Context | None):
    """GCL's stage-1 config: the profile's, at batch ``gcl_batch`` where that is set — the ``paper`` profile's stage 1
    sets 64, the authors' ``cifar_train_backbone.py`` batch (at the same lr 0.1, so twice the SGD steps of batch 128);
    ``quick`` keeps its own batch."""
    b = ctx.option("gcl_batch") if ctx is not None else cfg.option_defaults.get("gcl_batch")
    if b is None:
        return cfg
    if float(b) != int(b):
        raise LtkdError(f"option gcl_batch takes a whole number of images, got {b:g}")
    return cfg.replace(batch_size=int(b))


GCL_STAGE1 = Stage(objective=gcl_stage1_objective, sampler="instance", name="stage1", adjust=gcl_stage1_schedule)
GCL_STAGE2 = Stage(objective=gcl_stage2_objective, sampler=gcl_sampler, head=None, trainable="head", bn="frozen",
                   config="stage2", name="gcl-stage2", adjust=gcl_stage2_schedule)  # fmt: skip
GCL_ANGULAR_STAGE1 = Stage(objective=gcl_angular_stage1_objective, sampler="instance", name="stage1",
                           adjust=gcl_stage1_schedule)
GCL_ANGULAR_STAGE2 = Stage(objective=gcl_angular_stage2_objective, sampler=gcl_sampler, head=None,
                           trainable="head", bn="frozen", config="stage2", name="gcl-angular-stage2",
                           adjust=gcl_stage2_schedule)  # fmt: skip

register(Recipe("gcl", "GCL (Li et al. 2022): Gaussian clouded cosine logits, then classifier re-training "
                "with the effective-number sampler. Differs: the authors' README re-trains with class-balanced "
                "sampling (--set gcl_sampler=class-balanced); lr set every iteration, not every epoch",
                [GCL_STAGE1, GCL_STAGE2], head=GCL_HEAD, chapter="02"))  # fmt: skip
register(Recipe("gcl-stage1", "GCL stage 1 only (clouded cosine logits, instance sampling)", [GCL_STAGE1],
                head=GCL_HEAD, chapter="02"))  # fmt: skip
register(Recipe("gcl-angular", "GCL, angular form (journal ext.): clouds as angular offsets + target margin, "
                "then classifier re-training. Differs: stage 2's settings are the book's (the authors' classifier script "
                "has only the cosine form)", [GCL_ANGULAR_STAGE1, GCL_ANGULAR_STAGE2], head=GCL_HEAD,
                chapter="02"))  # fmt: skip


# --------------------------------------------------------------------------------------
# Measuring the embedding space (chapter 2's spread plot)
# --------------------------------------------------------------------------------------
def angular_spread(emb: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None,
                   centres: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Per class: the mean angle (degrees) between its embeddings and its class centre, and the angle
    from its centre to the nearest other centre.

    Embeddings are L2-normalised first (the cosine head's view); a class centre is the normalised mean
    of its normalised embeddings (pass ``centres`` to measure test points against training centres).
    A class whose spread is small *relative to* the gap to its neighbour has a squeezed region.
    Returns ``(spread, nearest)``, NaN for a class with no points.
    """
    f = F.normalize(torch.as_tensor(emb).float(), dim=1)
    y = torch.as_tensor(labels).long()
    c = num_classes or int(y.max()) + 1
    if centres is None:
        centres = torch.stack([f[y == j].mean(0) if (y == j).any() else torch.full_like(f[0], float("nan"))
                               for j in range(c)])  # fmt: skip
    centres = F.normalize(centres, dim=1)
    spread = np.full(c, np.nan)
    for j in range(c):
        if (y == j).any():
            cos = (f[y == j] @ centres[j]).clamp(-1, 1)
            spread[j] = torch.rad2deg(torch.acos(cos)).mean().item()
    cc = (centres @ centres.T).clamp(-1, 1)
    cc.fill_diagonal_(-1)
    nearest = torch.rad2deg(torch.acos(cc.max(1).values)).numpy()
    return spread, nearest
