"""H2T — head-to-tail feature fusion (Li et al., AAAI 2024), a stage-2 (classifier re-training) step.

Chapter 3 (``notebooks/03_head_to_tail_fusion.ipynb``) builds :func:`fuse` by hand, checks it
against this file and trains :class:`H2T` with it.

The idea. After stage 1 the backbone is frozen and the classifier is re-trained on
class-balanced batches (cRT). Tail classes then appear often, but always as the same few
images, so the classifier learns a region too small for them. H2T widens it by grafting
head-class variety onto tail samples at the level of the last feature map:

* a class-balanced batch x₁ (the *fused* branch; its labels y₁ are the ones trained on) and an
  instance-sampled batch x₂ (the *donors*, mostly head classes) go through the frozen backbone
  to their last feature maps F₁, F₂ ∈ ℝ^{B×C×h×w};
* one random channel set S ⊂ {0..C−1} with |S| = ⌊ρ·C⌋ is drawn per batch, shared by all
  samples, and F̃ = F₁ with F̃[:, S] = F₂[:, S]  (the paper's fusion, its eq. for F̃);
* the classifier (global average pool, then the head) is trained with CE(head(pool(F̃)), y₁).

No fusion at evaluation. ρ = 0.25 in every published CIFAR config (the code's default is
0.3). The published stage 2 (the authors' ``train_stage2.py`` and CIFAR-100-LT configs): the stage-1
classifier is loaded and fine-tuned (the backbone is frozen: only the classifier is in the optimiser),
10 epochs, batch 128, lr 0.02 cosine, weight decay 5e-4 at IF 100 (2e-4 at IF 50 and 200; keyed by data set and
imbalance factor in :data:`H2T_PAPER_WEIGHT_DECAY`), backbone
BatchNorm statistics still updating (``shift_bn``; ``Stage.bn="train"``), the two batches forwarded in
two separate passes; stage 1 is CE (or GCL) with mixup.

H2T is a plug-in to the stage 2 of the method it is applied on; the recipes registered here:

* ``h2t`` — stage 1 CE (with mixup α = 1 in the ``paper`` profile, as published; ``options["h2t_mixup"]``
  overrides), then stage 2 on fused maps with class-balanced sampling and CE, fine-tuning the stage-1
  linear classifier (``options["h2t_head"] = "stage1"``, the default, as the authors) or a fresh one
  (``"fresh"``: then ρ = 0 *is* cRT, and any difference is the fusion's). Backbone BatchNorm
  statistics stay frozen in stage 2 in the ``quick`` profile (as cRT's) and keep updating in
  ``paper`` (as published); ``options["h2t_bn"]`` (``"frozen"``/``"train"``) overrides. In the
  ``paper`` profile stage 2's weight decay follows the authors' config for the imbalance factor
  (:func:`h2t_stage2_schedule`);
* ``gcl-h2t`` — stage 1 GCL (a cosine head), then GCL's stage 2 (the stage-1 cosine head kept
  and fine-tuned — or a fresh cosine head with ``h2t_head=fresh`` — effective-number sampling, GCL's
  stage-2 loss) on fused maps; ρ = 0 is GCL's two-stage recipe without its stage-2 mixup.

``--fusion-ratio`` (``options["fusion_ratio"]``) sets ρ; ``options["h2t_donor"]`` the donor sampler.

Where ltkd differs from the authors (what they do / what ltkd does / why):

* the learning rate: the authors set the cosine once per epoch, ltkd every iteration (the engine's
  one schedule); over 10 epochs the difference is under one epoch's step;
* ``quick`` profile: 3 stage-2 epochs and BatchNorm frozen (the authors: 10 epochs, BatchNorm
  updating) — the book's CPU budget, and with BatchNorm frozen ρ = 0 with a fresh head is cRT exactly;
* ``gcl-h2t`` keeps GCL's stage-2 loss, sampler and frozen BatchNorm (as GCL's authors' classifier stage),
  without GCL's stage-2 mixup (the fusion takes its place) and, in the ``paper`` profile, on H2T's stage-2
  schedule (10 epochs from 0.02) rather than GCL's (30 from 0.002) — the H2T repository publishes only
  CE configs for CIFAR, so how the authors combine the two is not known to us;
* donors: the authors draw them from a second ``DataLoader`` over the training set (instance sampling, the
  same augmentation). ltkd draws no second loader: :class:`H2T` itself picks the donor indices with its own seeded
  ``torch.Generator`` (uniformly over the training images for ``instance``, by per-image weights otherwise), takes
  those images from the training set it keeps on the device as uint8, and augments them (random crop, flip;
  :func:`ltkd.data.augment`) with a second seeded generator — so the class-balanced batches the engine draws
  come in the same order as cRT's, and a resumed run continues both streams (:meth:`H2T.rng_state`);
* CIFAR-10-LT: the authors publish no CE + H2T config for it; the weight decay at IF 100 (5e-4) is their
  ResLT + H2T config's, and any other imbalance factor of CIFAR-10 keeps the profile's (2e-4).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..data import ImageData, augment, class_sampler_weights
from ..errors import LtkdError
from ..objective import LossObjective, Objective
from . import FRACTION, NONNEGATIVE, Context, Recipe, Stage, gcl, option, register

__all__ = ["fuse", "fused_channels", "H2T", "h2t_objective", "h2t_stage", "gcl_h2t_stage", "H2T_STAGE", "h2t_bn",
           "h2t_head", "h2t_stage2_schedule", "H2T_PAPER_WEIGHT_DECAY", "h2t_benchmark", "DEFAULT_RHO"]

DEFAULT_RHO = 0.25


def fused_channels(num_channels: int, rho: float) -> int:
    """⌊ρ·C⌋, the number of channels a donor gives (a 1e-9 guard keeps e.g. 0.3·10 = 3)."""
    if not 0.0 <= rho <= 1.0:
        raise LtkdError(f"fusion ratio ρ must be in [0, 1], got {rho}")
    return int(math.floor(rho * num_channels + 1e-9))


def fuse(
    f1: torch.Tensor, f2: torch.Tensor, rho: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """H2T's fusion: copy one random set of ⌊ρ·C⌋ channels of the donor maps into the fused maps.

    ``f1`` (fused branch, B×C×h×w) and ``f2`` (donors, same shape). One channel set S is drawn
    (``torch.randperm(C)[:k]`` from ``generator``, on the CPU) and shared by every sample:
    ``fused = f1.clone(); fused[:, S] = f2[:, S]``. Returns ``(fused, S)`` with S sorted.
    ρ = 0 returns a copy of ``f1`` and an empty S. Chapter 3, section "the fusion".
    """
    if f1.shape != f2.shape:
        raise LtkdError(f"fused and donor feature maps must have the same shape, got {tuple(f1.shape)} "
                        f"and {tuple(f2.shape)}")  # fmt: skip
    c = f1.shape[1]
    k = fused_channels(c, rho)
    channels = torch.randperm(c, generator=generator)[:k].sort().values
    fused = f1.clone()
    if k:
        idx = channels.to(f1.device)
        fused[:, idx] = f2[:, idx]
    return fused, channels


class H2T(Objective):
    """The H2T stage-2 objective: ``forward(model, x, y) -> (logits, {"ce": loss})``.

    ``x, y`` is the class-balanced batch the engine draws. The objective draws its own donor
    batch of the same size from ``train`` (kept on the device as uint8; augmented with
    :func:`ltkd.data.augment` and normalised with the data's statistics), runs both through
    ``model.features`` without gradient (the backbone is frozen: nothing reaches it), fuses them
    with ``fuse_fn`` (default :func:`fuse`) and returns ``model.head(model.pool(fused)) · scale``
    and ``criterion`` of those logits against ``y``. In eval mode there is no fusion.

    * ``rho`` — the fusion ratio ρ (0.25).
    * ``donor`` — how donors are sampled: ``instance`` (published), ``class-balanced`` or ``sqrt``.
    * ``scale`` — multiplies the logits (1 for a linear head; a cosine head returning cos θ needs
      a scale, e.g. 20 as in GCL's stage 2).
    * ``seed`` — seeds the donor and channel generators.
    * ``joint_pass`` — ``False`` (default, as the authors): the class-balanced batch and the donors go
      through the backbone in two forward passes, so with backbone BatchNorm in training mode each batch
      is normalised with its own statistics (and the running statistics are updated twice per step);
      ``True``: one pass over both batches (their joint statistics; ltkd's former choice). With
      BatchNorm frozen the two give the same feature maps.

    After each training step ``last_channels`` holds the channel set S and ``last_donors`` the
    donors' indices into ``train``.
    """

    def __init__(
        self,
        train: ImageData,
        rho: float = DEFAULT_RHO,
        *,
        donor: str = "instance",
        scale: float = 1.0,
        criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
        fuse_fn: Callable = fuse,
        seed: int = 0,
        augment_donors: bool = True,
        joint_pass: bool = False,
    ):
        super().__init__()
        self.joint_pass = bool(joint_pass)
        fused_channels(1, rho)  # validates ρ
        self.rho = float(rho)
        self.scale = float(scale)
        self.criterion = criterion
        self.fuse_fn = fuse_fn
        self.augment_donors = augment_donors
        self.train_data = train
        self.donor = donor
        counts = train.counts
        class_p = torch.as_tensor(class_sampler_weights(counts, donor), dtype=torch.float64)
        # per-image probability: class probability shared among the class's images
        self._weights = (class_p / torch.as_tensor(counts, dtype=torch.float64).clamp_min(1))[train.labels].float()
        self._instance = donor in ("instance", "instance-balanced")
        self.generator = torch.Generator().manual_seed(int(seed) * 7919 + 17)  # donors and channel sets
        self._images: torch.Tensor | None = None  # on the device, uint8, moved at first use
        self._aug_gen: torch.Generator | None = None
        self._pending_aug: torch.Tensor | None = None
        self._seed = int(seed)
        self.last_channels: torch.Tensor | None = None
        self.last_donors: torch.Tensor | None = None

    def rng_state(self) -> dict:
        """The donor / channel and donor-augmentation streams, for ``fit``'s checkpoints."""
        aug = self._aug_gen.get_state().cpu() if self._aug_gen is not None else self._pending_aug
        return {"generator": self.generator.get_state(), "aug": aug}

    def set_rng_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self._pending_aug = state.get("aug")
        if self._aug_gen is not None and self._pending_aug is not None:
            self._aug_gen.set_state(self._pending_aug.to(self._aug_gen.get_state().device))
            self._pending_aug = None

    def _donor_batch(self, n: int, device: torch.device) -> torch.Tensor:
        if self._images is None or self._images.device != device:
            self._images = self.train_data.images.to(device)
            self._aug_gen = torch.Generator(device=device).manual_seed(self._seed * 104729 + 3)
            if self._pending_aug is not None:  # a resumed run continues the stream its checkpoint saved
                self._aug_gen.set_state(self._pending_aug.to(self._aug_gen.get_state().device))
                self._pending_aug = None
            mean = torch.tensor(self.train_data.mean, device=device).view(1, -1, 1, 1)
            std = torch.tensor(self.train_data.std, device=device).view(1, -1, 1, 1)
            self._norm = (1.0 / (255.0 * std), -mean / std)
        if self._instance:
            idx = torch.randint(len(self._images), (n,), generator=self.generator)
        else:
            idx = torch.multinomial(self._weights, n, replacement=True, generator=self.generator)
        self.last_donors = idx
        x = self._images[idx.to(device)]
        if self.augment_donors:
            x = augment(x, self.train_data.pad, self.train_data.flip, self._aug_gen)
        scale, shift = self._norm
        return x.float().mul_(scale).add_(shift)

    def forward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None = None):
        if not self.training:
            logits = model(x) * self.scale
            return logits, {"ce": self.criterion(logits, y)}
        n = len(x)
        with torch.no_grad():
            k = fused_channels(model.feature_dim, self.rho)
            if k == 0:  # ρ = 0: cRT; no donors needed
                fmaps = model.features(x)
                fused, self.last_channels = fmaps, torch.empty(0, dtype=torch.long)
            else:
                xd = self._donor_batch(n, x.device).to(dtype=x.dtype, memory_format=torch.preserve_format)
                if self.joint_pass:  # the former choice: one pass, BatchNorm statistics of both batches together
                    fmaps = model.features(torch.cat([x, xd]))
                    f1, f2 = fmaps[:n], fmaps[n:]
                else:  # as the authors' train_stage2.py: model(images), model(images2)
                    f1, f2 = model.features(x), model.features(xd)
                fused, self.last_channels = self.fuse_fn(f1, f2, self.rho, self.generator)
        logits = model.head(model.pool(fused.detach())) * self.scale
        return logits, {"ce": self.criterion(logits, y)}

    def extra_repr(self) -> str:
        return f"rho={self.rho}, donor={self.donor!r}, scale={self.scale}"


# --------------------------------------------------------------------------------------
# Recipes
# --------------------------------------------------------------------------------------
option("fusion_ratio", "number", DEFAULT_RHO, "H2T: fraction rho of channels fused, in [0, 1]", config="stage2",
       **FRACTION)  # fmt: skip
option("h2t_donor", ("instance", "class-balanced", "sqrt"), "instance", "H2T: how donor images are sampled",
       config="stage2")  # fmt: skip
option("h2t_mixup", "number", 0.0, "H2T stage 1: mixup alpha (the paper profile's stage 1 sets 1, as published)",
       **NONNEGATIVE)  # fmt: skip
option("h2t_bn", ("frozen", "train"), "frozen", "H2T stage 2: backbone BatchNorm statistics (the paper profile's "
       "stage 2 sets train, as published)", config="stage2")  # fmt: skip
option("h2t_head", ("stage1", "fresh"), "stage1", "H2T stage 2: fine-tune the stage-1 classifier (stage1, as the "
       "authors) or train a fresh one (fresh; with fusion_ratio=0 that is cRT)", config="stage2")  # fmt: skip


def h2t_objective(ctx: Context, scale: float = 1.0, criterion=F.cross_entropy) -> H2T:
    """H2T with ρ from ``ctx.option("fusion_ratio")`` (default 0.25) and donor sampling from
    ``ctx.option("h2t_donor")`` (default ``instance``)."""
    return H2T(ctx.train, ctx.option("fusion_ratio"), donor=ctx.option("h2t_donor"), scale=scale,
               criterion=criterion, seed=ctx.seed)  # fmt: skip


def h2t_head(kind: str = "linear") -> Callable[[Context], str | None]:
    """Stage 2's head: ``ctx.option("h2t_head")`` = ``"stage1"`` (default: keep the stage-1 classifier and
    fine-tune it, as the authors' ``train_stage2.py``, which loads ``state_dict_classifier`` from the stage-1
    checkpoint) or ``"fresh"`` (a newly initialised ``kind`` head, as cRT; with ρ = 0 the stage then *is* cRT)."""

    def head(ctx: Context) -> str | None:
        return None if ctx.option("h2t_head") == "stage1" else kind  # the option's check admits stage1 | fresh

    head.__name__ = f"h2t_head_{kind}"
    return head


# The authors' stage-2 weight decay by (data set, imbalance factor). Their CIFAR-100-LT configs (H2T repository,
# config/cifar100/cifar100_imb{0005,001,002}_stage2_ce_H2T.yaml): 10 epochs, batch 128, SGD momentum 0.9, a cosine
# from lr_factor · lr = 0.02 (0.1 · 0.2 at IF 200, 0.2 · 0.1 at IF 100 and 50) set once per epoch, and weight decay
# 2e-4 at IF 200, 5e-4 at IF 100, 2e-4 at IF 50. For CIFAR-10-LT the repository has no CE + H2T config; its one
# CIFAR-10-LT stage-2 config (config/cifar10/ResLT/imb001/cifar10_imb001_stage2_ResLT_H2T.yaml, H2T on ResLT, IF 100)
# uses weight decay 5e-4, taken here for CIFAR-10-LT at IF 100. Any other pair keeps the profile's weight decay.
H2T_PAPER_WEIGHT_DECAY = {("cifar100", 200): 2e-4, ("cifar100", 100): 5e-4, ("cifar100", 50): 2e-4,
                          ("cifar10", 100): 5e-4}  # fmt: skip


def h2t_benchmark(data: ImageData) -> tuple[str, float]:
    """(data set, imbalance factor) of a training set, the key of :data:`H2T_PAPER_WEIGHT_DECAY`.

    The data set: ``cifar10`` / ``cifar100`` for 10 / 100 classes of 3×32×32 images (CIFAR itself, or a copy read
    from an image folder), else the set's name. The imbalance factor: the one :func:`ltkd.data.long_tail` made the
    set with (``meta["imbalance"]``), else n_max / n_min rounded. (The counts alone mislead where ⌊n_max · IF^(−1)⌋
    rounds: CIFAR-100-LT at IF 200 keeps 500 and 2 images, a ratio of 250.)"""
    shape, c = tuple(data.images.shape[1:]), data.num_classes
    name = f"cifar{c}" if shape == (3, 32, 32) and c in (10, 100) else data.name
    imbalance = data.meta.get("imbalance")
    if imbalance is None or data.meta.get("lt_profile", "exp") != "exp":
        counts = data.counts
        imbalance = round(float(max(counts)) / max(1.0, float(min(counts))))
    return name, float(imbalance)


option("h2t_schedule2", ("profile", "authors"), "profile", "H2T stage 2: the profile's stage-2 schedule, or the "
       "authors' (10 epochs, batch 128, lr 0.02, weight decay by imbalance factor; the paper profile sets authors)",
       config="stage2")  # fmt: skip


def h2t_stage2_schedule(cfg, ctx: Context | None):
    """H2T's stage 2 with option ``h2t_schedule2`` = authors (the ``paper`` profile's
    stage-2 default): the authors' settings for the data set and imbalance factor of the data
    (:func:`h2t_benchmark`): weight decay from :data:`H2T_PAPER_WEIGHT_DECAY` (the profile's for a pair the authors
    publish no config for), 10 epochs, batch 128, peak lr 0.02, cosine. ltkd
    steps the cosine every iteration where the authors step it every epoch. ``quick`` keeps its own stage 2."""
    if ctx is None or ctx.option("h2t_schedule2") != "authors":
        return cfg
    wd = H2T_PAPER_WEIGHT_DECAY.get(h2t_benchmark(ctx.train), cfg.weight_decay)
    return cfg.replace(epochs=10, batch_size=128, lr=0.02, weight_decay=wd, warmup_epochs=0, schedule="cosine",
                       milestones=())  # fmt: skip


def h2t_stage(head: str | Callable[[Context], str | None] | None = None, bn: str | Callable[[Context], str] = "frozen",
              scale: float = 1.0, criterion=F.cross_entropy, name: str = "h2t") -> Stage:  # fmt: skip
    """The H2T stage: class-balanced batches, backbone frozen, the classifier trained on fused maps.

    ``head``: ``None`` fine-tunes the stage-1 classifier; ``"linear"``/``"cosine"`` puts a fresh one in; a
    function of the context (as :func:`h2t_head`, which the registered ``h2t`` recipe uses) picks per run.
    ``bn="train"`` lets backbone BatchNorm statistics keep updating (the published setting);
    ``"frozen"`` keeps them fixed, as cRT does, so the two differ only by the fusion; a function
    of the context (as :func:`h2t_bn`, which the registered ``h2t`` recipe uses) picks per run.
    """
    return Stage(objective=lambda ctx: h2t_objective(ctx, scale, criterion), sampler="class-balanced",
                 head=head, trainable="head", bn=bn, config="stage2", name=name,
                 adjust=h2t_stage2_schedule)  # fmt: skip


def h2t_bn(ctx: Context) -> str:
    """Backbone BatchNorm in H2T's stage 2: ``options["h2t_bn"]`` if given, else ``"train"`` in the
    ``paper`` profile (the published recipe) and ``"frozen"`` in ``quick`` (so that ρ = 0 is cRT)."""
    return ctx.option("h2t_bn")


H2T_STAGE = h2t_stage(head=h2t_head("linear"), bn=h2t_bn)


def h2t_stage1_objective(ctx: Context) -> LossObjective:
    """H2T's stage 1: CE, with mixup α = ``options["h2t_mixup"]`` — by default 1.0 in the ``paper``
    profile (the published recipe) and 0 in ``quick`` (chapter 3 measures what mixup changes there)."""
    return LossObjective(F.cross_entropy, mixup=ctx.option("h2t_mixup"), name="ce")


H2T_STAGE1 = Stage(objective=h2t_stage1_objective, sampler="instance", name="stage1")


def gcl_h2t_stage(bn: str = "frozen", name: str = "gcl-h2t") -> Stage:
    """H2T plugged into GCL's stage 2: the same kept stage-1 cosine classifier, the same sampler
    (effective number) and the same stage-2 loss (clouded cosine logits, m = 0.1, s = 20, focal γ = 1),
    trained on fused feature maps. GCL's two-stage recipe and this one differ only by the fusion."""
    def objective(ctx: Context) -> H2T:
        return h2t_objective(ctx, criterion=gcl.gcl_stage2_objective(ctx).criterion)

    return Stage(objective=objective, sampler=gcl.gcl_sampler, head=h2t_head("cosine"), trainable="head", bn=bn,
                 config="stage2", name=name, adjust=h2t_stage2_schedule)  # fmt: skip


register(Recipe("h2t", "CE, then H2T head-to-tail feature fusion in classifier re-training (Li et al. 2024). "
                "Differs: donors drawn by the objective's own seeded sampler, not a second data loader; lr set "
                "every iteration, not every epoch; CIFAR-10-LT's weight decay from the authors' ResLT config",
                [H2T_STAGE1, H2T_STAGE], chapter="03"))  # fmt: skip

register(Recipe("gcl-h2t", "GCL stage 1 (cosine head), then GCL's stage 2 on H2T-fused feature maps "
                "(Li et al. 2024). Differs: the authors publish no GCL + H2T config; H2T's stage-2 schedule, no "
                "GCL stage-2 mixup", [gcl.GCL_STAGE1, gcl_h2t_stage()], head="cosine", chapter="03"))  # fmt: skip
