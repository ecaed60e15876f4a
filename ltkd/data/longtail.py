"""Long-tailed subsampling (Cao et al. 2019's CIFAR-LT protocol) and the shot and rank groups of classes."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ..errors import LtkdError
from .loader import ImageData

__all__ = ["lt_counts", "long_tail", "imbalance_of", "largest_n_max", "training_split", "shot_groups", "rank_groups"]


# --------------------------------------------------------------------------------------
# Long-tailed subsampling and shot groups
# --------------------------------------------------------------------------------------
def lt_counts(n_max: int, num_classes: int, imbalance: float, profile: str = "exp") -> np.ndarray:
    """Images kept per class (Cao et al. 2019, LDAM-DRW's CIFAR-LT protocol).

    ``exp``: n_i = int(n_max · IF^(−i/(C−1))), i = 0..C−1 in label order.
    ``step``: the first ⌊C/2⌋ classes keep n_max, the rest int(n_max / IF).

    Computed as n_max · (1/IF)^(i/(C−1)), the form of the original code, so that the
    truncation reproduces the published sizes exactly (CIFAR-10-LT IF 100: 12,406).
    """
    if not math.isfinite(imbalance) or imbalance < 1:
        raise LtkdError(f"imbalance factor must be ≥ 1 (n_max / n_min), got {imbalance}")
    if num_classes < 1 or n_max < 1:
        raise LtkdError(f"need at least one class and one image per class, got C={num_classes}, n_max={n_max}")
    inv = 1.0 / float(imbalance)
    if profile == "exp":
        if num_classes == 1:
            return np.array([n_max])
        return np.array([int(n_max * inv ** (i / (num_classes - 1.0))) for i in range(num_classes)])
    if profile == "step":
        half = num_classes // 2
        return np.array([n_max] * half + [int(n_max * inv)] * (num_classes - half))
    raise LtkdError(f"unknown imbalance profile {profile!r}; choose 'exp' or 'step'")


def long_tail(
    data: ImageData,
    imbalance: float = 100,
    profile: str = "exp",
    n_max: int | None = None,
    seed: int = 0,
) -> ImageData:
    """A long-tailed subset of ``data``: class i keeps ``lt_counts(...)[i]`` images.

    Which images: a NumPy RandomState seeded with ``seed`` shuffles each class's indices in
    label order and keeps the first n_i — the LDAM-DRW procedure, so seed 0 picks the same
    images as the published CIFAR-LT benchmarks on every machine. ``n_max`` defaults to the
    smallest class's size in ``data`` (the per-class size of a balanced source); ``imbalance=1``
    keeps it balanced (``n_max`` per class). A class with fewer images than its count is an error,
    not a silently shorter class.
    """
    avail = data.counts
    if n_max is None:
        n_max = int(avail.min())
    if n_max < 1:
        raise LtkdError("n_max must be at least 1")
    if math.isfinite(imbalance) and n_max < imbalance:  # the tail would need n_max / IF < 1 image: not this IF
        raise LtkdError(f"IF {imbalance:g} cannot be had from {data.name}: its largest class would keep {n_max} "
                        f"images, so its smallest would need {n_max / imbalance:.3g}; give an IF of at most {n_max}")
    want = np.maximum(lt_counts(n_max, data.num_classes, imbalance, profile), 1)
    short = np.flatnonzero(want > avail)
    if len(short):  # capping would silently give another tail than the one asked for (and label it as asked)
        c = int(short[0])
        raise LtkdError(f"class {c} has {int(avail[c])} images but this long tail (IF {imbalance:g}, n_max {n_max}, "
                        f"{profile}) asks for {int(want[c])}; lower n_max (at most {int(avail.min())} always fits)")
    rng = np.random.RandomState(seed)
    labels = data.labels.numpy()
    keep = []
    for c in range(data.num_classes):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        keep.append(idx[: want[c]])
    return data.subset(np.concatenate(keep), imbalance=imbalance, lt_profile=profile, n_max=n_max)


def imbalance_of(counts) -> float:
    """The imbalance factor a set of class counts has: largest / smallest (``inf`` if a class has none)."""
    counts = np.asarray(counts)
    return float(counts.max() / counts.min()) if len(counts) and counts.min() > 0 else float("inf")


def largest_n_max(counts, imbalance: float, profile: str = "exp") -> int:
    """The largest ``n_max`` whose long tail (:func:`lt_counts`) every class can fill from ``counts``: class i keeps
    n_max · r_i images, so n_max = min_i ⌊counts_i / r_i⌋. For a balanced source this is its class size (the
    default of :func:`long_tail`); for a user's imbalanced folder it keeps as many images as the tail allows."""
    counts = np.asarray(counts, dtype=np.int64)
    ratios = np.maximum(lt_counts(10**12, len(counts), imbalance, profile), 1) / 10**12  # r_i, to 12 digits
    n = max(1, int(np.min(counts / ratios)) + 1)
    while n > 1 and (np.maximum(lt_counts(n, len(counts), imbalance, profile), 1) > counts).any():
        n -= 1  # the estimate is at most a step or two too large (the ratios are rounded)
    return n


def training_split(train: ImageData, imbalance: float | None, profile: str = "exp", n_max: int | None = None,
                   default: float = 100) -> tuple[ImageData, str | None]:
    """The training split a run uses, and a line that says what it is (``None`` for a named set).

    A PATH data set (``imagefolder:...``) is a user's own data: without ``imbalance`` every image is used as given;
    with it, the largest long tail of that IF the classes can fill (:func:`largest_n_max`). A named set keeps its
    benchmark protocol: ``default`` IF when none is given, ``n_max`` its class size. Either way the result records
    the imbalance its counts have (``meta["imbalance"]``), not the one asked for."""
    path = train.name.startswith("imagefolder:")
    if imbalance is None and path:
        kept = replace(train, meta={**train.meta, "imbalance": imbalance_of(train.counts), "lt_profile": "as given"})
        return kept, (f"{train.name}: every training image as given, {_counts(kept.counts)} per class "
                      f"(IF {imbalance_of(kept.counts):.3g}); --imbalance IF subsamples a long tail")
    imbalance = default if imbalance is None else imbalance
    if path and n_max is None:
        n_max = largest_n_max(train.counts, imbalance, profile)
    kept = long_tail(train, imbalance, profile, n_max=n_max, seed=0)
    kept.meta["imbalance"] = imbalance_of(kept.counts)
    if not path:
        return kept, None
    return kept, (f"{train.name}: IF {imbalance:g} keeps {_counts(kept.counts)} training images per class "
                  f"(of {_counts(train.counts)})")


def _counts(counts) -> str:
    c = [str(int(v)) for v in counts]
    return " / ".join(c if len(c) <= 12 else c[:5] + ["..."] + c[-5:])


def shot_groups(counts, many: int = 100, few: int = 20) -> dict[str, np.ndarray]:
    """Class indices by training count: many (> 100), medium (20–100), few (< 20).

    The OLTR / decoupling convention. A group may be empty (e.g. 10-class data with
    n_max = 6,000 and IF 100 has no few-shot class); see :func:`rank_groups`.
    """
    counts = np.asarray(counts)
    return {
        "many": np.flatnonzero(counts > many),
        "medium": np.flatnonzero((counts <= many) & (counts >= few)),
        "few": np.flatnonzero(counts < few),
    }


def rank_groups(counts) -> dict[str, np.ndarray]:
    """Head / middle / tail thirds by class rank (largest first; ties broken by label).

    ``np.array_split`` of the ranked classes: for 10 classes 4 / 3 / 3, for 100 classes 34 / 33 / 33.
    """
    order = np.argsort(-np.asarray(counts), kind="stable")
    head, middle, tail = np.array_split(order, 3)
    return {"head": np.sort(head), "middle": np.sort(middle), "tail": np.sort(tail)}
