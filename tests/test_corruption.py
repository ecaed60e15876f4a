"""Damage at random (issue 25): image folders, archives, checkpoints and binary-stack exports, corrupted by
hypothesis, either load to exactly what the undamaged file gives or raise ``LtkdError`` — never another
exception, never a silently different model or data set. Example counts are kept small (the suite runs on
2 CPU cores); each example takes milliseconds."""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ltkd.errors import LtkdError

SETTINGS = dict(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# A damage: ("flip", position, mask) XORs a byte, ("cut", position) truncates, ("insert", position, byte)
# inserts one, ("zero", position, length) blanks a run of bytes. Positions are fractions of the file's length,
# so one strategy serves files of any size.
_frac = st.floats(0, 1, allow_nan=False)
DAMAGE = st.lists(
    st.one_of(
        st.tuples(st.just("flip"), _frac, st.integers(1, 255)),
        st.tuples(st.just("cut"), _frac),
        st.tuples(st.just("insert"), _frac, st.integers(0, 255)),
        st.tuples(st.just("zero"), _frac, st.integers(1, 64)),
    ),
    min_size=1,
    max_size=3,
)


def _damage(raw: bytes, ops) -> bytes:
    b = bytearray(raw)
    for op in ops:
        if not b:
            break
        i = min(int(op[1] * len(b)), len(b) - 1)
        if op[0] == "flip":
            b[i] ^= op[2]
        elif op[0] == "cut":
            del b[i:]
        elif op[0] == "insert":
            b.insert(i, op[2])
        else:
            b[i : i + op[2]] = bytes(len(b[i : i + op[2]]))
    return bytes(b)


def _read_damaged(raw: bytes, ops, name: str, read):
    """``raw`` damaged by ``ops``, written to a temporary file ``name`` and read with ``read(path, folder)``:
    what it returns, or None where it raised LtkdError (the one failure allowed)."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / name
        p.write_bytes(_damage(raw, ops))
        try:
            return read(p, Path(d))
        except LtkdError:
            return None


# --------------------------------------------------------------------------------------
# Binary-stack exports
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def export_file():
    from ltkd.methods import binary_stack as bs

    torch.manual_seed(0)
    net = bs.build("stack", 4, 1, m=4, k=2, widths=(4, 8))
    net.train()
    net(torch.randn(8, 1, 8, 8))
    net.eval()
    with tempfile.TemporaryDirectory() as d:
        bs.export(net, Path(d) / "net.npz")
        raw = (Path(d) / "net.npz").read_bytes()
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        y = net(x)
    return raw, x, y, {k: v.clone() for k, v in net.state_dict().items()}


@settings(**SETTINGS)
@given(ops=DAMAGE)
def test_damaged_binary_export_loads_the_same_model_or_is_refused(export_file, ops):
    from ltkd.methods import binary_stack as bs

    raw, x, y, state = export_file
    net = _read_damaged(raw, ops, "net.npz", lambda p, _: bs.load(p))
    if net is None:
        return
    with torch.no_grad():
        assert torch.equal(net(x), y)
    loaded = net.state_dict()
    for k in ("stem.0.weight", "head.fc.weight") if "head.fc.weight" in loaded else ("stem.0.weight",):
        assert torch.equal(loaded[k], state[k])


def test_binary_export_damage_that_used_to_pass(export_file):
    """The kinds of damage the issue found loading as another model or raising tracebacks, by name."""
    import json

    from ltkd.methods import binary_stack as bs

    raw = export_file[0]
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "net.npz"
        src.write_bytes(raw)
        z = dict(np.load(src))
        header = json.loads(bytes(z["header"]).decode())

        def write(arrays, name="bad.npz") -> Path:
            p = Path(d) / name
            np.savez(p, **arrays)
            return p

        def hdr(h):
            return np.frombuffer(json.dumps(h).encode(), np.uint8)

        cases = {
            "empty file": (Path(d) / "e.npz", b""),
            "shortened filters": write({**z, "filters": z["filters"][:-1]}),
            "NaN in rest": write({**z, "rest": np.where(np.arange(z["rest"].size) == 3, np.nan, z["rest"]).astype(np.float32)}),
            "missing header key": write({**z, "header": hdr({k: v for k, v in header.items() if k != "offsets"})}),
            "wrong widths": write({**z, "header": hdr({**header, "config": {**header["config"], "widths": [4, 16]}})}),
            "144 GB": write({**z, "header": hdr({**header, "config": {**header["config"], "widths": [4, 10**6]}})}),
            "string for m": write({**z, "header": hdr({**header, "config": {**header["config"], "m": "4"}})}),
            "header not JSON": write({**z, "header": np.frombuffer(b"{not json", np.uint8)}),
            "rest as float64": write({**z, "rest": z["rest"].astype(np.float64)}),
            "no filters array": write({k: v for k, v in z.items() if k != "filters"}),
        }
        for _name, p in cases.items():
            if isinstance(p, tuple):
                p[0].write_bytes(p[1])
                p = p[0]
            with pytest.raises(LtkdError):
                bs.load(p)
            # and a bad CRC: one byte of the stored data changed in place
        with zipfile.ZipFile(src) as zf:
            info = zf.getinfo("rest.npy")
        bad = bytearray(raw)
        bad[info.header_offset + 30 + len(info.filename) + len(info.extra) + 200] ^= 1
        (Path(d) / "crc.npz").write_bytes(bytes(bad))
        with pytest.raises(LtkdError, match="CRC"):
            bs.load(Path(d) / "crc.npz")


# --------------------------------------------------------------------------------------
# Training checkpoints and model files
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint_file(digits):
    from ltkd.checkpoint import read_checkpoint, state_digest
    from ltkd.data import long_tail
    from ltkd.models import build_model
    from ltkd.profiles import TrainConfig
    from ltkd.train import LossObjective, fit

    class Stop(Exception):
        pass

    def halt(epoch, row):
        if epoch == 2:
            raise Stop

    with tempfile.TemporaryDirectory() as d:
        ck = Path(d) / "stage1.ckpt"
        with pytest.raises(Stop):
            fit(build_model("cnn6x0.5", 10, 1), LossObjective(torch.nn.functional.cross_entropy),
                long_tail(digits[0], 10), TrainConfig(epochs=3, batch_size=64), device="cpu", checkpoint=ck,
                on_epoch_end=halt)  # fmt: skip
        raw = ck.read_bytes()
        good = read_checkpoint(ck)
    return raw, state_digest({k: v for k, v in good.items() if k != "digest"})


@settings(**SETTINGS)
@given(ops=DAMAGE)
def test_damaged_checkpoint_reads_the_same_or_is_refused(checkpoint_file, ops):
    from ltkd.checkpoint import read_checkpoint, state_digest

    raw, digest = checkpoint_file
    ck = _read_damaged(raw, ops, "stage1.ckpt", lambda p, _: read_checkpoint(p))
    if ck is None:
        return
    assert state_digest({k: v for k, v in ck.items() if k != "digest"}) == digest


def test_a_byte_changed_inside_a_tensor_is_caught(checkpoint_file):
    """torch.load does not check the zip's CRCs: without the checksum this loaded as another model."""
    from ltkd.checkpoint import read_checkpoint

    raw = checkpoint_file[0]
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        info = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)  # the largest tensor
        with zf.open(info) as f:
            stored = f.read()
    start = raw.index(stored)  # stored uncompressed: its bytes sit in the file as they are
    bad = bytearray(raw)
    bad[start + len(stored) // 2] ^= 0x10
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.ckpt"
        p.write_bytes(bytes(bad))
        with pytest.raises(LtkdError):
            read_checkpoint(p)


# --------------------------------------------------------------------------------------
# Image folders and archives
# --------------------------------------------------------------------------------------
def _tree(root: Path) -> Path:
    from PIL import Image

    rng = np.random.RandomState(0)
    for c in ("ant", "bee"):
        (root / c).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.randint(0, 255, (4, 4, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def _load(path: Path, cache: Path):
    import os

    from ltkd.data import load

    old = os.environ.get("LTKD_CACHE_DIR")
    os.environ["LTKD_CACHE_DIR"] = str(cache)
    try:
        tr, te = load(str(path))
    finally:
        if old is None:
            del os.environ["LTKD_CACHE_DIR"]
        else:
            os.environ["LTKD_CACHE_DIR"] = old
    return tr.classes, tr.images, tr.labels, te.images, te.labels


def _same(a, b) -> bool:
    return a[0] == b[0] and all(torch.equal(x, y) for x, y in zip(a[1:], b[1:]))


@pytest.fixture(scope="module")
def archive_file():
    with tempfile.TemporaryDirectory() as d:
        src = _tree(Path(d) / "bugs")
        with tarfile.open(Path(d) / "bugs.tar.gz", "w:gz") as tar:
            tar.add(src, arcname="bugs")
        raw = (Path(d) / "bugs.tar.gz").read_bytes()
        want = _load(Path(d) / "bugs.tar.gz", Path(d) / "cache")
    return raw, want


@settings(**SETTINGS)
@given(ops=DAMAGE)
def test_damaged_archive_reads_the_same_or_is_refused(archive_file, ops):
    raw, want = archive_file
    got = _read_damaged(raw, ops, "bugs.tar.gz", lambda p, d: _load(p, d / "cache"))
    assert got is None or _same(got, want)


FOLDER_DAMAGE = st.lists(
    st.tuples(st.sampled_from(["flip", "cut", "garbage", "delete", "empty class", "dangling link", "hidden file",
                               "text file"]), st.integers(0, 9), _frac, st.integers(1, 255)),  # fmt: skip
    min_size=1,
    max_size=3,
)


@settings(**SETTINGS)
@given(ops=FOLDER_DAMAGE)
def test_damaged_folder_reads_as_it_is_now_or_is_refused(ops):
    """A folder's images may change (that is new data, not damage to hide), so the promise is: what the cache
    serves is what the folder holds now (the same as decoding it afresh), harmless additions change nothing,
    and anything unreadable is an ``LtkdError``."""
    with tempfile.TemporaryDirectory() as d:
        root = _tree(Path(d) / "bugs")
        original = _load(root, Path(d) / "cache")  # warms the cache
        files = sorted(root.rglob("*.png"))
        harmless = True
        for kind, k, frac, byte in ops:
            f = files[k % len(files)]
            if kind in ("flip", "cut", "garbage", "delete"):
                harmless = False
                if not f.exists():
                    continue
                raw = f.read_bytes()
                if kind == "flip":
                    f.write_bytes(_damage(raw, [("flip", frac, byte)]))
                elif kind == "cut":
                    f.write_bytes(raw[: int(frac * len(raw))])
                elif kind == "garbage":
                    f.write_bytes(bytes([byte]) * 40)
                else:
                    f.unlink()
            elif kind == "empty class":
                harmless = False
                (root / f"empty{k}").mkdir(exist_ok=True)
            elif kind == "dangling link":
                harmless = False
                link = root / "ant" / f"gone{k}.png"
                if not link.is_symlink():
                    link.symlink_to(Path(d) / "nowhere.png")
            elif kind == "hidden file":
                (root / "bee" / f".hidden{k}.png").write_bytes(b"not an image")
            else:
                (root / "bee" / f"notes{k}.txt").write_text("not an image either")
        try:
            got = _load(root, Path(d) / "cache")
        except LtkdError:
            with pytest.raises(LtkdError):  # a fresh decode refuses it as well
                _load(root, Path(d) / "fresh")
            return
        assert _same(got, _load(root, Path(d) / "fresh"))
        if harmless:
            assert _same(got, original)
        shutil.rmtree(root)


def test_a_byte_changed_inside_an_archive_member_is_caught(tmp_path):
    """tar keeps no checksum of its members' contents; gzip's CRC covers them, but only if the stream is read to
    its end. A .tar.gz stored without compression (level 0) holding BMPs (no checksum of their own) shows it: a
    pixel byte changed in place still decodes, to other pixels, unless the CRC is checked."""
    import gzip

    from PIL import Image

    rng = np.random.RandomState(0)
    for c in ("ant", "bee"):
        (tmp_path / "bmp" / c).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.randint(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "bmp" / c / f"{i}.bmp")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(tmp_path / "bmp", arcname="bmp")
    raw = gzip.compress(buf.getvalue(), compresslevel=0)
    want = _load(_write(tmp_path / "ok.tar.gz", raw), tmp_path / "cache")
    pixels = (tmp_path / "bmp" / "bee" / "2.bmp").read_bytes()[-100:]  # the last rows of one image
    bad = bytearray(raw)
    bad[raw.index(pixels) + 50] ^= 0x01
    with pytest.raises(LtkdError, match="truncated|CRC|not a readable"):
        got = _load(_write(tmp_path / "bad.tar.gz", bytes(bad)), tmp_path / "cache")
        assert not _same(got, want)  # (what happened before: another image, silently)


def _write(p: Path, raw: bytes) -> Path:
    p.write_bytes(raw)
    return p
