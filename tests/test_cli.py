import json
import os
import subprocess
import sys

import pytest
import torch

from ltkd.cli import main


def _run(*args):
    return subprocess.run([sys.executable, "-m", "ltkd.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "LTKD_PROGRESS": "0"})  # fmt: skip


@pytest.mark.parametrize(
    "args,needle",
    [
        (["train", "--dataset", "imagenet-21k"], "unknown data set"),
        (["train", "--method", "magic"], "unknown method"),
        (["train", "--imbalance", "0.5"], "imbalance factor must be ≥ 1"),
        (["train", "--epochs", "0"], "must be positive"),
        (["train", "--epochs", "-3"], "must be positive"),
        (["train", "--eval-every", "-1"], "must be 0 (off) or positive"),
        (["train", "--dataset", "/no/such/folder"], "no such folder"),
        (["train", "--model", "vgg99"], "unknown model"),
        (["train", "--fusion-ratio", "2"], "fusion-ratio"),
        (["train", "--set", "fusion_ratio=-0.5"], "option fusion_ratio must be in [0, 1], got -0.5"),
        (["train", "--imbalance", "nan"], "imbalance factor must be ≥ 1 (n_max / n_min), got nan"),
        (["train", "--set", "cb_beta=1"], "option cb_beta must be in [0, 1), got 1"),
        (["distill", "--teacher", "cnn6", "--beta", "-8"], "--beta must be ≥ 0, got -8"),
        (["distill", "--teacher", "cnn6", "--set", "eta=1.5"], "option eta must be in (0, 1), got 1.5"),
        (["distill", "--teacher", "cnn6", "--T", "0"], "--T must be > 0"),
        (["train", "--set", "gcl_epsilon=0.3"], "unknown option 'gcl_epsilon'"),
        (["train", "--set", "gcl_eps"], "--set expects KEY=VALUE"),
        (["train", "--set", "la_tau=one"], "option la_tau takes a number"),
        (["train", "--set", "la_tau=nan"], "must be finite"),
        (["train", "--set", "h2t_bn=sometimes"], "option h2t_bn takes one of frozen, train"),
        (["distill", "--teacher", "cnn6", "--set", "kd_weight=?"], "option kd_weight takes a number"),
        (["train", "--device", "banana"], "unknown device 'banana'"),
        pytest.param(["train", "--device", "mps"], "device 'mps' asked for, but it is not available here",
                     marks=pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")),
        pytest.param(["train", "--device", "cuda"], "device 'cuda' asked for, but CUDA is not available here",
                     marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
    ],
)
def test_cli_errors_one_line_exit_2(args, needle, capsys, tmp_path):
    capsys.readouterr()
    assert main(args + ["--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()  # nothing written
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ltkd: error:") and needle in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "args,needle",
    [
        (["train", "--dataset", "imagenet-21k"], "unknown data set"),  # found while loading the data
        (["train", "--set", "gcl_epsilon=0.3"], "unknown option 'gcl_epsilon'"),  # found parsing options
        (["distill", "--teacher", "cnn6", "--set", "kd_weight=?"], "option kd_weight takes a number"),
    ],
)
def test_cli_errors_one_line_exit_2_in_a_fresh_process(args, needle):
    """The same errors from the ``ltkd`` process itself: nothing else on stderr (no warning at import)."""
    r = _run(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ltkd: error:") and needle in lines[0], r.stderr


def test_a_bad_thread_count_is_a_warning_not_a_crash():
    r = subprocess.run([sys.executable, "-W", "always", "-c", "import ltkd, torch; print(torch.get_num_threads())"],
                       capture_output=True, text=True, env={**os.environ, "LTKD_THREADS": "two"})  # fmt: skip
    assert r.returncode == 0 and "LTKD_THREADS='two' is not a positive whole number; ignored" in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-c", "import ltkd, torch; print(torch.get_num_threads())"],
                       capture_output=True, text=True, env={**os.environ, "LTKD_THREADS": "1"})  # fmt: skip
    assert r.returncode == 0 and r.stdout.strip() == "1"


def test_cli_unreadable_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    r = _run("train", "--dataset", str(tmp_path / "empty"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and r.stderr.startswith("ltkd: error:") and "no images" in r.stderr


def test_cli_train_default_writes_metrics(tmp_path):
    r = _run("train", "--epochs", "2", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "overall" in r.stdout
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["dataset"] == "digits" and m["method"] == "ce"


def test_python_dash_m_ltkd_has_every_command():
    for module in ("ltkd", "ltkd.cli"):  # both must see the sub-commands the method files add (distill)
        r = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and "distill" in r.stdout, (module, r.stdout, r.stderr)


def test_cli_datasets_lists_sources():
    r = _run("datasets")
    assert r.returncode == 0
    for name in ("digits", "fashion-mnist", "cifar10", "cifar100", "imagefolder"):
        assert name in r.stdout


def test_cli_set_passes_method_options_to_the_run(tmp_path):
    r = _run("train", "--method", "gcl", "--epochs", "1", "--set", "gcl_eps=0.2", "--set", "gcl_sampler=class-balanced",
             "--out", str(tmp_path))  # fmt: skip
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["options"] == {"gcl_eps": 0.2, "gcl_sampler": "class-balanced"}
    # an option the method does not read is an error, not recorded in metrics.json as if it had done something
    r = _run("train", "--method", "la", "--epochs", "1", "--set", "la_tau=2", "--set", "gcl_sampler=class-balanced",
             "--out", str(tmp_path / "la"))  # fmt: skip
    assert r.returncode == 2 and r.stderr.strip() == ("ltkd: error: la does not read the option gcl_sampler (it would "
                                                      "be recorded but change nothing); drop it, or choose the method "
                                                      "that reads it (`ltkd methods`)"), r.stderr
    assert not (tmp_path / "la").exists()


def test_every_option_a_method_reads_is_documented_and_every_documented_one_is_read():
    """ltkd.methods.OPTIONS (what the method files declare, `ltkd methods` lists and --set accepts) matches the keys
    the code reads."""
    import re
    from pathlib import Path

    from ltkd.methods import OPTIONS

    src = "\n".join(p.read_text() for p in (Path(__file__).parents[1] / "ltkd" / "methods").glob("*.py"))
    read = set(re.findall(r'ctx\.option\("(\w+)"', src)) | set(re.findall(r'options(?:\.get\(|\[)"(\w+)"', src))
    read.discard("teacher")  # a model object: Python API or `ltkd distill --teacher`
    assert read == set(OPTIONS), (sorted(read - set(OPTIONS)), sorted(set(OPTIONS) - read))


def test_python_api_refuses_an_option_no_method_reads_and_names_a_bad_value(digits, tmp_path):
    """As the README says: an unknown key or a bad value is an error in the library too (not a warning, not a
    ValueError from deep inside that does not name the option); a recipe of your own declares its own keys."""
    from ltkd.data import long_tail
    from ltkd.errors import LtkdError
    from ltkd.experiment import run
    from ltkd.methods import METHODS, Recipe, register
    from ltkd.profiles import get_profile

    quick = get_profile("quick")
    prof = quick.replace(extra={}, stage1=quick.stage1.replace(epochs=1, batch_size=64))
    data = (long_tail(digits[0], 10), digits[1])
    with pytest.raises(LtkdError, match=r"unknown option 'gcl_epsilon'"):
        run("ce", data=data, profile=prof, device="cpu", options={"gcl_epsilon": 0.3}, out=tmp_path / "a")
    with pytest.raises(LtkdError, match=r"option gcl_eps takes a number, got 'abc'"):
        run("gcl", data=data, profile=prof, device="cpu", options={"gcl_eps": "abc"})
    with pytest.raises(LtkdError, match=r"option gcl_sampler takes one of effective-number, class-balanced"):
        run("gcl", data=data, profile=prof, device="cpu", options={"gcl_sampler": "uniform"})
    with pytest.raises(LtkdError, match=r"option teacher must be a model"):
        run("ce", data=data, profile=prof, device="cpu", options={"teacher": "cnn6"})
    assert not (tmp_path / "a").exists()  # refused before anything was written
    register(Recipe("ce-own-key", "CE reading a key of its own", METHODS["ce"].stages, options=("my_key",)))
    try:
        m, _ = run("ce-own-key", data=data, profile=prof, device="cpu", options={"my_key": 1})
        assert m["method"] == "ce-own-key"
    finally:
        del METHODS["ce-own-key"]
