"""experiments/pipeline_table.py's bookkeeping: which saved teacher a rerun loads, and which rows a retrained
teacher invalidates (chapter 8's live students must distil the teacher the table's seed-0 rows used)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "experiments"))
import pipeline_table as PT  # noqa: E402

RUNS = {
    "teacher|0": {"seed": 0},
    f"{PT.STUDENTS[0]}|CE alone|0": {"seed": 0, "student": PT.STUDENTS[0], "how": "CE alone"},
    f"{PT.STUDENTS[0]}|KD + LR + DS|0": {"seed": 0, "student": PT.STUDENTS[0], "how": "KD + LR + DS"},
    f"{PT.STUDENTS[1]}|KD + LR + DS|0": {"seed": 0, "student": PT.STUDENTS[1], "how": "KD + LR + DS"},
    "teacher|1": {"seed": 1},
    f"{PT.STUDENTS[0]}|KD + LR + DS|1": {"seed": 1, "student": PT.STUDENTS[0], "how": "KD + LR + DS"},
    f"{PT.STUDENTS[0]}|{PT.LEGACY_HOW}|1": {"seed": 1, "student": PT.STUDENTS[0], "how": PT.LEGACY_HOW},
}


def test_saved_teacher_prefers_the_kept_file_and_retrains_an_unrecorded_one(tmp_path):
    kept, cached = tmp_path / "kept.pt", tmp_path / "cache" / "model.pt"
    assert PT.saved_teacher(RUNS, 0, kept, cached) is None  # recorded, but no weights anywhere: retrain
    cached.parent.mkdir()
    cached.write_bytes(b"x")
    assert PT.saved_teacher(RUNS, 0, kept, cached) == cached
    kept.write_bytes(b"x")
    assert PT.saved_teacher(RUNS, 0, kept, cached) == kept
    assert PT.saved_teacher(RUNS, 2, kept, cached) is None  # weights but no record of them: retrain


def test_distilled_rows_are_the_seeds_students_of_the_teacher_only():
    assert sorted(PT.distilled_rows(RUNS, 0)) == sorted(
        [f"{PT.STUDENTS[0]}|KD + LR + DS|0", f"{PT.STUDENTS[1]}|KD + LR + DS|0"]
    )
    assert PT.distilled_rows(RUNS, 1) == [f"{PT.STUDENTS[0]}|KD + LR + DS|1"]
    assert PT.distilled_rows(RUNS, 2) == []


def test_legacy_all_sample_rows_are_kept_and_never_scheduled():
    # the former all-sample-revision rows record the teacher they used: a retrained teacher keeps them
    assert PT.LEGACY_HOW not in PT.HOWS
    assert all(PT.LEGACY_HOW not in k for k in PT.distilled_rows(RUNS, 1))


def test_kept_teacher_is_the_shipped_model_chapter_8_loads(tmp_path):
    kept = PT.kept_teacher("fashion-mnist", 100.0, "quick", 0, tmp_path)
    assert kept == Path(PT.ROOT) / "models" / "fmnist_lt100_gcl_teacher.pt" and kept.is_file()
    assert PT.kept_teacher("fashion-mnist", 100.0, "quick", 1, tmp_path).parent == tmp_path
    chapter = (Path(PT.ROOT).parent / "notebooks" / "08_putting_it_together.ipynb").read_text()
    assert f'\\"{PT.SHIPPED}\\"' in chapter  # shipped.get("fmnist_lt100_gcl_teacher", ...)
