"""Data: sources, long-tailed subsampling, shot groups, the tensor loader and the samplers.

Chapter 1 (``notebooks/01_long_tailed_data.ipynb``) builds each piece of this package by hand.

Every source becomes an :class:`ImageData`: one ``uint8`` tensor of images (N×C×H×W) and one
``int64`` tensor of labels. The package by job:

* :mod:`ltkd.data.sources` — digits, Fashion-MNIST, CIFAR; :func:`load` and :func:`available`;
* :mod:`ltkd.data.trees` — a PATH: folders and archives of class sub-folders, decoding, the cache;
* :mod:`ltkd.data.longtail` — :func:`lt_counts`, :func:`long_tail`, :func:`shot_groups`, :func:`rank_groups`;
* :mod:`ltkd.data.loader` — :class:`ImageData`, :func:`augment`, :class:`TensorLoader`, the samplers.
"""

from .loader import ClassSampler, ImageData, TensorLoader, augment, check_splits, class_sampler_weights
from .longtail import imbalance_of, largest_n_max, long_tail, lt_counts, rank_groups, shot_groups, training_split
from .sources import SOURCES, available, load

__all__ = [
    "ImageData",
    "SOURCES",
    "available",
    "load",
    "lt_counts",
    "imbalance_of",
    "largest_n_max",
    "training_split",
    "long_tail",
    "shot_groups",
    "rank_groups",
    "class_sampler_weights",
    "ClassSampler",
    "TensorLoader",
    "augment",
    "check_splits",
]
