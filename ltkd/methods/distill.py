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
   L_DKD = α · T² · KL(b_t ‖ b_s) + β · T² · KL(p̂_t ‖ p̂_s)  (α = 1, β = 8, T = 4 in the paper),
   with the whole term warmed up linearly over the first epochs (20 of 240 in the paper).
4. :class:`Distiller` — the objective the engine trains with: a frozen teacher kept in eval
   mode (even when the objective is put in train mode), ``forward(model, x, y[, idx])`` returns
   ``(student logits, {"ce": ..., "kd": ...})``. Teacher targets are computed on the same
   augmented batch the student sees. Two hooks make it the base for chapter 5:
   ``revision`` (a function (p_teacher, y) → revised targets) and ``selected`` (a boolean mask over
   the training set: the teacher supervises only those samples; the others get CE alone).
   :class:`KD` and :class:`DKD` fill in the distillation term.
5. :func:`load_teacher` / :func:`train_teacher` — a teacher comes from an ``ltkd`` checkpoint or is
   trained here; it is never downloaded.
6. The recipes ``kd`` and ``dkd`` (the teacher is passed in ``options["teacher"]``) and the
   ``ltkd distill`` command, which also runs ``kd-lr``, ``kd-ds``, ``kd-lr-ds`` and ``dkd-lr-ds``
   from ``label_revision.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import load_model_state, write_json
from ..device import get_device
from ..errors import LtkdError, first_line
from ..models import MODELS, CosineHead, build_model
from ..objective import Objective
from ..train import predict
from . import Context, Recipe, Stage, check_option, parse_option, register

__all__ = [
    "soften",
    "kd_loss",
    "dkd_loss",
    "Distiller",
    "KD",
    "DKD",
    "teacher_logits",
    "load_teacher",
    "train_teacher",
    "training_error",
    "DISTILL_METHODS",
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

    Subclasses implement :meth:`distill` → per-sample distillation loss.
    """

    wants_index = True

    def __init__(self, teacher: nn.Module, T: float = 4.0, ce_weight: float = 1.0, kd_weight: float = 1.0,
                 warmup: float = 0.0, revision: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 selected: torch.Tensor | None = None, cosine_scale: float = COSINE_TEACHER_SCALE):  # fmt: skip
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

    def forward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None = None):
        logits = model(x)
        ce = F.cross_entropy(logits.float(), y, reduction="none")
        per = self.distill(logits, self.teacher_targets(x, y), y)
        if self.selected is not None:
            if idx is None:
                raise LtkdError("data selection needs the batch's indices: call forward(model, x, y, idx)")
            m = self.selected[idx].float()
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


class DKD(Distiller):
    """Decoupled KD (Zhao et al. 2022): CE + warm · (α · TCKD + β · NCKD); α = 1, β = 8, T = 4, CE weight 1.

    With revised targets (chapter 5) only TCKD changes: revision scales every non-target
    probability by the same β_rev, so the renormalised non-target distribution p̂ is unchanged.
    """

    def __init__(self, teacher: nn.Module, alpha: float = 1.0, beta: float = 8.0, T: float = 4.0,
                 ce_weight: float = 1.0, warmup: float = 1.0, **kw):  # fmt: skip
        super().__init__(teacher, T=T, ce_weight=ce_weight, kd_weight=1.0, warmup=warmup, **kw)
        self.alpha, self.beta = float(alpha), float(beta)

    def distill(self, student_logits, targets, y):
        tckd, nckd = dkd_loss(student_logits, targets, y, self.alpha, self.beta, self.T)
        return tckd + nckd


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


def train_teacher(model: str, data, profile=None, epochs: int | None = None, seed: int = 0, method: str = "ce",
                  device=None, out=None, progress: bool | str | None = None,
                  resume_unfingerprinted: bool = False) -> tuple[nn.Module, dict]:  # fmt: skip
    """Train a teacher with ``method`` (default CE) on ``data`` = (train, test); return (model, metrics)."""
    from ..experiment import run

    metrics, net = run(method=method, dataset=data[0].name, imbalance=data[0].meta.get("imbalance", 1), model=model,
                       epochs=epochs, seed=seed, profile=profile, out=out, device=device, data=data,
                       progress=progress, resume_unfingerprinted=resume_unfingerprinted)  # fmt: skip
    return net.eval(), metrics


def training_error(teacher: nn.Module, train, device=None) -> float:
    """The teacher's error rate on the (un-augmented) training images: how much there is to revise."""

    z = predict(teacher, train, device)
    return float((z.argmax(1) != train.labels).float().mean())


# --------------------------------------------------------------------------------------
# 6. Recipes and ``ltkd distill``
# --------------------------------------------------------------------------------------
def _teacher(ctx: Context) -> nn.Module:
    t = ctx.options.get("teacher")
    if not isinstance(t, nn.Module):
        raise LtkdError("distillation needs a teacher: use `ltkd distill --teacher PATH|MODEL ...` "
                        "or pass options={'teacher': model}")  # fmt: skip
    return t.to(ctx.device).eval()


def _opt(ctx: Context, key: str, default: float) -> float:
    v = ctx.options.get(key)
    return float(default if v is None else v)


def dkd_warmup(ctx: Context) -> float:
    """Warm-up epochs: ``options["warmup"]``, else the paper's 20/240 of the run, at least 1."""
    if ctx.options.get("warmup") is not None:
        return float(ctx.options["warmup"])
    return max(1.0, round(ctx.profile.stage1.epochs * 20 / 240))


def kd_objective(ctx: Context, **kw) -> KD:
    """KD with options T (4), ce_weight (0.1), kd_weight (0.9)."""
    return KD(_teacher(ctx), T=_opt(ctx, "T", 4.0), ce_weight=_opt(ctx, "ce_weight", 0.1),
              kd_weight=_opt(ctx, "kd_weight", 0.9), **kw)  # fmt: skip


def dkd_objective(ctx: Context, **kw) -> DKD:
    """DKD with options alpha (1), beta (8), T (4), warmup (see :func:`dkd_warmup`)."""
    return DKD(_teacher(ctx), alpha=_opt(ctx, "alpha", 1.0), beta=_opt(ctx, "beta", 8.0), T=_opt(ctx, "T", 4.0),
               ce_weight=_opt(ctx, "ce_weight", 1.0), warmup=dkd_warmup(ctx), **kw)  # fmt: skip


register(Recipe("kd", "knowledge distillation (Hinton et al. 2015); teacher via `ltkd distill`",
                [Stage(objective=kd_objective, name="kd")], chapter="04"))  # fmt: skip
register(Recipe("dkd", "decoupled KD (Zhao et al. 2022): α·TCKD + β·NCKD; teacher via `ltkd distill`",
                [Stage(objective=dkd_objective, name="dkd")], chapter="04"))  # fmt: skip

DISTILL_METHODS = ("kd", "kd-lr", "kd-ds", "kd-lr-ds", "dkd", "dkd-lr-ds", "kd-mix")


def _teacher_report(teacher: nn.Module, train, test, dev, source: str, seconds: float) -> dict[str, Any]:
    from ..experiment import evaluate
    from ..metrics import count_params

    rep = evaluate(teacher, test, train.counts, dev)
    return {
        **{k: rep[k] for k in ("overall", "balanced", "many", "medium", "few", "head", "middle", "tail", "per_class")},
        "train_error": training_error(teacher, train, dev),
        "params": count_params(teacher),
        "source": source,
        "seconds": round(seconds, 2),
    }


def cmd_distill(args) -> int:
    from ..checkpoint import claim_checkpoints
    from ..cli import _summary
    from ..experiment import check_output_folder, checkpoint_names, prepare_data, run
    from ..profiles import get_profile
    from . import get_method

    if args.method not in DISTILL_METHODS:
        raise LtkdError(f"unknown distillation method {args.method!r}; choose one of {', '.join(DISTILL_METHODS)}")
    args.student = args.student or get_profile(args.profile).extra.get("student", "cnn6x0.5")
    if args.student not in MODELS:
        raise LtkdError(f"unknown student model {args.student!r}; choose one of {', '.join(MODELS)}")
    for key, attr in (("eta", "eta"), ("fraction", "fraction"), ("T", "temperature"), ("alpha", "alpha"),
                      ("beta", "beta"), ("warmup", "warmup")):  # fmt: skip
        if getattr(args, attr) is not None:
            check_option(key, getattr(args, attr), f"--{key}")
    extra = dict(parse_option(text) for text in args.options)  # checked before any training
    out = check_output_folder(args.out)
    claim_checkpoints(out / "checkpoints", checkpoint_names(get_method(args.method)), args.method)  # before a teacher
    t0 = time.perf_counter()
    dev = get_device(args.device)
    train, test = prepare_data(args.dataset, args.imbalance, args.lt_profile)
    prof = get_profile(args.profile)
    if Path(args.teacher).is_file():
        teacher = load_teacher(args.teacher, train.num_classes, train.in_channels, dev, train.images.shape[2:])
        source = f"checkpoint {args.teacher}"
    elif args.teacher in MODELS:
        teacher = _finished_teacher(out / "teacher", args.teacher, train, prof, args.teacher_epochs, args.seed, dev)
        if teacher is None:
            teacher, _ = train_teacher(args.teacher, (train, test), prof, args.teacher_epochs, args.seed, device=dev,
                                       out=out / "teacher",
                                       resume_unfingerprinted=args.resume_unfingerprinted)  # fmt: skip
            source = f"trained here: ce, {args.teacher}, profile {prof.name}, seed {args.seed} ({out / 'teacher'})"
        else:
            source = (f"trained here by an earlier run of this command: ce, {args.teacher}, profile {prof.name}, "
                      f"seed {args.seed} ({out / 'teacher'}/model.pt, reused)")  # fmt: skip
    else:
        raise LtkdError(f"--teacher {args.teacher!r} is neither a checkpoint file nor a model name "
                        f"({', '.join(MODELS)})")  # fmt: skip
    t_rep = _teacher_report(teacher, train, test, dev, source, time.perf_counter() - t0)
    opts: dict[str, Any] = {"teacher": teacher, **extra}
    for k in ("T", "alpha", "beta", "eta", "fraction", "warmup"):
        v = getattr(args, "temperature" if k == "T" else k)
        if v is not None:
            opts[k] = v
    metrics, _ = run(method=args.method, dataset=args.dataset, imbalance=args.imbalance, model=args.student,
                     epochs=args.epochs, seed=args.seed, profile=prof, out=out, device=args.device,
                     options=opts, lt_profile=args.lt_profile, data=(train, test), eval_every=args.eval_every,
                     resume_unfingerprinted=args.resume_unfingerprinted)  # fmt: skip
    from ..distributed import is_main

    if not is_main():  # under torchrun: rank 0 writes and reports
        return 0
    arch = args.teacher if not Path(args.teacher).is_file() else _arch_of(args.teacher)
    metrics["teacher"] = {"model": arch, **t_rep}
    write_json(out / "metrics.json", metrics)
    if args.json:
        print(json.dumps({k: v for k, v in metrics.items() if k != "history"}, indent=2))
    else:
        t = metrics["teacher"]
        print(f"teacher {t['model']}: test {100 * t['overall']:.1f} %, balanced {100 * t['balanced']:.1f} %, "
              f"training-set error {100 * t['train_error']:.1f} %  ({t['source']})")  # fmt: skip
        print(_summary(metrics))
        print(f"  wrote {out}/metrics.json and {out}/model.pt")
    return 0


def _finished_teacher(folder: Path, model: str, train, profile, epochs: int | None, seed: int, device):
    """The teacher an earlier ``ltkd distill --teacher MODEL --out OUT`` finished in ``OUT/teacher``, if it was
    trained exactly as this command would train it (CE, model, data, profile, epochs, seed); else ``None``.
    A distillation interrupted while the student trained thus resumes the student under the same teacher
    instead of training the teacher again (on a GPU a second training would not even give the same weights)."""
    mfile, pt = folder / "metrics.json", folder / "model.pt"
    if not (mfile.is_file() and pt.is_file()):
        return None
    try:
        m = json.loads(mfile.read_text())
    except (OSError, ValueError):
        return None
    prof = profile.for_dataset(train.name)
    prof = prof.with_epochs(epochs) if epochs is not None else prof
    want = {"method": "ce", "model": model, "dataset": train.name, "seed": seed, "profile": prof.name,
            "train_counts": [int(c) for c in train.counts], "epochs": prof.stage1.epochs}  # fmt: skip
    if any(m.get(k) != v for k, v in want.items()):
        return None
    return load_teacher(pt, train.num_classes, train.in_channels, device, train.images.shape[2:])


def _arch_of(path: str) -> str | None:

    return load_model_state(path).get("arch")


def _finite_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {s!r}")
    return v


def add_distill_command(sub) -> None:
    """``ltkd distill``: train (or load) a teacher, distil it into a student, write metrics.json."""
    from ..cli import _add_eval_every, _add_resume_unfingerprinted, _imbalance, _out, _positive_int, _seed
    from ..profiles import PROFILES

    p = sub.add_parser("distill", help="distil a teacher into a student (kd, kd-lr, kd-ds, kd-lr-ds, dkd, dkd-lr-ds; kd-mix, the control)")
    p.add_argument("--teacher", required=True, help="PATH to an ltkd checkpoint (model.pt) or a MODEL name to train "
                   "with CE first (quick profile unless --profile)")  # fmt: skip
    p.add_argument("--student", default=None,
                   help="student model name (default cnn6x0.5; resnet8x4 with --profile kd-paper)")
    p.add_argument("--method", default="kd", choices=list(DISTILL_METHODS))
    p.add_argument("--dataset", default="digits", help="digits | fashion-mnist | cifar10 | cifar100 | PATH")
    p.add_argument("--imbalance", type=_imbalance, default=1.0, help="imbalance factor (default 1 = balanced)")
    p.add_argument("--lt-profile", default="exp", choices=["exp", "step"])
    p.add_argument("--epochs", type=_positive_int, default=None, help="student epochs (default: the profile's)")
    p.add_argument("--teacher-epochs", type=_positive_int, default=None, help="epochs when training the teacher")
    p.add_argument("--seed", type=_seed, default=0, help="0 to 2**63 - 1")
    p.add_argument("--profile", default=None, choices=list(PROFILES),
                   help="default: $LTKD_PROFILE or quick; `kd-paper` is the KD papers' CIFAR-100 recipe (240 epochs, "
                        "batch 64, lr 0.05; teacher and student both), `paper` the long-tailed CIFAR one (200 epochs)")
    p.add_argument("--device", default=None)
    p.add_argument("--out", type=_out, default="runs/distill", help="output folder (metrics.json, model.pt, teacher/)")
    p.add_argument("--T", dest="temperature", type=_finite_float, default=None, help="temperature (default 4)")
    p.add_argument("--alpha", type=_finite_float, default=None, help="DKD: TCKD weight (default 1)")
    p.add_argument("--beta", type=_finite_float, default=None, help="DKD: NCKD weight (default 8)")
    p.add_argument("--warmup", type=_finite_float, default=None, help="DKD: warm-up epochs of the KD term")
    p.add_argument("--eta", type=_finite_float, default=None, help="label revision η in (0, 1) (default 0.8)")
    p.add_argument("--fraction", type=_finite_float, default=None,
                   help="data selection: fraction of training samples the teacher supervises (default 0.9)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="options",
                   help="another method option, e.g. --set kd_weight=0.5 (repeatable; `ltkd methods` lists them)")
    _add_eval_every(p)
    _add_resume_unfingerprinted(p)
    p.add_argument("--json", action="store_true", help="print metrics.json instead of the table")
    p.set_defaults(func=cmd_distill)


def _register_command() -> None:
    from .. import cli

    if all(getattr(h, "__name__", "") != add_distill_command.__name__ for h in cli._EXTRA_COMMANDS):
        cli._EXTRA_COMMANDS.append(add_distill_command)


_register_command()
