"""Files that must be whole: the one atomic write, model files, and training checkpoints.

* :func:`atomic_write` (from :mod:`ltkd.files`) — every file ltkd writes that a crash must not leave half-written.
* :func:`save_model` / :func:`load_model_state` — a trained model and the facts to rebuild it.
* :func:`run_fingerprint` — what makes a training run this run; ``fit`` resumes only a checkpoint
  whose fingerprint matches (:func:`fingerprint_mismatch`).
* :func:`rng_state` / :func:`set_rng_state` — every random stream a resumed run must continue.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import nn

from .errors import LtkdError, first_line
from .files import atomic_write

if TYPE_CHECKING:  # types only: this module sits below profiles
    from .profiles import TrainConfig


class Labelled(Protocol):
    """What a fingerprint reads of a data set (an :class:`ltkd.data.ImageData`, which sits a layer above)."""

    images: torch.Tensor
    labels: torch.Tensor

    @property
    def num_classes(self) -> int: ...

    def __len__(self) -> int: ...

__all__ = ["atomic_write", "write_json", "json_safe", "safe_load", "save_model", "load_model_state", "run_fingerprint",
           "save_checkpoint", "state_digest",
           "data_digest", "module_digest", "fingerprint_mismatch", "read_checkpoint", "check_resumable",
           "claim_checkpoints", "remove_checkpoints", "rng_state", "set_rng_state"]  # fmt: skip


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, ±inf) replaced by ``None``: what strict JSON can hold."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """``obj`` as indented, strict JSON (no bare ``NaN``, which strict parsers refuse: :func:`json_safe` makes
    it ``null``), written atomically (:func:`atomic_write`)."""
    return atomic_write(path, json.dumps(json_safe(obj), indent=2, allow_nan=False))


def state_digest(obj: Any) -> str:
    """sha1 of a saved structure (dicts in order, lists, tensors' dtype, shape and bytes, plain values): written
    into every model file and checkpoint and checked when one is read, since ``torch.load`` does not check the
    zip's CRCs — a damaged byte in a tensor would otherwise load as another model."""
    h = hashlib.sha1()

    def walk(o: Any) -> None:
        if isinstance(o, torch.Tensor):
            t = o.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(o, dict):
            h.update(f"D{len(o)}".encode())
            for k, v in o.items():
                walk(k)
                walk(v)
        elif isinstance(o, (list, tuple)):
            h.update(f"L{len(o)}".encode())
            for v in o:
                walk(v)
        else:
            h.update(f"V{type(o).__name__}:{o!r}".encode())

    walk(obj)
    return h.hexdigest()


def _with_digest(state: dict) -> dict:
    return {**state, "digest": state_digest(state)}


def _check_digest(p: Path, ck: Any) -> None:
    """A file written with a digest must still match it (files from before digests were written carry none)."""
    if isinstance(ck, dict) and "digest" in ck:
        rest = {k: v for k, v in ck.items() if k != "digest"}
        if ck["digest"] != state_digest(rest):
            raise LtkdError(f"{p} is damaged: its contents do not match the checksum written with it; delete it "
                            "(or restore it from a copy)")  # fmt: skip


def save_model(model: nn.Module, path: str | os.PathLike, **meta) -> None:
    """Save a state dict plus the facts needed to rebuild the model (name, classes, channels, head), with a
    checksum (:func:`state_digest`) that :func:`load_model_state` checks."""
    state = _with_digest({"state_dict": model.state_dict(), **meta})
    atomic_write(path, lambda f: torch.save(state, f))


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write a training checkpoint atomically, with a checksum that :func:`read_checkpoint` checks."""
    state = _with_digest(state)
    atomic_write(path, lambda f: torch.save(state, f))


def safe_load(path: str | os.PathLike, map_location="cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with every failure one line naming the file: an empty or truncated
    file, not a PyTorch file, or one holding pickled Python objects (refused, never loaded unsafely)."""
    import pickle

    p = Path(path)
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


def load_model_state(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`save_model` safely (``weights_only=True``)."""
    p = Path(path)
    if not p.is_file():
        raise LtkdError(f"checkpoint {p} not found")
    ck = safe_load(p, map_location)
    _check_digest(p, ck)
    if not isinstance(ck, dict) or "state_dict" not in ck:
        raise LtkdError(f"{p} is not an ltkd checkpoint (no state_dict); save one with ltkd train")
    return ck


def run_fingerprint(model: nn.Module, objective: nn.Module, data: Labelled, config: TrainConfig, *, seed: int,
                    trainable: str, bn: str, desc: str, identity: dict | None = None) -> dict:  # fmt: skip
    """What makes a training run this run, as simple values: a checkpoint records it, and ``fit``
    resumes only a checkpoint whose fingerprint matches (device, threads and memory format may differ)."""
    shapes = repr(sorted((k, tuple(v.shape)) for k, v in model.state_dict().items()))
    labels = np.ascontiguousarray(torch.as_tensor(data.labels).cpu().numpy().astype(np.int64))
    cfg = json.loads(json.dumps(dataclasses.asdict(config)))
    if not cfg.get("option_defaults"):  # none: the fingerprint of a run before configs had them
        cfg.pop("option_defaults", None)
    fp = {
        "data_content": data_digest(data),
        "run": desc,
        "objective": type(objective).__qualname__,
        "model": f"{type(model).__name__} {hashlib.sha1(shapes.encode()).hexdigest()[:12]}",
        "data": f"{len(data)} images, {data.num_classes} classes, labels {hashlib.sha1(labels.tobytes()).hexdigest()[:12]}",
        "seed": int(seed),
        "trainable": trainable,
        "bn": bn,
        "config": cfg,
    }
    if identity:
        fp.update(json.loads(json.dumps(identity, default=str)))
    return fp


def data_digest(data: Labelled) -> str:
    """sha1 of a data set's content, every pixel and label (shapes and dtypes included): two image folders with the
    same labels but other images differ here, so a checkpoint is never resumed on other data. (0.07 s for
    Fashion-MNIST's 60,000 training images, measured on a shared 2-core machine.)"""
    h = hashlib.sha1()
    for t in (data.images, data.labels):
        a = np.ascontiguousarray(torch.as_tensor(t).detach().cpu().numpy())
        h.update(f"{a.shape} {a.dtype.str}\n".encode())
        h.update(a.reshape(-1).view(np.uint8).data)
    return h.hexdigest()[:16]


def module_digest(module: nn.Module) -> str:
    """``"ClassName sha1"`` of a module's state (every parameter and buffer, names, shapes and values): the same
    weights on any device give the same digest. Identifies a teacher in a student's checkpoint fingerprint."""
    h = hashlib.sha1()
    for k, v in sorted(module.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k} {tuple(t.shape)} {t.dtype}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return f"{type(module).__name__} {h.hexdigest()[:12]}"


def fingerprint_mismatch(saved: dict | None, now: dict, skip: tuple[str, ...] = ()) -> list[str]:
    """The fields in which a checkpoint's run differs from this one (none for a checkpoint without a fingerprint:
    :func:`check_resumable` decides about those), ``skip`` aside."""
    if not saved:
        return []
    out = []
    for k in sorted((set(saved) | set(now)) - set(skip)):
        a, b = saved.get(k), now.get(k)
        if k == "config" and isinstance(a, dict) and isinstance(b, dict):
            out += [f"config.{f}: {a.get(f)!r} in the checkpoint, {b.get(f)!r} now"
                    for f in sorted(set(a) | set(b)) if a.get(f) != b.get(f)]  # fmt: skip
        elif a != b:
            out.append(f"{k}: {a!r} in the checkpoint, {b!r} now")
    return out


# --------------------------------------------------------------------------------------
# Training checkpoints: read, checked, owned
# --------------------------------------------------------------------------------------
_CHECKPOINT_KEYS: dict[str, type | tuple[type, ...]] = {
    "model": dict, "optimizer": dict, "scheduler": dict, "generator": torch.Tensor, "aug_generator": torch.Tensor,
    "torch_rng": torch.Tensor, "epoch": int, "history_rows": list,
}  # fmt: skip


def read_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """A training checkpoint (what ``fit`` writes each epoch), loaded weights-only and checked for its parts before
    anything is taken from it: a model file, a metrics file or an empty file copied into its place is a one-line
    :class:`LtkdError` naming it, not a ``KeyError`` half-way through a resume."""
    p = Path(path)
    ck = safe_load(p, map_location)
    _check_digest(p, ck)
    if not isinstance(ck, dict):
        raise LtkdError(f"{p} is not a training checkpoint (it holds a {type(ck).__name__}); delete it to start afresh")
    bad = [k for k, t in _CHECKPOINT_KEYS.items() if not isinstance(ck.get(k), t) or isinstance(ck.get(k), bool)]
    if bad:
        what = " (a model file, written by save_model?)" if "state_dict" in ck else ""
        raise LtkdError(f"{p} is not a training checkpoint{what}: {', '.join(bad)} missing or of the wrong type; "
                        "delete it to start afresh")  # fmt: skip
    if ck.get("fingerprint") is not None and not isinstance(ck["fingerprint"], dict):
        raise LtkdError(f"{p}: its fingerprint is not a record of a run; delete it to start afresh")
    return ck


def check_resumable(path: Path, ck: dict, fingerprint: dict, epochs: int, resume_unfingerprinted: bool = False) -> None:
    """Refuse (:class:`LtkdError`, one line) a checkpoint that another run wrote, or that cannot show which run
    wrote it — no fingerprint, or one without the data's content digest (written by an older ltkd) — unless
    ``resume_unfingerprinted`` (``--resume-unfingerprinted``): the user vouches that it is this run's; then
    everything the checkpoint does record must still match."""
    saved = ck.get("fingerprint")
    unproven = "the run that wrote it" if not saved else ("the data it trained on" if "data_content" not in saved
                                                         else None)  # fmt: skip
    if unproven and not resume_unfingerprinted:
        raise LtkdError(f"checkpoint {path} does not record {unproven} (written by an older ltkd, or by hand), so "
                        "it cannot show it belongs to this run and is not resumed; delete it to start afresh, or "
                        "pass --resume-unfingerprinted (resume_unfingerprinted=True) if you know it is this run's")
    differs = fingerprint_mismatch(saved, fingerprint, skip=("data_content",) if unproven else ())
    if differs:
        raise LtkdError(f"checkpoint {path} was written by a different run, so it is not resumed: "
                        + "; ".join(differs)
                        + "; delete it (or the run's checkpoints folder) to start this run afresh, or write to "
                        "another output folder")  # fmt: skip
    if not 0 < ck["epoch"] <= epochs:
        raise LtkdError(f"checkpoint {path} is at epoch {ck['epoch']}, outside this run's 1..{epochs}; delete it")


def _owned(name: str, owned: set[str]) -> bool:
    """``name`` is one of ``owned`` or a temporary file of one (``atomic_write``'s ``NAME.PID.tmp``, left by a kill)."""
    if name in owned:
        return True
    stem, _, rest = name.partition(".ckpt.")
    pid = rest[:-3].rstrip(".") if rest.endswith("tmp") else "x"
    return f"{stem}.ckpt" in owned and (pid == "" or pid.isdigit())


def claim_checkpoints(folder: str | os.PathLike, owned: list[str], run: str) -> None:
    """Refuse to start a run (``run``, e.g. ``crt``) whose checkpoints folder holds files it does not own (its
    recipe names ``owned``): another run's checkpoints — an interrupted ``crt`` run's, say, under a ``kd`` run
    into the same OUT — or unknown files. They are named, and nothing is touched."""
    f = Path(folder)
    if not f.is_dir():
        return
    names = {n.name for n in f.iterdir()}
    foreign = sorted(n for n in names if not _owned(n, set(owned)))
    if foreign:
        shown = ", ".join(foreign[:6]) + (f" and {len(foreign) - 6} more" if len(foreign) > 6 else "")
        raise LtkdError(f"{f} holds files that are not {run}'s checkpoints ({', '.join(owned)}): {shown}; they "
                        "belong to another run (another method into the same output folder?) or to no run: finish "
                        "that run or move them away, or give this run another output folder")  # fmt: skip


def remove_checkpoints(folder: str | os.PathLike, owned: list[str]) -> None:
    """Delete this run's checkpoints (``owned``, and temporary files of them) and nothing else; the folder goes
    too if that leaves it empty."""
    f = Path(folder)
    if not f.is_dir():
        return
    for p in f.iterdir():
        if p.is_file() and _owned(p.name, set(owned)):
            p.unlink()
    try:
        f.rmdir()
    except OSError:  # not empty: another process put something there meanwhile; left alone
        pass


def _numpy_rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
            "cached": float(cached)}  # fmt: skip


def _set_numpy_rng_state(st: dict) -> None:
    np.random.set_state(("MT19937", st["keys"].numpy().astype(np.uint32), st["pos"], st["has_gauss"], st["cached"]))


def rng_state(generator: torch.Generator, aug_generator: torch.Generator, device: torch.device, objective) -> dict:
    """Every random stream of a training run, as a checkpoint stores it: the batch order, augmentation,
    torch's CPU (and CUDA) generators, NumPy's (mixup λ) and the objective's own (``objective.rng_state()``)."""
    return {"generator": generator.get_state(), "aug_generator": aug_generator.get_state().cpu(),
            "torch_rng": torch.get_rng_state(), "numpy_rng": _numpy_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "objective_rng": objective.rng_state()}  # fmt: skip


def set_rng_state(ck: dict, generator: torch.Generator, aug_generator: torch.Generator | None, device: torch.device,
                  objective) -> None:  # fmt: skip
    """Continue the streams :func:`rng_state` saved (``aug_generator=None`` keeps this process's own: a
    checkpoint holds rank 0's augmentation stream only)."""
    generator.set_state(ck["generator"])
    if aug_generator is not None:
        aug_generator.set_state(ck["aug_generator"].to(aug_generator.get_state().device))
    torch.set_rng_state(ck["torch_rng"])
    if "numpy_rng" in ck:  # checkpoints written before these were saved resume with fresh streams
        _set_numpy_rng_state(ck["numpy_rng"])
    if ck.get("cuda_rng") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(ck["cuda_rng"].cpu(), device)
    if ck.get("objective_rng") is not None:
        objective.set_rng_state(ck["objective_rng"])
