"""Profiles: ``quick`` (minutes on two CPU cores: CI and the published book), ``paper`` (the long-tailed CIFAR
recipe) and ``kd-paper`` (the KD papers' CIFAR-100 recipe).

Read once from the ``LTKD_PROFILE`` environment variable (default ``quick``); a notebook's
``parameters`` cell or a command-line flag may override single values with
``profile.replace(epochs=...)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from .errors import LtkdError

__all__ = ["Profile", "PROFILES", "get_profile", "TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """One training stage's optimiser and schedule (SGD with momentum; warm-up, then cosine or step).

    The learning rate is stepped every iteration; ``warmup_epochs`` and ``milestones`` are in
    epochs.
    """

    epochs: int = 6
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    warmup_epochs: float = 1
    schedule: str = "cosine"  # "cosine" | "step" | "constant"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    mixup: float = 0.0  # Beta(α, α) mixup for every LossObjective of the stage; 0 = off
    # defaults this profile gives method options read in this stage (ltkd.methods.Option: a method's
    # published setting that differs from the quick runs', e.g. GCL's stage-1 mixup); the user's options win
    option_defaults: dict = field(default_factory=dict, hash=False, repr=False)

    def replace(self, **kw) -> TrainConfig:
        return replace(self, **kw)


@dataclass(frozen=True)
class Profile:
    """Everything a run needs besides the method: model, stage-1 and stage-2 training."""

    name: str
    model: str
    stage1: TrainConfig
    stage2: TrainConfig
    eval_batch_size: int = 1024
    notes: str = ""
    extra: dict = field(default_factory=dict)

    def replace(self, **kw) -> Profile:
        return replace(self, **kw)

    def for_dataset(self, dataset: str) -> Profile:
        """This profile with the overrides it keeps for ``dataset`` (tiny sets need more epochs)."""
        over = self.extra.get("per_dataset", {}).get(dataset)
        if not over:
            return self
        return replace(
            self,
            stage1=self.stage1.replace(**over.get("stage1", {})),
            stage2=self.stage2.replace(**over.get("stage2", {})),
        )

    def teacher_epochs(self, dataset: str) -> int | None:
        """Epochs for a teacher ``ltkd distill`` trains on ``dataset``: ``teacher_epoch_factor`` × this profile's own
        stage-1 epochs (quick: 2.5 × 6 = 15), or the data set's stage-1 epochs where its override gives more; None
        where the profile has no factor (its schedule already converges: the teacher trains the profile's epochs).

        The factor lengthens the profile's short schedule, which leaves a teacher unconverged; it does not multiply
        a tiny set's override, which has lengthened that schedule already (digits: 30 epochs at batch 32 for its
        1,400 training images, 5× quick's epochs at a quarter of its batch). Multiplied, a ResNet-32×4 teacher on
        digits trained 75 epochs, about 10 minutes on 2 CPU cores; it now trains the student's 30, 2/5 of that."""
        factor = self.extra.get("teacher_epoch_factor")
        if factor is None:
            return None
        return max(self.for_dataset(dataset).stage1.epochs, round(self.stage1.epochs * factor))

    def with_epochs(self, epochs: int) -> Profile:
        """This profile with ``epochs`` of stage 1. A step schedule keeps its shape: the milestones move in
        proportion (the paper profile's 160 and 180 of 200 become 80 and 90 of 100), as LDAM-DRW's deferred
        re-weighting (80 % of the epochs) does; kept fixed, a run shorter than 160 epochs would never lower its
        learning rate. The warm-up stays as it is unless it is as long as the run, then it is scaled too."""
        if epochs <= 0:
            raise LtkdError(f"epochs must be positive, got {epochs}")
        s1, old = self.stage1, self.stage1.epochs
        changes: dict = {"epochs": epochs}
        if s1.milestones and epochs != old:
            changes["milestones"] = tuple(max(1, int(m * epochs / old)) for m in s1.milestones)
        if s1.warmup_epochs >= epochs:
            changes["warmup_epochs"] = s1.warmup_epochs * epochs / old
        return replace(self, stage1=s1.replace(**changes))


PROFILES = {
    "quick": Profile(
        name="quick",
        model="cnn6",
        stage1=TrainConfig(epochs=6, batch_size=128, lr=0.1, weight_decay=5e-4, warmup_epochs=1, schedule="cosine"),
        stage2=TrainConfig(epochs=3, batch_size=128, lr=0.02, weight_decay=5e-4, warmup_epochs=0, schedule="cosine"),
        notes="a 6-conv net, 6 epochs + 3 of classifier re-training: about a minute on Fashion-MNIST-LT on 2 CPU cores",
        # scikit-learn's digits-LT has ~350 images: more, smaller steps so a run still learns (~5 s)
        extra={"per_dataset": {"digits": {"stage1": {"epochs": 30, "batch_size": 32},
                                          "stage2": {"epochs": 10, "batch_size": 32}}},
               # `ltkd distill` trains a named teacher 2.5× the stage-1 epochs (15 on Fashion-MNIST, as the
               # shipped teacher experiments/models/fmnist_ce_teacher): after the same 6 epochs as its student
               # it was only 1.2 points ahead of it, and KD lost 0.2–0.3 points to the student alone
               # (experiments/results/distill_defaults.json); with the 15-epoch teacher (93.05 %) the student
               # distilled with the defaults reaches 90.94 ± 0.20 % against 90.66 ± 0.17 % alone (3 seeds).
               # The GPU profiles' schedules already converge.
               "teacher_epoch_factor": 2.5},
    ),
    "paper": Profile(
        name="paper",
        model="resnet32",
        stage1=TrainConfig(
            epochs=200, batch_size=128, lr=0.1, weight_decay=2e-4, warmup_epochs=5,
            schedule="step", milestones=(160, 180), gamma=0.1,
            # GCL's and H2T's published stage 1: mixup α = 1; GCL's at batch 64 (its authors' backbone script);
            # CE with Cao et al.'s steps, lr ×0.01 at 160 and again at 180 (the CE baseline of LDAM-DRW's code)
            option_defaults={"gcl_mixup": 1.0, "h2t_mixup": 1.0, "gcl_batch": 64, "ce_schedule": "cao"},
        ),  # fmt: skip
        stage2=TrainConfig(epochs=10, batch_size=128, lr=0.02, weight_decay=2e-4, warmup_epochs=0, schedule="cosine",
                           # H2T's published stage 2: BN statistics update; GCL's classifier stage: mixup α = 1
                           option_defaults={"h2t_bn": "train", "gcl_mixup2": 1.0,
                                            # and each method's published stage-2 schedule (see the options)
                                            "gcl_schedule2": "authors", "h2t_schedule2": "authors"}),
        notes="the CIFAR-LT recipe (Cao et al. 2019; GCL; H2T): ResNet-32, 200 epochs, for a GPU",
    ),
    "kd-paper": Profile(
        name="kd-paper",
        model="resnet8x4",
        stage1=TrainConfig(
            epochs=240, batch_size=64, lr=0.05, weight_decay=5e-4, warmup_epochs=0,
            schedule="step", milestones=(150, 180, 210), gamma=0.1,
        ),  # fmt: skip
        stage2=TrainConfig(epochs=10, batch_size=128, lr=0.02, weight_decay=5e-4, warmup_epochs=0, schedule="cosine"),
        notes="the CIFAR-100 KD recipe (CRD, DKD, label revision): 240 epochs, batch 64, lr 0.05, x0.1 at 150/180/210, "
        "wd 5e-4; students resnet8x4 by default (teacher resnet32x4), for a GPU. Use lr 0.01 for MobileNet/ShuffleNet "
        "students (not among ltkd's models)",
        extra={"student": "resnet8x4", "teacher": "resnet32x4"},
    ),
}


def get_profile(name: str | None = None) -> Profile:
    """The named profile, else ``$LTKD_PROFILE``, else ``quick``."""
    name = name or os.environ.get("LTKD_PROFILE", "quick")
    if name not in PROFILES:
        raise LtkdError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]
