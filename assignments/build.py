"""Generate, check and grade the course assignments (otter-grader); see book/instructors.md.

    python assignments/build.py                     # every assignment: student + autograder folders in assignments/dist/
    python assignments/build.py --check             # ... then grade each solution notebook: full marks or an error
    python assignments/build.py a01 a04             # only these (a name's prefix is enough)
    python assignments/build.py --grade a01 SUBMISSIONS_DIR --jobs 2
        # grade every .ipynb/.zip there -> SUBMISSIONS_DIR/a01_long_tailed_data_scores.csv and <student>.feedback.txt
    python assignments/build.py --files-url URL --package SPEC   # where Colab fetches the files; which ltkd to install

The masters are ``assignments/aNN_*.ipynb`` (otter's master format: ``# BEGIN QUESTION``, ``# BEGIN SOLUTION``,
``# BEGIN TESTS`` cells). ``otter assign`` writes, per assignment, ``dist/<name>/student/`` (the notebook to hand out,
without solutions or hidden tests, plus its public ``tests/`` and the files it reads) and ``dist/<name>/autograder/``
(the solution notebook, the tests, and ``<name>-autograder_*.zip`` for ``otter run`` / Gradescope). ``--grade``
grades with assignments/grader.py, which never runs a submission in the process that scores it. Files an assignment
reads (shipped models) are listed in SHIPPED below — the one place their repository paths are written.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DIST = HERE / "dist"

# files a master names in its ASSIGNMENT CONFIG `files:` -> where they live in the repository
SHIPPED = {  # the shipped models (experiments/shipped.py), under the names the assignments use
    "kd_teacher_fmnist.pt": ROOT / "experiments" / "models" / "fmnist200_ce_teacher.pt",
    "kd_teacher_fmnist_lt_ce.pt": ROOT / "experiments" / "models" / "fmnist_lt100_n500_ce_teacher.pt",
    "kd_teacher_fmnist_lt_gcl.pt": ROOT / "experiments" / "models" / "fmnist_lt100_n500_gcl_teacher.pt",
    "pipeline_teacher.pt": ROOT / "experiments" / "models" / "fmnist_lt100_gcl_teacher.pt",
}

# strings that must never reach a student's folder (checked after every build)
SOLUTION_MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "# SOLUTION", "BEGIN TESTS", "hidden: true", "hidden=True")


def masters(select: list[str] | None = None) -> list[Path]:
    found = sorted(HERE.glob("a[0-9][0-9]_*.ipynb"))
    if select:
        found = [m for m in found if any(m.stem.startswith(s) for s in select)]
        if not found:
            raise SystemExit(f"build.py: no master matches {select}; masters: {[m.stem for m in HERE.glob('a*.ipynb')]}")
    return found


def _files_of(master: Path) -> list[str]:
    nb = json.loads(master.read_text())
    cfg = "".join(nb["cells"][0]["source"])
    names, inside = [], False
    for line in cfg.splitlines():
        if line.startswith("files:"):
            inside = line.strip() == "files:"
            continue
        if inside and line.startswith("  - "):
            names.append(line[4:].strip())
        elif inside and line and not line.startswith(" "):
            inside = False
    return names


PACKAGE = "ltkd @ git+https://github.com/ltkd-book/ltkd"  # what the student notebook and the autograder install


def requirements(package: str = PACKAGE) -> str:
    """The autograder's requirements.txt: ltkd (``package``: a pip spec, a wheel's URL) and its dependencies."""
    block = re.search(r"^dependencies = \[(.*?)^\]", (ROOT / "pyproject.toml").read_text(), re.M | re.S)
    deps = re.findall(r'"([^"]+)"', block.group(1))
    return "\n".join([*deps, package]) + "\n"


def _with_requirements(master: Path, dest: Path, package: str) -> None:
    """The master with ``requirements: requirements.txt`` in its config, and that file beside it."""
    nb = json.loads(master.read_text())
    cfg = "".join(nb["cells"][0]["source"]).rstrip("\n") + "\nrequirements: requirements.txt\n"
    nb["cells"][0]["source"] = cfg.splitlines(keepends=True)
    dest.write_text(json.dumps(nb))
    (dest.parent / "requirements.txt").write_text(requirements(package))


def _set_setup(student: Path, files_url: str, package: str) -> None:
    """Write into the student notebook's setup cell where its files are served and which ltkd it installs."""
    nb_path = student / f"{student.parent.name}.ipynb"
    nb = json.loads(nb_path.read_text())
    files = sorted(p.relative_to(student).as_posix() for p in student.rglob("*") if p.is_file() and p != nb_path)
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code")
    src = "".join(cell["source"])
    for old, new in (('FILES_URL = ""', f"FILES_URL = {files_url!r}"), ("FILES = []", f"FILES = {files!r}"),
                     (f'LTKD_PACKAGE = "{PACKAGE}"', f"LTKD_PACKAGE = {package!r}")):
        if old not in src:
            raise SystemExit(f"build.py: the setup cell of {nb_path.name} lacks {old!r}")
        src = src.replace(old, new)
    cell["source"] = src.splitlines(keepends=True)
    nb_path.write_text(json.dumps(nb, indent=1))


def assign(master: Path, dist: Path = DIST, files_url: str = "", package: str = PACKAGE) -> Path:
    """``otter assign`` one master into ``dist/<name>``; return that folder. ``files_url``: where the student
    folder's files will be served (the notebook's first cell fetches what is missing from there)."""
    out = dist / master.stem
    if out.exists():
        shutil.rmtree(out)
    with tempfile.TemporaryDirectory() as tmp:  # otter assign wants the master's files next to it
        src = Path(tmp) / master.name
        _with_requirements(master, src, package)
        for name in _files_of(master):
            if name not in SHIPPED:
                raise SystemExit(f"build.py: {master.name} needs {name!r}, which SHIPPED does not list")
            if not SHIPPED[name].is_file():
                raise SystemExit(f"build.py: {name} is missing at {SHIPPED[name]}")
            shutil.copy2(SHIPPED[name], Path(tmp) / name)
        # `otter assign` in this process: importing otter (and the plugin, with torch) costs more than assigning
        from otter.assign import main as otter_assign

        try:
            otter_assign(str(src), str(out), no_pdfs=True)
        except Exception as e:
            raise SystemExit(f"build.py: otter assign failed for {master.name}: {type(e).__name__}: {e}") from e
    _set_setup(out / "student", files_url, package)
    leaks = student_leaks(out / "student")
    if leaks:
        raise SystemExit(f"build.py: {master.stem}: solution text in the student folder: {leaks}")
    return out


def student_leaks(student: Path) -> list[str]:
    """Files (and marker) in a student folder that hold a solution marker or a hidden test."""
    bad = []
    for p in sorted(student.rglob("*")):
        if p.is_file() and p.suffix in (".ipynb", ".py"):
            text = p.read_text()
            bad += [f"{p.relative_to(student)}: {m!r}" for m in SOLUTION_MARKERS if m in text]
    return bad


def grade(submission: Path, out: Path) -> dict:
    """Grade one submission (notebook or otter's export zip) against the assignment built in ``out``, in a
    process of its own (assignments/grader.py): {"scores": {question: (score, possible)}, "feedback",
    "flags", "error", "seconds"}. It never raises: a submission that cannot be graded scores 0 with the
    reason in "error"."""
    t0 = time.monotonic()
    cmd = [sys.executable, str(HERE / "grader.py"), str(out / "autograder"), str(out / "student"), str(submission)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    return _result(r.stdout.strip().splitlines()[-1:], time.monotonic() - t0,
                   (r.stderr.strip().splitlines() or ["no output"])[-1])


def _result(lines: list[str], seconds: float, why: str = "no output") -> dict:
    """The grader's JSON line as {"scores": {question: (score, possible)}, "feedback", "flags", "error", "seconds"}."""
    try:
        g = json.loads(lines[-1])
    except (ValueError, IndexError):
        g = {"scores": {}, "feedback": {}, "flags": [], "error": f"the grader failed: {why[:200]}"}
    if g["error"]:
        g["scores"] = {q: [0.0, p] for q, (_, p) in g["scores"].items()}
    return {"scores": {q: tuple(v) for q, v in g["scores"].items()},
            "feedback": {q: "\n".join(v) for q, v in g["feedback"].items()},
            "flags": g["flags"], "error": g["error"], "seconds": seconds}


def grade_many(subs: list[Path], out: Path, jobs: int) -> dict[Path, dict]:
    """Grade ``subs`` with ``jobs`` grader processes, each grading one submission after another (it never runs
    a submission itself: each gets its own worker); a grader that fails is replaced, its submission scores 0."""
    todo = list(reversed(subs))
    graded: dict[Path, dict] = {}
    cmd = [sys.executable, str(HERE / "grader.py"), str(out / "autograder"), str(out / "student"), "-"]

    def serve() -> None:
        proc = None
        while True:
            try:
                sub = todo.pop()
            except IndexError:
                break
            if proc is None or proc.poll() is not None:
                proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
            t0 = time.monotonic()
            try:
                proc.stdin.write(f"{sub.resolve()}\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
            except OSError:
                line = ""
            graded[sub] = _result([line] if line.strip() else [], time.monotonic() - t0, "its process stopped")
        if proc is not None:
            proc.stdin.close()
            proc.wait()

    with ThreadPoolExecutor(jobs) as pool:
        for f in [pool.submit(serve) for _ in range(jobs)]:
            f.result()
    return {s: graded[s] for s in subs}


def grade_folder(name: str, folder: Path, dist: Path = DIST, jobs: int | None = None,
                 roster: list[str] | None = None) -> Path:
    """Grade every submission in ``folder`` (``jobs`` at a time; default: the cores) against one assignment;
    write ``<assignment>_scores.csv`` there, whatever happens to any one submission. A student of ``roster``
    without a file there gets a row with 0 and the reason."""
    out = dist / masters([name])[0].stem
    if not (out / "autograder" / "tests").is_dir():
        raise SystemExit(f"build.py: {out.name} is not built in {dist}; run `python assignments/build.py {name}` first")
    subs = sorted(p for p in folder.iterdir() if p.suffix in (".ipynb", ".zip"))
    jobs = jobs or os.cpu_count() or 1
    graded = grade_many(subs, out, jobs)
    possible = next((g["scores"] for g in graded.values() if g["scores"]), None) or _possible(out)
    questions = list(possible)
    rows = []
    for s, g in graded.items():
        scores = g["scores"] or {q: (0.0, p) for q, (_, p) in possible.items()}
        rows.append({"file": s.name, **{q: f"{scores[q][0]:g}" for q in questions},
                     "total": f"{sum(v[0] for v in scores.values()):g}",
                     "possible": f"{sum(v[1] for v in possible.values()):g}",
                     "flags": "; ".join(g["flags"]), "error": g["error"]})
        fb = folder / f"{s.stem}.feedback.txt"
        text = [f"not graded: {g['error']}"] if g["error"] else []
        text += [f"{q}: {scores[q][0]:g}/{scores[q][1]:g}\n{g['feedback'].get(q, '')}".strip() for q in questions]
        fb.write_text("\n\n".join(text) + "\n")
        print(f"{s.name}: {rows[-1]['total']}/{rows[-1]['possible']} ({g['seconds']:.0f} s)"
              + (f"; {g['error']}" if g["error"] else "") + (f"; FLAGGED: {rows[-1]['flags']}" if g["flags"] else ""))
    stems = {s.stem for s in subs}
    for student in roster or []:
        if student not in stems:
            rows.append({"file": student, **{q: "0" for q in questions}, "total": "0",
                         "possible": f"{sum(v[1] for v in possible.values()):g}", "flags": "",
                         "error": "no submission (no .ipynb or .zip of this name)"})
    csv_path = folder / f"{out.name}_scores.csv"
    with csv_path.open("w", newline="") as f:
        w = csv.DictWriter(f, ["file", *questions, "total", "possible", "flags", "error"])
        w.writeheader()
        w.writerows(rows)
    print(f"scores: {csv_path}")
    return csv_path


def _possible(out: Path) -> dict:
    """{question: (0, points)} from the autograder's tests (when no submission could be graded)."""
    spec = importlib.util.spec_from_file_location("ltkd_assignments_grader", HERE / "grader.py")
    grader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(grader)
    possible: dict[str, tuple[float, float]] = {}
    for t in grader.load_tests(out / "autograder" / "tests"):
        possible[t["question"]] = (0.0, possible.get(t["question"], (0, 0))[1] + t["points"])
    return possible


def check(out: Path) -> dict:
    """Grade the assignment's own solution notebook: every question must get full marks."""
    solution = out / "autograder" / f"{out.name}.ipynb"
    g = grade(solution, out)
    lost = {q: s for q, s in g["scores"].items() if s[0] != s[1]}
    if lost or not g["scores"]:
        raise SystemExit(f"build.py: {out.name}: the solution does not get full marks: {lost}\n{g['feedback']}")
    return g


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help="assignments to build (a01, a02_gaussian...); all by default")
    p.add_argument("--check", action="store_true", help="grade each solution notebook after building")
    p.add_argument("--grade", nargs=2, metavar=("NAME", "FOLDER"), help="grade every submission in FOLDER")
    p.add_argument("--jobs", type=int, default=None, help="submissions graded at a time (default: the cores)")
    p.add_argument("--roster", type=Path, help="with --grade: a file of student names, one a line (a name "
                   "without a submission gets 0 and the reason)")
    p.add_argument("--files-url", default="", help="where you will serve the student folder (its tests/ and "
                   "model files): the notebook's first cell fetches them from there (Colab)")
    p.add_argument("--package", default=PACKAGE, help=f"the ltkd that students and the autograder install "
                   f"(a pip spec or a wheel's URL; default {PACKAGE!r})")
    p.add_argument("--dist", type=Path, default=DIST)
    a = p.parse_args(argv)
    if a.grade:
        roster = a.roster.read_text().split() if a.roster else None
        grade_folder(a.grade[0], Path(a.grade[1]), a.dist, a.jobs, roster)
        return 0
    for m in masters(a.names):
        t0 = time.monotonic()
        out = assign(m, a.dist, a.files_url, a.package)
        line = f"{m.stem}: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} ({time.monotonic() - t0:.0f} s)"
        if a.check:
            g = check(out)
            line += f"; solution scores {sum(s[0] for s in g['scores'].values()):g}/" \
                    f"{sum(s[1] for s in g['scores'].values()):g} in {g['seconds']:.0f} s"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
