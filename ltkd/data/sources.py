"""Sources: scikit-learn's digits, Fashion-MNIST (IDX files), CIFAR-10/100 (torchvision), and
:func:`load`, which also reads a PATH (:mod:`ltkd.data.trees`); :func:`available` says which are here."""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import LtkdError, first_line
from .loader import ImageData, _make
from .trees import _cache_dir, _load_imagefolder

__all__ = ["SOURCES", "load", "available"]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip


# --------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------
def _data_dir() -> Path | None:
    d = os.environ.get("LTKD_DATA_DIR")
    return Path(d).expanduser() if d else None



def _load_digits() -> tuple[ImageData, ImageData]:
    """scikit-learn's 8×8 digits (1,797 images), split 80/20 per class with seed 0."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # 0..16 → 0..255
    y = d.target.astype(np.int64)
    rng = np.random.RandomState(0)
    test = np.zeros(len(y), bool)
    for c in range(10):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        test[idx[: len(idx) // 5]] = True
    classes = [str(i) for i in range(10)]
    tr = _make(x[~test], y[~test], classes, "digits", pad=1, flip=False, split="train")
    te = _make(x[test], y[test], classes, "digits", pad=1, flip=False, train_images=tr.images,
               split="test")  # fmt: skip
    te.mean, te.std = tr.mean, tr.std
    return tr, te


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (plain or gzipped) of unsigned bytes; an empty, truncated or damaged one is an error naming it."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise LtkdError(f"{path}: cannot read this IDX file ({type(e).__name__}: {first_line(e, 80)}); "
                        "replace it with a whole copy") from e  # fmt: skip
    try:
        zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
        if zero != 0 or dtype != 0x08:
            raise LtkdError(f"{path} is not an IDX file of unsigned bytes")
        shape = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
        return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape).copy()
    except (struct.error, ValueError) as e:
        if isinstance(e, LtkdError):
            raise
        raise LtkdError(f"{path}: an empty or truncated IDX file ({len(raw):,} bytes); replace it with a whole "
                        "copy") from e  # fmt: skip


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _fashion_mnist_dirs() -> list[Path]:
    dirs = []
    if (d := _data_dir()) is not None:
        dirs += [d, d / "fashion-mnist", d / "FashionMNIST" / "raw"]
    dirs += [DEBIAN_FASHION_MNIST, _cache_dir() / "data" / "FashionMNIST" / "raw"]
    return dirs


def _load_fashion_mnist(download: bool) -> tuple[ImageData, ImageData]:
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]  # fmt: skip
    for folder in _fashion_mnist_dirs():
        paths = [_find_idx(folder, s) for s in stems]
        if all(paths):
            break
    else:
        if download:
            try:
                from torchvision.datasets import FashionMNIST

                root = _cache_dir() / "data"
                FashionMNIST(str(root), train=True, download=True)
                FashionMNIST(str(root), train=False, download=True)
                return _load_fashion_mnist(download=False)
            except Exception as e:  # no network, or torchvision missing
                reason = f" (download failed: {type(e).__name__}: {e})"
        else:
            reason = ""
        looked = ", ".join(str(d) for d in _fashion_mnist_dirs())
        raise LtkdError(
            f"Fashion-MNIST not found; looked in {looked}{reason}. Get it with "
            "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu), point LTKD_DATA_DIR at a folder "
            "holding the four IDX files, or go online so torchvision can download it."
        )
    xtr, ytr, xte, yte = (_read_idx(p) for p in paths)  # type: ignore[arg-type]
    tr = _make(xtr[:, None], ytr, FASHION_MNIST_CLASSES, "fashion-mnist", 2, True, split="train",
               source=str(paths[0].parent))  # fmt: skip
    te = _make(xte[:, None], yte, FASHION_MNIST_CLASSES, "fashion-mnist", 2, True, split="test",
               source=str(paths[0].parent))  # fmt: skip
    te.mean, te.std = tr.mean, tr.std
    return tr, te


def _load_cifar(name: str, download: bool) -> tuple[ImageData, ImageData]:
    try:
        from torchvision import datasets
    except ImportError as e:  # pragma: no cover - torchvision is a dependency
        raise LtkdError("CIFAR needs torchvision: pip install torchvision") from e
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    roots = ([_data_dir()] if _data_dir() else []) + [_cache_dir() / "data"]
    last: Exception | None = None
    for i, root in enumerate(roots):
        for dl in ([False] if (i < len(roots) - 1 or not download) else [False, True]):
            try:
                tr = cls(str(root), train=True, download=dl)
                te = cls(str(root), train=False, download=dl)
                break
            except Exception as e:  # RuntimeError: not found / URLError: offline
                last = e
        else:
            continue
        break
    else:
        looked = ", ".join(str(r) for r in roots)
        raise LtkdError(
            f"{name} not found; looked in {looked} (torchvision layout)"
            + (f" and the download failed ({type(last).__name__})" if download else "")
            + ". Go online so torchvision can download it, or set LTKD_DATA_DIR to a folder holding "
            "cifar-10-batches-py / cifar-100-python; offline, `--dataset PATH` reads an image folder."
        )
    out = []
    for ds, split in ((tr, "train"), (te, "test")):
        x = np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2))
        out.append(_make(x, ds.targets, ds.classes, name, 4, True, split=split,
                         train_images=torch.from_numpy(np.ascontiguousarray(tr.data.transpose(0, 3, 1, 2)))))  # fmt: skip
    return out[0], out[1]


SOURCES = {
    "digits": "scikit-learn's bundled 8×8 handwritten digits (always present)",
    "fashion-mnist": "Fashion-MNIST 28×28 grey: LTKD_DATA_DIR, Debian's dataset-fashion-mnist, or download",
    "cifar10": "CIFAR-10 32×32 colour: LTKD_DATA_DIR or torchvision download",
    "cifar100": "CIFAR-100 32×32 colour: LTKD_DATA_DIR or torchvision download",
    "imagefolder": "PATH to a folder or .tar.gz of class sub-folders (train/ and test/ inside, or split 80/20)",
}


def load(name: str | os.PathLike = "digits", *, download: bool = True,
         image_size: int | None = None) -> tuple[ImageData, ImageData]:  # fmt: skip
    """Load a source's (train, test) splits as :class:`ImageData`.

    ``name`` is one of :data:`SOURCES` or a path (treated as ``imagefolder``). ``image_size`` (a PATH only):
    resize every image to that many pixels square; without it a PATH's images must all have one size.
    Raises :class:`~ltkd.errors.LtkdError` with a message saying where it looked when the
    data are missing.
    """
    if not isinstance(name, (str, os.PathLike)):
        raise LtkdError(f"dataset must be a data set's name or a path, got {type(name).__name__} {name!r:.60}")
    if not str(name).strip():
        raise LtkdError("dataset is empty; give a data set's name (`ltkd datasets` lists them) or a PATH")
    key = str(name).lower()
    if image_size is not None and (key in ("digits", "cifar10", "cifar100") or key.startswith("fashion")):
        raise LtkdError(f"an image size applies to a PATH data set; {name} has its own ({image_size!r} given)")
    if key == "digits":
        return _load_digits()
    if key in ("fashion-mnist", "fashion_mnist", "fashionmnist"):
        return _load_fashion_mnist(download)
    if key in ("cifar10", "cifar100"):
        return _load_cifar(key, download)
    if key.startswith("imagefolder:"):
        return _load_imagefolder(str(name).split(":", 1)[1], image_size)
    try:
        there = Path(name).exists()
    except OSError:  # a name too long for the file system: no such path
        there = False
    if os.sep in str(name) or there:
        return _load_imagefolder(name, image_size)
    raise LtkdError(
        f"unknown data set {str(name)[:80]!r}{'...' if len(str(name)) > 80 else ''}; choose one of {', '.join(k for k in SOURCES if k != 'imagefolder')}, "
        "or give a path to a folder of class sub-folders"
    )


def available() -> dict[str, str]:
    """Each source and whether it can be loaded here without going online."""
    out = {"digits": "available (bundled with scikit-learn)"}
    for folder in _fashion_mnist_dirs():
        if _find_idx(folder, "train-images-idx3-ubyte"):
            out["fashion-mnist"] = f"available ({folder})"
            break
    else:
        out["fashion-mnist"] = "missing: apt-get install dataset-fashion-mnist, LTKD_DATA_DIR, or go online"
    for name, sub in (("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")):
        roots = ([_data_dir()] if _data_dir() else []) + [_cache_dir() / "data"]
        hit = next((r for r in roots if (r / sub).is_dir()), None)
        out[name] = f"available ({hit})" if hit else "needs download (online) or LTKD_DATA_DIR"
    out["imagefolder"] = "give --dataset PATH"
    return out
