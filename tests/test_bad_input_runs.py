"""Bad input about runs, teachers and the command itself, as a careless or hostile user gives it.

The same promise as ``tests/test_bad_input.py`` (whose helpers these tests use): exit status 2 and exactly one
``ltkd: error:`` line naming what is at fault, or a quiet exit; the user's files unchanged (by digest). Here: a
finished run is never replaced unasked, OUT is locked while a run uses it, a teacher must have been trained on
the data it teaches, a distillation resumed in its student stage equals an uninterrupted one, and every
failure of an ``--import`` file, a method, a pipe, an environment variable or a Python argument is one line.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_bad_input import _expect_error, _snapshot, _tree

from ltkd.cli import main
from ltkd.errors import LtkdError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LTKD_CACHE_DIR", str(tmp_path / "cache"))


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "LTKD_THREADS": "1", "LTKD_PROGRESS": "0"}


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ltkd", *args]


def _train(out: Path, *extra: str) -> list[str]:
    return ["train", "--epochs", "1", "--out", str(out), *extra]


# --------------------------------------------------------------------------------------
# A finished run is never replaced unasked; OUT is locked while a run uses it
# --------------------------------------------------------------------------------------
def test_a_finished_run_is_not_replaced_unasked(capsys, tmp_path, digits):
    from ltkd.experiment import run

    out = tmp_path / "a"
    assert main(_train(out)) == 0
    before = _snapshot(out)
    _expect_error(capsys, _train(out), out, "holds a finished run (ce on digits, seed 0): model.pt, metrics.json")
    _expect_error(capsys, _train(out, "--seed", "1"), out, "pass --overwrite")
    _expect_error(capsys, ["distill", "--teacher", "cnn6", "--epochs", "1", "--out", str(out)], out,
                  "holds a finished run")  # fmt: skip
    (out / "model.pt").unlink()  # metrics.json alone is a finished run too
    _expect_error(capsys, _train(out), out, "holds a finished run (ce on digits, seed 0): metrics.json")
    with pytest.raises(LtkdError, match="holds a finished run"):
        run("ce", data=digits, epochs=1, out=out, device="cpu")
    assert main(_train(out, "--seed", "1", "--overwrite")) == 0  # asked: replaced
    assert json.loads((out / "metrics.json").read_text())["seed"] == 1 and _snapshot(out) != before
    run("ce", data=digits, epochs=1, seed=2, out=out, device="cpu", overwrite=True)
    assert json.loads((out / "metrics.json").read_text())["seed"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "model.pt"]  # no lock file left behind


def test_a_teacher_file_inside_out_is_refused(capsys, tmp_path):
    out = tmp_path / "a"
    assert main(["train", "--model", "cnn6x0.5", "--epochs", "1", "--imbalance", "1", "--out", str(out)]) == 0
    args = ["distill", "--teacher", str(out / "model.pt"), "--epochs", "1", "--out", str(out)]
    _expect_error(capsys, args, out, "holds a finished run")
    _expect_error(capsys, [*args, "--overwrite"], out, f"the teacher file {out / 'model.pt'} lies inside the output "
                  f"folder {out}")  # fmt: skip


_HOLD = """
import sys, time
from pathlib import Path
from ltkd.outfolder import locked
with locked(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_out_is_locked_while_a_run_uses_it_and_a_dead_runs_lock_blocks_nothing(capsys, tmp_path):
    out = tmp_path / "a"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out), "--a-marker"], stdout=subprocess.PIPE, text=True,
                              env=_env())  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        line = _expect_error(capsys, _train(out), out, f"output folder {out} is in use by another run (pid "
                             f"{holder.pid}: ")  # fmt: skip
        assert "--a-marker" in line  # the first run's command
        _expect_error(capsys, ["distill", "--teacher", "cnn6", "--out", str(out)], out, "is in use by another run")
    finally:
        holder.kill()  # SIGKILL: its lock file stays, its lock goes with it
        holder.wait()
    assert (out / ".ltkd.lock").is_file()
    assert main(_train(out)) == 0  # a dead run's lock file blocks nothing
    assert not (out / ".ltkd.lock").exists()


def test_a_full_disk_leaves_nothing_behind(capsys, tmp_path, monkeypatch):
    import ltkd.checkpoint as C

    def full(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(C.torch, "save", full)
    out = tmp_path / "new"
    _expect_error(capsys, _train(out), None, "No space left on device")
    assert not out.exists()  # no OUT, no empty checkpoints/
    monkeypatch.undo()
    old = tmp_path / "old"
    assert main(_train(old)) == 0
    monkeypatch.setattr(C.torch, "save", full)
    _expect_error(capsys, _train(old, "--overwrite", "--seed", "3"), old, "No space left on device")


# --------------------------------------------------------------------------------------
# Teachers: checked against the data they teach, and a resumed distillation equals an uninterrupted one
# --------------------------------------------------------------------------------------
def test_a_reused_teacher_must_have_trained_on_these_images(capsys, tmp_path):
    data = _tree(tmp_path / "data", n=8)
    out = tmp_path / "run"
    args = ["distill", "--teacher", "cnn6x0.5", "--dataset", str(data), "--imbalance", "1", "--epochs", "1",
            "--teacher-epochs", "1", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    for name in ("model.pt", "metrics.json"):  # as if the student had been interrupted
        (out / name).unlink()
    _tree(data, n=8, seed=1)  # every image replaced, the same classes and counts
    _expect_error(capsys, args, out, f"{out / 'teacher'} holds a teacher trained otherwise than this command trains "
                  "it (data_digest ")  # fmt: skip


def test_a_teacher_file_must_have_trained_on_these_data(capsys, tmp_path):
    a, b = _tree(tmp_path / "a" / "data", n=8), _tree(tmp_path / "b" / "data", n=8, seed=1)  # one name, other images
    t = tmp_path / "t"
    assert main(["train", "--dataset", str(a), "--imbalance", "1", "--model", "cnn6x0.5", "--epochs", "1", "--out",
                 str(t)]) == 0  # fmt: skip
    out = tmp_path / "run"
    _expect_error(capsys, ["distill", "--teacher", str(t / "model.pt"), "--dataset", str(b), "--epochs", "1",
                           "--out", str(out)], out, "was trained on other images of")  # fmt: skip
    d = tmp_path / "d"
    assert main(["train", "--model", "cnn6x0.5", "--epochs", "1", "--out", str(d)]) == 0  # digits, IF 100
    _expect_error(capsys, ["distill", "--teacher", str(d / "model.pt"), "--dataset", str(a), "--epochs", "1",
                           "--out", str(out)], out, "was trained on 'digits', the data are")  # fmt: skip
    _expect_error(capsys, ["distill", "--teacher", str(d / "model.pt"), "--epochs", "1", "--out", str(out)], out,
                  "was trained on other images of digits")  # IF 100 there, IF 1 here  # fmt: skip


_DISTILL = ["distill", "--teacher", "cnn6x0.5", "--dataset", "digits", "--epochs", "3", "--teacher-epochs", "1"]


def _comparable(path: Path) -> dict:
    """metrics.json without the times and the resume marks (which differ between any two runs)."""
    m = json.loads(path.read_text())
    for k in ("seconds", "train_seconds", "resumed_at"):
        m.pop(k)
    m["teacher"].pop("seconds")
    m["teacher"].pop("source")
    m["history"] = [{k: v for k, v in r.items() if k not in ("seconds", "resumed")} for r in m["history"]]
    return m


def test_distill_with_a_named_teacher_resumes_exactly_in_its_student_stage(tmp_path):
    """Ctrl-C (SIGINT) and kill -9 (SIGKILL) in the student stage, then the same command again: the teacher trained
    in the first process and the one the rerun reads back from OUT/teacher/model.pt teach the student alike (the
    memory layout of their weights once made them differ in the last bits). The uninterrupted run goes alongside."""
    popen = {"env": _env(), "stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    ref = subprocess.Popen(_cmd(*_DISTILL, "--out", str(tmp_path / "ref")), **popen)
    cut = {sig: tmp_path / sig.name for sig in (signal.SIGINT, signal.SIGKILL)}
    for sig, out in cut.items():
        p = subprocess.Popen(_cmd(*_DISTILL, "--out", str(out)), **popen)
        ck = out / "checkpoints" / "kd.ckpt"  # the student's: written after its first epoch
        while not ck.exists() and p.poll() is None:
            time.sleep(0.005)
        p.send_signal(sig)
        assert p.wait() != 0 and not (out / "metrics.json").exists(), "the run ended before it was interrupted"
    again = [subprocess.Popen(_cmd(*_DISTILL, "--out", str(out)), **popen) for out in cut.values()]
    for p in (ref, *again):
        assert p.wait() == 0, p.stderr.read()
    for out in cut.values():
        got = json.loads((out / "metrics.json").read_text())
        assert got["resumed_at"] and "reused" in got["teacher"]["source"]
        assert _comparable(out / "metrics.json") == _comparable(tmp_path / "ref" / "metrics.json"), out.name


# --------------------------------------------------------------------------------------
# --import files and methods of one's own
# --------------------------------------------------------------------------------------
_PER_SAMPLE = """
import torch.nn.functional as F
from ltkd.methods import Recipe, Stage, register
from ltkd.objective import LossObjective

register(Recipe("persample", "CE per sample, not reduced", [Stage(objective=lambda ctx: LossObjective(
    lambda z, y: F.cross_entropy(z, y, reduction="none"), name="persample"))]))
register(Recipe("tupleloss", "two losses as a tuple", [Stage(objective=lambda ctx: LossObjective(
    lambda z, y: (F.cross_entropy(z, y), z.pow(2).mean()), name="tupleloss"))]))
"""


def test_import_files_that_fail(capsys, tmp_path):
    bad = tmp_path / "bad_syntax.py"
    bad.write_text("def f(:\n    pass\n")
    out = tmp_path / "out"
    _expect_error(capsys, ["train", "--import", str(bad), "--out", str(out)], out, "SyntaxError")
    boom = tmp_path / "boom_at_import.py"
    boom.write_text("raise RuntimeError('the file is broken')\n")
    _expect_error(capsys, ["train", "--import", str(boom), "--out", str(out)], out,
                  "RuntimeError while importing it: the file is broken")  # fmt: skip
    assert "boom_at_import" not in sys.modules
    _expect_error(capsys, ["train", "--import", "no_such_module_here", "--out", str(out)], out,
                  "--import no_such_module_here: No module named")  # fmt: skip


def test_import_file_named_like_a_standard_module(tmp_path):
    (tmp_path / "mine").mkdir()  # (not the working folder, which `python -m` puts first on the module path)
    (tmp_path / "mine" / "copy.py").write_text("X = 1\n")  # would replace Python's copy module
    r = subprocess.run(_cmd("train", "--import", "mine/copy.py", "--epochs", "1", "--out", "out"), cwd=tmp_path,
                       env=_env(), capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("ltkd: error: --import mine/copy.py: 'copy' is the name of a module"), r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("method, needle", [("persample", "the loss 'persample' of persample is a tensor of shape ("),
                                            ("tupleloss", "the loss 'tupleloss' of tupleloss is a tuple")])
def test_a_method_whose_loss_is_not_one_number(capsys, tmp_path, method, needle):
    f = tmp_path / f"odd_losses_{method}.py"  # one module name per file (this process imports both)
    f.write_text(_PER_SAMPLE)
    out = tmp_path / "out"
    _expect_error(capsys, ["train", "--import", str(f), "--method", method, "--epochs", "1", "--out", str(out)],
                  None, needle)  # fmt: skip
    assert not out.exists()


# --------------------------------------------------------------------------------------
# The command: options, environment, pipes, long paths, Ctrl-C
# --------------------------------------------------------------------------------------
def test_set_keys_given_twice_or_not_read(capsys, tmp_path):
    out = tmp_path / "out"
    _expect_error(capsys, _train(out, "--method", "la", "--set", "la_tau=0.5", "--set", "la_tau=2"), out,
                  "--set la_tau is given twice (0.5 and 2.0)")  # fmt: skip
    _expect_error(capsys, ["distill", "--teacher", "cnn6", "--T", "2", "--set", "T=3", "--out", str(out)], out,
                  "--T and --set T both set T")  # fmt: skip
    _expect_error(capsys, _train(out, "--method", "ce", "--set", "gcl_eps=0.3"), None,
                  "ce does not read the option gcl_eps")  # fmt: skip
    _expect_error(capsys, ["distill", "--teacher", "cnn6", "--method", "kd", "--set", "beta=2", "--out", str(out)],
                  None, "kd does not read the option beta")  # before the teacher trains  # fmt: skip
    assert not out.exists()


def test_unknown_ltkd_progress_value(capsys, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("LTKD_PROGRESS", "sometimes")
    _expect_error(capsys, _train(out), out, "LTKD_PROGRESS='sometimes' is not one of 0, 1, log, bar")
    from ltkd.progress import progress_mode

    monkeypatch.setenv("LTKD_PROGRESS", "none")
    assert progress_mode() is None  # "none" is quiet, as it says


def test_eval_every_added_on_resume_is_refused(capsys, tmp_path, monkeypatch):
    from test_bad_input import _interrupted_crt

    out = tmp_path / "runs"
    _interrupted_crt(out, monkeypatch)
    _expect_error(capsys, ["train", "--method", "crt", "--epochs", "3", "--eval-every", "1", "--out", str(out)], out,
                  "eval_every: None in the checkpoint, 1 now")  # fmt: skip


def test_json_into_a_closed_pipe_exits_quietly(tmp_path):
    p = subprocess.Popen(_cmd(*_train(tmp_path / "out"), "--json"), env=_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)  # fmt: skip
    p.stdout.close()  # `| head` that has read what it wanted (here: nothing)
    err = p.stderr.read()
    assert p.wait() == 0 and err == "", err
    assert (tmp_path / "out" / "metrics.json").is_file()


def test_a_300_character_out(capsys, tmp_path):
    out = tmp_path / ("x" * 300)
    _expect_error(capsys, _train(out), None, "cannot be made: File name too long")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see torch being loaded")
@pytest.mark.parametrize("threads", ["1", ""])
def test_ctrl_c_during_start_up_is_quiet(tmp_path, threads):
    """SIGINT while torch is being imported (by `import ltkd` when LTKD_THREADS is set, else by the command)."""
    p = subprocess.Popen(_cmd(*_train(tmp_path / "out")), env={**_env(), "LTKD_THREADS": threads},
                         stderr=subprocess.PIPE, text=True)  # fmt: skip
    while p.poll() is None and "libtorch" not in Path(f"/proc/{p.pid}/maps").read_text():
        time.sleep(0.002)
    p.send_signal(signal.SIGINT)
    err = p.communicate()[1]
    assert p.returncode == 130 and err.count("\n") == 1 and err.startswith("ltkd: interrupted"), err


# --------------------------------------------------------------------------------------
# The Python API: a wrong type is an LtkdError naming the argument and what it got
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, needle", [
    ({"epochs": True}, "epochs must be a positive whole number (or None: the profile's), got True"),
    ({"epochs": 1.5}, "epochs must be a positive whole number"),
    ({"epochs": "2"}, "got '2'"),
    ({"imbalance": "10"}, "imbalance must be a finite number ≥ 1 (n_max / n_min), got '10'"),
    ({"imbalance": True}, "imbalance must be a finite number"),
    ({"eval_every": True}, "eval_every must be a whole number ≥ 0 (0 = off), got True"),
    ({"eval_every": 0.5}, "eval_every must be a whole number"),
    ({"out": 5}, "out must be a folder path (str or pathlib.Path), got int 5"),
    ({"options": [("la_tau", 1.0)]}, "options must be a dict of option names to values, got list"),
    ({"stage1_state": "model.pt"}, "stage1_state must be a model's state dict (names to tensors), got str"),
    ({"stage1_state": {"head.weight": torch.zeros(3, 3)}}, "stage1_state does not fit cnn6"),
    ({"device": 0}, "device must be a name ('cpu', 'cuda', 'cuda:1', 'mps') or a torch.device, got int 0"),
    ({"overwrite": "yes"}, "overwrite must be True or False, got 'yes'"),
])  # fmt: skip
def test_run_names_a_wrong_argument(digits, tmp_path, kw, needle):
    from ltkd.experiment import run

    with pytest.raises(LtkdError) as e:
        run("ce", **{"data": digits, "model": "cnn6", "epochs": 1, **kw})
    assert needle in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("kw, needle", [
    ({"teacher": 5}, "teacher must be a model name or the path of a model file, got int 5"),
    ({"teacher_epochs": True}, "teacher_epochs must be a positive whole number"),
    ({"epochs": 0}, "epochs must be a positive whole number"),
    ({"device": 0}, "device must be a name"),
    ({"out": ["runs"]}, "out must be a folder path"),
])  # fmt: skip
def test_distill_names_a_wrong_argument(tmp_path, kw, needle):
    from ltkd.experiment import distill

    with pytest.raises(LtkdError, match=None) as e:
        distill(**{"out": tmp_path / "out", **kw})
    assert needle in str(e.value)
    assert not (tmp_path / "out").exists()


def test_binary_stack_export_to_a_folder_or_an_unwritable_path(tmp_path):
    from ltkd.methods import binary_stack

    net = binary_stack.build("stack", 10, 1, m=4, k=4)
    with pytest.raises(LtkdError, match=r"export path \S+ is a folder; give a file name"):
        binary_stack.export(net, tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    with pytest.raises(LtkdError, match=r"cannot write export \S+a-file/net.npz: "):
        binary_stack.export(net, blocker / "net.npz")
    assert blocker.read_text() == "mine"
    with pytest.raises(LtkdError, match="export path must be a file path"):
        binary_stack.export(net, 3)
    assert binary_stack.export(net, tmp_path / "ok.npz")["file_bytes"] > 0
    assert np.load(tmp_path / "ok.npz")["filters"].dtype == np.uint8
