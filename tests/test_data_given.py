"""A user's data as given: a PATH is used whole unless ``--imbalance`` asks for a long tail, and the recorded
imbalance is the one the kept counts have; images of mixed sizes, EXIF orientation, hostile archives and
decompression bombs; damaged IDX files, a cache that cannot be written, and bad ``dataset`` values.

Every error case asserts exit status 2 and exactly one ``ltkd: error:`` line (or one ``LtkdError`` from the
Python API), and the user's files unchanged by digest.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import struct
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from test_bad_input import _expect_error as expect_error  # the bad-input suite's check of one case

from ltkd.cli import main
from ltkd.data import ImageData, load
from ltkd.errors import LtkdError
from ltkd.experiment import prepare_data, run


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LTKD_CACHE_DIR", str(tmp_path / "cache"))


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}  # fmt: skip


def _png(path: Path, rng: np.random.RandomState, size: tuple[int, int] = (12, 12), **save) -> np.ndarray:
    from PIL import Image

    a = rng.randint(0, 255, (*size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path, **save)
    return a


def _tree(root: Path, counts=(100, 20, 6), size=(12, 12)) -> Path:
    rng = np.random.RandomState(0)
    for c, n in zip("abc", counts):
        for i in range(n):
            _png(root / c / f"{i:03d}.png", rng, size)
    return root


def _expect_error(capsys, args: list[str], needle: str, keep: Path | None = None) -> str:
    """Exit status 2, exactly one ``ltkd: error:`` line holding ``needle``, ``keep`` unchanged (by digest)."""
    return expect_error(capsys, args, keep, needle)


def _train(data, out: Path, *extra: str) -> list[str]:
    return ["train", "--dataset", str(data), "--epochs", "1", "--out", str(out), *extra]


# --------------------------------------------------------------------------------------
# The imbalance: a PATH as given, --imbalance subsamples, the recorded IF is the counts'
# --------------------------------------------------------------------------------------
def test_a_path_data_set_is_trained_whole_by_default_and_says_so(tmp_path, capsys):
    data = _tree(tmp_path / "imb")
    before = _digest(data)
    capsys.readouterr()
    assert main(_train(data, tmp_path / "run")) == 0
    out = capsys.readouterr().out
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["train_counts"] == [80, 16, 5]  # 100 / 20 / 6 less the 80/20 split's test fifth: every image
    assert m["imbalance"] == 16
    said = [line for line in out.splitlines() if "as given" in line]
    assert len(said) == 1 and "80 / 16 / 5" in said[0], out
    assert _digest(data) == before


def test_imbalance_subsamples_a_path_and_prints_the_counts_kept(tmp_path, capsys):
    data = _tree(tmp_path / "imb")
    capsys.readouterr()
    assert main(_train(data, tmp_path / "run", "--imbalance", "10")) == 0
    out = capsys.readouterr().out
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["train_counts"] == [51, 16, 5]  # the largest IF-10 tail the classes fill (not [5, 1, 1])
    assert m["imbalance"] == pytest.approx(51 / 5)  # what the counts have
    assert "IF 10 keeps 51 / 16 / 5 training images per class (of 80 / 16 / 5)" in out


def test_an_if_the_data_cannot_give_is_an_error(tmp_path, capsys):
    data = _tree(tmp_path / "imb")
    _expect_error(capsys, _train(data, tmp_path / "run", "--imbalance", "100"), "IF 100 cannot be had", data)
    _expect_error(capsys, _train("digits", tmp_path / "run2", "--imbalance", "1e9"), "IF 1e+09 cannot be had")
    assert not (tmp_path / "run2").exists()
    with pytest.raises(LtkdError, match="cannot be had"):
        prepare_data("digits", 1e9)


def test_a_named_set_records_the_imbalance_its_counts_have(tmp_path):
    m, _ = run("ce", dataset="digits", imbalance=100, epochs=1, device="cpu", out=tmp_path / "run")
    counts = m["train_counts"]
    assert m["imbalance"] == max(counts) / min(counts) != 100  # digits: 142 images in the head, 1 in the tail
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["imbalance"] == m["imbalance"]
    train, _ = prepare_data("digits")  # the named set's default is kept: IF 100
    assert train.counts.tolist() == counts


def test_the_api_uses_a_path_whole_and_checks_imbalance(tmp_path):
    data = _tree(tmp_path / "imb")
    train, test = prepare_data(str(data))
    assert train.counts.tolist() == [80, 16, 5] and train.meta["imbalance"] == 16
    for bad in ("10", True, float("nan"), 0.5):
        with pytest.raises(LtkdError, match="imbalance factor must be a number ≥ 1"):
            prepare_data(str(data), bad)


# --------------------------------------------------------------------------------------
# Images: one size unless asked, EXIF orientation, hostile archives, bombs, warnings
# --------------------------------------------------------------------------------------
def test_mixed_sizes_are_an_error_naming_two_files(tmp_path, capsys):
    data = _tree(tmp_path / "mixed", counts=(6, 6))
    _png(data / "a" / "000.png", np.random.RandomState(1), (30, 30))  # sorts first: it used to size every image
    line = _expect_error(capsys, _train(data, tmp_path / "run"), "images of different sizes", data)
    assert "000.png is 30×30" in line and "001.png is 12×12" in line and "--image-size" in line
    assert not (tmp_path / "run").exists()


def test_images_too_small_to_train_on_are_one_line(tmp_path, capsys):
    data = _tree(tmp_path / "tiny", counts=(6, 6), size=(1, 1))  # used to end in a traceback from max_pool2d
    _expect_error(capsys, _train(data, tmp_path / "run"), "images of 1×1 pixels", data)
    train, _ = load(str(data), image_size=8)
    assert train.images.shape[2:] == (8, 8)


def test_mixed_sizes_between_the_splits_are_an_error(tmp_path):
    _tree(tmp_path / "s" / "train", counts=(3, 3))
    _tree(tmp_path / "s" / "test", counts=(2, 2), size=(16, 16))
    with pytest.raises(LtkdError, match=r"images of different sizes: .*train.*12×12, .*test.*16×16"):
        load(str(tmp_path / "s"))


def test_an_image_size_asked_for_resizes_every_image(tmp_path, capsys):
    data = _tree(tmp_path / "mixed", counts=(6, 6))
    _png(data / "b" / "005.png", np.random.RandomState(1), (30, 40))
    train, test = load(str(data), image_size=16)
    assert train.images.shape[1:] == test.images.shape[1:] == (3, 16, 16)
    assert main(_train(data, tmp_path / "run", "--image-size", "16")) == 0
    with pytest.raises(LtkdError, match="image size must be a whole number of pixels from 4 to 1024, got 2"):
        load(str(data), image_size=2)
    with pytest.raises(LtkdError, match="applies to a PATH"):
        load("digits", image_size=16)


def test_exif_orientation_is_applied(tmp_path):
    from PIL import Image

    rng = np.random.RandomState(0)
    pixels = {}
    for c in "ab":
        for i in range(5):
            exif = Image.Exif()
            exif[0x0112] = 6  # rotate 90° clockwise to view
            pixels[(c, i)] = _png(tmp_path / "x" / c / f"{i}.png", rng, (6, 10), exif=exif)  # stored 10 wide, 6 high
    train, test = load(str(tmp_path / "x"))
    assert train.images.shape[2:] == (10, 6)  # upright: 6 wide, 10 high
    seen = {bytes(np.ascontiguousarray(im.permute(1, 2, 0).numpy()).data) for im in torch.cat([train.images, test.images])}
    want = {bytes(np.ascontiguousarray(np.rot90(a, k=-1)).data) for a in pixels.values()}
    assert seen == want


@pytest.mark.parametrize("member", ["/tmp/arsrc/a/{i}.png", "../a/{i}.png", "x/../../a/{i}.png"])
def test_absolute_and_dotdot_archive_members_are_refused(tmp_path, capsys, member):
    rng = np.random.RandomState(0)
    arc = tmp_path / "bad.tar.gz"
    with tarfile.open(arc, "w:gz") as tar:
        for c in "ab":
            for i in range(5):
                buf = io.BytesIO()
                from PIL import Image

                Image.fromarray(rng.randint(0, 255, (8, 8, 3), dtype=np.uint8)).save(buf, "PNG")
                info = tarfile.TarInfo(member.replace("a/", f"{c}/").format(i=i))
                info.size = len(buf.getvalue())
                tar.addfile(info, io.BytesIO(buf.getvalue()))
    _expect_error(capsys, _train(arc, tmp_path / "run"), "is an absolute path or climbs out with '..'", tmp_path)


def test_a_decompression_bomb_is_one_line(tmp_path, capsys, monkeypatch):
    from PIL import Image

    data = _tree(tmp_path / "bomb", counts=(5, 5))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 12×12 = 144 pixels: over the limit, under twice it
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the raw DecompressionBombWarning used to go by and the run go on
        _expect_error(capsys, _train(data, tmp_path / "run"), "too many pixels to be a small image", data)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # over twice the limit: PIL's DecompressionBombError
    _expect_error(capsys, _train(data, tmp_path / "run"), "too many pixels to be a small image", data)


def test_pil_warnings_are_silenced(tmp_path):
    from PIL import Image

    rng = np.random.RandomState(0)
    for c in "ab":
        for i in range(5):
            im = Image.fromarray(rng.randint(0, 4, (8, 8), dtype=np.uint8), "P")
            im.putpalette(list(range(256)) * 3)
            (tmp_path / "p" / c).mkdir(parents=True, exist_ok=True)
            im.save(tmp_path / "p" / c / f"{i}.png", transparency=bytes([0, 128, 255, 255]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Palette images with Transparency expressed in bytes should be converted"
        train, _ = load(str(tmp_path / "p"))
    assert train.images.shape[1:] == (3, 8, 8)


# --------------------------------------------------------------------------------------
# Damaged IDX files, a cache that cannot be written, bad dataset values, mismatched splits
# --------------------------------------------------------------------------------------
def _idx(path: Path, a: np.ndarray) -> None:
    raw = struct.pack(">HBB", 0, 8, a.ndim) + struct.pack(">" + "I" * a.ndim, *a.shape) + a.tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


@pytest.mark.parametrize("damage", ["empty", "truncated", "bad gzip", "empty gzip"])
def test_damaged_idx_files_are_one_line(tmp_path, capsys, monkeypatch, damage):
    d = tmp_path / "fm"
    d.mkdir()
    rng = np.random.RandomState(0)
    gz = damage.endswith("gzip")
    for split, n in (("train", 20), ("t10k", 10)):
        _idx(d / (f"{split}-images-idx3-ubyte" + (".gz" if gz else "")), rng.randint(0, 255, (n, 28, 28), dtype=np.uint8))
        _idx(d / f"{split}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    bad = d / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    if damage == "empty":
        bad.write_bytes(b"")
    elif damage == "truncated":
        bad.write_bytes(bad.read_bytes()[:1000])
    elif damage == "bad gzip":
        bad.write_bytes(b"\x1f\x8b\x08\x00garbage" * 10)
    else:
        bad.write_bytes(gzip.compress(b""))
    monkeypatch.setenv("LTKD_DATA_DIR", str(d))
    before = _digest(d)
    line = _expect_error(capsys, _train("fashion-mnist", tmp_path / "run"), str(bad), d)
    assert "IDX" in line
    assert _digest(d) == before


def _full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("case", ["file in the way", "not writable", "full disk"])
def test_a_cache_that_cannot_be_written_warns_and_goes_on(tmp_path, monkeypatch, case):
    data = _tree(tmp_path / "d", counts=(5, 5))
    if case == "file in the way":
        (tmp_path / "cachefile").write_text("not a folder")
        monkeypatch.setenv("LTKD_CACHE_DIR", str(tmp_path / "cachefile"))
    elif case == "not writable":
        monkeypatch.setenv("LTKD_CACHE_DIR", "/proc/ltkd-cache")  # refused even to root
    else:
        monkeypatch.setattr(np, "savez", _full)
    with pytest.warns(UserWarning, match="cannot write the image cache") as seen:
        train, test = load(str(data))
    assert len([w for w in seen if "image cache" in str(w.message)]) == 1
    assert len(train) + len(test) == 10
    assert not list(tmp_path.rglob("*.tmp"))  # no partly written entry left behind


def test_an_empty_dataset_is_an_error_not_the_current_folder(tmp_path, capsys, monkeypatch):
    _tree(tmp_path / "here", counts=(5, 5))
    monkeypatch.chdir(tmp_path / "here")  # the current folder is an image tree: "" used to train on it
    _expect_error(capsys, _train("", tmp_path / "run"), "dataset is empty", tmp_path / "here")
    _expect_error(capsys, _train("  ", tmp_path / "run"), "dataset is empty", tmp_path / "here")
    assert not (tmp_path / "run").exists()


def test_a_300_character_dataset_is_one_line(tmp_path, capsys):
    _expect_error(capsys, _train("x" * 300, tmp_path / "run"), "unknown data set")
    _expect_error(capsys, _train(str(tmp_path / ("y" * 300)), tmp_path / "run"), "not a usable path")


@pytest.mark.parametrize("bad", [5, None, ["digits"], b"digits", 2.5])
def test_a_dataset_of_the_wrong_type_is_named(tmp_path, bad):
    with pytest.raises(LtkdError, match=rf"dataset must be a data set's name or a path, got {type(bad).__name__}"):
        run("ce", dataset=bad, epochs=1, device="cpu")
    with pytest.raises(LtkdError, match="dataset must be"):
        load(bad)


def test_a_test_split_from_another_data_set_is_an_error():
    train, test = load("digits")
    other = ImageData(torch.zeros(20, 1, 28, 28, dtype=torch.uint8), torch.arange(20) % 10, test.classes, "other")
    with pytest.raises(LtkdError, match=r"differ in image size: 8×8 against 28×28"):
        run("ce", data=(train, other), epochs=1, device="cpu")
    rgb = ImageData(torch.zeros(20, 3, 8, 8, dtype=torch.uint8), torch.arange(20) % 10, test.classes, "rgb")
    with pytest.raises(LtkdError, match=r"differ in channels: 1 against 3"):
        run("ce", data=(train, rgb), epochs=1, device="cpu")
    five = ImageData(torch.zeros(20, 1, 8, 8, dtype=torch.uint8), torch.arange(20) % 5, list("abcde"), "five")
    with pytest.raises(LtkdError, match=r"differ in classes: 10 \(0, 1, 2, \.\.\.\) against 5"):
        run("ce", data=(train, five), epochs=1, device="cpu")
