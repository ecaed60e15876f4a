"""benchmarks/gpu_check.sh — the prepared GPU script of issue 8 — run dry on the CPU, so the script a
GPU session will run is known to work end to end before any device time is spent on it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_CIFAR = str(ROOT.parent / "shared" / "data" / "cifar10-jpeg")  # as tests/conftest.py and reproduce.py


def _stand_in_jpeg_folder(root: Path, train_per_class: int = 100, test_per_class: int = 20) -> Path:
    """A CIFAR-10-shaped folder of random 32×32 JPEGs (train/ and test/, 10 class folders): enough for the
    dry run's smoke epoch where the real copy is not beside the checkout (a clone elsewhere, e.g. on CI)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        for c in range(10):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / f"{i:04d}.jpg")
    return root


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_dry_run_on_cpu(tmp_path):
    out = tmp_path / "gpu_check"
    env = {**os.environ, "GPU_CHECK_DRY": "1", "OUT": str(out)}
    if os.path.isdir(SHARED_CIFAR):  # the real copy, as the GPU call will carry it
        env["LTKD_CIFAR10_JPEG"] = os.path.abspath(SHARED_CIFAR)
    else:  # random images: the script's path is under test, not the data; decoded into a private cache
        env["LTKD_CIFAR10_JPEG"] = str(_stand_in_jpeg_folder(tmp_path / "cifar10-jpeg"))
        env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    summary = (out / "summary.txt").read_text()
    for phase in ("env:", "nbval (LTKD_DEVICE=cpu): rc=0", "throughput eager: rc=0", "reproduce: rc=0", "gpu_check: done"):
        assert phase in summary, (phase, summary)
    assert "tests collected" in (out / "nbval.log").read_text()  # dry: collect-only, every chapter found
    tp = json.loads((out / "throughput.json").read_text())
    assert tp["reference_images_per_s"] > 0 and tp["ltkd_engine_images_per_s"] > 0
    assert tp["ratio"] == pytest.approx(tp["ltkd_engine_images_per_s"] / tp["reference_images_per_s"], rel=0.02)
    # the dry reproduce phase trains CE and cRT for one smoke epoch each; both write metrics marked as smoke
    for method in ("ce", "crt"):
        m = json.loads((out / "reproduce" / method / "seed0" / "metrics.json").read_text())
        assert m["reproduction"]["smoke"] is True and m["method"] == method
        assert m["environment"]["device_name"] and m["reproduction"]["versions"]["torch"]
    log = (out / "reproduce.log").read_text()  # LTKD_PROGRESS=log: a line per epoch, for a run cut off by the limit
    assert "ce:stage1: epoch 1/1" in log and "crt:crt: epoch 1/1" in log
    # ... and smoke runs never reach the results file
    doc = json.loads((out / "reproduction.json").read_text())
    assert doc["runs"] == [] and doc["summary"] == {}
