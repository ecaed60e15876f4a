"""The engine: one seeded, device-agnostic loop that trains a model under an objective.

An *objective* is any ``nn.Module`` whose ``forward(model, x, y)`` returns
``(logits, {name: loss})`` (one with ``wants_index = True`` is called as
``forward(model, x, y, idx)``, idx = the batch's indices into the training set; KD's data
selection uses it); the engine sums the losses, logs each, and never asks which
method it is running. :class:`LossObjective` turns a plain criterion ``f(logits, y)`` into
one (with optional mixup); distillers and H2T are objectives too. An objective may define
``on_epoch(epoch, epochs)`` (deferred re-weighting, KD warm-up use it).

Two-stage decoupled training (Kang et al. 2020, cRT) is :func:`fit` again with
``trainable="head"``: the backbone is frozen (its BatchNorm in eval mode unless
``bn="train"``) and only ``model.head`` learns, usually under a class-balanced sampler.
Chapter 1 uses both stages.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import ClassSampler, ImageData, TensorLoader
from .errors import LtkdError, first_line
from .profiles import TrainConfig

__all__ = [
    "get_device",
    "seed_everything",
    "LossObjective",
    "fit",
    "run_fingerprint",
    "predict",
    "embeddings",
    "save_model",
    "load_model_state",
    "progress_enabled",
    "progress_mode",
]


# --------------------------------------------------------------------------------------
# Device, seeds, progress
# --------------------------------------------------------------------------------------
def get_device(preferred: str | None = None) -> torch.device:
    """``preferred``, else ``$LTKD_DEVICE``, else CUDA, else MPS, else CPU."""
    name = preferred or os.environ.get("LTKD_DEVICE")
    if name:
        try:
            dev = torch.device(name)
        except RuntimeError as e:
            raise LtkdError(f"unknown device {name!r} (try cpu, cuda, cuda:1, mps)") from e
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise LtkdError(f"device {name!r} asked for, but CUDA is not available here")
        if dev.type not in ("cpu", "cuda"):  # mps, xpu, ...: usable only if this torch build and machine have it
            try:  # and only if it holds data: a tensor made there must come back (``meta`` holds none)
                torch.ones(1, device=dev).cpu()
            except Exception as e:  # RuntimeError, AssertionError, NotImplementedError (meta), ...
                raise LtkdError(f"device {name!r} asked for, but it is not available here (or holds no data): "
                                f"{first_line(e, 160)}") from e  # fmt: skip
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator for batch order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def progress_mode(progress: bool | str | None = None) -> str | None:
    """How training reports its epochs: ``"bar"`` (tqdm), ``"log"`` or ``None`` (quiet).

    ``progress``: ``True``/``False``, ``"log"``, or ``None`` for ``$LTKD_PROGRESS`` (``0`` quiet,
    ``1`` bars, ``log`` one line per epoch: for log files of long runs, where a bar is noise),
    else bars in a terminal or a notebook and quiet under CI or when piped.
    """
    if progress is None:
        env = os.environ.get("LTKD_PROGRESS")
        if env is not None:
            env = env.strip().lower()
            if env == "log":
                return "log"
            return None if env in ("0", "false", "no", "off", "") else "bar"
        if os.environ.get("CI"):
            return None
        if "ipykernel" in sys.modules:
            return "bar"
        return "bar" if sys.stderr.isatty() else None
    if isinstance(progress, str):
        if progress not in ("log", "bar"):
            raise LtkdError(f"progress must be True, False, 'bar' or 'log', got {progress!r}")
        return progress
    return "bar" if progress else None


def progress_enabled() -> bool:
    """Bars or epoch lines (:func:`progress_mode`) are on."""
    return progress_mode() is not None


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class _EpochLines:
    """``LTKD_PROGRESS=log``: one flushed line per epoch on stderr: that epoch's time, and the time left at
    the median of the last 10 epochs (an epoch slowed or paused by other work on the machine does not
    inflate the estimate, as a running mean would for the rest of a long run)."""

    def __init__(self, total: int, desc: str, initial: int = 0):
        self.total, self.desc, self.n, self.postfix = total, desc, initial, {}
        self.t, self.recent = time.perf_counter(), []
        if initial:
            print(f"{desc}: resuming at epoch {initial + 1}/{total}", file=sys.stderr, flush=True)

    def set_postfix(self, **kw) -> None:
        self.postfix = kw

    def update(self, k: int = 1) -> None:
        now = time.perf_counter()
        per, self.t = (now - self.t) / k, now
        self.n += k
        self.recent = (self.recent + [per] * k)[-10:]
        typical = sorted(self.recent)[len(self.recent) // 2]  # the median (upper, for an even count)
        extra = "  ".join(f"{key} {val}" for key, val in self.postfix.items())
        print(f"{self.desc}: epoch {self.n}/{self.total}  {extra}  {per:.1f} s/epoch, "
              f"{_hms(typical * (self.total - self.n))} left", file=sys.stderr, flush=True)  # fmt: skip

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, mode: str | None, initial: int = 0):
    if mode == "log":
        return _EpochLines(total, desc, initial)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=mode is None, leave=True, dynamic_ncols=True, file=sys.stderr,
                unit="epoch", initial=initial)  # fmt: skip


# --------------------------------------------------------------------------------------
# Objectives
# --------------------------------------------------------------------------------------
class LossObjective(nn.Module):
    """``logits = model(x)``; loss = ``criterion(logits, y)``, with optional mixup.

    Mixup (Zhang et al. 2018): x̃ = λ x + (1 − λ) x[perm], λ ~ Beta(α, α); the loss mixes the
    criterion on both labels with the same λ, so any criterion (GCL, LDAM, …) works.
    """

    def __init__(self, criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], mixup: float = 0.0,
                 name: str = "ce"):  # fmt: skip
        super().__init__()
        self.criterion = criterion
        self.mixup = mixup
        self.name = name
        if isinstance(criterion, nn.Module):
            self.add_module("criterion_module", criterion)

    def on_epoch(self, epoch: int, epochs: int) -> None:
        if hasattr(self.criterion, "on_epoch"):
            self.criterion.on_epoch(epoch, epochs)

    def forward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        if self.training and self.mixup > 0:
            lam = float(np.random.beta(self.mixup, self.mixup))
            perm = torch.randperm(len(x), device=x.device)
            logits = model(lam * x + (1 - lam) * x[perm])
            loss = lam * self.criterion(logits, y) + (1 - lam) * self.criterion(logits, y[perm])
            return logits, {self.name: loss}
        logits = model(x)
        return logits, {self.name: self.criterion(logits, y)}


# --------------------------------------------------------------------------------------
# Schedules and checkpoints
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


def _atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def run_fingerprint(model: nn.Module, objective: nn.Module, data: ImageData, config: TrainConfig, *, seed: int,
                    trainable: str, bn: str, desc: str, identity: dict | None = None) -> dict:  # fmt: skip
    """What makes a training run this run, as simple values: a checkpoint records it, and ``fit``
    resumes only a checkpoint whose fingerprint matches (device, threads and memory format may differ)."""
    import dataclasses
    import hashlib
    import json

    shapes = repr(sorted((k, tuple(v.shape)) for k, v in model.state_dict().items()))
    labels = np.ascontiguousarray(torch.as_tensor(data.labels).cpu().numpy().astype(np.int64))
    fp = {
        "run": desc,
        "objective": type(objective).__qualname__,
        "model": f"{type(model).__name__} {hashlib.sha1(shapes.encode()).hexdigest()[:12]}",
        "data": f"{len(data)} images, {data.num_classes} classes, labels {hashlib.sha1(labels.tobytes()).hexdigest()[:12]}",
        "seed": int(seed),
        "trainable": trainable,
        "bn": bn,
        "config": json.loads(json.dumps(dataclasses.asdict(config))),
    }
    if identity:
        fp.update(json.loads(json.dumps(identity, default=str)))
    return fp


def module_digest(module: nn.Module) -> str:
    """``"ClassName sha1"`` of a module's state (every parameter and buffer, names, shapes and values): the same
    weights on any device give the same digest. Identifies a teacher in a student's checkpoint fingerprint."""
    import hashlib

    h = hashlib.sha1()
    for k, v in sorted(module.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k} {tuple(t.shape)} {t.dtype}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return f"{type(module).__name__} {h.hexdigest()[:12]}"


def _fingerprint_mismatch(saved: dict | None, now: dict) -> list[str]:
    """The fields in which a checkpoint's run differs from this one (none for a checkpoint without a fingerprint,
    written before ltkd recorded them)."""
    if not saved:
        return []
    out = []
    for k in sorted(set(saved) | set(now)):
        a, b = saved.get(k), now.get(k)
        if k == "config" and isinstance(a, dict) and isinstance(b, dict):
            out += [f"config.{f}: {a.get(f)!r} in the checkpoint, {b.get(f)!r} now"
                    for f in sorted(set(a) | set(b)) if a.get(f) != b.get(f)]  # fmt: skip
        elif a != b:
            out.append(f"{k}: {a!r} in the checkpoint, {b!r} now")
    return out


def _numpy_rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
            "cached": float(cached)}  # fmt: skip


def _set_numpy_rng_state(st: dict) -> None:
    np.random.set_state(("MT19937", st["keys"].numpy().astype(np.uint32), st["pos"], st["has_gauss"], st["cached"]))


def _safe_load(p: Path, map_location="cpu"):
    """``torch.load(p, weights_only=True)`` with every failure one line naming the file: an empty or truncated
    file, not a PyTorch file, or one holding pickled Python objects (refused, never loaded unsafely)."""
    import pickle

    if p.stat().st_size == 0:
        raise LtkdError(f"cannot read {p}: the file is empty")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:  # PyTorch's message advises weights_only=False: not passed on
        if "global" in str(e).lower():  # "Unsupported global: GLOBAL module.name": an object to be constructed
            raise LtkdError(f"refused {p}: it holds pickled Python objects, not only tensors, and ltkd loads "
                            "weights only") from e  # fmt: skip
        raise LtkdError(f"cannot read {p}: not a PyTorch weights file, or a damaged one (UnpicklingError)") from e
    except Exception as e:  # a damaged zip, a truncated file, ...: any failure is this file's fault
        raise LtkdError(f"cannot read {p}: {type(e).__name__}: {first_line(e)}") from e


def save_model(model: nn.Module, path: str | os.PathLike, **meta) -> None:
    """Save a state dict plus the facts needed to rebuild the model (name, classes, channels, head)."""
    _atomic_save({"state_dict": model.state_dict(), **meta}, Path(path))


def load_model_state(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`save_model` safely (``weights_only=True``)."""
    p = Path(path)
    if not p.is_file():
        raise LtkdError(f"checkpoint {p} not found")
    ck = _safe_load(p, map_location)
    if not isinstance(ck, dict) or "state_dict" not in ck:
        raise LtkdError(f"{p} is not an ltkd checkpoint (no state_dict); save one with ltkd train")
    return ck


# --------------------------------------------------------------------------------------
# The fast path: memory format, compilation, distributed step
# --------------------------------------------------------------------------------------
def _env_flag(name: str, default: bool) -> bool:
    v = os.environ.get(name)
    if v is None or v.strip() == "":
        return default
    return v.strip().lower() not in ("0", "false", "no", "off")


def use_channels_last(device: torch.device, channels_last: bool | None = None) -> bool:
    """Channels-last (NHWC) memory format: on by default, on CUDA (tensor cores want it) and on CPU,
    where ``benchmarks/throughput.py --ab`` on 2 quiet cores measured 1.28× for cnn6, 1.20× for
    ResNet-32, 2.28× for the TissueNet-style ResNet (grouped convolutions) and 1.15× for the
    binary-stacked net (``benchmarks/results/fastpath_ab_cpu_quiet.json``). Off on other devices
    (MPS), where it was not measured. ``$LTKD_CHANNELS_LAST`` (0/1) overrides the default; an
    explicit argument overrides both."""
    if channels_last is not None:
        return bool(channels_last)
    return _env_flag("LTKD_CHANNELS_LAST", device.type in ("cpu", "cuda"))


def compile_mode(compile: bool | str | None = None) -> str | None:
    """``torch.compile`` switch: ``None`` reads ``$LTKD_COMPILE`` (default ``0``: off, everywhere).

    ``1``/``True`` → the default mode; a mode name (``reduce-overhead`` = CUDA graphs,
    ``max-autotune``) → that mode; ``0``/``False`` → off. Returns the mode or ``None`` (off).
    """
    if compile is None:
        compile = os.environ.get("LTKD_COMPILE", "0")
    if isinstance(compile, bool):
        return "default" if compile else None
    c = str(compile).strip().lower()
    if c in ("", "0", "false", "no", "off"):
        return None
    if c in ("1", "true", "yes", "on", "default"):
        return "default"
    if c in ("reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"):
        return c
    raise LtkdError(f"LTKD_COMPILE/compile={compile!r}: use 0, 1, reduce-overhead or max-autotune")


def _compiled(model: nn.Module, mode: str | None) -> nn.Module:
    """The model with its ``forward`` compiled (attributes such as ``.head``/``.embed`` pass through
    to the original; state dicts are the original's). Backend from ``$LTKD_COMPILE_BACKEND``."""
    if mode is None:
        return model
    backend = os.environ.get("LTKD_COMPILE_BACKEND", "inductor")
    return torch.compile(model, mode=None if mode == "default" else mode, backend=backend)


class _Step(nn.Module):
    """model + objective as one module, so DistributedDataParallel sees every parameter the step uses."""

    def __init__(self, model: nn.Module, objective: nn.Module, run_model: nn.Module, wants_index: bool):
        super().__init__()
        self.model, self.objective = model, objective
        self._run = [run_model]  # compiled view of model (not registered twice)
        self.wants_index = wants_index

    def forward(self, x, y, idx):
        m = self._run[0]
        return self.objective(m, x, y, idx) if self.wants_index else self.objective(m, x, y)


# --------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------
def fit(
    model: nn.Module,
    objective: nn.Module,
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
) -> list[dict]:
    """Train ``model`` under ``objective`` on ``data``; return one log dict per epoch.

    * ``sampler``: a :class:`~ltkd.data.ClassSampler` or one of ``instance``,
      ``class-balanced``, ``sqrt`` (default instance).
    * ``trainable="head"`` freezes everything but ``model.head`` (cRT's stage 2); then
      ``bn="frozen"`` (the default for head-only) keeps backbone BatchNorm statistics fixed and
      ``bn="train"`` lets them keep updating (as H2T's published stage 2 does).
    * ``checkpoint``: a file written atomically after every epoch; if it exists when ``fit``
      starts, training resumes from it (model, optimiser, schedule, and every random stream: the
      batch order, augmentation, NumPy's (mixup λ), torch's CPU and CUDA generators, and an
      objective's own through its ``rng_state`` / ``set_rng_state``). The checkpoint records the
      run's fingerprint (:func:`run_fingerprint`: ``desc``, objective, model, data, seed, config, and
      ``identity``, e.g. the method's options); a checkpoint of a different run raises
      :class:`~ltkd.errors.LtkdError` instead of being resumed.
    * ``progress``: a bar, one line per epoch (``"log"``) or nothing; ``None`` asks
      ``$LTKD_PROGRESS`` and the terminal (:func:`progress_mode`).
    * Mixed precision (bf16 autocast) on CUDA. Losses are summed on the device and read once
      per epoch, so there is no host synchronisation per step.
    * Fast path: ``channels_last`` (``None``: on for CPU and CUDA; ``$LTKD_CHANNELS_LAST=0``
      turns it off), ``compile`` (``None``: ``$LTKD_COMPILE``, default off; see :func:`compile_mode`),
      cuDNN autotuning and a fused SGD step on CUDA.
    * Under ``torchrun`` (``WORLD_SIZE`` > 1) the step runs in DistributedDataParallel: each rank
      trains on a disjoint shard of every epoch's indices with batch ``batch_size / WORLD_SIZE``;
      the logged metrics are summed over ranks; rank 0 writes checkpoints; at each epoch's end every
      rank takes rank 0's BatchNorm statistics, so all ranks hold one model (:mod:`ltkd.distributed`).
    """
    if config.epochs <= 0:
        raise LtkdError(f"epochs must be positive, got {config.epochs}")
    if trainable not in ("all", "head"):
        raise LtkdError(f"trainable must be 'all' or 'head', got {trainable!r}")
    if bn is None:
        bn = "frozen" if trainable == "head" else "train"
    if bn not in ("train", "frozen"):
        raise LtkdError(f"bn must be 'train' or 'frozen', got {bn!r}")
    dev = get_device(device) if not isinstance(device, torch.device) else device
    from . import distributed as D

    D.init_from_env()
    world, rank = D.world_size(), D.rank()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    if sampler is None or isinstance(sampler, str):
        sampler = ClassSampler.of(sampler or "instance", data.labels, data.num_classes)
    batch_size = config.batch_size
    if world > 1:
        if batch_size % world:
            raise LtkdError(f"batch size {batch_size} does not split over {world} processes; use a multiple")
        batch_size //= world
        sampler = D.ShardedSampler(sampler, rank, world)
    channels_last = use_channels_last(dev, channels_last)
    loader = TensorLoader(data, batch_size, sampler, train=augment, device=dev, generator=gen,
                          channels_last=channels_last)  # fmt: skip
    if rank > 0:  # same batch order on every rank, but each rank its own crops and flips
        loader.aug_generator.manual_seed(loader.aug_generator.initial_seed() + 7919 * rank)
    model.to(dev)
    objective.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if hasattr(objective, "mixup") and config.mixup:
        objective.mixup = config.mixup

    head_ids = {id(p) for p in model.head.parameters()}
    saved_flags = {p: p.requires_grad for p in model.parameters()}
    if trainable == "head":
        for p in model.parameters():
            p.requires_grad_(id(p) in head_ids)
    params = [p for p in model.parameters() if p.requires_grad]
    fused = {"fused": True} if dev.type == "cuda" else {}
    opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                          nesterov=config.nesterov, **fused)  # fmt: skip
    sched = _scheduler(opt, config, len(loader))
    history: list[dict] = []
    start = 0
    ck_path = Path(checkpoint) if checkpoint else None
    fingerprint = run_fingerprint(model, objective, data, config, seed=seed, trainable=trainable, bn=bn, desc=desc,
                                  identity=identity) if ck_path is not None else None  # fmt: skip
    if ck_path is not None and ck_path.is_file():
        try:
            ck = torch.load(ck_path, map_location=dev, weights_only=True)
        except Exception as e:
            raise LtkdError(f"cannot read checkpoint {ck_path} ({type(e).__name__}: {e}); delete it to start afresh") from e
        differs = _fingerprint_mismatch(ck.get("fingerprint"), fingerprint)
        if differs:
            raise LtkdError(
                f"checkpoint {ck_path} was written by a different run, so it is not resumed:\n  "
                + "\n  ".join(differs)
                + "\ndelete it (or the run's checkpoints folder) to start this run afresh, or write to another output folder"
            )
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        gen.set_state(ck["generator"])
        if rank == 0:  # the checkpoint holds rank 0's augmentation stream; other ranks keep their own seed
            loader.aug_generator.set_state(ck["aug_generator"].to(loader.aug_generator.get_state().device))
        torch.set_rng_state(ck["torch_rng"])
        if "numpy_rng" in ck:  # checkpoints written before these were saved resume with fresh streams
            _set_numpy_rng_state(ck["numpy_rng"])
        if ck.get("cuda_rng") is not None and dev.type == "cuda":
            torch.cuda.set_rng_state(ck["cuda_rng"].cpu(), dev)
        if ck.get("objective_rng") is not None and hasattr(objective, "set_rng_state"):
            objective.set_rng_state(ck["objective_rng"])
        history = list(ck.get("history_rows", []))
        start = int(ck["epoch"])
    resumed = start > 0  # the first epoch this call runs is marked, so a run's metrics say where it resumed

    run_model = _compiled(model, compile_mode(compile))
    ddp = None
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(
            _Step(model, objective, run_model, getattr(objective, "wants_index", False)),
            device_ids=[torch.cuda.current_device()] if dev.type == "cuda" else None,
            find_unused_parameters=_env_flag("LTKD_DDP_FIND_UNUSED", False),
        )
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else nullcontext()
    bar = _progress(config.epochs, desc, progress_mode(progress) if rank == 0 else None, initial=start)
    try:
        for epoch in range(start, config.epochs):
            t0 = time.perf_counter()
            if ddp is not None:
                ddp.train()
            model.train()
            objective.train()
            if trainable == "head" and bn != "train":
                for name, m in model.named_modules():
                    if m is not model and not name.startswith("head"):
                        m.eval()
            if hasattr(objective, "on_epoch"):
                objective.on_epoch(epoch, config.epochs)
            sums: dict[str, torch.Tensor] = {}
            correct = torch.zeros((), device=dev)
            seen = 0
            wants_index = getattr(objective, "wants_index", False)  # e.g. KD data selection: per-sample masks
            for x, y, idx in loader:
                with amp:
                    if ddp is not None:
                        logits, losses = ddp(x, y, idx)
                    else:
                        logits, losses = objective(run_model, x, y, idx) if wants_index else objective(run_model, x, y)
                    loss = sum(losses.values())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0) + v.detach().float() * len(y)
                correct += (logits.detach().argmax(1) == y).sum()
                seen += len(y)
            if world > 1:  # one all-reduce per epoch: losses, correct, seen summed over ranks
                keys = list(sums)
                vec = torch.stack([sums[k] for k in keys] + [correct.float(), torch.tensor(float(seen), device=dev)])
                D.all_reduce_sum(vec)
                sums = dict(zip(keys, vec[: len(keys)]))
                correct, seen = vec[-2], int(vec[-1].item())
            row = {k: float(v) / seen for k, v in sums.items()}
            row["loss"] = sum(row.values())
            if not math.isfinite(row["loss"]):
                raise LtkdError(
                    f"training diverged at epoch {epoch + 1} (loss {row['loss']}); lower the learning rate"
                )
            row.update(epoch=epoch + 1, train_acc=float(correct) / seen, lr=opt.param_groups[0]["lr"],
                       seconds=time.perf_counter() - t0)  # fmt: skip
            if resumed:
                row["resumed"], resumed = True, False
            if world > 1:  # every rank takes rank 0's running statistics: the model it saves and evaluates
                D.broadcast_buffers(model)
            history.append(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['train_acc']:.3f}")
            bar.update(1)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, row)
            if ck_path is not None and rank == 0:
                _atomic_save(
                    {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "generator": gen.get_state(), "aug_generator": loader.aug_generator.get_state().cpu(),
                     "torch_rng": torch.get_rng_state(), "numpy_rng": _numpy_rng_state(),
                     "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
                     "objective_rng": objective.rng_state() if hasattr(objective, "rng_state") else None,
                     "fingerprint": fingerprint, "epoch": epoch + 1, "history_rows": history},
                    ck_path,
                )  # fmt: skip
    finally:
        bar.close()
        for p, flag in saved_flags.items():
            p.requires_grad_(flag)
    model.eval()
    return history


@torch.no_grad()
def _batches(fn, model: nn.Module, data: ImageData, device=None, batch_size: int | None = None,
             distributed: bool = False) -> torch.Tensor:  # fmt: skip
    from . import distributed as D

    dev = get_device(device) if not isinstance(device, torch.device) else device
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
