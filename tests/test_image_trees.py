"""One reader for image trees (issue 25): a folder and a .tar(.gz) made from it give the same classes, the same
splits and the same pixels; 16-bit images are scaled, not clipped; a damaged cache entry is rebuilt."""

from __future__ import annotations

import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ltkd.data import load


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LTKD_CACHE_DIR", str(tmp_path / "cache"))


def _png(path: Path, rng: np.random.RandomState, size: int = 6) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.randint(0, 255, (size, size, 3), dtype=np.uint8)).save(path)


def _make_tree(root: Path, classes: dict[str, int], seed: int = 0) -> None:
    """Class folders of PNGs; the first class also has a nested sub-folder, and there is a hidden file and a
    text file the reader must skip alike in both containers."""
    rng = np.random.RandomState(seed)
    for c, n in classes.items():
        for i in range(n):
            _png(root / c / f"{i:02d}.png", rng)
    first = next(iter(classes))
    for i in range(3):
        _png(root / first / "nested" / f"n{i}.png", rng)
    (root / first / ".DS_Store").write_bytes(b"\x00\x01 not an image")
    (root / first / "notes.txt").write_text("about these images")


def _archives(src: Path, tmp: Path) -> list[Path]:
    """The ways people pack a folder: wrapped in its name (``tar czf x.tar.gz src``), its contents at the top
    (``tar czf x.tar.gz -C src .``), files only (no folder entries), and an uncompressed .tar."""
    out = []
    a = tmp / f"{src.name}-wrapped.tar.gz"
    with tarfile.open(a, "w:gz") as tar:
        tar.add(src, arcname=src.name)
    out.append(a)
    b = tmp / f"{src.name}-dot.tgz"
    with tarfile.open(b, "w:gz") as tar:
        tar.add(src, arcname=".")
    out.append(b)
    c = tmp / f"{src.name}-files.tar.gz"
    with tarfile.open(c, "w:gz") as tar:
        for f in sorted(src.rglob("*")):
            if f.is_file():
                tar.add(f, arcname=str(f.relative_to(src)), recursive=False)
    out.append(c)
    d = tmp / f"{src.name}-plain.tar"
    with tarfile.open(d, "w") as tar:
        tar.add(src, arcname=src.name)
    out.append(d)
    return out


def _same(a, b) -> None:
    for x, y in zip(a, b):
        assert x.classes == y.classes
        assert torch.equal(x.labels, y.labels)
        assert torch.equal(x.images, y.images)
        assert x.mean == y.mean and x.std == y.std and x.pad == y.pad


def test_archive_reads_as_the_folder_it_was_made_from_80_20(tmp_path):
    src = tmp_path / "pets"
    _make_tree(src, {"cat": 7, "dog": 11, "emu": 5})
    folder = load(str(src))
    assert folder[0].classes == ["cat", "dog", "emu"]
    assert folder[0].counts.tolist() == [8, 9, 4] and folder[1].counts.tolist() == [2, 2, 1]  # cat: 7 + 3 nested
    for arch in _archives(src, tmp_path):
        _same(folder, load(str(arch)))


def test_archive_reads_as_the_folder_it_was_made_from_train_test(tmp_path):
    src = tmp_path / "pets"
    _make_tree(src / "train", {"cat": 6, "dog": 4}, seed=1)
    _make_tree(src / "test", {"cat": 2, "dog": 3}, seed=2)
    folder = load(str(src))
    assert folder[0].counts.tolist() == [9, 4] and folder[1].counts.tolist() == [5, 3]  # the given split, not 80/20
    for arch in _archives(src, tmp_path):
        _same(folder, load(str(arch)))
    parts = tmp_path / "parts"  # train.tar.gz and test.tar.gz side by side in a folder
    parts.mkdir()
    for split in ("train", "test"):
        with tarfile.open(parts / f"{split}.tar.gz", "w:gz") as tar:
            tar.add(src / split, arcname=split)
    _same(folder, load(str(parts)))


def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    from PIL import Image

    rng = np.random.RandomState(0)
    grey16 = {}
    for c in ("a", "b"):
        for i in range(5):
            v = rng.randint(0, 65536, (6, 6)).astype(np.uint16)
            path = tmp_path / "deep" / c / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(v).save(path)
            grey16[(c, i)] = v
    with Image.open(tmp_path / "deep" / "a" / "0.png") as im:
        assert im.mode in ("I;16", "I")  # what Pillow makes of a 16-bit grey PNG
    tr, te = load(str(tmp_path / "deep"))
    images = torch.cat([tr.images, te.images])
    want = [np.round(v.astype(np.float64) * 255 / 65535).astype(np.uint8) for v in grey16.values()]
    have = {im.tobytes() for im in images[:, 0].numpy()}
    assert have == {w.tobytes() for w in want}  # every image, scaled v·255/65535 (and rounded)
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2])  # grey in 3 channels
    assert len(torch.unique(images)) > 100 and (images == 255).float().mean() < 0.05  # clipped: mostly 255


def test_a_damaged_cache_entry_is_rebuilt_with_a_warning(tmp_path):
    src = tmp_path / "imgs"
    _make_tree(src, {"a": 6, "b": 6})
    first = load(str(src))
    (entry,) = (tmp_path / "cache" / "imagefolder").glob("*.npz")
    raw = bytearray(entry.read_bytes())
    for damage in ("truncate", "flip", "garbage"):
        if damage == "truncate":
            entry.write_bytes(bytes(raw[: len(raw) // 3]))
        elif damage == "flip":
            bad = bytearray(raw)
            bad[len(bad) // 2] ^= 0xFF
            entry.write_bytes(bytes(bad))
        else:
            entry.write_bytes(b"not a zip file at all")
        with pytest.warns(UserWarning, match="damaged cache entry"):
            again = load(str(src))
        _same(first, again)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # rebuilt: the next load reads it without a warning
            _same(first, load(str(src)))
    # an entry rewritten whole with other pixels (a valid file whose checksum no longer matches) is caught too
    z = dict(np.load(entry, allow_pickle=False))
    z["xtr"] = z["xtr"].copy()
    z["xtr"][0, 0, 0, 0] ^= 1
    np.savez(entry, **z)
    with pytest.warns(UserWarning, match="checksum does not match"):
        _same(first, load(str(src)))
