"""Knowledge distillation: a frozen teacher's softened outputs supervise a student.

Chapter 4 (``notebooks/04_knowledge_distillation.ipynb``) builds everything here by hand and
checks it against this file; chapter 5 adds label revision and data selection
(``label_revision.py``). Read top to bottom:

1. :func:`soften` — p^T = softmax(z / T), the teacher's *softened* distribution; a higher
   temperature T spreads probability over the wrong classes ("dark knowledge").
2. :func:`kd_loss` — vanilla KD (Hinton, Vinyals & Dean 2015):
   L_KD = T² · KL(p^T_teacher ‖ p^T_student), per sample; the T² keeps the gradient's size
   independent of T. The student's loss is w_CE · CE(z_s, y) + w_KD · L_KD
   (the CIFAR-100 recipe: T = 4, w_CE = 0.1, w_KD = 0.9).
3. :func:`dkd_loss` — decoupled KD (Zhao et al., CVPR 2022, eq. 7): split the teacher's and the
   student's distributions into the binary target / non-target pair b = [p_y, 1 − p_y] and the
   distribution over the non-target classes p̂_j = p_j / (1 − p_y), j ≠ y. Then
   KD = TCKD + (1 − p^t_y) · NCKD, and DKD frees the two weights:
   L_DKD = α · T² · KL(b_t ‖ b_s) + β · T² · KL(p̂_t ‖ p̂_s)  (α = 1, T = 4 in the paper; β per
   teacher–student pair as the authors' configs, :data:`DKD_BETA`: 8 for resnet32x4 → resnet8x4, 2 or 6 for others),
   with the whole term warmed up linearly over the first epochs (20 of 240 in the paper).
4. :class:`Distiller` — the objective the engine trains with: a frozen teacher kept in eval
   mode (even when the objective is put in train mode), ``forward(model, x, y[, idx])`` returns
   ``(student logits, {"ce": ..., "kd": ...})``. Teacher targets are computed on the same
   augmented batch the student sees. Two hooks make it the base for chapter 5:
   ``revision`` (a function (p_teacher, y) → revised targets) and ``selected`` (a boolean mask over
   the training set: the teacher supervises only those samples; the others get CE alone).
   :class:`KD` and :class:`DKD` fill in the distillation term.
5. :func:`load_teacher` — a teacher comes from an ``ltkd`` checkpoint or is trained by
   :func:`ltkd.experiment.train_teacher`; it is never downloaded.
6. The recipes ``kd`` and ``dkd`` (the teacher is passed in ``options["teacher"]``). ``ltkd distill``
   (:func:`ltkd.experiment.distill`: load or train the teacher, then :func:`ltkd.experiment.run`) runs
   them and every other recipe marked ``teacher=True`` (``kd-lr``, ``kd-ds``, ``kd-lr-ds``, ``dkd-lr-ds``,
   ``kd-lr-all``, ``kd-mix`` in ``label_revision.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import data_digest, load_model_state
from ..errors import LtkdError, first_line
from ..models import MODELS, CosineHead, build_model
from ..objective import Objective
from ..train import predict
from . import NONNEGATIVE, POSITIVE, Context, Recipe, Stage, option, register

if TYPE_CHECKING:
    from ..data import ImageData

__all__ = [
    "check_teacher_data",
    "refuse_teacher_inside",
    "soften",
    "kd_loss",
    "dkd_loss",
    "Distiller",
    "KD",
    "DKD",
    "DKD_BETA",
    "dkd_beta",
    "teacher_logits",
    "load_teacher",
    "training_error",
]

# CosineHead teachers (GCL) output cos θ ∈ [−1, 1]; their logits are s · cos θ with GCL stage 2's s.
COSINE_TEACHER_SCALE = 20.0


# --------------------------------------------------------------------------------------
# 1–3. The losses, on plain tensors
# --------------------------------------------------------------------------------------
def soften(logits: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """p^T = softmax(z / T) along the class dimension."""
    return F.softmax(logits / T, dim=1)


def kd_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, T: float = 4.0) -> torch.Tensor:
    """Per-sample T² · KL(p_teacher ‖ softmax(z_s / T)) (Hinton et al. 2015).

    ``teacher_probs`` are already softened (and possibly revised); rows must sum to 1.
    Returns a tensor of shape (B,).
    """
    log_ps = F.log_softmax(student_logits.float() / T, dim=1)
    pt = teacher_probs.float()
    kl = (pt * (torch.log(pt.clamp_min(1e-12)) - log_ps)).sum(1)
    return kl * T * T


def dkd_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, y: torch.Tensor, alpha: float = 1.0,
             beta: float = 8.0, T: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Per-sample (α · TCKD, β · NCKD) of decoupled KD (Zhao et al. 2022, eq. 7), each of shape (B,).

    TCKD = T² · KL([p^t_y, 1 − p^t_y] ‖ [p^s_y, 1 − p^s_y]);
    NCKD = T² · KL(p̂^t ‖ p̂^s) over the non-target classes, p̂_j = p_j / (1 − p_y).
    The teacher enters as (softened, possibly revised) probabilities, so label revision plugs in;
    the student's non-target distribution is a softmax over its non-target logits (as in the
    authors' code, which masks the target logit out).
    """
    zs = student_logits.float() / T
    pt = teacher_probs.float()
    gt = F.one_hot(y, zs.shape[1]).bool()
    eps = 1e-12
    ps = F.softmax(zs, dim=1)
    ps_y = ps[gt]
    pt_y = pt[gt].clamp(eps, 1 - eps)
    bs = torch.stack([ps_y, (1 - ps_y)], 1).clamp_min(eps)
    bt = torch.stack([pt_y, 1 - pt_y], 1)
    tckd = (bt * (bt.log() - bs.log())).sum(1)
    log_ps_hat = F.log_softmax(zs.masked_fill(gt, -1e4), dim=1)  # student, non-target classes only
    pt_hat = pt.masked_fill(gt, 0.0) / (1 - pt_y)[:, None]  # teacher, renormalised over non-target classes
    nckd = (pt_hat * (torch.log(pt_hat.clamp_min(eps)) - log_ps_hat)).masked_fill(gt, 0.0).sum(1)
    return alpha * tckd * T * T, beta * nckd * T * T


# --------------------------------------------------------------------------------------
# 4. The distiller: an objective for ltkd.train.fit
# --------------------------------------------------------------------------------------
def teacher_logits(teacher: nn.Module, x: torch.Tensor, cosine_scale: float = COSINE_TEACHER_SCALE) -> torch.Tensor:
    """The teacher's logits in float32, without gradients; a cosine-head teacher (GCL) with s = 1 is
    rescaled to s · cos θ (s = ``cosine_scale``, GCL stage 2's 20) so its softmax is not nearly flat."""
    with torch.no_grad():
        z = teacher(x).float()
    head = getattr(teacher, "head", None)
    if isinstance(head, CosineHead) and head.scale == 1.0:
        z = z * cosine_scale
    return z


class Distiller(Objective):
    """Base objective: student logits, CE on the labels, and a distillation term from a frozen teacher.

    * ``teacher`` — frozen (``requires_grad=False``) and always in eval mode: :meth:`train` puts
      the objective in train mode but the teacher back in eval mode, so its BatchNorm statistics
      never move and its outputs are deterministic.
    * ``T``, ``ce_weight``, ``kd_weight`` — loss = w_CE · CE + w_KD · warm · L_distill.
    * ``warmup`` — epochs over which the distillation term rises linearly (factor
      min(1, (epoch + 1) / warmup), set by :meth:`on_epoch`); 0 = no warm-up.
    * ``revision`` — ``f(p_teacher, y) -> targets``: chapter 5's label revision.
    * ``selected`` — a boolean tensor over the *training set*: only selected samples get the
      distillation term; the others are supervised by ground truth alone (CE with weight 1, as if
      trained without a teacher). The engine passes the batch's indices (``wants_index``).
    * ``split`` — chapter 5's label-revision loss as the paper splits the batch (a
      :class:`~ltkd.methods.label_revision.RevisionSplit`): ``split(distiller, z_student, z_teacher, y, mask)``
      returns the loss terms and replaces the CE + distillation sum above (``revision`` and ``split`` exclude
      each other).

    Subclasses implement :meth:`distill` → per-sample distillation loss.
    """

    wants_index = True

    def __init__(self, teacher: nn.Module, T: float = 4.0, ce_weight: float = 1.0, kd_weight: float = 1.0,
                 warmup: float = 0.0, revision: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 selected: torch.Tensor | None = None, cosine_scale: float = COSINE_TEACHER_SCALE,
                 split: nn.Module | None = None):  # fmt: skip
        super().__init__()
        if T <= 0:
            raise LtkdError(f"temperature must be positive, got {T}")
        self.teacher = teacher
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.teacher.eval()
        self.T, self.ce_weight, self.kd_weight, self.warmup = float(T), float(ce_weight), float(kd_weight), warmup
        self.revision = revision
        if isinstance(revision, nn.Module):
            self.add_module("revision_module", revision)
        self.register_buffer("selected", None if selected is None else torch.as_tensor(selected, dtype=torch.bool))
        self.cosine_scale = cosine_scale
        self.warm = 1.0 if warmup <= 0 else 0.0
        if split is not None and revision is not None:
            raise LtkdError("give either revision (all-sample revision inside the KD term) or split, not both")
        self.split = split

    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        self.teacher.eval()  # the teacher never trains
        return self

    def on_epoch(self, epoch: int, epochs: int) -> None:
        """Linear warm-up of the distillation term: min(1, (epoch + 1) / warmup), epoch counted from 0."""
        self.warm = 1.0 if self.warmup <= 0 else min(1.0, (epoch + 1) / self.warmup)

    def teacher_targets(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Softened teacher probabilities on this batch, revised if a ``revision`` is set."""
        p = soften(teacher_logits(self.teacher, x, self.cosine_scale), self.T)
        if self.revision is not None:
            p = self.revision(p, y)
        return p

    def distill(self, student_logits: torch.Tensor, targets: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def selection(self, idx: torch.Tensor | None) -> torch.Tensor | None:
        """The batch's data-selection mask (bool, shape (B,)), or ``None`` when every sample is selected."""
        if self.selected is None:
            return None
        if idx is None:
            raise LtkdError("data selection needs the batch's indices: call forward(model, x, y, idx)")
        return self.selected[idx]

    def forward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None = None):
        logits = model(x)
        if self.split is not None:  # chapter 5: the paper's label-revision loss (label_revision.RevisionSplit)
            zt = teacher_logits(self.teacher, x, self.cosine_scale)
            return logits, self.split(self, logits, zt, y, self.selection(idx))
        ce = F.cross_entropy(logits.float(), y, reduction="none")
        per = self.distill(logits, self.teacher_targets(x, y), y)
        if self.selected is not None:
            m = self.selection(idx).float()
            ce_w = self.ce_weight * m + (1 - m)  # not selected: ground truth only, weight 1
            per = per * m
        else:
            ce_w = self.ce_weight
        n = len(y)
        return logits, {"ce": (ce * ce_w).sum() / n, "kd": self.kd_weight * self.warm * per.sum() / n}


class KD(Distiller):
    """Vanilla KD (Hinton et al. 2015): w_CE · CE + w_KD · T² · KL(p^T_t ‖ p^T_s).

    Defaults are the standard CIFAR-100 recipe: T = 4, w_CE = 0.1, w_KD = 0.9.
    """

    def __init__(self, teacher: nn.Module, T: float = 4.0, ce_weight: float = 0.1, kd_weight: float = 0.9, **kw):
        super().__init__(teacher, T=T, ce_weight=ce_weight, kd_weight=kd_weight, **kw)

    def distill(self, student_logits, targets, y):
        return kd_loss(student_logits, targets, self.T)


# β of DKD per teacher–student pair, as the authors' code sets it (mdistiller, configs/cifar100/dkd/*.yaml, keyed by
# ltkd's model names where ltkd has the model). Every pair not listed here trains with mdistiller's default
# CFG.DKD.BETA = 8 (DKD_DEFAULT_BETA), which is also what its configs for resnet32x4 -> ShuffleV1 / ShuffleV2,
# ResNet50 -> MobileNetV2 and wrn_40_2 -> ShuffleV1 use, and what ltkd's own pairs (cnn6 -> cnn6x0.5, ...) get.
DKD_BETA = {
    ("resnet32x4", "resnet8x4"): 8.0,  # res32x4_res8x4.yaml: no BETA of its own, the default 8
    ("resnet56", "resnet20"): 2.0,  # res56_res20.yaml
    ("resnet110", "resnet32b"): 2.0,  # res110_res32.yaml: mdistiller's resnet32 has projection shortcuts (resnet32b)
    ("vgg13", "vgg8"): 6.0,  # vgg13_vgg8.yaml
    ("vgg13", "MobileNetV2"): 6.0,  # vgg13_mv2.yaml
    ("wrn_40_2", "wrn_16_2"): 6.0,  # wrn40_2_wrn_16_2.yaml
    ("wrn_40_2", "wrn_40_1"): 6.0,  # wrn40_2_wrn_40_1.yaml
}
DKD_DEFAULT_BETA = 8.0


def dkd_beta(teacher: str | None, student: str | None) -> tuple[float, str]:
    """DKD's β for a teacher–student pair of model names (:data:`DKD_BETA`, else :data:`DKD_DEFAULT_BETA`), and the
    pair it was looked up as, e.g. ``(2.0, "resnet56 -> resnet20")``; ``"(other pair: default)"`` is appended for a
    pair the table does not list (a model built outside :func:`~ltkd.models.build_model` has no name: ``?``)."""
    pair = f"{teacher or '?'} -> {student or '?'}"
    if (teacher, student) in DKD_BETA:
        return DKD_BETA[(teacher, student)], pair
    return DKD_DEFAULT_BETA, f"{pair} (other pair: default)"


class DKD(Distiller):
    """Decoupled KD (Zhao et al. 2022): CE + warm · (α · TCKD + β · NCKD); α = 1, T = 4, CE weight 1, and β of the
    teacher–student pair (:func:`dkd_beta`: 8 for resnet32x4 → resnet8x4 and any pair the authors' configs do not
    list, 2 for resnet56 → resnet20, 6 for the VGG and WRN pairs).

    ``beta=None`` looks β up at the first forward pass, from the names :func:`~ltkd.models.build_model` gives the
    teacher and the student (``model.arch``); ``beta_pair`` then says which pair it was looked up as.

    With revised targets (chapter 5) only TCKD changes: revision scales every non-target
    probability by the same β_rev, so the renormalised non-target distribution p̂ is unchanged.
    """

    def __init__(self, teacher: nn.Module, alpha: float = 1.0, beta: float | None = None, T: float = 4.0,
                 ce_weight: float = 1.0, warmup: float = 1.0, **kw):  # fmt: skip
        super().__init__(teacher, T=T, ce_weight=ce_weight, kd_weight=1.0, warmup=warmup, **kw)
        self.alpha, self.beta = float(alpha), None if beta is None else float(beta)
        self.beta_pair = None if beta is None else "given"

    def forward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None = None):
        if self.beta is None:
            self.beta, self.beta_pair = dkd_beta(getattr(self.teacher, "arch", None), getattr(model, "arch", None))
        return super().forward(model, x, y, idx)

    def distill(self, student_logits, targets, y):
        tckd, nckd = dkd_loss(student_logits, targets, y, self.alpha, self.beta, self.T)
        return tckd + nckd

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta} ({self.beta_pair}), T={self.T}"


# --------------------------------------------------------------------------------------
# 5. Teachers: loaded or trained here, never downloaded
# --------------------------------------------------------------------------------------
def load_teacher(path: str | os.PathLike, num_classes: int | None = None, in_channels: int | None = None,
                 device=None, image_size: tuple[int, int] | None = None) -> nn.Module:  # fmt: skip
    """A model from an ``ltkd`` checkpoint (``ltkd train --out``, :func:`ltkd.train.save_model`), in eval mode.

    The checkpoint must fit the data: ``num_classes``, ``in_channels`` and, where the checkpoint records the
    image size it was trained on (``ltkd train`` does), ``image_size`` (H, W) — a convolutional teacher with
    global pooling would otherwise run on images of another size and give soft labels that mean nothing."""

    ck = load_model_state(path)
    trained = ck.get("image_size")
    if trained is not None and not (isinstance(trained, (list, tuple)) and len(trained) == 2
                                    and all(isinstance(v, int) for v in trained)):  # fmt: skip
        raise LtkdError(f"{path}: image_size in the checkpoint is not [height, width]")
    if image_size is not None and trained is not None and list(trained) != [int(v) for v in image_size]:
        raise LtkdError(f"{path}: teacher was trained on {trained[0]}×{trained[1]} images ({ck.get('dataset', '?')}), "
                        f"the data are {image_size[0]}×{image_size[1]}")  # fmt: skip
    arch = ck.get("arch")
    if not isinstance(arch, str) or arch not in MODELS:
        raise LtkdError(f"{path}: checkpoint names no known architecture (arch={arch!r}); save it with ltkd train")
    try:
        nc, ch = int(ck.get("num_classes", num_classes or 0)), int(ck.get("in_channels", in_channels or 0))
    except (TypeError, ValueError) as e:
        raise LtkdError(f"{path}: num_classes / in_channels in the checkpoint are not whole numbers") from e
    if num_classes is not None and nc != num_classes:
        raise LtkdError(f"{path}: teacher has {nc} classes but the data set has {num_classes}")
    if in_channels is not None and ch != in_channels:
        raise LtkdError(f"{path}: teacher takes {ch} input channels but the data have {in_channels}")
    head = "cosine" if ck.get("head") == "CosineHead" else "linear"
    net = build_model(arch, nc, ch, head=head)
    try:
        net.load_state_dict(ck["state_dict"])
    except (RuntimeError, TypeError, AttributeError, KeyError, ValueError) as e:
        raise LtkdError(f"{path}: weights do not fit {arch}: {first_line(e)}") from e
    if device is not None:
        net.to(device)
    return net.eval()


def check_teacher_data(record: dict, where: str, train: ImageData) -> None:
    """A teacher's file or metrics must record the data set and the data digest (:func:`ltkd.checkpoint.data_digest`) of
    ``train`` where they record them (files from an older ltkd, or saved by hand, record neither)."""
    name, digest = record.get("dataset"), record.get("data_digest")
    if name is not None and name != train.name:
        raise LtkdError(f"teacher {where} was trained on {name!r}, the data are {train.name!r}; train a teacher on "
                        "these data (--teacher MODEL)")  # fmt: skip
    if digest is not None and digest != data_digest(train):
        raise LtkdError(f"teacher {where} was trained on other images of {name} than these (data digest {digest}, "
                        f"now {data_digest(train)}: another folder, imbalance or split); train a teacher on these "
                        "data (--teacher MODEL)")  # fmt: skip


def refuse_teacher_inside(teacher: str | os.PathLike, outdir: Path) -> None:
    """A teacher file inside the output folder would be replaced by the student (``--teacher runs/a/model.pt
    --out runs/a``): refused."""
    t = Path(teacher).expanduser()
    if t.is_file() and t.resolve().is_relative_to(outdir.resolve()):
        raise LtkdError(f"the teacher file {t} lies inside the output folder {outdir}, where the student's files go; "
                        "give another --out, or copy the teacher elsewhere")  # fmt: skip


def training_error(teacher: nn.Module, train, device=None) -> float:
    """The teacher's error rate on the (un-augmented) training images: how much there is to revise."""

    z = predict(teacher, train, device)
    return float((z.argmax(1) != train.labels).float().mean())


# --------------------------------------------------------------------------------------
# 6. Recipes
# --------------------------------------------------------------------------------------
def _teacher(ctx: Context) -> nn.Module:
    t = ctx.options.get("teacher")
    if not isinstance(t, nn.Module):
        raise LtkdError("distillation needs a teacher: use `ltkd distill --teacher PATH|MODEL ...` "
                        "or pass options={'teacher': model}")  # fmt: skip
    return t.to(ctx.device).eval()


option("T", "number", 4.0, "KD / DKD: temperature", **POSITIVE)
option("ce_weight", "number", None, "KD / DKD: weight of the cross-entropy term (KD 0.1, DKD 1)", **NONNEGATIVE)
option("kd_weight", "number", 0.9, "KD: weight of the distillation term", **NONNEGATIVE)
option("alpha", "number", 1.0, "DKD: weight of the target-class term", **NONNEGATIVE)
option("beta", "number", None, "DKD: weight of the non-target term (default: the authors' beta for the "
       "teacher-student pair: 2 for resnet56 -> resnet20, 8 for resnet32x4 -> resnet8x4 and other pairs)",
       **NONNEGATIVE)  # fmt: skip
option("warmup", "number", None, "DKD: warm-up epochs (20/240 of the run, at least 1)", **NONNEGATIVE)


def dkd_warmup(ctx: Context) -> float:
    """Warm-up epochs: ``options["warmup"]``, else the paper's 20/240 of the run, at least 1."""
    w = ctx.option("warmup")
    return w if w is not None else max(1.0, round(ctx.profile.stage1.epochs * 20 / 240))


def kd_objective(ctx: Context, **kw) -> KD:
    """KD with options T (4), ce_weight (0.1), kd_weight (0.9)."""
    return KD(_teacher(ctx), T=ctx.option("T"), ce_weight=ctx.option("ce_weight", 0.1),
              kd_weight=ctx.option("kd_weight"), **kw)  # fmt: skip


def dkd_objective(ctx: Context, **kw) -> DKD:
    """DKD with options alpha (1), beta (the pair's, :func:`dkd_beta`), T (4), warmup (see :func:`dkd_warmup`)."""
    return DKD(_teacher(ctx), alpha=ctx.option("alpha"), beta=ctx.option("beta"), T=ctx.option("T"),
               ce_weight=ctx.option("ce_weight", 1.0), warmup=dkd_warmup(ctx), **kw)  # fmt: skip


register(Recipe("kd", "knowledge distillation (Hinton et al. 2015); teacher via `ltkd distill`",
                [Stage(objective=kd_objective, name="kd")], chapter="04", teacher=True))  # fmt: skip
register(Recipe("dkd", "decoupled KD (Zhao et al. 2022): α·TCKD + β·NCKD, β of the teacher-student pair as the "
                "authors' configs (8 for pairs they do not list); teacher via `ltkd distill`",
                [Stage(objective=dkd_objective, name="dkd")], chapter="04", teacher=True))  # fmt: skip
