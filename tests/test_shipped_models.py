"""The shipped models (``experiments/models/``, trained by ``experiments/shipped.py``): every file is the one its
provenance records, loads, and reproduces its recorded test result exactly on the CPU; sizes stay within the
budget; the models this script trained converged; a damaged file is refused; the live path trains the recipe."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import shipped  # noqa: E402

from ltkd.errors import LtkdError  # noqa: E402


@pytest.mark.parametrize("name", list(shipped.MODELS))
def test_shipped_model_reproduces_its_recorded_test_result_exactly(name):
    line = shipped.check(name)  # sha256, then every test image's prediction counted: LtkdError if not as recorded
    assert "as recorded" in line


def test_every_file_in_the_folder_is_a_shipped_model_and_within_budget():
    files = sorted(p.name for p in shipped.MODELS_DIR.iterdir())
    assert files == sorted(f"{n}{ext}" for n in shipped.MODELS for ext in (".pt", ".json"))
    sizes = [shipped.files(n)[0].stat().st_size for n in shipped.MODELS]
    assert max(sizes) <= 2_000_000 and sum(sizes) <= 25_000_000
    for n in shipped.MODELS:
        doc = shipped.provenance(n)
        assert doc["name"] == n and doc["command"].endswith(f"--force {n}")
        assert doc["recipe"]["method"] == shipped.MODELS[n].method and doc["recipe"]["epochs"] == shipped.MODELS[n].epochs
        assert doc["test"]["n"] == 10_000 and 0 < doc["test"]["correct"] <= 10_000


@pytest.mark.parametrize("name", [n for n, s in shipped.MODELS.items() if not s.adopted_from])
def test_the_models_this_script_trained_converged(name):
    """Levelled off: the last 5 epochs lowered the training loss by under a tenth of what the whole run did, and
    the cosine schedule ran down to (almost) zero."""
    h = [r for r in shipped.provenance(name)["history"] if r.get("stage", "stage1") == "stage1"]
    loss = [r["loss"] for r in h]
    assert len(loss) == shipped.MODELS[name].epochs
    assert loss[-6] - loss[-1] < 0.1 * (loss[0] - loss[-1]), loss
    assert h[-1]["lr"] < 0.01 * max(r["lr"] for r in h)


def test_a_changed_file_is_refused(tmp_path):
    name = "fmnist_lt100_n500_ce_teacher"
    pt, meta = shipped.files(name)
    data = bytearray(pt.read_bytes())
    data[len(data) // 2] ^= 1
    (tmp_path / pt.name).write_bytes(bytes(data))
    (tmp_path / meta.name).write_text(meta.read_text())
    with pytest.raises(LtkdError, match="sha256"):
        shipped.load(name, tmp_path)


def test_live_training_follows_the_recipe_and_a_saved_model_checks(tmp_path, monkeypatch):
    monkeypatch.setitem(shipped.MODELS, "tiny", shipped.Spec("ce", 100, 1, n_max=100, model="cnn6x0.5"))
    net, info = shipped.get("tiny", live=True, device="cpu")
    assert info["source"].startswith("trained here: ce, 1 epochs") and info["metrics"]["epochs"] == 1
    tr, te = shipped.data_for(shipped.MODELS["tiny"])
    doc = shipped.save("tiny", net, info["metrics"], tr, te, tmp_path)
    assert json.loads((tmp_path / "tiny.json").read_text())["sha256"] == doc["sha256"]
    assert "as recorded" in shipped.check("tiny", tmp_path)
    loaded, _ = shipped.load("tiny", tmp_path)
    assert all((a == b).all() for a, b in zip(loaded.state_dict().values(), net.cpu().state_dict().values()))
