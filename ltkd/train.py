"""The engine: one seeded, device-agnostic loop that trains a model under an objective.

:func:`fit` trains any :class:`~ltkd.objective.Objective` — ``forward(model, x, y)`` returns
``(logits, {name: loss})``; the engine sums the losses, logs each, and never asks which method it is
running. :class:`~ltkd.objective.LossObjective` turns a plain criterion ``f(logits, y)`` into one (with
optional mixup); distillers and H2T are objectives too.

Two-stage decoupled training (Kang et al. 2020, cRT) is :func:`fit` again with
``trainable="head"``: the backbone is frozen (its BatchNorm in eval mode unless
``bn="train"``) and only ``model.head`` learns, usually under a class-balanced sampler.
Chapter 1 uses both stages.

The jobs around the loop live beside it: :mod:`ltkd.device` (device, seeds, memory format, compile),
:mod:`ltkd.checkpoint` (fingerprints, random state, model files, the atomic write), :mod:`ltkd.progress`
(bars and epoch lines) and :mod:`ltkd.distributed` (``torchrun``); their public names are importable
from here too.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import distributed as D
from .checkpoint import (
    check_resumable,
    load_model_state,
    module_digest,
    read_checkpoint,
    rng_state,
    run_fingerprint,
    save_checkpoint,
    save_model,
    set_rng_state,
)
from .data import ClassSampler, ImageData, TensorLoader
from .device import compile_mode, compiled, env_flag, get_device, seed_everything, use_channels_last
from .errors import LtkdError, first_line
from .objective import LossObjective, Objective
from .profiles import TrainConfig
from .progress import epoch_progress, progress_enabled, progress_mode

__all__ = [
    "fit",
    "predict",
    "embeddings",
    "soft_targets",
    "Objective",
    "LossObjective",
    # re-exported from the modules that hold them
    "get_device",
    "seed_everything",
    "use_channels_last",
    "compile_mode",
    "run_fingerprint",
    "module_digest",
    "save_model",
    "load_model_state",
    "progress_enabled",
    "progress_mode",
]


# --------------------------------------------------------------------------------------
# The loop's parts
# --------------------------------------------------------------------------------------
def _scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """Linear warm-up, then cosine to 0 or ×γ steps at the milestones; stepped per iteration."""
    from torch.optim import lr_scheduler as S

    total = max(1, cfg.epochs * steps_per_epoch)
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))
    warm = min(warm, total - 1) if total > 1 else 0
    if cfg.schedule == "cosine":
        main = S.CosineAnnealingLR(opt, T_max=max(1, total - warm))
    elif cfg.schedule == "step":
        main = S.MultiStepLR(opt, [m * steps_per_epoch - warm for m in cfg.milestones], cfg.gamma)
    elif cfg.schedule == "constant":
        main = S.ConstantLR(opt, factor=1.0, total_iters=0)
    else:
        raise LtkdError(f"unknown schedule {cfg.schedule!r}; choose cosine, step or constant")
    if warm <= 0:
        return main
    return S.SequentialLR(opt, [S.LinearLR(opt, 1.0 / (warm + 1), 1.0, total_iters=warm), main], [warm])


def _check(objective: nn.Module, config: TrainConfig, trainable: str, bn: str | None) -> str:
    """Validate ``fit``'s arguments; return the BatchNorm mode (``bn``'s default depends on ``trainable``)."""
    if not isinstance(objective, Objective):
        raise LtkdError(f"the objective must be an ltkd.objective.Objective (forward(model, x, y) -> (logits, "
                        f"losses)), got {type(objective).__name__}")  # fmt: skip
    if config.epochs <= 0:
        raise LtkdError(f"epochs must be positive, got {config.epochs}")
    if trainable not in ("all", "head"):
        raise LtkdError(f"trainable must be 'all' or 'head', got {trainable!r}")
    if bn is None:
        bn = "frozen" if trainable == "head" else "train"
    if bn not in ("train", "frozen"):
        raise LtkdError(f"bn must be 'train' or 'frozen', got {bn!r}")
    return bn


def _seed(seed: int) -> torch.Generator:
    """Seed torch's and NumPy's global streams (initialisation, mixup); return the batch-order generator."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return torch.Generator().manual_seed(seed)


def _loader(data: ImageData, batch_size: int, sampler: ClassSampler | str | None, augment: bool, dev: torch.device,
            gen: torch.Generator, channels_last: bool) -> TensorLoader:  # fmt: skip
    """The epoch's batches; under ``torchrun``, this rank's shard with batch ``batch_size / WORLD_SIZE``."""
    world, rank = D.world_size(), D.rank()
    if sampler is None or isinstance(sampler, str):
        sampler = ClassSampler.of(sampler or "instance", data.labels, data.num_classes)
    if world > 1:
        if batch_size % world:
            raise LtkdError(f"batch size {batch_size} does not split over {world} processes; use a multiple")
        batch_size //= world
        sampler = D.ShardedSampler(sampler, rank, world)
    loader = TensorLoader(data, batch_size, sampler, train=augment, device=dev, generator=gen,
                          channels_last=channels_last)  # fmt: skip
    if rank > 0:  # same batch order on every rank, but each rank its own crops and flips
        loader.aug_generator.manual_seed(loader.aug_generator.initial_seed() + 7919 * rank)
    return loader


def _place(model: nn.Module, objective: Objective, dev: torch.device, channels_last: bool) -> None:
    model.to(dev)
    objective.to(dev)
    if channels_last:  # the objective's networks too (a teacher): its weights' layout picks the convolution
        model.to(memory_format=torch.channels_last)  # kernels, so a teacher fresh from training (channels-last)
        objective.to(memory_format=torch.channels_last)  # and one read from its file must meet the same layout
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True


def _optimizer(model: nn.Module, config: TrainConfig, trainable: str, dev: torch.device) -> torch.optim.SGD:
    """SGD over what trains (``trainable="head"``: ``model.head`` only; the others get ``requires_grad=False``)."""
    if trainable == "head":
        head_ids = {id(p) for p in model.head.parameters()}
        for p in model.parameters():
            p.requires_grad_(id(p) in head_ids)
    params = [p for p in model.parameters() if p.requires_grad]
    fused = {"fused": True} if dev.type == "cuda" else {}
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                           nesterov=config.nesterov, **fused)  # fmt: skip


class _Step(nn.Module):
    """model + objective as one module (so DistributedDataParallel sees every parameter the step uses):
    one batch in, ``(logits, losses)`` out."""

    def __init__(self, model: nn.Module, objective: Objective, run_model: nn.Module):
        super().__init__()
        self.model, self.objective = model, objective
        self._run = [run_model]  # compiled view of model (not registered twice)

    def forward(self, x, y, idx):
        m = self._run[0]
        return self.objective(m, x, y, idx) if self.objective.wants_index else self.objective(m, x, y)


def _step(model: nn.Module, objective: Objective, compile: bool | str | None, dev: torch.device) -> nn.Module:
    step = _Step(model, objective, compiled(model, compile_mode(compile)))
    if D.world_size() == 1:
        return step
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(step, device_ids=[torch.cuda.current_device()] if dev.type == "cuda" else None,
                                   find_unused_parameters=env_flag("LTKD_DDP_FIND_UNUSED", False))  # fmt: skip


def _resume(path: Path | None, fingerprint: dict | None, parts: tuple, config: TrainConfig,
            resume_unfingerprinted: bool = False) -> dict:  # fmt: skip
    """Load the checkpoint at ``path``, if there is one, into this run (refused if another run wrote it, or if it
    cannot show which run did and the user has not vouched for it: :func:`ltkd.checkpoint.check_resumable`);
    return it (``{}``: none, start afresh)."""
    if path is None or fingerprint is None or not path.is_file():
        return {}
    model, opt, sched, gen, loader, dev, objective = parts
    ck = read_checkpoint(path, dev)
    check_resumable(path, ck, fingerprint, config.epochs, resume_unfingerprinted)
    try:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        # the checkpoint holds rank 0's augmentation stream; other ranks keep their own seed
        set_rng_state(ck, gen, loader.aug_generator if D.rank() == 0 else None, dev, objective)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:  # an unfingerprinted one that does not fit
        raise LtkdError(f"checkpoint {path} does not fit this run ({type(e).__name__}: {first_line(e)}); delete it "
                        "to start afresh") from e  # fmt: skip
    return ck


def _train_mode(step: nn.Module, model: nn.Module, trainable: str, bn: str) -> None:
    step.train()  # model and objective (a distiller keeps its teacher in eval mode)
    if trainable == "head" and bn != "train":  # the frozen backbone's BatchNorm statistics stay fixed
        for name, m in model.named_modules():
            if m is not model and not name.startswith("head"):
                m.eval()


def _checked(out, step: nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """An objective's ``(logits, {name: loss})``, each loss one number; anything else is an :class:`LtkdError`
    naming the objective (a per-sample loss, a tuple of losses), not a traceback from ``backward``."""
    objective = getattr(step, "module", step).objective
    name = getattr(objective, "name", None) or type(objective).__name__
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
        raise LtkdError(f"{type(objective).__name__}.forward must return (logits, {{name: loss}}), got "
                        f"{type(out).__name__}")  # fmt: skip
    for k, v in out[1].items():
        if not isinstance(v, torch.Tensor) or v.numel() != 1:
            what = f"a tensor of shape {tuple(v.shape)}" if isinstance(v, torch.Tensor) else f"a {type(v).__name__}"
            raise LtkdError(f"the loss {k!r} of {name} is {what}, not one number: reduce a per-sample loss "
                            "(.mean()) and give several losses as separate entries of the dict")  # fmt: skip
    return out


def _epoch(step: nn.Module, loader: TensorLoader, opt, sched, dev: torch.device, epoch: int) -> dict:
    """One pass over the loader; the epoch's log row (mean of each loss, their sum, train accuracy, lr)."""
    t0 = time.perf_counter()
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else nullcontext()
    sums: dict[str, torch.Tensor] = {}
    correct = torch.zeros((), device=dev)
    seen = 0
    for x, y, idx in loader:
        with amp:
            logits, losses = _checked(step(x, y, idx), step)
            loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        for k, v in losses.items():  # summed on the device, read once per epoch: no host sync per step
            sums[k] = sums.get(k, 0) + v.detach().float() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
    if D.world_size() > 1:  # one all-reduce per epoch: losses, correct, seen summed over ranks
        keys = list(sums)
        vec = torch.stack([sums[k] for k in keys] + [correct.float(), torch.tensor(float(seen), device=dev)])
        D.all_reduce_sum(vec)
        sums = dict(zip(keys, vec[: len(keys)]))
        correct, seen = vec[-2], int(vec[-1].item())
    row = {k: float(v) / seen for k, v in sums.items()}
    row["loss"] = sum(row.values())
    if not math.isfinite(row["loss"]):
        raise LtkdError(f"training diverged at epoch {epoch + 1} (loss {row['loss']}); lower the learning rate")
    row.update(epoch=epoch + 1, train_acc=float(correct) / seen, lr=opt.param_groups[0]["lr"],
               seconds=time.perf_counter() - t0)  # fmt: skip
    return row


# --------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------
def fit(
    model: nn.Module,
    objective: Objective,
    data: ImageData,
    config: TrainConfig,
    *,
    sampler: ClassSampler | str | None = None,
    trainable: str = "all",
    bn: str | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
    progress: bool | str | None = None,
    desc: str = "train",
    augment: bool = True,
    channels_last: bool | None = None,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    compile: bool | str | None = None,
    identity: dict | None = None,
    resume_unfingerprinted: bool = False,
) -> list[dict]:
    """Train ``model`` under ``objective`` on ``data``; return one log dict per epoch.

    * ``sampler``: a :class:`~ltkd.data.ClassSampler` or ``instance``, ``class-balanced``, ``sqrt``.
    * ``trainable="head"`` freezes everything but ``model.head`` (cRT's stage 2); then ``bn="frozen"``
      (its default) keeps backbone BatchNorm statistics fixed, ``bn="train"`` lets them update (H2T's stage 2).
    * ``checkpoint``: written atomically after every epoch; if it exists when ``fit`` starts, training
      resumes from it (model, optimiser, schedule and every random stream, :func:`ltkd.checkpoint.rng_state`).
      It records the run (:func:`run_fingerprint`: ``desc``, objective, model, data and its content, seed, config,
      ``identity``); another run's checkpoint, or one that cannot show whose it is (unless ``resume_unfingerprinted``),
      raises ``LtkdError`` (:func:`ltkd.checkpoint.check_resumable`).
    * ``progress``: a bar, one line per epoch (``"log"``) or nothing; ``None`` asks ``$LTKD_PROGRESS``;
      ``on_epoch_end(epoch, row)`` is called after each epoch, before its checkpoint (it may add to ``row``).
    * Mixed precision (bf16 autocast) on CUDA. Fast path: ``channels_last`` (``None``: on for CPU and CUDA),
      ``compile`` (``None``: ``$LTKD_COMPILE``, default off), cuDNN autotuning and a fused SGD step on CUDA.
    * Under ``torchrun`` (``WORLD_SIZE`` > 1) the step runs in DistributedDataParallel: each rank trains on
      a disjoint shard of every epoch with batch ``batch_size / WORLD_SIZE``; logged metrics are summed over
      ranks; rank 0 writes checkpoints; every rank takes rank 0's BatchNorm statistics at each epoch's end.
    """
    bn = _check(objective, config, trainable, bn)
    dev = get_device(device)
    D.init_from_env()
    gen = _seed(seed)
    channels_last = use_channels_last(dev, channels_last)
    loader = _loader(data, config.batch_size, sampler, augment, dev, gen, channels_last)
    _place(model, objective, dev, channels_last)
    objective.configure(config)
    saved_flags = {p: p.requires_grad for p in model.parameters()}
    opt = _optimizer(model, config, trainable, dev)
    sched = _scheduler(opt, config, len(loader))
    ck_path = Path(checkpoint) if checkpoint else None
    fingerprint = run_fingerprint(model, objective, data, config, seed=seed, trainable=trainable, bn=bn, desc=desc,
                                  identity=identity) if ck_path is not None else None  # fmt: skip
    ck = _resume(ck_path, fingerprint, (model, opt, sched, gen, loader, dev, objective), config, resume_unfingerprinted)
    history, start = list(ck.get("history_rows", [])), int(ck.get("epoch", 0))
    step = _step(model, objective, compile, dev)
    bar = epoch_progress(config.epochs, desc, progress_mode(progress) if D.rank() == 0 else None, initial=start)
    try:
        for epoch in range(start, config.epochs):
            _train_mode(step, model, trainable, bn)
            objective.on_epoch(epoch, config.epochs)
            row = _epoch(step, loader, opt, sched, dev, epoch)
            if epoch == start > 0:  # marked: a run's metrics say where it resumed
                row["resumed"] = True
            D.broadcast_buffers(model)  # under torchrun every rank takes rank 0's running statistics
            history.append(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['train_acc']:.3f}")
            bar.update(1)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, row)
            if ck_path is not None and D.rank() == 0:
                save_checkpoint(ck_path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                          "scheduler": sched.state_dict(), "fingerprint": fingerprint, "epoch": epoch + 1,
                                          **rng_state(gen, loader.aug_generator, dev, objective), "history_rows": history})
    finally:
        bar.close()
        for p, flag in saved_flags.items():
            p.requires_grad_(flag)
    model.eval()
    return history


@torch.no_grad()
def _batches(fn, model: nn.Module, data: ImageData, device=None, batch_size: int | None = None,
             distributed: bool = False) -> torch.Tensor:  # fmt: skip
    dev = get_device(device)
    if batch_size is None:  # large batches where memory is plentiful and launches are the cost
        batch_size = 4096 if dev.type == "cuda" else 1024
    n, part = len(data), data
    world = D.world_size() if distributed and n >= D.world_size() else 1  # (same n on every rank)
    if world > 1:  # this rank's rows rank, rank + W, ...; the others come from the all-reduce below
        part = data.subset(range(D.rank(), n, world))
    model.to(dev)
    was = model.training
    model.eval()
    loader = TensorLoader(part, batch_size, train=False, device=dev, channels_last=use_channels_last(dev))
    keep = (lambda t: t) if world > 1 else (lambda t: t.cpu())  # one process: to the host batch by batch
    out = [keep(fn(model, x).float()) for x, _, _ in loader]
    model.train(was)
    if world == 1:
        return torch.cat(out) if out else torch.empty(0)
    mine = torch.cat(out)
    full = torch.zeros((n, *mine.shape[1:]), device=mine.device)  # on the device: NCCL reduces only CUDA tensors
    full[D.rank() :: world] = mine
    return D.all_reduce_sum(full).cpu()  # every row is one rank's, the others add zeros


def predict(model: nn.Module, data: ImageData, device=None, batch_size: int | None = None,
            distributed: bool = False) -> torch.Tensor:  # fmt: skip
    """Logits for every image of ``data`` (in order), on the CPU; no augmentation.
    Batches of ``batch_size`` (default 4,096 on CUDA, 1,024 elsewhere).

    ``distributed=True`` under ``torchrun``: each rank computes every W-th image and all ranks get the
    whole result (a collective: every rank must call it, with the same model, as :func:`fit` leaves them)."""
    return _batches(lambda m, x: m(x), model, data, device, batch_size, distributed)


def embeddings(model: nn.Module, data: ImageData, device=None, batch_size: int | None = None,
               distributed: bool = False) -> torch.Tensor:  # fmt: skip
    """Pooled penultimate embeddings (``model.embed``) of every image, on the CPU (``distributed``: as in
    :func:`predict`)."""
    return _batches(lambda m, x: m.embed(x), model, data, device, batch_size, distributed)


def soft_targets(model: nn.Module, data: ImageData, device=None, temperature: float = 1.0) -> torch.Tensor:
    """Softmax(logits / T) for every image: what a teacher says about each one."""
    return F.softmax(predict(model, data, device) / temperature, dim=1)
