"""One experiment end to end: data → long tail → model → the method's stages → metrics.json.

``ltkd train`` is a thin wrapper around :func:`run`; notebooks call it too when they want a
whole method in one line, and :func:`run_stages` when they already hold a stage-1 model.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import numbers
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import (
    claim_checkpoints,
    data_digest,
    load_model_state,
    module_digest,
    remove_checkpoints,
    save_model,
    write_json,
)
from .checks import check_arguments, check_seed
from .data import ImageData, check_splits, imbalance_of, load, training_split
from .device import get_device
from .distributed import is_main
from .errors import LtkdError, first_line
from .methods import METHODS, Context, Recipe, check_options, get_method, stage_config, stage_head, unread_options
from .methods.distill import check_teacher_data, load_teacher, refuse_teacher_inside, training_error
from .metrics import accuracy_report, count_flops, count_params
from .models import MODELS, build_model, set_head
from .outfolder import check_output_folder, locked, refuse_finished_run
from .profiles import Profile, get_profile
from .train import fit, predict

__all__ = ["run", "run_stages", "distill", "train_teacher", "prepare_data", "evaluate", "best_evaluated",
           "environment", "check_output_folder", "check_seed", "check_arguments", "checkpoint_names"]


def checkpoint_names(recipe: Recipe) -> list[str]:
    """The checkpoint files a run of ``recipe`` owns in ``OUT/checkpoints``: ``STAGE.ckpt`` per stage. It writes,
    resumes and at its end deletes these and no others."""
    return [f"{stage.name}.ckpt" for stage in recipe.stages]


def prepare_data(dataset: str = "digits", imbalance: float | None = None, lt_profile: str = "exp",
                 n_max: int | None = None, image_size: int | None = None,
                 default_imbalance: float = 100) -> tuple[ImageData, ImageData]:  # fmt: skip
    """(long-tailed train, balanced test) for a source. Data subsampling uses seed 0, the
    CIFAR-LT benchmark's fixed draw, so every training seed sees the same images. Without ``imbalance`` a named
    set gets ``default_imbalance`` and a PATH every image as given (:func:`ltkd.data.training_split`, which
    prints a line saying so); ``image_size`` resizes a PATH's images."""
    if imbalance is not None and (isinstance(imbalance, bool) or not isinstance(imbalance, numbers.Real)
                                  or not imbalance >= 1):  # fmt: skip
        raise LtkdError(f"imbalance factor must be a number ≥ 1, got {imbalance!r}")
    train, test = load(dataset, image_size=image_size)
    train, said = training_split(train, imbalance, lt_profile, n_max, default_imbalance)
    if said and is_main():
        print(said)
    return train, test


def run_stages(
    recipe: Recipe,
    model: nn.Module,
    train: ImageData,
    profile: Profile,
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    options: dict[str, Any] | None = None,
    skip: int = 0,
    progress: bool | str | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    test: ImageData | None = None,
    eval_every: int = 0,
    resume_unfingerprinted: bool = False,
) -> list[dict]:
    """Run ``recipe``'s stages (from index ``skip``) on ``model``; return the per-epoch logs.

    With ``checkpoint_dir``, stage ``NAME`` keeps its checkpoint in ``NAME.ckpt`` there (see
    :func:`checkpoint_names`); a folder holding any other file is refused before anything trains
    (:func:`ltkd.checkpoint.claim_checkpoints`). ``resume_unfingerprinted``: see :func:`ltkd.train.fit`.

    With ``test`` and ``eval_every`` = N > 0, every N-th epoch of each stage (and its last) is also
    evaluated on ``test``: the epoch's log row gets ``test_acc``, ``test_head`` / ``test_middle`` /
    ``test_tail`` and ``test_seconds`` (the evaluation's time, not counted in ``seconds``). Evaluation
    draws no random numbers and updates no BatchNorm statistics, so the run trains exactly as without it.
    """
    dev = get_device(device)
    if eval_every and eval_every < 0:
        raise LtkdError(f"eval_every must be ≥ 0 (0 = off), got {eval_every}")
    if eval_every and test is None:
        raise LtkdError("eval_every needs the test set (test=...)")
    options = check_options(options, recipe.options)  # a recipe of your own declares the keys it reads in .options
    if checkpoint_dir:
        claim_checkpoints(checkpoint_dir, checkpoint_names(recipe), recipe.name)
    ctx = Context(train=train, profile=profile, device=dev, seed=seed, options=options)
    _refuse_unread(recipe, ctx, skip)
    logs: list[dict] = []
    for i, stage in enumerate(recipe.stages):
        if i < skip:
            continue
        cfg = stage_config(profile, stage, ctx)
        head = stage_head(stage, ctx)
        if head is not None:
            set_head(model, head)
        sampler = stage.sampler(ctx) if callable(stage.sampler) else stage.sampler
        objective = stage.objective(ctx)
        bn = stage.bn(ctx) if callable(stage.bn) else stage.bn
        ck = Path(checkpoint_dir) / checkpoint_names(recipe)[i] if checkpoint_dir else None
        hook = _test_hook(model, test, train.counts, dev, eval_every, cfg.epochs) if eval_every else None
        hist = fit(model, objective, train, cfg, sampler=sampler, trainable=stage.trainable, bn=bn,
                   device=dev, seed=seed + 1000 * i, progress=progress, desc=f"{recipe.name}:{stage.name}",
                   checkpoint=ck, on_epoch_end=hook, identity=_identity(ctx.options, eval_every),
                   resume_unfingerprinted=resume_unfingerprinted)  # fmt: skip
        logs += [{"stage": stage.name, **row} for row in hist]
    return logs


def _refuse_unread(recipe: Recipe, ctx: Context, skip: int = 0) -> None:
    """An option given that no stage of ``recipe`` reads (:func:`ltkd.methods.unread_options`) is an error."""
    unread = unread_options(recipe, ctx, skip)
    if unread:
        raise LtkdError(f"{recipe.name} does not read the option{'s' if len(unread) > 1 else ''} {', '.join(unread)} "
                        "(it would be recorded but change nothing); drop it, or choose the method that reads it "
                        "(`ltkd methods`)")  # fmt: skip


def _identity(options: dict, eval_every: int = 0) -> dict:
    """The method options that identify a run in its checkpoints' fingerprint: simple values as they are, a model
    (a distillation teacher) by the digest of its weights — a student is never resumed under another teacher —
    and ``eval_every`` where it is on: a run resumed with it added or changed would report a partial curve."""
    simple = (bool, int, float, str)
    out: dict[str, Any] = {}
    for k, v in sorted(options.items()):
        if isinstance(v, simple) or v is None:
            out[k] = v
        elif isinstance(v, nn.Module):
            out[k] = module_digest(v)
    return {"options": out, **({"eval_every": eval_every} if eval_every else {})}


def _test_hook(model: nn.Module, test: ImageData, train_counts, device, every: int, epochs: int):
    """``fit``'s end-of-epoch callback: on every ``every``-th epoch and the last, test accuracy into the log row
    (the row is the one the checkpoint saves, so the curve survives a resume)."""

    def hook(epoch: int, row: dict) -> None:
        if epoch % every and epoch != epochs:
            return
        t0 = time.perf_counter()
        rep = evaluate(model, test, train_counts, device, distributed=True)
        row.update(test_acc=rep["overall"], test_head=rep["head"], test_middle=rep["middle"], test_tail=rep["tail"],
                   test_seconds=round(time.perf_counter() - t0, 3))  # fmt: skip

    return hook


def best_evaluated(logs: list[dict]) -> dict | None:
    """The evaluated epoch with the highest test accuracy (the first, on a tie), or ``None`` if none was evaluated.

    This is model selection on the test set — what the published CIFAR-LT numbers report — so it is
    kept apart from the last epoch's accuracy, which is the book's headline number.
    """
    rows = [r for r in logs if r.get("test_acc") is not None]
    if not rows:
        return None
    b = max(rows, key=lambda r: r["test_acc"])  # max keeps the first of equal values
    return {"stage": b.get("stage"), "epoch": b["epoch"], "overall": b["test_acc"], "head": b.get("test_head"),
            "middle": b.get("test_middle"), "tail": b.get("test_tail"), "evaluated_epochs": len(rows)}  # fmt: skip


def evaluate(model: nn.Module, test: ImageData, train_counts, device=None, distributed: bool = False) -> dict:
    """Accuracy report of ``model`` on ``test`` with groups from ``train_counts``.
    ``distributed=True`` under ``torchrun``: the ranks share the test set (see :func:`ltkd.train.predict`)."""
    logits = predict(model, test, device, distributed=distributed)
    return accuracy_report(logits, test.labels, train_counts)


def cpu_name() -> str:
    """The processor's model name (Linux ``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                name = line.split(":", 1)[1].strip()
                if name:
                    return f"{name} ({platform.machine()})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict:
    env = {"torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform()}
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
    else:
        env["device_name"] = cpu_name()
        env["threads"] = torch.get_num_threads()
    return env


def _stage_summary(recipe: Recipe, prof: Profile, ctx: Context) -> dict[str, dict]:
    """The metrics' ``stage_epochs`` and ``stage_configs``: each stage's config as it trained (method adjustments in)."""
    cfgs = {s.name: stage_config(prof, s, ctx) for s in recipe.stages}
    return {"stage_epochs": {k: c.epochs for k, c in cfgs.items()},
            "stage_configs": {k: dataclasses.asdict(c) for k, c in cfgs.items()}}


def run(
    method: str = "ce",
    dataset: str = "digits",
    imbalance: float | None = None,
    model: str | None = None,
    epochs: int | None = None,
    seed: int = 0,
    profile: str | Profile | None = None,
    out: str | os.PathLike | None = None,
    device: str | None = None,
    options: dict[str, Any] | None = None,
    progress: bool | str | None = None,
    lt_profile: str = "exp",
    data: tuple[ImageData, ImageData] | None = None,
    stage1_state: dict | None = None,
    eval_every: int = 0,
    extra: dict[str, Any] | None = None,
    resume_unfingerprinted: bool = False,
    image_size: int | None = None,
    overwrite: bool = False,
) -> tuple[dict, nn.Module]:
    """Train ``method`` on ``dataset``-LT (``imbalance``: 100 for a named set and a PATH's every image unless
    given; the metrics record the IF the kept counts have; ``image_size``: a PATH's images resized to N×N) and
    return ``(metrics, model)``. With ``out``, writes ``out/metrics.json`` and ``out/model.pt`` (and per-stage
    checkpoints while training, so an interrupted run resumes where it stopped). ``stage1_state`` (a state dict
    of a finished stage 1 of the same model) skips stage 1 — e.g. cRT on the CE model a notebook already trained.
    ``eval_every`` = N > 0 evaluates the test set every N epochs of each stage (and at its last) into the
    per-epoch log, and adds ``best_evaluated`` (see :func:`run_stages`); the headline numbers stay the last epoch's.
    ``extra``: more entries for the metrics (:func:`distill`'s ``teacher``).
    The run owns (and deletes) only the checkpoints its recipe names (:func:`checkpoint_names`); see :func:`fit`.
    An ``out`` holding another finished run (``model.pt``, ``metrics.json``) is refused unless ``overwrite``; it is
    locked while the run lasts (:func:`ltkd.outfolder.locked`: a second run into it fails at once).
    """
    t0 = time.perf_counter()
    recipe = get_method(method)
    if model is not None and model not in MODELS:
        raise LtkdError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    check_arguments(epochs=epochs, imbalance=imbalance, eval_every=eval_every, device=device,
                    stage1_state=stage1_state, overwrite=overwrite)  # fmt: skip
    options, outdir = _check_run(recipe, seed, options, out, overwrite)  # before any data are read or trained on
    device = get_device(device)  # (a device that is not here: before OUT is made)
    with locked(outdir) if outdir and is_main() else contextlib.nullcontext():
        return _run(recipe, dataset, imbalance, model, epochs, seed, profile, outdir, device, options, progress,
                    lt_profile, data, stage1_state, eval_every, extra, resume_unfingerprinted, t0,
                    image_size)  # fmt: skip


def _run(recipe: Recipe, dataset, imbalance, model, epochs, seed, profile, outdir, device, options, progress,
         lt_profile, data, stage1_state, eval_every, extra, resume_unfingerprinted, t0,
         image_size=None) -> tuple[dict, nn.Module]:  # fmt: skip
    """:func:`run` after its checks, with its output folder locked."""
    method = recipe.name
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    train, test = _check_splits(*(data or prepare_data(dataset, imbalance, lt_profile, image_size=image_size)))
    prof = prof.for_dataset(train.name).with_epochs(epochs) if epochs is not None else prof.for_dataset(train.name)
    dev = get_device(device)
    model_name = model or prof.model
    torch.manual_seed(seed)
    net = build_model(model_name, train.num_classes, train.in_channels, head=recipe.head)
    if stage1_state is not None:
        try:
            net.load_state_dict(stage1_state)
        except RuntimeError as e:
            raise LtkdError(f"stage1_state does not fit {model_name}: {first_line(e)}") from e
    skip = 0 if stage1_state is None else 1
    logs = run_stages(recipe, net, train, prof, seed=seed, device=dev, options=options, skip=skip,
                      progress=progress, checkpoint_dir=outdir / "checkpoints" if outdir else None,
                      test=test, eval_every=eval_every, resume_unfingerprinted=resume_unfingerprinted)  # fmt: skip
    report = evaluate(net, test, train.counts, dev, distributed=True)  # under torchrun: shared by the ranks
    ctx = Context(train=train, profile=prof, device=dev, seed=seed, options=dict(options or {}))
    metrics = {
        **report,
        "train_counts": [int(c) for c in train.counts],
        "dataset": train.name,
        "data_digest": data_digest(train),  # every pixel and label: a teacher is reused or loaded only on these data
        "imbalance": imbalance_of(train.counts),  # what the counts have, not what was asked
        "lt_profile": train.meta.get("lt_profile", lt_profile),
        "method": method,
        "model": model_name,
        "seed": seed,
        "profile": prof.name,
        "epochs": prof.stage1.epochs,
        **_stage_summary(recipe, prof, ctx),
        "params": count_params(net),
        "flops": count_flops(net, tuple(train.images.shape[1:])),
        "flops_convention": "one multiply-add = 2 FLOPs, one image, forward pass",
        "device": str(dev),
        "environment": environment(dev),
        "options": {k: v for k, v in (options or {}).items() if isinstance(v, (int, float, str, bool))},
        "seconds": round(time.perf_counter() - t0, 2),  # this call's wall time (a resumed run: since the resume)
        "train_seconds": round(sum(r.get("seconds", 0.0) for r in logs), 2),  # all epochs, across resumes
        "resumed_at": [f"{r['stage']} epoch {r['epoch'] - 1}" for r in logs if r.get("resumed")],
        "eval_every": eval_every,
        "best_evaluated": best_evaluated(logs),  # test-set selection, as published numbers; None if not evaluated
        "history": logs,
        **(extra or {}),
    }
    if outdir and is_main():  # under torchrun only rank 0 writes (every rank holds the same model)
        _write_run(outdir, net, metrics, train, checkpoint_names(recipe))
    return metrics, net


def _check_run(recipe: Recipe, seed: int, options: dict | None, out, overwrite: bool) -> tuple[dict, Path | None]:
    """:func:`run`'s arguments checked before any data are read: the seed, the options, the output folder (no
    other finished run in it unless ``overwrite``, and its checkpoints folder holding nothing but this recipe's
    checkpoints). Returns (options, output folder)."""
    check_seed(seed)
    if options is not None and not isinstance(options, dict):
        raise LtkdError(f"options must be a dict of option names to values, got {type(options).__name__} {options!r}")
    options = check_options(options, recipe.options)
    outdir = check_output_folder(out) if out is not None else None
    if outdir:
        refuse_finished_run(outdir, overwrite)
        claim_checkpoints(outdir / "checkpoints", checkpoint_names(recipe), recipe.name)
    return options, outdir


def _check_splits(train: ImageData, test: ImageData) -> tuple[ImageData, ImageData]:
    for split, d in (("training", train), ("test", test)):
        if len(d) == 0:
            raise LtkdError(f"the {split} split of {d.name} has no images; nothing to "
                            f"{'train on' if split == 'training' else 'test on'}")  # fmt: skip
    return check_splits(train, test)


def _write_run(outdir: Path, net: nn.Module, metrics: dict, train: ImageData, owned: list[str]) -> None:
    """``model.pt`` (with what rebuilds it) and ``metrics.json``; the finished run's checkpoints (``owned``) go,
    and no other file."""
    save_model(net, outdir / "model.pt", arch=metrics["model"], num_classes=train.num_classes,
               in_channels=train.in_channels, head=type(net.head).__name__, method=metrics["method"],
               dataset=train.name, image_size=[int(v) for v in train.images.shape[2:]],
               data_digest=metrics["data_digest"])  # fmt: skip
    write_json(outdir / "metrics.json", metrics)
    remove_checkpoints(outdir / "checkpoints", owned)  # this run's; never another's


def clone_state(model: nn.Module) -> dict:
    """A detached copy of a model's state dict (to reuse a stage-1 model for several stage 2s)."""
    return copy.deepcopy(model.state_dict())


# --------------------------------------------------------------------------------------
# Distillation: a teacher (loaded, trained here, or reused), then a student under a teacher recipe
# --------------------------------------------------------------------------------------
def train_teacher(model: str, data, profile=None, epochs: int | None = None, seed: int = 0, method: str = "ce",
                  device=None, out=None, progress: bool | str | None = None, resume_unfingerprinted: bool = False,
                  overwrite: bool = False) -> tuple[nn.Module, dict]:  # fmt: skip
    """Train a teacher with ``method`` (default CE) on ``data`` = (train, test); return (model, metrics)."""
    metrics, net = run(method=method, dataset=data[0].name, imbalance=data[0].meta.get("imbalance", 1), model=model,
                       epochs=epochs, seed=seed, profile=profile, out=out, device=device, data=data,
                       progress=progress, resume_unfingerprinted=resume_unfingerprinted, overwrite=overwrite)  # fmt: skip
    return net.eval(), metrics


def teacher_methods() -> list[str]:
    """The recipes that distil a teacher (``Recipe.teacher``): what :func:`distill` runs."""
    return [name for name, r in METHODS.items() if r.teacher]


def distill(
    method: str = "kd",
    teacher: str | os.PathLike = "cnn6",
    student: str | None = None,
    dataset: str = "digits",
    imbalance: float | None = None,
    lt_profile: str = "exp",
    epochs: int | None = None,
    teacher_epochs: int | None = None,
    seed: int = 0,
    profile: str | Profile | None = None,
    out: str | os.PathLike = "runs/distill",
    device: str | None = None,
    options: dict[str, Any] | None = None,
    eval_every: int = 0,
    progress: bool | str | None = None,
    resume_unfingerprinted: bool = False,
    image_size: int | None = None,
    overwrite: bool = False,
) -> tuple[dict, nn.Module]:
    """``ltkd distill``: a teacher, then a student trained under the teacher recipe ``method``; ``(metrics, student)``.

    ``teacher``: an ``ltkd`` checkpoint file, or a model name trained here with CE (into ``out/teacher``; a teacher
    an earlier call finished there with the same settings is reused) for ``teacher_epochs`` (default: the profile's
    ``teacher_epoch_factor`` × its stage-1 epochs where it has one — quick: 2.5, i.e. 15 on Fashion-MNIST — else
    the profile's epochs). ``imbalance``: as :func:`run`'s, but a named set's default is 1 (balanced). ``student``: a model name (default: the
    profile's ``extra["student"]``, else ``cnn6x0.5``). ``out/metrics.json`` gets the teacher's report too.
    A teacher file must have been trained on these data (its recorded data set and data digest), and lie outside
    ``out``; ``out`` is refused if it holds another finished run, unless ``overwrite`` (:func:`run`)."""
    if method not in teacher_methods():
        raise LtkdError(f"unknown distillation method {method!r}; choose one of {', '.join(teacher_methods())}")
    if not isinstance(teacher, (str, os.PathLike)):
        raise LtkdError(f"teacher must be a model name or the path of a model file, got {type(teacher).__name__} "
                        f"{teacher!r}")  # fmt: skip
    check_arguments(epochs=epochs, imbalance=imbalance, eval_every=eval_every, device=device, overwrite=overwrite,
                    teacher_epochs=teacher_epochs)  # fmt: skip
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    student = student or prof.extra.get("student", "cnn6x0.5")
    if student not in MODELS:
        raise LtkdError(f"unknown student model {student!r}; choose one of {', '.join(MODELS)}")
    options, outdir = _check_run(get_method(method), seed, options, out, overwrite)  # before a teacher trains
    refuse_teacher_inside(teacher, outdir)
    dev = get_device(device)
    with locked(outdir) if is_main() else contextlib.nullcontext():
        t0 = time.perf_counter()
        train, test = prepare_data(dataset, imbalance, lt_profile, image_size=image_size, default_imbalance=1.0)
        with torch.random.fork_rng(devices=[]):  # the options checked before a teacher trains, with a stand-in
            stand_in = build_model(student, train.num_classes, train.in_channels)
        _refuse_unread(get_method(method), Context(train=train, profile=prof.for_dataset(train.name), device=dev,
                                                   seed=seed, options={"teacher": stand_in, **options}))  # fmt: skip
        if teacher_epochs is None:  # quick: a teacher trained to convergence (Profile.teacher_epochs)
            teacher_epochs = prof.teacher_epochs(train.name)
        net, arch, source = _teacher_for(teacher, (train, test), prof, teacher_epochs, seed, dev, outdir / "teacher",
                                         resume_unfingerprinted, overwrite)  # fmt: skip
        report = {"model": arch, "epochs": teacher_epochs if not Path(teacher).is_file() else None,
                  **_teacher_report(net, train, test, dev, source, time.perf_counter() - t0)}  # fmt: skip
        return run(method=method, dataset=dataset, imbalance=imbalance, model=student, epochs=epochs, seed=seed,
                   profile=prof, out=out, device=device, options={"teacher": net, **options}, lt_profile=lt_profile,
                   data=(train, test), eval_every=eval_every, progress=progress, extra={"teacher": report},
                   resume_unfingerprinted=resume_unfingerprinted, overwrite=overwrite, image_size=image_size)  # fmt: skip


def _teacher_for(teacher: str | os.PathLike, data, prof: Profile, epochs: int | None, seed: int, dev, folder: Path,
                 resume_unfingerprinted: bool = False, overwrite: bool = False):  # fmt: skip
    """``(model, architecture, where it came from)`` for :func:`distill`'s ``teacher``."""
    train, test = data
    if Path(teacher).is_file():
        check_teacher_data(load_model_state(teacher), str(teacher), train)
        net = load_teacher(teacher, train.num_classes, train.in_channels, dev, train.images.shape[2:])
        return net, load_model_state(teacher).get("arch"), f"checkpoint {teacher}"
    if str(teacher) not in MODELS:
        raise LtkdError(f"--teacher {str(teacher)!r} is neither a checkpoint file nor a model name "
                        f"({', '.join(MODELS)})")  # fmt: skip
    net = _finished_teacher(folder, str(teacher), train, prof, epochs, seed, dev, overwrite)
    if net is not None:
        return net, str(teacher), (f"trained here by an earlier run of this command: ce, {teacher}, profile "
                                   f"{prof.name}, seed {seed} ({folder}/model.pt, reused)")  # fmt: skip
    net, _ = train_teacher(str(teacher), data, prof, epochs, seed, device=dev, out=folder,
                           resume_unfingerprinted=resume_unfingerprinted, overwrite=overwrite)  # fmt: skip
    return net, str(teacher), f"trained here: ce, {teacher}, profile {prof.name}, seed {seed} ({folder})"


def _teacher_report(teacher: nn.Module, train, test, dev, source: str, seconds: float) -> dict[str, Any]:
    rep = evaluate(teacher, test, train.counts, dev)
    return {
        **{k: rep[k] for k in ("overall", "balanced", "many", "medium", "few", "head", "middle", "tail", "per_class")},
        "train_error": training_error(teacher, train, dev),
        "params": count_params(teacher),
        "source": source,
        "seconds": round(seconds, 2),
    }


def _finished_teacher(folder: Path, model: str, train, profile, epochs: int | None, seed: int, device,
                      overwrite: bool = False):  # fmt: skip
    """The teacher an earlier ``ltkd distill --teacher MODEL --out OUT`` finished in ``OUT/teacher``, if it was
    trained exactly as this command would train it (CE, model, data set and data digest, profile, epochs, seed);
    ``None`` if there is none. One trained otherwise is an :class:`LtkdError` naming what differs, unless
    ``overwrite`` (then ``None``: it is trained again). A distillation interrupted while the student trained thus
    resumes the student under the same teacher instead of training the teacher again (on a GPU a second training
    would not even give the same weights)."""
    mfile, pt = folder / "metrics.json", folder / "model.pt"
    if not (mfile.is_file() or pt.is_file()):
        return None
    try:
        m = json.loads(mfile.read_text())
        m = m if isinstance(m, dict) else {}
    except (OSError, ValueError):
        m = {}
    prof = profile.for_dataset(train.name)
    prof = prof.with_epochs(epochs) if epochs is not None else prof
    want = {"method": "ce", "model": model, "dataset": train.name, "data_digest": data_digest(train), "seed": seed,
            "profile": prof.name, "train_counts": [int(c) for c in train.counts], "epochs": prof.stage1.epochs}  # fmt: skip
    differs = [] if m else ["its metrics.json is missing or unreadable"]
    differs += [] if not m else [f"{k} {m.get(k)!r} there, {v!r} now" for k, v in want.items() if m.get(k) != v and k != "train_counts"]
    differs += ["its model.pt is missing"] if not pt.is_file() else []
    differs += ["class counts"] if m.get("train_counts") != want["train_counts"] and m else []
    if not differs:
        return load_teacher(pt, train.num_classes, train.in_channels, device, train.images.shape[2:])
    if overwrite:
        return None
    raise LtkdError(f"{folder} holds a teacher trained otherwise than this command trains it ({'; '.join(differs)}); "
                    "pass --overwrite to train it again, or give another --out")  # fmt: skip
