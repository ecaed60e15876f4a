"""Generate, check and grade the course assignments (otter-grader); see book/instructors.md.

    python assignments/build.py                     # every assignment: student + autograder folders in assignments/dist/
    python assignments/build.py --check             # ... then grade each solution notebook: full marks or an error
    python assignments/build.py a01 a04             # only these (a name's prefix is enough)
    python assignments/build.py --grade a01 SUBMISSIONS_DIR   # grade every .ipynb/.zip there -> SUBMISSIONS_DIR/a01_scores.csv

The masters are ``assignments/aNN_*.ipynb`` (otter's master format: ``# BEGIN QUESTION``, ``# BEGIN SOLUTION``,
``# BEGIN TESTS`` cells). ``otter assign`` writes, per assignment, ``dist/<name>/student/`` (the notebook to hand out,
without solutions or hidden tests, plus its public ``tests/`` and the files it reads) and ``dist/<name>/autograder/``
(the solution notebook and ``<name>-autograder_*.zip``, which ``otter run`` grades with). Files an assignment reads
(shipped models) are listed in SHIPPED below — the one place their repository paths are written.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
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


def assign(master: Path, dist: Path = DIST) -> Path:
    """``otter assign`` one master into ``dist/<name>``; return that folder."""
    out = dist / master.stem
    if out.exists():
        shutil.rmtree(out)
    with tempfile.TemporaryDirectory() as tmp:  # otter assign wants the master's files next to it
        src = Path(tmp) / master.name
        shutil.copy2(master, src)
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


def autograder_zip(out: Path) -> Path:
    zips = sorted((out / "autograder").glob("*-autograder_*.zip"))
    if not zips:
        raise SystemExit(f"build.py: no autograder zip in {out / 'autograder'}; run the build first")
    return zips[-1]


def grade(submission: Path, autograder: Path) -> dict:
    """Grade one submission (notebook or zip) with ``otter run``: {question: (score, possible)}, feedback, seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        cmd = [sys.executable, "-m", "otter", "run", "-a", str(autograder), "-o", tmp, "--no-logo", str(submission)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.monotonic() - t0
        res = Path(tmp) / "results.json"
        if r.returncode or not res.is_file():
            raise RuntimeError(f"otter run failed on {submission}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
        data = json.loads(res.read_text())
    scores: dict[str, list[float]] = {}
    feedback: dict[str, str] = {}
    for t in data.get("tests", []):
        if t["name"] == "Public Tests":  # otter's summary of the public tests, worth no points
            continue
        q = t["name"].split(" - ")[0]
        s = scores.setdefault(q, [0.0, 0.0])
        s[0] += float(t.get("score") or 0)
        s[1] += float(t.get("max_score") or 0)
        if t.get("output"):
            feedback[q] = feedback.get(q, "") + t["output"]
    return {"scores": {q: tuple(v) for q, v in scores.items()}, "feedback": feedback, "seconds": seconds, "json": data}


def grade_folder(name: str, folder: Path, dist: Path = DIST) -> Path:
    """Grade every submission in ``folder`` against one assignment; write ``<name>_scores.csv`` there."""
    out = dist / masters([name])[0].stem
    ag = autograder_zip(out)
    subs = sorted(p for p in folder.iterdir() if p.suffix in (".ipynb", ".zip"))
    rows, questions = [], []
    for s in subs:
        g = grade(s, ag)
        questions = questions or list(g["scores"])
        row = {"file": s.name, **{q: g["scores"][q][0] for q in g["scores"]}}
        row["total"] = sum(v[0] for v in g["scores"].values())
        row["possible"] = sum(v[1] for v in g["scores"].values())
        rows.append(row)
        fb = folder / f"{s.stem}.feedback.txt"
        fb.write_text("\n\n".join(f"{q}: {g['scores'][q][0]:g}/{g['scores'][q][1]:g}\n{g['feedback'].get(q, '')}"
                                  for q in g["scores"]))
        print(f"{s.name}: {row['total']:g}/{row['possible']:g} ({g['seconds']:.0f} s); feedback in {fb.name}")
    csv_path = folder / f"{out.name}_scores.csv"
    with csv_path.open("w", newline="") as f:
        w = csv.DictWriter(f, ["file", *questions, "total", "possible"])
        w.writeheader()
        w.writerows(rows)
    print(f"scores: {csv_path}")
    return csv_path


def check(out: Path) -> dict:
    """Grade the assignment's own solution notebook: every question must get full marks."""
    solution = out / "autograder" / f"{out.name}.ipynb"
    g = grade(solution, autograder_zip(out))
    lost = {q: s for q, s in g["scores"].items() if s[0] != s[1]}
    if lost or not g["scores"]:
        raise SystemExit(f"build.py: {out.name}: the solution does not get full marks: {lost}\n{g['feedback']}")
    return g


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help="assignments to build (a01, a02_gaussian...); all by default")
    p.add_argument("--check", action="store_true", help="grade each solution notebook after building")
    p.add_argument("--grade", nargs=2, metavar=("NAME", "FOLDER"), help="grade every submission in FOLDER")
    p.add_argument("--dist", type=Path, default=DIST)
    a = p.parse_args(argv)
    if a.grade:
        grade_folder(a.grade[0], Path(a.grade[1]), a.dist)
        return 0
    for m in masters(a.names):
        t0 = time.monotonic()
        out = assign(m, a.dist)
        line = f"{m.stem}: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} ({time.monotonic() - t0:.0f} s)"
        if a.check:
            g = check(out)
            line += f"; solution scores {sum(s[0] for s in g['scores'].values()):g}/" \
                    f"{sum(s[1] for s in g['scores'].values()):g} in {g['seconds']:.0f} s"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
