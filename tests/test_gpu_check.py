"""benchmarks/gpu_check.sh — the prepared GPU script of issue 8 — run dry on the CPU, so the script a
GPU session will run is known to work end to end before any device time is spent on it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_CIFAR = str(ROOT.parent / "shared" / "data" / "cifar10-jpeg")  # as tests/conftest.py and reproduce.py


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.skipif(not os.path.isdir(SHARED_CIFAR), reason=f"no CIFAR-10 JPEG copy at {SHARED_CIFAR}")
def test_gpu_check_dry_run_on_cpu(tmp_path):
    out = tmp_path / "gpu_check"
    env = {**os.environ, "GPU_CHECK_DRY": "1", "OUT": str(out), "LTKD_CIFAR10_JPEG": os.path.abspath(SHARED_CIFAR)}
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
