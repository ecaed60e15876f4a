"""The container and the loader: :class:`ImageData`, the class samplers (Kang et al. 2020), batched augmentation
and :class:`TensorLoader`.

Small-image data sets fit in memory, so the training loop never touches PIL or a per-sample Python function:
:class:`TensorLoader` moves the whole set to the training device once, draws a batch of indices from a sampler,
gathers the images and augments them with batched tensor ops (random crop with padding, horizontal flip).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..errors import LtkdError

__all__ = ["ImageData", "check_splits", "class_sampler_weights", "ClassSampler", "TensorLoader", "augment"]

# --------------------------------------------------------------------------------------
# The container
# --------------------------------------------------------------------------------------
@dataclass
class ImageData:
    """Images as one uint8 tensor (N×C×H×W), labels as one int64 tensor, plus metadata.

    ``mean``/``std`` are per-channel statistics (on the 0–1 scale) of the *training* split of
    the source; the test split carries the same values so both are normalised alike.
    ``pad`` and ``flip`` say which augmentation suits the data.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    pad: int = 2
    flip: bool = True
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise LtkdError(
                f"images must be a uint8 tensor N×C×H×W, got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if len(self.images) != len(self.labels):
            raise LtkdError(f"{len(self.images)} images but {len(self.labels)} labels")
        if self.labels.dtype.is_floating_point or self.labels.dtype == torch.bool or self.labels.ndim != 1:
            raise LtkdError(f"labels must be a 1-d integer tensor, got {self.labels.dtype} {tuple(self.labels.shape)}")
        if len(self.labels) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes)):
            raise LtkdError(f"labels must lie in 0..{len(self.classes) - 1} (one per class name), "
                            f"got {int(self.labels.min())}..{int(self.labels.max())}")  # fmt: skip

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def counts(self) -> np.ndarray:
        """Images per class, indexed by label."""
        return np.bincount(self.labels.numpy(), minlength=self.num_classes)

    def subset(self, index: np.ndarray | torch.Tensor, **meta) -> ImageData:
        """The images at ``index``: integer positions, or a boolean mask with one entry per image."""
        index = torch.as_tensor(np.asarray(index))
        if index.dtype == torch.bool:
            if index.shape != (len(self),):
                raise LtkdError(f"a boolean mask needs one entry per image ({len(self)}), got shape {tuple(index.shape)}")
            index = index.nonzero().flatten()
        elif index.dtype.is_floating_point and index.numel():
            raise LtkdError(f"subset needs integer positions or a boolean mask, got {index.dtype}")
        index = index.long()
        return replace(
            self,
            images=self.images[index],
            labels=self.labels[index],
            meta={**self.meta, **meta},
        )

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images → float, scaled to 0–1 and standardised with the source's statistics."""
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x.float().div_(255) - mean) / std


def _stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = images[: 20000].float().div(255)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


def _make(images, labels, classes, name, pad, flip, train_images=None, **meta) -> ImageData:
    images = torch.as_tensor(images, dtype=torch.uint8)
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    mean, std = _stats(images if train_images is None else train_images)
    return ImageData(images, labels, list(classes), name, mean, std, pad, flip, dict(meta))


def check_splits(train: ImageData, test: ImageData) -> tuple[ImageData, ImageData]:
    """``(train, test)`` if they can be one data set's splits: the same classes, channels and image size (a model
    trained on one is tested on the other); else an error naming what differs."""
    for what, a, b in (("classes", train.classes, test.classes), ("channels", train.in_channels, test.in_channels),
                       ("image size", tuple(train.images.shape[2:]), tuple(test.images.shape[2:]))):  # fmt: skip
        if a != b:
            show = (lambda v: f"{len(v)} ({', '.join(map(str, v[:3]))}{', ...' if len(v) > 3 else ''})"
                    if isinstance(v, list) else "×".join(map(str, v)) if isinstance(v, tuple) else str(v))  # fmt: skip
            raise LtkdError(f"the training split ({train.name}) and the test split ({test.name}) differ in {what}: "
                            f"{show(a)} against {show(b)}; give both splits of one data set")
    return train, test



# --------------------------------------------------------------------------------------
# Samplers
# --------------------------------------------------------------------------------------
def class_sampler_weights(counts, kind: str = "class-balanced", q: float | None = None) -> np.ndarray:
    """Probability of drawing each class under a sampler (Kang et al. 2020, eq. 1).

    p_j ∝ n_j^q with q = 1 (instance-balanced), 0 (class-balanced), 1/2 (square-root).
    """
    try:
        counts = np.asarray(counts, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise LtkdError(f"class counts must be numbers, got {counts!r}") from e
    if counts.ndim != 1 or not np.isfinite(counts).all() or (counts < 0).any():
        raise LtkdError(f"class counts must be one finite, non-negative number per class, got {counts.tolist()}")
    if not (counts > 0).any():
        raise LtkdError(f"no class has any images (counts {counts.tolist()}): there is nothing to sample")
    if q is not None and not math.isfinite(q):
        raise LtkdError(f"sampler exponent q must be finite, got {q}")
    if q is None:
        q = {"instance": 1.0, "instance-balanced": 1.0, "class-balanced": 0.0, "sqrt": 0.5, "square-root": 0.5}.get(kind)
        if q is None:
            raise LtkdError(f"unknown sampler {kind!r}; choose instance, class-balanced or sqrt")
    w = np.where(counts > 0, counts**q, 0.0)
    return w / w.sum()


class ClassSampler:
    """Draws an epoch of indices: a class from ``class_probs``, then an instance of it uniformly.

    With probabilities ∝ counts this is instance sampling, drawn *without* replacement (a
    permutation) so every image is seen once per epoch. Any other weighting draws with
    replacement, ``num_samples`` (default: the data set's size) per epoch. Fully vectorised.
    """

    def __init__(self, labels: torch.Tensor, class_probs=None, num_samples: int | None = None,
                 num_classes: int | None = None):  # fmt: skip
        labels = torch.as_tensor(labels).cpu()
        top = int(labels.max()) + 1 if len(labels) else 0
        if len(labels) and int(labels.min()) < 0:
            raise LtkdError(f"labels must be ≥ 0, got {int(labels.min())}")
        if num_classes is not None and top > num_classes:
            raise LtkdError(f"label {top - 1} out of range for {num_classes} classes")
        self.num_classes = max(top, num_classes or 0)
        counts = torch.bincount(labels, minlength=self.num_classes)
        self.counts = counts
        self.order = torch.argsort(labels, stable=True)
        self.starts = torch.cumsum(counts, 0) - counts
        self.num_samples = num_samples or len(labels)
        if class_probs is None:
            self.probs = None
        else:
            p = torch.as_tensor(np.asarray(class_probs), dtype=torch.float64)
            if len(p) != self.num_classes or (p < 0).any() or p.sum() <= 0 or not torch.isfinite(p).all():
                raise LtkdError(f"class_probs needs one non-negative weight per class ({self.num_classes}), "
                                f"not all zero, got {len(p)}")  # fmt: skip
            if (p[counts == 0] > 0).any():  # a class with no images cannot be drawn: its weight goes to the others
                p = torch.where(counts == 0, 0.0, p)
                if p.sum() <= 0:
                    raise LtkdError("class_probs puts all its weight on classes that have no images")
            p = p / p.sum()
            inst = counts.double() / counts.sum()
            self.probs = None if torch.allclose(p, inst) else p

    @classmethod
    def of(cls, kind: str, labels: torch.Tensor, num_classes: int | None = None) -> ClassSampler:
        """A named sampler: ``instance``, ``class-balanced`` or ``sqrt``."""
        counts = torch.bincount(torch.as_tensor(labels), minlength=num_classes or 0).numpy()
        return cls(labels, class_sampler_weights(counts, kind), num_classes=num_classes)

    def __len__(self) -> int:
        return self.num_samples

    def epoch(self, generator: torch.Generator) -> torch.Tensor:
        if self.probs is None:
            n = len(self.order)
            perm = torch.randperm(n, generator=generator)
            if self.num_samples <= n:
                return perm[: self.num_samples]
            extra = torch.randint(n, (self.num_samples - n,), generator=generator)
            return torch.cat([perm, extra])
        cls_ = torch.multinomial(self.probs.float(), self.num_samples, replacement=True, generator=generator)
        u = torch.rand(self.num_samples, generator=generator, dtype=torch.float64)
        pick = self.starts[cls_] + (u * self.counts[cls_].double()).long().clamp_max(self.counts[cls_] - 1)
        return self.order[pick]


# --------------------------------------------------------------------------------------
# Augmentation and the loader
# --------------------------------------------------------------------------------------
def augment(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, for a whole batch at once.

    ``x`` is B×C×H×W (any dtype); every image gets its own offset and flip, drawn on
    ``x``'s device from ``generator``.
    """
    b, c, h, w = x.shape
    dev = x.device
    if pad > 0:
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (b,), device=dev, generator=generator)
        ox = torch.randint(0, 2 * pad + 1, (b,), device=dev, generator=generator)
        rows = (oy[:, None] + torch.arange(h, device=dev))[:, None, :, None]  # B,1,H,1
        cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, None, :]  # B,1,1,W
        bi = torch.arange(b, device=dev)[:, None, None, None]
        ci = torch.arange(c, device=dev)[None, :, None, None]
        x = xp[bi, ci, rows, cols]
    if flip:
        f = torch.rand(b, device=dev, generator=generator) < 0.5
        x = torch.where(f[:, None, None, None], x.flip(3), x)
    return x


class TensorLoader:
    """Batches from an :class:`ImageData` kept whole on ``device`` as uint8.

    Each epoch: indices from ``sampler`` (default: instance sampling), gathered in
    ``batch_size`` slices, augmented (if ``train``) and normalised — all tensor ops, no PIL.
    Yields ``(x_float, y, index)``.
    """

    def __init__(
        self,
        data: ImageData,
        batch_size: int = 128,
        sampler: ClassSampler | None = None,
        train: bool = True,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        channels_last: bool = False,
    ):
        if batch_size < 1:
            raise LtkdError(f"batch size must be ≥ 1, got {batch_size}")
        self.data = data
        self.device = torch.device(device)
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device)
        self.batch_size = batch_size
        self.sampler = sampler if sampler is not None else (ClassSampler(data.labels) if train else None)
        self.train = train
        self.generator = generator or torch.Generator().manual_seed(0)
        self.aug_generator = torch.Generator(device=self.device).manual_seed(
            int(torch.randint(2**62, (1,), generator=self.generator))
        )
        self.drop_last = drop_last
        self.channels_last = channels_last
        mean = torch.tensor(data.mean, device=self.device).view(1, -1, 1, 1)
        std = torch.tensor(data.std, device=self.device).view(1, -1, 1, 1)
        self._scale = (1.0 / (255.0 * std))
        self._shift = (-mean / std)

    def __len__(self) -> int:
        n = len(self.sampler) if self.sampler is not None else len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        if self.sampler is not None:
            order = self.sampler.epoch(self.generator).to(self.device)
        else:
            order = torch.arange(len(self.data), device=self.device)
        n = len(order)
        stop = n - n % self.batch_size if self.drop_last else n
        for s in range(0, stop, self.batch_size):
            idx = order[s : s + self.batch_size]
            x = self.images[idx]
            if self.train:
                x = augment(x, self.data.pad, self.data.flip, self.aug_generator)
            x = x.float().mul_(self._scale).add_(self._shift)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx], idx
