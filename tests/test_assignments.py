"""The course assignments (``assignments/``, otter-grader; book/instructors.md).

Every master is generated with ``otter assign``; its solution notebook gets full marks, its unedited student
notebook 0 on every question; wrong and broken submissions (off-by-one counts, KD without T², a syntax error, a
missing function, a function that raises, endless loops in a function and at a cell's top level) lose exactly the
points they should, with a readable message, and the grading run goes on to the other questions. No student file
holds a solution marker or a hidden test. Gradings run two at a time (CI has two cores).
"""

from __future__ import annotations

import csv
import functools
import http.server
import importlib.util
import json
import os
import re
import shutil
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("otter", reason="otter-grader is in the dev/test extras")

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("ltkd_assignments_build", ROOT / "assignments" / "build.py")
A = importlib.util.module_from_spec(spec)
spec.loader.exec_module(A)
spec = importlib.util.spec_from_file_location("ltkd_assignments_grader", ROOT / "assignments" / "grader.py")
G = importlib.util.module_from_spec(spec)
spec.loader.exec_module(G)
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
    # off-by-one rounding (round, not int), a syntax error, an endless loop in a function, a right answer
    "a01_long_tailed_data": lambda good: [
        "def lt_counts(n_max, C, IF):\n    return [round(n_max * (1 / IF) ** (i / (C - 1))) for i in range(C)]",
        "def sampler_probs(counts, q)\n    return counts ** q",
        "def shot_groups(counts):\n    while True:\n        pass",
        good[3],
    ],
    # the wrong axis, KD without T², DKD at the wrong temperature (T = 1 always), a right measurement that calls
    # the wrong kd_loss: each slip costs its own question only
    "a04_knowledge_distillation": lambda good: [
        "import torch\n\ndef soften(logits, T):\n    return torch.softmax(logits / T, dim=0)",
        good[1].replace(" * T * T", ""),
        good[2].replace("def dkd_parts(z_student, z_teacher, y, T):", "def dkd_parts(z_student, z_teacher, y, T):\n    T = 1.0"),
        good[3],
    ],
}

# every answer wrong (the handout's `...`), and the grading machinery patched so that every check would pass
TAMPER = """
import builtins
import torch
import ltkd.grading
ltkd.grading.close = lambda *a, **k: True
ltkd.grading.call = lambda fn, name, *a, **k: 0.0
builtins.abs = lambda x: 0.0
torch.allclose = lambda *a, **k: True
"""


@pytest.fixture(scope="module")
def graded(dist, tmp_path_factory):
    """Every solution, every unedited student notebook, the bad and the tampering submissions, graded."""
    subs = tmp_path_factory.mktemp("submissions")
    jobs = {}
    for n in NAMES:
        jobs[("solution", n)] = (dist / n / "autograder" / f"{n}.ipynb", dist / n)
        jobs[("student", n)] = (dist / n / "student" / f"{n}.ipynb", dist / n)
    for n, make in BAD.items():
        jobs[("bad", n)] = (_submission(dist, n, make(_solution_answers(dist, n)), subs / n), dist / n)
    n = "a04_knowledge_distillation"
    student = [c["source"] for c in _answer_cells(json.loads((dist / n / "student" / f"{n}.ipynb").read_text()))]
    jobs[("tamper", n)] = (_submission(dist, n, [TAMPER + "".join(s) for s in student], subs / "tamper"), dist / n)
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
    files = sorted(p.relative_to(student).as_posix() for p in student.rglob("*") if p.suffix != ".ipynb" and p.is_file())
    assert f"FILES = {files!r}" in setup and any(f.startswith("tests/") for f in files)  # what Colab fetches


@pytest.mark.parametrize("name", NAMES)
def test_every_hidden_test_names_its_property(dist, name):
    """A failing hidden test's feedback is its docstring: each has one, and each has its own points."""
    for t in G.load_tests(dist / name / "autograder" / "tests"):
        assert t["points"] > 0, t["name"]
        if t["hidden"]:
            assert (t["function"].__doc__ or "").strip(), f"{name}: {t['name']} has no docstring"


@pytest.mark.parametrize("name", NAMES)
def test_solution_full_marks_and_unedited_student_zero(graded, name):
    sol, stu = graded[("solution", name)], graded[("student", name)]
    assert not sol["error"] and not sol["flags"] and not stu["flags"], (sol, stu)
    assert sol["scores"] and all(s == p and p > 0 for s, p in sol["scores"].values()), sol
    assert set(stu["scores"]) == set(sol["scores"]) and all(s == 0 for s, _ in stu["scores"].values()), stu


def test_wrong_and_broken_submissions_lose_only_their_own_share(graded):
    g = graded[("bad", "a01_long_tailed_data")]
    s, fb = g["scores"], g["feedback"]
    assert s["q1"] == (1.25, 3)  # the public test and IF 1 pass; every other hidden case catches the rounding
    assert "hidden test failed: CIFAR-10-LT at IF 100: the counts truncated with int, not rounded" in fb["q1"]
    assert "expected" not in fb["q1"] and "12406" not in fb["q1"] and "assert" not in fb["q1"]  # no expected value, no source
    assert s["q2"] == (0, 3) and "`sampler_probs` is not defined" in fb["q2"]  # the syntax error
    assert s["q3"] == (0, 3) and "ran longer than 3 s" in fb["q3"]  # the endless loop
    assert s["q4"] == (3, 3)  # graded after all that
    g = graded[("bad", "a04_knowledge_distillation")]
    s, fb = g["scores"], g["feedback"]
    assert s["q1"] == (0, 2)  # the wrong axis: the public test and both hidden cases
    assert s["q2"] == (3, 4) and "hidden test failed: T ≠ 1: both softened, then the T² factor" in fb["q2"]
    assert s["q3"] == (2.5, 4) and "TCKD at T ≠ 1" in fb["q3"]  # T = 1 cases and the public test pass
    assert s["q4"] == (3, 3)  # the measurement runs with the reference kd_loss: the missing T² is charged once


def test_tampering_earns_nothing_and_is_flagged(graded):
    g = graded[("tamper", "a04_knowledge_distillation")]
    assert not g["error"] and all(s == 0 for s, _ in g["scores"].values()), g["scores"]
    flags = " | ".join(g["flags"])
    for what in ("changes ltkd.grading.close", "changes builtins.abs", "changes torch.allclose"):
        assert what in flags, flags
    assert re.search(r"code cell \d+, line \d+", flags)


def test_tamper_scan_on_its_own():
    cells = ["import sys\nsys.modules['ltkd.grading'] = None", "import importlib\nimportlib.reload(x)",
             "setattr(__import__('ltkd'), 'x', 1)", "import numpy as np\nnp.allclose = None",
             "import torch\ndef f(x):\n    return x + 1\ny = [1]\ny[torch.argmax(torch.ones(1))] = 2"]
    flags = G.tamper_scan(cells)
    assert any(f.startswith("code cell 1") and "sys.modules" in f for f in flags)
    assert any(f.startswith("code cell 2") and "imports importlib" in f for f in flags)
    assert any(f.startswith("code cell 2") and "reload" in f for f in flags)
    assert any(f.startswith("code cell 3") and "setattr" in f for f in flags)
    assert any(f.startswith("code cell 4") and "np.allclose" in f for f in flags)
    assert not any(f.startswith("code cell 5") for f in flags)  # ordinary code is not flagged


def test_grading_time(graded):
    seconds = {k: round(v["seconds"]) for k, v in graded.items() if k[0] != "bad"}
    print("grading seconds (two at a time):", seconds)
    assert max(seconds.values()) < 120, seconds


def test_a_batch_never_stops(dist, tmp_path):
    """Invalid JSON, a kernel that dies, a notebook past its time limit, a zip without the notebook, a student
    without a file: each scores 0 with a one-line reason; a cell that exhausts the memory cap fails alone; the
    others are graded and the CSV is written."""
    name = "a06_stacking_basic_units"
    shutil.copy(dist / name / "autograder" / f"{name}.ipynb", tmp_path / "alice.ipynb")
    (tmp_path / "broken.ipynb").write_text('{"cells": [')
    killer = json.loads((dist / name / "autograder" / f"{name}.ipynb").read_text())
    killer["cells"].insert(3, {"cell_type": "code", "metadata": {}, "outputs": [], "source": "import os\nos._exit(3)"})
    (tmp_path / "carol.ipynb").write_text(json.dumps(killer))
    hog = json.loads(json.dumps(killer))  # a cell that asks for 20 GB: MemoryError under the worker's cap
    hog["cells"][3]["source"] = "import numpy as np\nhog = np.ones(20 * 2**30 // 8)"
    (tmp_path / "frank.ipynb").write_text(json.dumps(hog))
    stuck = json.loads(json.dumps(killer))  # blocks the cell's time limit: the notebook's limit stops it
    stuck["cells"][3]["source"] = "import signal\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})\nwhile True:\n    pass"
    (tmp_path / "gina.ipynb").write_text(json.dumps(stuck))
    with zipfile.ZipFile(tmp_path / "dave.zip", "w") as z:
        z.writestr("renamed.ipynb", "{}")
    roster = ["alice", "broken", "carol", "dave", "erin", "frank", "gina"]
    t0 = time.monotonic()
    os.environ["LTKD_GRADING_NOTEBOOK_SECONDS"] = "20"
    try:
        path = A.grade_folder("a06", tmp_path, dist, jobs=2, roster=roster)
    finally:
        del os.environ["LTKD_GRADING_NOTEBOOK_SECONDS"]
    assert path.name == f"{name}_scores.csv"
    rows = {r["file"]: r for r in csv.DictReader(path.open())}
    assert float(rows["alice.ipynb"]["total"]) == float(rows["alice.ipynb"]["possible"]) == 10
    assert list(rows["alice.ipynb"])[1:4] == ["q1", "q2", "q3"] and not rows["alice.ipynb"]["error"]
    assert "not a notebook" in rows["broken.ipynb"]["error"]
    assert "exited with code 3" in rows["carol.ipynb"]["error"]
    assert "holds no a06_stacking_basic_units.ipynb" in rows["dave.zip"]["error"]
    assert "no submission" in rows["erin"]["error"]
    assert float(rows["frank.ipynb"]["total"]) == 10 and not rows["frank.ipynb"]["error"]  # only that cell failed
    assert "ran past its time limit in code cell 2" in rows["gina.ipynb"]["error"]
    assert "signal.pthread_sigmask" in rows["gina.ipynb"]["flags"]
    for f in ("broken.ipynb", "carol.ipynb", "dave.zip", "erin", "gina.ipynb"):
        assert float(rows[f]["total"]) == 0 and "\n" not in rows[f]["error"], rows[f]
    assert "not graded" in (tmp_path / "carol.feedback.txt").read_text()
    print(f"grade_folder, four submissions: {time.monotonic() - t0:.0f} s")


def test_colab_from_the_notebook_alone(dist, tmp_path):
    """A student notebook alone in a folder, with a stub google.colab module: its first cell fetches the public
    tests and the model file from a local HTTP server (the URL set at build time), and every public check
    passes on the solution's answers. (ltkd and otter are installed here, so the cell's pip step is skipped.)"""
    nbclient = pytest.importorskip("nbclient")
    import nbformat

    name = "a01_long_tailed_data"
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(dist / name / "student"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        work = tmp_path / "colab"
        nb_path = _submission(dist, name, _solution_answers(dist, name), work)
        nb = json.loads(nb_path.read_text())
        setup = next(c for c in nb["cells"] if c["cell_type"] == "code")
        setup["source"] = "".join(setup["source"]).replace("FILES_URL = ''", f"FILES_URL = {url!r}")
        assert url in setup["source"]
        nb_path.write_text(json.dumps(nb))
        assert [p.name for p in work.iterdir()] == [nb_path.name]
        stub = tmp_path / "stub" / "google" / "colab"
        stub.mkdir(parents=True)
        (stub / "__init__.py").write_text("# a stand-in for Colab's module\n")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "stub"), str(ROOT)])}
        book = nbformat.read(nb_path, as_version=4)
        old = dict(os.environ)
        os.environ.update(env)
        try:
            nbclient.NotebookClient(book, timeout=300, resources={"metadata": {"path": str(work)}}).execute()
        finally:
            os.environ.clear()
            os.environ.update(old)
    finally:
        server.shutdown()
    assert (work / "tests" / "q1.py").is_file() and (work / "kd_teacher_fmnist_lt_ce.pt").is_file()
    checks = [c for c in book.cells if c.cell_type == "code" and "grader.check(" in c.source]
    assert len(checks) == 4
    for c in checks:
        text = json.dumps(c.outputs)
        assert "passed" in text and "failed" not in text.lower(), (c.source, text[:500])
