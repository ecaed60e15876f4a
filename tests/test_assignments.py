"""The course assignments (``assignments/``, otter-grader; book/instructors.md).

Every master is generated with ``otter assign``; its solution notebook gets full marks, its unedited student
notebook 0 on every question; wrong and broken submissions (off-by-one counts, KD without T², a syntax error, a
missing function, a function that raises, endless loops in a function and at a cell's top level) lose exactly the
points they should, with a readable message, and the grading run goes on to the other questions. No student file
holds a solution marker or a hidden test. Gradings run two at a time (CI has two cores).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("otter", reason="otter-grader is in the dev/test extras")

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("ltkd_assignments_build", ROOT / "assignments" / "build.py")
A = importlib.util.module_from_spec(spec)
spec.loader.exec_module(A)
MASTERS = A.masters()
NAMES = [m.stem for m in MASTERS]
LIMITS = {"LTKD_GRADING_CELL_SECONDS": "20", "LTKD_GRADING_TEST_SECONDS": "3"}  # shortened for the suite


def test_one_assignment_per_chapter():
    chapters = sorted(p.stem[:2] for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert [n[1:3] for n in NAMES] == chapters
    for m in MASTERS:  # 3–5 graded questions each
        n = len(re.findall(r"# BEGIN QUESTION", m.read_text()))
        assert 3 <= n <= 5, f"{m.name}: {n} questions"


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("assignments")
    for m in MASTERS:  # in this process, one after the other (otter assign changes the working directory)
        A.assign(m, out)
    return out


def _answer_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if "otter_answer_cell" in c.get("metadata", {}).get("tags", [])]


def _submission(dist: Path, name: str, answers: list[str | None], folder: Path) -> Path:
    """The student notebook of ``name`` with its answer cells replaced in order (None: cell deleted)."""
    nb = json.loads((dist / name / "student" / f"{name}.ipynb").read_text())
    cells = _answer_cells(nb)
    assert len(cells) == len(answers)
    for cell, text in zip(cells, answers):
        if text is None:
            nb["cells"].remove(cell)
        else:
            cell["source"] = text
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.ipynb"
    path.write_text(json.dumps(nb))
    return path


def _solution_answers(dist: Path, name: str) -> list[str]:
    nb = json.loads((dist / name / "autograder" / f"{name}.ipynb").read_text())
    return ["".join(c["source"]) for c in nb["cells"] if "otter_assign_solution_cell" in c.get("metadata", {}).get("tags", [])]


BAD = {
    # off-by-one rounding (round, not int), a syntax error, a deleted cell (missing function), a right answer
    "a01_long_tailed_data": lambda good: [
        "def lt_counts(n_max, C, IF):\n    return [round(n_max * (1 / IF) ** (i / (C - 1))) for i in range(C)]",
        "def sampler_probs(counts, q)\n    return counts ** q",
        None,
        good[3],
    ],
    # a function that raises, KD without T², an endless loop in a function, an endless loop at top level
    "a04_knowledge_distillation": lambda good: [
        "def soften(logits, T):\n    raise NotImplementedError('not yet')",
        good[1].replace(" * T * T", ""),
        "def dkd_parts(z_student, z_teacher, y, T):\n    while True:\n        pass",
        "while True:\n    pass",
    ],
}


@pytest.fixture(scope="module")
def graded(dist, tmp_path_factory):
    """Every solution, every unedited student notebook and the bad submissions, graded with otter run."""
    subs = tmp_path_factory.mktemp("submissions")
    jobs = {}
    for n in NAMES:
        ag = A.autograder_zip(dist / n)
        jobs[("solution", n)] = (dist / n / "autograder" / f"{n}.ipynb", ag)
        jobs[("student", n)] = (dist / n / "student" / f"{n}.ipynb", ag)
    for n, make in BAD.items():
        jobs[("bad", n)] = (_submission(dist, n, make(_solution_answers(dist, n)), subs / n), A.autograder_zip(dist / n))
    old = {k: os.environ.get(k) for k in LIMITS}
    os.environ.update(LIMITS)
    try:
        with ThreadPoolExecutor(2) as pool:
            results = dict(zip(jobs, pool.map(lambda j: A.grade(*j), jobs.values())))
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return results


@pytest.mark.parametrize("name", NAMES)
def test_student_folder_holds_no_solution_or_hidden_test(dist, name):
    student, ag = dist / name / "student", dist / name / "autograder"
    assert A.student_leaks(student) == []
    hidden = set()
    for t in (ag / "tests").glob("*.py"):
        hidden |= set(re.findall(r"hidden=True\)\ndef (\w+)", t.read_text()))
    assert hidden, "every assignment has hidden tests"
    text = "\n".join(p.read_text() for p in student.rglob("*") if p.suffix in (".ipynb", ".py"))
    assert not [h for h in hidden if h in text]
    nb = json.loads((student / f"{name}.ipynb").read_text())
    setup = next("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "pip" in setup and "otter-grader" in setup and "ltkd @ " in setup and "git clone" not in setup


@pytest.mark.parametrize("name", NAMES)
def test_solution_full_marks_and_unedited_student_zero(graded, name):
    sol, stu = graded[("solution", name)]["scores"], graded[("student", name)]["scores"]
    assert sol and all(s == p and p > 0 for s, p in sol.values()), sol
    assert set(stu) == set(sol) and all(s == 0 for s, _ in stu.values()), stu


def test_wrong_and_broken_submissions_lose_their_points(graded):
    g = graded[("bad", "a01_long_tailed_data")]
    s, fb = g["scores"], g["feedback"]
    assert s["q1"] == (1, 3) and "expected" in fb["q1"]  # public test passes, hidden tests catch the rounding
    assert s["q2"] == (0, 3) and "`sampler_probs` is not defined" in fb["q2"]  # the syntax error
    assert s["q3"] == (0, 3) and "`shot_groups` is not defined" in fb["q3"]  # deleted cell
    assert s["q4"] == (3, 3)  # graded after all that
    g = graded[("bad", "a04_knowledge_distillation")]
    s, fb = g["scores"], g["feedback"]
    assert s["q1"] == (0, 2) and "raised NotImplementedError: not yet" in fb["q1"]
    assert s["q2"] == (1, 4) and "multiply by T squared" in fb["q2"]  # T = 1 passes, T = 4 does not
    assert s["q3"] == (0, 4) and "ran longer than 3 s" in fb["q3"]
    assert s["q4"] == (0, 3) and "kd_gap should be a number" in fb["q4"]  # its cell was stopped after 20 s


def test_grading_time(graded):
    seconds = {k: round(v["seconds"]) for k, v in graded.items() if k[0] != "bad"}
    print("grading seconds (two at a time):", seconds)
    assert max(seconds.values()) < 120, seconds  # ≤ 60 s alone on 2 cores (README); two at a time here


def test_grade_folder_writes_scores_and_feedback(dist, tmp_path):
    name = "a06_stacking_basic_units"
    shutil.copy(dist / name / "autograder" / f"{name}.ipynb", tmp_path / "alice.ipynb")
    shutil.copy(dist / name / "student" / f"{name}.ipynb", tmp_path / "bob.ipynb")
    t0 = time.monotonic()
    path = A.grade_folder("a06", tmp_path, dist)
    rows = {r["file"]: r for r in csv.DictReader(path.open())}
    assert float(rows["alice.ipynb"]["total"]) == float(rows["alice.ipynb"]["possible"]) == 10
    assert float(rows["bob.ipynb"]["total"]) == 0 and list(rows["bob.ipynb"])[1:4] == ["q1", "q2", "q3"]
    assert "q1: 0/4" in (tmp_path / "bob.feedback.txt").read_text()
    print(f"grade_folder, two submissions: {time.monotonic() - t0:.0f} s")
