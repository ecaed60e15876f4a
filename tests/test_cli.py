import json
import os
import subprocess
import sys

import pytest

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
        (["train", "--dataset", "/no/such/folder"], "no such folder"),
        (["train", "--model", "vgg99"], "unknown model"),
        (["train", "--fusion-ratio", "2"], "fusion-ratio"),
    ],
)
def test_cli_errors_one_line_exit_2(args, needle, capsys):
    assert main(args + ["--out", os.devnull + "-x"]) == 2  # in process too
    r = _run(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ltkd: error:") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr


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


def test_cli_datasets_lists_sources():
    r = _run("datasets")
    assert r.returncode == 0
    for name in ("digits", "fashion-mnist", "cifar10", "cifar100", "imagefolder"):
        assert name in r.stdout
