"""Bad input to the ``ltkd`` command, as a careless or hostile user gives it (issue 25).

Every case asserts the command's promise: exit status 2, exactly one line on stderr and it begins
``ltkd: error:`` (and names what is at fault), and nothing written into OUT but what was there before.
The cases run ``ltkd.cli.main`` in this process (the command's entry point; a fresh process per case would
cost seconds each); ``test_some_cases_in_a_fresh_process`` runs a few through ``python -m ltkd``.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ltkd.cli import main


def _snapshot(out: Path) -> dict[str, str] | None:
    """Every file under ``out`` with a digest of its bytes (``None`` if ``out`` does not exist)."""
    if not out.exists() and not out.is_symlink():
        return None
    if out.is_file():
        return {".": hashlib.sha1(out.read_bytes()).hexdigest()}
    return {str(p.relative_to(out)): (hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(out.rglob("*"))}  # fmt: skip


def _expect_error(capsys, args: list[str], out: Path | None, needle: str) -> str:
    before = _snapshot(out) if out is not None else None
    capsys.readouterr()
    code = main(args)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("ltkd: error:"), err
    assert needle in lines[0], (needle, lines[0])
    if out is not None:
        assert _snapshot(out) == before, f"{out} changed"
    return lines[0]


def _png(path: Path, rng: np.random.RandomState, size: int = 6) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.randint(0, 255, (size, size, 3), dtype=np.uint8)).save(path)


def _tree(root: Path, classes=("a", "b"), n: int = 6, seed: int = 0) -> Path:
    rng = np.random.RandomState(seed)
    for c in classes:
        for i in range(n):
            _png(root / c / f"{i}.png", rng)
    return root


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LTKD_CACHE_DIR", str(tmp_path / "cache"))


def _train(data: str | Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--dataset", str(data), "--epochs", "1", "--out", str(out), *extra]


# --------------------------------------------------------------------------------------
# The output folder, the seed, the device: refused before any data are read or trained on
# --------------------------------------------------------------------------------------
def test_empty_out(capsys, tmp_path):
    _expect_error(capsys, ["train", "--out", ""], None, "output folder is an empty path")
    _expect_error(capsys, ["distill", "--teacher", "cnn6", "--out", " "], None, "output folder is an empty path")


def test_out_is_a_file_or_under_one(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("keep me")
    _expect_error(capsys, ["train", "--out", str(f)], f, "is a file, not a folder")
    _expect_error(capsys, ["train", "--out", str(f / "sub")], f, f"{f} is a file, not a folder")
    _expect_error(capsys, ["distill", "--teacher", "cnn6", "--out", str(f / "a" / "b")], f, "is a file")


def test_out_not_writable(capsys, tmp_path):
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            _expect_error(capsys, ["train", "--out", str(ro / "run")], ro, "is not writable")
        finally:
            ro.chmod(0o700)
    else:  # root writes anywhere on an ordinary file system; /sys (sysfs) refuses even root
        import tempfile

        try:
            with tempfile.TemporaryFile(dir="/sys"):
                pytest.skip("no folder here refuses root's writes")
        except OSError:
            pass
        _expect_error(capsys, ["train", "--out", "/sys/ltkd-run"], None, "is not writable")
        assert not Path("/sys/ltkd-run").exists()


def test_out_holds_a_folder_where_a_file_goes(capsys, tmp_path):
    (tmp_path / "o1" / "model.pt").mkdir(parents=True)
    _expect_error(capsys, ["train", "--out", str(tmp_path / "o1")], tmp_path / "o1", "model.pt is a folder")
    (tmp_path / "o2").mkdir()
    (tmp_path / "o2" / "checkpoints").write_text("x")
    _expect_error(capsys, ["train", "--out", str(tmp_path / "o2")], tmp_path / "o2", "checkpoints is a file")


@pytest.mark.parametrize("seed", [str(2**64), str(2**63), "-1", "1e3", "seven"])
def test_bad_seed(capsys, tmp_path, seed):
    needle = "expected a whole number" if seed in ("1e3", "seven") else "seed must be a whole number from 0 to 2**63 - 1"
    _expect_error(capsys, ["train", "--seed", seed, "--out", str(tmp_path / "o")], tmp_path / "o", needle)
    _expect_error(capsys, ["distill", "--teacher", "cnn6", "--seed", seed, "--out", str(tmp_path / "o")],
                  tmp_path / "o", needle)  # fmt: skip


def test_largest_seed_is_accepted_by_the_library(digits):
    from ltkd.data import long_tail
    from ltkd.experiment import run
    from ltkd.profiles import get_profile

    quick = get_profile("quick")
    prof = quick.replace(extra={}, stage1=quick.stage1.replace(epochs=1, batch_size=256))
    m, _ = run("ce", data=(long_tail(digits[0], 10), digits[1]), profile=prof, device="cpu", seed=2**63 - 1)
    assert m["seed"] == 2**63 - 1


def test_meta_device(capsys, tmp_path):
    _expect_error(capsys, _train("digits", tmp_path / "o", "--device", "meta"), tmp_path / "o",
                  "device 'meta' asked for, but it is not available here (or holds no data)")  # fmt: skip


# --------------------------------------------------------------------------------------
# Data: folders and archives
# --------------------------------------------------------------------------------------
def _targz(src: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(src, arcname=src.name)
    return dest


def test_truncated_archive(capsys, tmp_path):
    arch = _targz(_tree(tmp_path / "imgs", n=40), tmp_path / "imgs.tar.gz")
    data = arch.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) // 2])
    _expect_error(capsys, _train(cut, tmp_path / "o"), tmp_path / "o", "not a readable .tar / .tar.gz archive, or a truncated one")


def test_not_an_archive(capsys, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("these are not images\n" * 50)
    _expect_error(capsys, _train(f, tmp_path / "o"), tmp_path / "o", f"{f}: not a readable .tar / .tar.gz archive")


def test_dangling_symlink(capsys, tmp_path):
    root = _tree(tmp_path / "imgs")
    (root / "a" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    _expect_error(capsys, _train(root, tmp_path / "o"), tmp_path / "o", "gone.png: a dangling symbolic link")


def test_looping_symlinks(capsys, tmp_path):
    root = _tree(tmp_path / "imgs")
    (root / "a" / "up").symlink_to(root)  # a folder link back to the top
    _expect_error(capsys, _train(root, tmp_path / "o"), tmp_path / "o", "a symbolic link loop")
    root2 = _tree(tmp_path / "imgs2")
    (root2 / "b" / "self.png").symlink_to(root2 / "b" / "self.png")  # a link to itself
    _expect_error(capsys, _train(root2, tmp_path / "o"), tmp_path / "o", "self.png: cannot follow this path")


def test_empty_class_folder(capsys, tmp_path):
    root = _tree(tmp_path / "imgs")
    (root / "c").mkdir()
    _expect_error(capsys, _train(root, tmp_path / "o"), tmp_path / "o", "class folder 'c' has no images")
    arch = _targz(root, tmp_path / "imgs.tar.gz")  # the archive says the same
    _expect_error(capsys, _train(arch, tmp_path / "o"), tmp_path / "o", "class folder 'c' has no images")


def test_empty_test_split(capsys, tmp_path):
    root = _tree(tmp_path / "imgs", n=4)  # 4 images a class: the 80/20 split puts none in the test split
    _expect_error(capsys, _train(root, tmp_path / "o"), tmp_path / "o", "the test split has no images")


def test_train_without_test(capsys, tmp_path):
    _tree(tmp_path / "imgs" / "train")
    _expect_error(capsys, _train(tmp_path / "imgs", tmp_path / "o"), tmp_path / "o", "has a train/ folder but no test/")


def test_train_and_test_classes_differ(capsys, tmp_path):
    _tree(tmp_path / "imgs" / "train", classes=("a", "b"))
    _tree(tmp_path / "imgs" / "test", classes=("a", "c"), n=2)
    _expect_error(capsys, _train(tmp_path / "imgs", tmp_path / "o"), tmp_path / "o", "different class folders")


def test_unreadable_and_rangeless_images(capsys, tmp_path):
    from PIL import Image

    root = _tree(tmp_path / "imgs")
    (root / "a" / "9.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    _expect_error(capsys, _train(root, tmp_path / "o"), tmp_path / "o", "9.jpg: not a readable image")
    root2 = _tree(tmp_path / "imgs2")
    Image.fromarray(np.full((6, 6), 0.5, np.float32), "F").save(root2 / "b" / "f.tif")
    _expect_error(capsys, _train(root2, tmp_path / "o"), tmp_path / "o", "f.tif: floating-point pixels (mode F)")


def test_out_untouched_when_it_holds_an_earlier_run(capsys, tmp_path):
    out = tmp_path / "o"
    assert main(["train", "--epochs", "1", "--out", str(out)]) == 0
    # --overwrite replaces a finished run only with a finished run: a run that fails leaves it as it was
    _expect_error(capsys, _train(tmp_path / "missing", out, "--overwrite"), out, "no such folder or archive")
    _expect_error(capsys, _train("digits", out, "--device", "meta", "--overwrite"), out, "device 'meta'")


# --------------------------------------------------------------------------------------
# Model files given as a teacher
# --------------------------------------------------------------------------------------
class _Evil:  # a pickled object: torch.load(weights_only=True) must refuse it
    def __reduce__(self):
        return (print, ("this ran",))


@pytest.mark.parametrize(
    "content,needle",
    [
        (b"", "the file is empty"),
        (b"\x00\x01garbage" * 40, "cannot read"),
        (b'{"overall": 0.9}', "cannot read"),
        ("evil", "holds pickled Python objects"),
        ("no-arch", "names no known architecture"),
        ("bad-sizes", "image_size in the checkpoint is not [height, width]"),
        ("list", "is not an ltkd checkpoint"),
    ],
)
def test_bad_teacher_file(capsys, tmp_path, content, needle):
    f = tmp_path / "teacher.pt"
    if content == "evil":
        torch.save({"state_dict": {}, "arch": _Evil()}, f)
    elif content == "no-arch":
        torch.save({"state_dict": {}, "arch": ["cnn6"]}, f)
    elif content == "bad-sizes":
        torch.save({"state_dict": {}, "arch": "cnn6", "image_size": 8}, f)
    elif content == "list":
        torch.save([1, 2, 3], f)
    else:
        f.write_bytes(content)
    out = tmp_path / "o"
    line = _expect_error(capsys, ["distill", "--teacher", str(f), "--epochs", "1", "--out", str(out)], out, needle)
    assert str(f) in line
    assert "weights_only" not in line  # PyTorch's advice to load unsafely is not passed on


# --------------------------------------------------------------------------------------
# The same promise from a fresh process (what a shell sees)
# --------------------------------------------------------------------------------------
def test_some_cases_in_a_fresh_process(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    cases = [
        (["train", "--out", ""], "empty path"),
        (["train", "--out", str(f / "sub")], "is a file"),
        (["train", "--seed", str(2**64)], "seed must be"),
        (["train", "--device", "meta"], "device 'meta'"),
        (["distill", "--teacher", str(empty), "--out", str(tmp_path / "o")], "the file is empty"),
    ]
    env = {**os.environ, "LTKD_PROGRESS": "0", "LTKD_CACHE_DIR": str(tmp_path / "cache")}
    for args, needle in cases:
        r = subprocess.run([sys.executable, "-m", "ltkd", *args], capture_output=True, text=True, env=env,
                           cwd=tmp_path)  # fmt: skip
        lines = r.stderr.splitlines()
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("ltkd: error:") and needle in lines[0], (
            args, r.stderr)
    assert not (tmp_path / "o").exists() and not (tmp_path / "runs").exists() and f.read_text() == "x"


def test_error_helpers_never_fail_inside_a_handler():
    from ltkd.errors import LtkdError, first_line, one_line

    assert first_line(EOFError()) == "EOFError" and first_line(ValueError("\n\n  two\nthree")) == "two"
    assert one_line("a\n  b\n\nc") == "a; b; c"
    assert str(LtkdError("checkpoint differs:\n  seed: 0 vs 1\ndelete it")) == "checkpoint differs:; seed: 0 vs 1; delete it"
    buf = io.StringIO()
    print(LtkdError(""), file=buf)
    assert buf.getvalue() == "\n"


# --------------------------------------------------------------------------------------
# Checkpoints: a run owns exactly the files its recipe names
# --------------------------------------------------------------------------------------
class _Stop(Exception):
    pass


def _interrupted_crt(out: Path, monkeypatch) -> None:
    """``crt`` into ``out``, stopped after stage 1's first epoch (its checkpoint written), as a kill would."""
    import ltkd.experiment as E

    real_fit = E.fit

    def fit(*a, **kw):
        def halt(epoch, row):
            if epoch == 2:
                raise _Stop

        return real_fit(*a, **{**kw, "on_epoch_end": halt})

    monkeypatch.setattr(E, "fit", fit)
    with pytest.raises(_Stop):
        E.run("crt", epochs=3, out=out, device="cpu")
    monkeypatch.setattr(E, "fit", real_fit)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["stage1.ckpt"]


def test_another_runs_checkpoints_are_refused_and_kept(capsys, tmp_path, monkeypatch):
    out = tmp_path / "runs"
    _interrupted_crt(out, monkeypatch)
    line = _expect_error(capsys, ["distill", "--teacher", "cnn6", "--method", "kd", "--epochs", "1", "--out", str(out)],
                         out, "holds files that are not kd's checkpoints (kd.ckpt): stage1.ckpt")  # fmt: skip
    assert "another run" in line
    # ce names the same file, stage1.ckpt, but the checkpoint's fingerprint says crt wrote it
    _expect_error(capsys, ["train", "--method", "ce", "--epochs", "3", "--out", str(out)], out,
                  "was written by a different run, so it is not resumed: ")  # fmt: skip
    (out / "checkpoints" / "notes.txt").write_text("mine")
    _expect_error(capsys, ["train", "--method", "crt", "--epochs", "3", "--out", str(out)], out,
                  "holds files that are not crt's checkpoints (stage1.ckpt, crt.ckpt): notes.txt")  # fmt: skip
    (out / "checkpoints" / "notes.txt").unlink()
    capsys.readouterr()
    assert main(["train", "--method", "crt", "--epochs", "3", "--out", str(out)]) == 0  # the crt run resumes
    assert not (out / "checkpoints").exists()  # and, finished, removes its own checkpoints


def test_a_finished_run_deletes_only_its_own_checkpoints(tmp_path):
    from ltkd.checkpoint import remove_checkpoints

    ck = tmp_path / "checkpoints"
    ck.mkdir()
    for name in ("stage1.ckpt", "crt.ckpt", "stage1.ckpt.4242.tmp", "crt.ckpt.tmp", "kd.ckpt", "x.ckpt.tmp", "a.txt"):
        (ck / name).write_bytes(b"x")
    remove_checkpoints(ck, ["stage1.ckpt", "crt.ckpt"])
    assert sorted(p.name for p in ck.iterdir()) == ["a.txt", "kd.ckpt", "x.ckpt.tmp"]


@pytest.mark.parametrize("what", ["model file", "empty", "metrics", "no fingerprint", "pickled"])
def test_bad_file_in_a_checkpoints_place(capsys, tmp_path, what):
    out = tmp_path / "o"
    assert main(["train", "--epochs", "1", "--out", str(out)]) == 0
    ck = out / "checkpoints" / "stage1.ckpt"
    ck.parent.mkdir()
    needle = {"model file": "is not a training checkpoint (a model file, written by save_model?)",
              "empty": "the file is empty", "metrics": "cannot read",
              "no fingerprint": "does not record the run that wrote it",
              "pickled": "holds pickled Python objects"}[what]  # fmt: skip
    if what == "model file":
        ck.write_bytes((out / "model.pt").read_bytes())
    elif what == "empty":
        ck.write_bytes(b"")
    elif what == "metrics":
        ck.write_bytes((out / "metrics.json").read_bytes())
    elif what == "pickled":
        torch.save({"model": _Evil()}, ck)
    else:  # a checkpoint as an older ltkd wrote it: resumed under any seed before, refused now
        import ltkd.experiment as E

        def fit(*a, **kw):
            def halt(epoch, row):
                if epoch == 2:  # after epoch 1's checkpoint
                    raise _Stop

            return real_fit(*a, **{**kw, "on_epoch_end": halt})

        real_fit = E.fit
        E.fit = fit
        try:
            with pytest.raises(_Stop):
                E.run("ce", epochs=2, out=tmp_path / "other", device="cpu")
        finally:
            E.fit = real_fit
        old = torch.load(tmp_path / "other" / "checkpoints" / "stage1.ckpt", weights_only=True)
        del old["fingerprint"], old["digest"]  # as an older ltkd wrote it
        torch.save(old, ck)
    line = _expect_error(capsys, ["train", "--epochs", "2", "--seed", "7", "--out", str(out), "--overwrite"], out, needle)
    assert str(ck) in line
    if what == "no fingerprint":  # the user vouches for it: resumed, and says so in its metrics
        capsys.readouterr()
        assert main(["train", "--epochs", "2", "--out", str(out), "--resume-unfingerprinted", "--json",
                     "--overwrite"]) == 0  # fmt: skip
        import json

        m = json.loads((out / "metrics.json").read_text())
        assert m["resumed_at"] == ["stage1 epoch 1"] and not ck.exists()


def test_metrics_json_is_strict(tmp_path, digits):
    """A class with no test images gives no accuracy: ``null`` in metrics.json, never a bare NaN."""
    import json

    from ltkd.data import long_tail
    from ltkd.experiment import run
    from ltkd.profiles import get_profile

    quick = get_profile("quick")
    prof = quick.replace(extra={}, stage1=quick.stage1.replace(epochs=1, batch_size=256))
    train, test = long_tail(digits[0], 10), digits[1]
    test = test.subset(test.labels != 3)  # class 3 has no test images
    m, _ = run("ce", data=(train, test), profile=prof, device="cpu", out=tmp_path)
    text = (tmp_path / "metrics.json").read_text()
    saved = json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in metrics.json"))
    assert saved["per_class"][3] is None and "NaN" not in text
    with pytest.raises(Exception, match="the test split of digits has no images"):
        run("ce", data=(train, test.subset(test.labels < 0)), profile=prof, device="cpu")


def test_library_calls_name_what_is_wrong():
    from ltkd.data import class_sampler_weights
    from ltkd.errors import LtkdError
    from ltkd.metrics import accuracy_report

    with pytest.raises(LtkdError, match=r"no class has any images \(counts \[0.0, 0.0\]\)"):
        class_sampler_weights([0, 0])  # returned [nan, nan]
    with pytest.raises(LtkdError, match="finite, non-negative"):
        class_sampler_weights([3, float("nan")])
    assert class_sampler_weights([0, 4]).tolist() == [0.0, 1.0]
    with pytest.raises(LtkdError, match=r"logits N×C \(2-d\) or predicted labels N \(1-d\), got a 3-d tensor of shape "
                                        r"\(4, 3, 2\)"):  # fmt: skip
        accuracy_report(torch.zeros(4, 3, 2), torch.zeros(4, dtype=torch.long), [5, 3, 1])
    with pytest.raises(LtkdError, match="class labels"):
        accuracy_report(torch.tensor([0.5, 1.0]), torch.tensor([0, 1]), [5, 3])
