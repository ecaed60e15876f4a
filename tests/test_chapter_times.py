"""experiments/chapter_times.py: a chapter is executed whole and its time, CPU and load written down."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import chapter_times as ct  # noqa: E402

from ltkd.errors import LtkdError  # noqa: E402


def test_a_chapter_is_executed_in_place_and_timed(tmp_path, monkeypatch):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import os\nprint(os.environ['LTKD_PROFILE'])")])
    nbformat.write(nb, nbdir / "09_tiny.ipynb")
    monkeypatch.setattr(ct, "ROOT", tmp_path)
    monkeypatch.setattr(ct, "OUT", tmp_path / "times.json")
    assert ct.main(["--chapters", "09"]) == 0
    out = nbformat.read(nbdir / "09_tiny.ipynb", as_version=4).cells[0].outputs
    assert out and out[0]["text"].strip() == "quick"  # executed in place, in the quick profile
    row = json.loads((tmp_path / "times.json").read_text())["chapters"]["09"]
    assert row["notebook"] == "09_tiny.ipynb" and 0 < row["wall_seconds"] < 120 and row["cpu_seconds"] >= 0
    assert len(row["load_average"]) == 2 and row["other_cpu_seconds"] >= 0
    assert row["idle"] == (row["other_cpu_seconds"] < 0.1 * row["wall_seconds"])


def test_an_unknown_chapter_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(ct, "OUT", tmp_path / "times.json")
    with pytest.raises(LtkdError, match="no chapter 99"):
        ct.main(["--chapters", "99", "--check"])
