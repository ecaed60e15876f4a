"""Data: sources, long-tailed subsampling, shot groups, the tensor loader and the samplers.

Chapter 1 (``notebooks/01_long_tailed_data.ipynb``) builds each piece of this file by hand.

Every source becomes an :class:`ImageData`: one ``uint8`` tensor of images (N×C×H×W) and one
``int64`` tensor of labels. Small-image data sets fit in memory, so the training loop never
touches PIL or a per-sample Python function: :class:`TensorLoader` moves the whole set to the
training device once, draws a batch of indices from a sampler, gathers the images and
augments them with batched tensor ops (random crop with padding, horizontal flip).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import struct
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .checkpoint import atomic_write
from .errors import LtkdError, first_line

__all__ = [
    "ImageData",
    "SOURCES",
    "available",
    "load",
    "lt_counts",
    "long_tail",
    "shot_groups",
    "rank_groups",
    "class_sampler_weights",
    "ClassSampler",
    "TensorLoader",
    "augment",
]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip


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


# --------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------
def _data_dir() -> Path | None:
    d = os.environ.get("LTKD_DATA_DIR")
    return Path(d).expanduser() if d else None


def _cache_dir() -> Path:
    d = os.environ.get("LTKD_CACHE_DIR")
    if d:
        return Path(d).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ltkd"


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
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        raise LtkdError(f"{path} is not an IDX file of unsigned bytes")
    shape = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape).copy()


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


_IMG_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _to_rgb8(im) -> np.ndarray:
    """A PIL image as an H×W×3 uint8 array with its bit depth respected: 16-bit grey scaled to 8 bits
    (v · 255 / 65535, rounded), not clipped at 255 as ``convert("RGB")`` does; pixels whose range is unknown
    (32-bit integers outside a PNG, floating point) are refused rather than guessed."""
    mode = im.mode
    if mode.startswith("I;16") or (mode == "I" and im.format == "PNG"):  # Pillow opens 16-bit grey PNGs as I;16 or I
        a = np.asarray(im).astype(np.int64)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise LtkdError(f"16-bit image with values {a.min()}..{a.max()} outside 0..65535")
        grey = ((a * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in ("I", "F") or mode.startswith(("I;", "F;")):
        raise LtkdError(f"{'floating-point' if mode.startswith('F') else '32-bit integer'} pixels (mode {mode}) "
                        "have no known range; convert the image to 8 or 16 bits")  # fmt: skip
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _decode(raw: bytes, size: int | None) -> np.ndarray:
    """Image bytes -> H×W×3 uint8 (:func:`_to_rgb8`), resized to ``size``×``size`` if it is given and differs."""
    from PIL import Image

    with Image.open(io.BytesIO(raw)) as im:
        im.load()
        a = _to_rgb8(im)
    if size is not None and a.shape[:2] != (size, size):
        a = np.asarray(Image.fromarray(a, "RGB").resize((size, size)), dtype=np.uint8)
    return a


@dataclass(frozen=True)
class _Node:
    """One entry of an image tree, whatever its container: ``parts`` is its path below the tree's root,
    ``where`` how an error names it, ``read`` returns a file's bytes (``None`` for a folder)."""

    parts: tuple[str, ...]
    where: str
    read: Callable[[], bytes] | None = None
    stamp: str = ""

    @property
    def is_dir(self) -> bool:
        return self.read is None


def _walk_folder(root: Path) -> list[_Node]:
    """Every entry below ``root`` (hidden names skipped), symbolic links followed; a dangling link or a link that
    loops back to a folder above it is an error naming it."""
    out: list[_Node] = []

    def visit(folder: Path, parts: tuple[str, ...], above: frozenset[str]) -> None:
        try:
            children = sorted(folder.iterdir(), key=lambda p: p.name)
        except OSError as e:
            raise LtkdError(f"{folder}: cannot list this folder ({first_line(e)})") from e
        for p in children:
            if p.name.startswith("."):  # .DS_Store, ._x (macOS), .ipynb_checkpoints: not data
                continue
            try:
                st = p.stat()  # follows links
            except FileNotFoundError as e:
                raise LtkdError(f"{p}: a dangling symbolic link (its target does not exist); fix or remove it") from e
            except OSError as e:  # ELOOP: a link to itself, or a cycle of links
                raise LtkdError(f"{p}: cannot follow this path ({first_line(e)}); a symbolic link loop?") from e
            if p.is_dir():
                real = os.path.realpath(p)
                if real in above:
                    raise LtkdError(f"{p}: a symbolic link loop (it leads back to {real}, a folder above it); "
                                    "remove the link")  # fmt: skip
                out.append(_Node(parts + (p.name,), str(p)))
                visit(p, parts + (p.name,), above | {real})
            elif p.is_file():
                out.append(_Node(parts + (p.name,), str(p), p.read_bytes, f"{st.st_size}|{st.st_mtime_ns}"))

    visit(root, (), frozenset({os.path.realpath(root)}))
    return out


def _walk_archive(path: Path) -> list[_Node]:
    """Every entry of a .tar / .tar.gz (bytes read now, while it is open); folders that only appear as the parents
    of files are added, so an archive written without folder entries reads as one written with them."""
    out: list[_Node] = []
    dirs: set[tuple[str, ...]] = set()
    try:
        with tarfile.open(path) as tar:
            for m in tar:
                parts = tuple(s for s in m.name.split("/") if s not in ("", "."))
                if not parts or any(s.startswith(".") for s in parts):  # hidden entries are skipped, as in folders
                    continue
                for i in range(1, len(parts)):
                    dirs.add(parts[:i])
                if m.isdir():
                    dirs.add(parts)
                elif m.isfile() or m.issym() or m.islnk():
                    f = tar.extractfile(m)
                    if f is None:
                        raise LtkdError(f"{path}:{m.name}: a link whose target is not in the archive")
                    data = f.read()
                    out.append(_Node(parts, f"{path}:{m.name}", (lambda b=data: b)))
            while tar.fileobj.read(1 << 20):  # to the end, so that gzip checks its CRC: a damaged byte in a member
                pass  # would otherwise pass unnoticed (tar keeps no checksum of its members' contents)
    except KeyError as e:  # a symbolic link to a member that is not there
        raise LtkdError(f"{path}: a link inside the archive points at a missing member ({first_line(e)})") from e
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise LtkdError(f"{path}: not a readable .tar / .tar.gz archive, or a truncated one "
                        f"({type(e).__name__}: {first_line(e, 120)})") from e  # fmt: skip
    names = {n.parts for n in out}
    clash = sorted(d for d in dirs if d in names)
    if clash:
        raise LtkdError(f"{path}: {'/'.join(clash[0])} is both a file and a folder in the archive")
    out += [_Node(d, f"{path}:{'/'.join(d)}") for d in dirs]
    return out


def _walk(path: Path) -> list[_Node]:
    if path.is_dir():
        return _walk_folder(path)
    return _walk_archive(path)


def _below(nodes: list[_Node], top: str) -> list[_Node]:
    return [replace(n, parts=n.parts[1:]) for n in nodes if len(n.parts) > 1 and n.parts[0] == top]


def _unwrap(nodes: list[_Node], splits: frozenset[str] = frozenset({"train", "test"})) -> list[_Node]:
    """Drop folders that merely wrap the tree (``tar czf data.tar.gz data`` stores ``data/<class>/...``): while
    everything sits in one folder that is not a split's (``splits``) and holds no file of its own at the class
    level."""
    while True:
        tops = {n.parts[0] for n in nodes}
        if len(tops) != 1 or tops & splits:
            return nodes
        if any(not n.is_dir and len(n.parts) <= 2 for n in nodes):  # files in it or in its sub-folders: classes
            return nodes
        nodes = _below(nodes, tops.pop())


def _class_items(nodes: list[_Node], where: str) -> tuple[list[str], list[tuple[int, _Node]]]:
    """Classes = the top folders (sorted by name); a class's images = every image file below its folder (sub-folders
    included), in path order. A class folder without images is an error naming it."""
    classes = sorted({n.parts[0] for n in nodes if len(n.parts) > 1 or n.is_dir})
    images = sorted((n for n in nodes if not n.is_dir and len(n.parts) > 1 and
                     Path(n.parts[-1]).suffix.lower() in _IMG_EXT), key=lambda n: n.parts)  # fmt: skip
    if not images:
        raise LtkdError(f"{where}: no images found in class sub-folders (<root>/<class>/<image>)")
    have = {n.parts[0] for n in images}
    empty = [c for c in classes if c not in have]
    if empty:
        raise LtkdError(f"{where}: class folder {empty[0]!r} has no images"
                        + (f" (nor do {len(empty) - 1} more)" if len(empty) > 1 else "") + "; add images or remove it")
    index = {c: i for i, c in enumerate(classes)}
    return classes, [(index[n.parts[0]], n) for n in images]


def _decode_items(items: list[tuple[int, _Node]], size: int | None) -> tuple[np.ndarray, np.ndarray]:
    def one(node: _Node, size: int | None) -> np.ndarray:
        try:
            raw = node.read()  # type: ignore[misc]
        except OSError as e:
            raise LtkdError(f"{node.where}: cannot read ({first_line(e)})") from e
        try:
            return _decode(raw, size)
        except LtkdError as e:
            raise LtkdError(f"{node.where}: {e}") from e
        except Exception as e:  # PIL's UnidentifiedImageError, a truncated file, a broken stream, a bomb: the file's
            raise LtkdError(f"{node.where}: not a readable image ({type(e).__name__}); remove or replace it") from e

    first = one(items[0][1], size)
    size = size or first.shape[0]
    x = np.stack([one(n, size) for _, n in items]).transpose(0, 3, 1, 2)
    y = np.array([c for c, _ in items], np.int64)
    return np.ascontiguousarray(x), y


def _split_parts(root: Path) -> tuple[list[_Node], list[_Node] | None, str, str]:
    """(train nodes, test nodes or ``None`` for an 80/20 split, how to name each) of a folder or an archive.
    ``train``/``test`` may be folders (in a folder or an archive) or archives inside a folder."""
    if root.is_dir():
        parts = {}
        for split in ("train", "test"):
            for cand in (root / f"{split}.tar.gz", root / f"{split}.tgz", root / f"{split}.tar"):
                if cand.is_file():
                    parts[split] = cand
        if len(parts) == 2:
            tr, te = (_unwrap(_walk(parts[k]), frozenset()) for k in ("train", "test"))  # train.tar.gz: train/...
            return tr, te, str(parts["train"]), str(parts["test"])
    nodes = _unwrap(_walk(root))
    tops = {n.parts[0] for n in nodes if n.is_dir and len(n.parts) == 1}
    if {"train", "test"} <= tops:
        return _below(nodes, "train"), _below(nodes, "test"), f"{root}/train", f"{root}/test"
    if tops & {"train", "test"}:
        have, miss = sorted(tops & {"train", "test"})[0], sorted({"train", "test"} - tops)[0]
        raise LtkdError(f"{root}: has a {have}/ folder but no {miss}/; give both (the splits) or neither "
                        "(class folders at the top, split 80/20)")  # fmt: skip
    return nodes, None, str(root), str(root)


def _read_image_tree(root: Path, size: int | None = None) -> dict[str, np.ndarray]:
    """The one reader of image trees, whatever their container: the same classes, split and pixels from a folder
    and from a .tar(.gz) made of it."""
    train_nodes, test_nodes, w_tr, w_te = _split_parts(root)
    classes, items = _class_items(train_nodes, w_tr)
    xtr, ytr = _decode_items(items, size)
    if test_nodes is not None:
        classes_te, items_te = _class_items(test_nodes, w_te)
        if classes_te != classes:
            only = sorted(set(classes) ^ set(classes_te))
            raise LtkdError(f"{root}: train and test have different class folders ({', '.join(only[:5])} "
                            "in one only)")  # fmt: skip
        xte, yte = _decode_items(items_te, xtr.shape[2])
    else:
        rng = np.random.RandomState(0)
        test = np.zeros(len(ytr), bool)
        for c in range(len(classes)):
            idx = np.flatnonzero(ytr == c)
            rng.shuffle(idx)
            test[idx[: len(idx) // 5]] = True
        xtr, ytr, xte, yte = xtr[~test], ytr[~test], xtr[test], ytr[test]
    if len(yte) == 0:
        raise LtkdError(f"{root}: the test split has no images ({len(ytr)} images in {len(classes)} classes; the "
                        "80/20 split puts a fifth of each class's images in it, so a class needs at least 5)")
    return {"xtr": xtr, "ytr": ytr, "xte": xte, "yte": yte, "classes": np.array(classes)}


def _tree_stamp(root: Path) -> str:
    """What the cache key needs to notice a change: for a folder every file's path, size and modification time (an
    image added to, removed from or rewritten in a class folder changes it; the top folder's own time does not),
    for an archive its size and time."""
    if not root.is_dir():
        st = root.stat()
        return f"{st.st_size}:{st.st_mtime_ns}"
    h = hashlib.sha1()
    for n in _walk_folder(root):
        h.update(f"{'/'.join(n.parts)}|{n.stamp}\n".encode())
    return h.hexdigest()


_CACHE_KEYS = ("xtr", "ytr", "xte", "yte", "classes")


def _arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in _CACHE_KEYS:
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k} {a.dtype.str} {a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _read_cache(cache: Path) -> dict[str, np.ndarray] | None:
    """A cache entry whose checksum matches, else ``None`` after a warning (the caller decodes the images again):
    a truncated or altered file never fails a run, nor feeds it other pixels."""
    import warnings

    try:
        with np.load(cache, allow_pickle=False) as z:
            arrays = {k: z[k] for k in (*_CACHE_KEYS, "digest")}
        ok = str(arrays["digest"]) == _arrays_digest(arrays)
        reason = "its checksum does not match its contents"
    except Exception as e:  # any damage (a bad zip, a missing array, a bad CRC) means: rebuild it
        ok, reason = False, f"unreadable: {type(e).__name__}"
    if not ok:
        warnings.warn(f"{cache}: damaged cache entry ({reason}); decoding the images again", stacklevel=3)
        return None
    return arrays


def _write_cache(cache: Path, arrays: dict[str, np.ndarray]) -> None:
    digest = np.array(_arrays_digest(arrays))
    atomic_write(cache, lambda f: np.savez(f, **arrays, digest=digest))  # per process: two jobs may decode alike


def _load_imagefolder(path: str | os.PathLike, size: int | None = None) -> tuple[ImageData, ImageData]:
    """A folder (or .tar / .tar.gz) of class sub-folders, read by one reader whatever the container.

    With ``train``/``test`` parts (folders, or archives in a folder) inside, those are the splits; otherwise
    a seeded 80/20 split per class. A class is a top folder; its images are every image file below it. Folders
    that only wrap the tree are looked through, and hidden entries skipped. Decoded arrays are cached under
    ``~/.cache/ltkd`` with a checksum: a damaged entry is decoded again, with a warning.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise LtkdError(f"{root}: no such folder or archive")
    if not root.is_dir() and not root.is_file():
        raise LtkdError(f"{root}: neither a folder nor an archive file")
    stamp = hashlib.sha1(f"{root.resolve()}|{_tree_stamp(root)}|{size}".encode() + b"v3").hexdigest()[:16]
    cache = _cache_dir() / "imagefolder" / f"{root.name}-{stamp}.npz"
    name = f"imagefolder:{root.name}"
    arrays = _read_cache(cache) if cache.is_file() else None
    if arrays is None:
        arrays = _read_image_tree(root, size)
        _write_cache(cache, arrays)
    xtr, ytr, xte, yte = (arrays[k] for k in ("xtr", "ytr", "xte", "yte"))
    classes = [str(c) for c in arrays["classes"]]
    pad = max(1, xtr.shape[2] // 8)
    tr = _make(xtr, ytr, classes, name, pad, True, split="train", source=str(root))
    te = _make(xte, yte, classes, name, pad, True, split="test", source=str(root))
    te.mean, te.std = tr.mean, tr.std
    return tr, te


SOURCES = {
    "digits": "scikit-learn's bundled 8×8 handwritten digits (always present)",
    "fashion-mnist": "Fashion-MNIST 28×28 grey: LTKD_DATA_DIR, Debian's dataset-fashion-mnist, or download",
    "cifar10": "CIFAR-10 32×32 colour: LTKD_DATA_DIR or torchvision download",
    "cifar100": "CIFAR-100 32×32 colour: LTKD_DATA_DIR or torchvision download",
    "imagefolder": "PATH to a folder or .tar.gz of class sub-folders (train/ and test/ inside, or split 80/20)",
}


def load(name: str = "digits", *, download: bool = True) -> tuple[ImageData, ImageData]:
    """Load a source's (train, test) splits as :class:`ImageData`.

    ``name`` is one of :data:`SOURCES` or a path (treated as ``imagefolder``).
    Raises :class:`~ltkd.errors.LtkdError` with a message saying where it looked when the
    data are missing.
    """
    key = str(name).lower()
    if key == "digits":
        return _load_digits()
    if key in ("fashion-mnist", "fashion_mnist", "fashionmnist"):
        return _load_fashion_mnist(download)
    if key in ("cifar10", "cifar100"):
        return _load_cifar(key, download)
    if key.startswith("imagefolder:"):
        return _load_imagefolder(str(name).split(":", 1)[1])
    if os.sep in str(name) or Path(name).exists():
        return _load_imagefolder(name)
    raise LtkdError(
        f"unknown data set {name!r}; choose one of {', '.join(k for k in SOURCES if k != 'imagefolder')}, "
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
