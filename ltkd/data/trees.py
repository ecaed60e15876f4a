"""Image trees: a folder or a .tar / .tar.gz of class sub-folders, read by one reader whatever the container
(walking, splitting, decoding), and the cache of decoded arrays under ``~/.cache/ltkd``."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import LtkdError, first_line
from ..files import atomic_write
from .loader import ImageData, _make


def _cache_dir() -> Path:
    d = os.environ.get("LTKD_CACHE_DIR")
    if d:
        return Path(d).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ltkd"


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
    """Image bytes -> H×W×3 uint8 (:func:`_to_rgb8`), turned upright by its EXIF orientation (a phone's JPEG), and
    resized to ``size``×``size`` if it is given and differs.

    An image over PIL's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``) is refused with its size; PIL's other
    warnings (e.g. that a palette image with transparency is better converted, which this does) are silenced, as are
    numpy's floating-point warnings: the pixels are the same either way."""
    import warnings

    from PIL import Image, ImageOps

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(raw)) as im:
                im.load()
                a = _to_rgb8(ImageOps.exif_transpose(im) or im)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
            raise LtkdError(f"too many pixels to be a small image ({first_line(e, 120)}); "
                            "shrink it or remove it") from e  # fmt: skip
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
                if m.name.startswith(("/", "\\")) or ".." in m.name.replace("\\", "/").split("/"):
                    raise LtkdError(f"{path}: member {m.name!r} is an absolute path or climbs out with '..'; "
                                    "make the archive from inside its folder (tar czf data.tar.gz -C folder .)")
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


def _decode_items(items: list[tuple[int, _Node]], size: int | None,
                  like: tuple[tuple[int, ...], str] | None = None) -> tuple[np.ndarray, np.ndarray, tuple]:
    """(images N×C×H×W, labels, (H×W, the first file)) of ``items``. Without ``size`` every image must have the size
    of the first (and of ``like``'s, the other split's): mixed sizes are an error naming two files, never resized to
    whichever file sorts first."""

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

    arrays = []
    for _, node in items:
        a = one(node, size)
        like = like or (a.shape[:2], node.where)
        if a.shape[:2] != like[0]:
            (h, w), (h0, w0) = a.shape[:2], like[0]
            raise LtkdError(f"images of different sizes: {like[1]} is {w0}×{h0}, {node.where} is {w}×{h}; make them one "
                            "size, or ask for one (--image-size N, image_size=N) and every image is resized to N×N")
        arrays.append(a)
    x = np.stack(arrays).transpose(0, 3, 1, 2)
    y = np.array([c for c, _ in items], np.int64)
    return np.ascontiguousarray(x), y, like


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
    xtr, ytr, like = _decode_items(items, size)
    if min(like[0]) < 4:  # cnn6 pools twice: smaller images end in a shape error deep inside it
        raise LtkdError(f"images of {like[0][1]}×{like[0][0]} pixels ({like[1]}, ...) are too small: at least 4×4 "
                        "trains; ask for a size (--image-size N, image_size=N) to resize them")  # fmt: skip
    if test_nodes is not None:
        classes_te, items_te = _class_items(test_nodes, w_te)
        if classes_te != classes:
            only = sorted(set(classes) ^ set(classes_te))
            raise LtkdError(f"{root}: train and test have different class folders ({', '.join(only[:5])} "
                            "in one only)")  # fmt: skip
        xte, yte, _ = _decode_items(items_te, size, like)
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
    """Store a cache entry; where that fails (a cache folder that cannot be written or made, say because a file
    is in its way, or a full disk) one warning (once per folder) says so and the run goes on without it: the cache is only a
    speed-up. The partly written file is removed (:func:`~ltkd.files.atomic_write`)."""
    import warnings

    digest = np.array(_arrays_digest(arrays))
    try:
        atomic_write(cache, lambda f: np.savez(f, **arrays, digest=digest))  # per process: two jobs may decode alike
    except OSError as e:
        if str(cache.parent) not in _UNWRITABLE:  # once per folder and process; one line (no source line below it)
            _UNWRITABLE.add(str(cache.parent))
            warnings.warn_explicit(f"cannot write the image cache in {cache.parent} ({first_line(e, 120)}); going on "
                                   "without it (set LTKD_CACHE_DIR to a writable folder to keep decoded images)",
                                   UserWarning, "ltkd", 0)  # fmt: skip


_UNWRITABLE: set[str] = set()


def _cached(cache: Path) -> dict[str, np.ndarray] | None:
    """The cache entry at ``cache`` if there is a readable one (see :func:`_read_cache`), else ``None``."""
    try:
        there = cache.is_file()
    except OSError:  # a cache folder that cannot be searched: as if empty (writing it then warns)
        return None
    return _read_cache(cache) if there else None


def check_image_size(image_size: object) -> int | None:
    """``image_size`` (the side every image of a PATH data set is resized to) checked: ``None`` or 4 to 1024."""
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or not 4 <= image_size <= 1024:
        raise LtkdError(f"image size must be a whole number of pixels from 4 to 1024, got {image_size!r}")
    return int(image_size)


def _load_imagefolder(path: str | os.PathLike, size: int | None = None) -> tuple[ImageData, ImageData]:
    """A folder (or .tar / .tar.gz) of class sub-folders, read by one reader whatever the container.

    With ``train``/``test`` parts (folders, or archives in a folder) inside, those are the splits; otherwise
    a seeded 80/20 split per class. A class is a top folder; its images are every image file below it. Folders
    that only wrap the tree are looked through, and hidden entries skipped. Decoded arrays are cached under
    ``~/.cache/ltkd`` with a checksum: a damaged entry is decoded again, with a warning (as is a cache that
    cannot be written: the run goes on without it). Every image must have one size unless ``size`` asks for one
    (then each is resized to ``size``×``size``).
    """
    root = Path(path).expanduser()
    size = check_image_size(size)
    try:
        there = root.exists()
    except OSError as e:  # a name too long for the file system, say
        raise LtkdError(f"{str(root)[:80]}{'...' if len(str(root)) > 80 else ''}: not a usable path "
                        f"({first_line(e, 80)})") from e  # fmt: skip
    if not there:
        raise LtkdError(f"{root}: no such folder or archive")
    if not root.is_dir() and not root.is_file():
        raise LtkdError(f"{root}: neither a folder nor an archive file")
    stamp = hashlib.sha1(f"{root.resolve()}|{_tree_stamp(root)}|{size}".encode() + b"v4").hexdigest()[:16]
    cache = _cache_dir() / "imagefolder" / f"{root.name}-{stamp}.npz"
    name = f"imagefolder:{root.name}"
    arrays = _cached(cache)
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
