"""Metrics: accuracy overall, balanced, per class and per shot group; confusion; params; FLOPs.

Chapter 1 introduces each of them. Shot groups are always computed from the *training*
counts (``ltkd.data.shot_groups`` and ``ltkd.data.rank_groups``), never from index ranges.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .data import rank_groups, shot_groups
from .errors import LtkdError

__all__ = ["confusion_matrix", "per_class_accuracy", "accuracy_report", "count_params", "count_flops", "GROUPING_NOTE"]

GROUPING_NOTE = (
    "shot groups by training count: many > 100, medium 20–100, few < 20 (null where empty); "
    "head / middle / tail = thirds of the classes ranked by training count"
)


def _preds(pred_or_logits) -> np.ndarray:
    p = torch.as_tensor(pred_or_logits)
    if p.ndim == 2:
        if p.shape[1] == 0:
            raise LtkdError(f"logits must have one column per class, got shape {tuple(p.shape)}")
        p = p.argmax(1)
    elif p.ndim != 1:
        raise LtkdError(f"expected logits N×C (2-d) or predicted labels N (1-d), got a {p.ndim}-d tensor of shape "
                        f"{tuple(p.shape)}")  # fmt: skip
    elif p.dtype.is_floating_point and len(p) and not torch.equal(p, p.round()):
        raise LtkdError("1-d predictions must be class labels (whole numbers), got fractions; logits are N×C")
    return p.cpu().numpy().astype(np.int64)


def confusion_matrix(pred_or_logits, labels, num_classes: int | None = None) -> np.ndarray:
    """C×C counts; row = true class, column = predicted class."""
    pred = _preds(pred_or_logits)
    y = torch.as_tensor(labels).cpu().numpy().astype(np.int64)
    if pred.shape != y.shape or y.ndim != 1:
        raise LtkdError(f"{pred.shape[0] if pred.ndim else 1} predictions for {y.shape[0] if y.ndim else 1} labels; "
                        "need one per label")  # fmt: skip
    c = num_classes or int(max(pred.max(initial=0), y.max(initial=0)) + 1)
    for what, v in (("label", y), ("prediction", pred)):
        if len(v) and (v.min() < 0 or v.max() >= c):
            raise LtkdError(f"{what}s must lie in 0..{c - 1}, got {v.min()}..{v.max()}")
    return np.bincount(y * c + pred, minlength=c * c).reshape(c, c)


def per_class_accuracy(pred_or_logits, labels, num_classes: int | None = None) -> np.ndarray:
    """Recall of each class (NaN for a class with no test images)."""
    cm = confusion_matrix(pred_or_logits, labels, num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diag(cm) / cm.sum(1)


def accuracy_report(pred_or_logits, labels, train_counts) -> dict:
    """Overall and balanced top-1, per-class accuracy and group accuracies, as plain floats.

    Group accuracy is the mean of its classes' accuracies (on a balanced test set this equals
    the accuracy over the group's test images). Keys: ``overall``, ``balanced``, ``many``,
    ``medium``, ``few`` (``None`` when the group is empty), ``head``, ``middle``, ``tail``,
    ``per_class``, ``groups`` (class indices of each group) and ``grouping`` (how groups
    were formed).
    """
    counts = np.asarray(train_counts)
    c = len(counts)
    pred = _preds(pred_or_logits)
    y = torch.as_tensor(labels).cpu().numpy()
    pc = per_class_accuracy(pred, y, c)
    out: dict = {
        "overall": float((pred == y).mean()) if len(y) else float("nan"),
        "balanced": float(np.nanmean(pc)),
    }
    groups = {**shot_groups(counts), **rank_groups(counts)}
    for g, idx in groups.items():
        out[g] = float(np.nanmean(pc[idx])) if len(idx) else None
    out["per_class"] = [None if np.isnan(a) else float(a) for a in pc]
    out["groups"] = {g: [int(i) for i in idx] for g, idx in groups.items()}
    out["grouping"] = GROUPING_NOTE
    return out


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass on one input of ``input_shape`` (C×H×W).

    Counted by ``torch.utils.flop_counter.FlopCounterMode``: one multiply-add = 2 FLOPs;
    convolutions and matrix products are counted, element-wise ops (BN, ReLU) are not.
    """
    from torch.utils.flop_counter import FlopCounterMode

    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as fc:
            model(torch.zeros(1, *input_shape, device=dev))
    finally:
        model.train(was_training)
    return int(fc.get_total_flops())
