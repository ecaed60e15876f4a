"""Build variants of the book.

    jupyter-book build -W -n --keep-going book      # the book, chapters executed (cached); see README
    python book/build.py                            # the same from a copy, in book/_build_exec
    python book/build.py --student                  # student edition: no solutions, committed outputs
    python book/build.py --no-execute               # the book from the committed (executed) notebooks

The student edition drops every solution before building: markdown cells holding a
``{admonition} Solution`` block (the block is cut out; the rest of the cell stays) and code cells
tagged ``solution``; it leaves out the instructors' page, the "Open in Colab" badges and the launch
buttons too (they open the repository's notebooks, solutions included). It is built from the committed
notebooks without re-executing them, so it shows the same results as the published book, minus the
answers. Warnings are errors in every variant (``-W``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

BOOK = Path(__file__).resolve().parent
ROOT = BOOK.parent

# a MyST admonition block titled "Solution…", fenced with 3+ backticks or colons
_SOLUTION = re.compile(
    r"^(?P<fence>`{3,}|:{3,})\{admonition\}\s*Solution.*?^(?P=fence)[ \t]*$\n?",
    re.MULTILINE | re.DOTALL,
)


def strip_solutions(nb: dict) -> tuple[dict, int]:
    """Return the notebook without solutions, and how many were removed."""
    cells, removed = [], 0
    for cell in nb["cells"]:
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        tags = cell.get("metadata", {}).get("tags", [])
        if "solution" in tags:
            removed += 1
            continue
        if cell["cell_type"] == "markdown":
            new, n = _SOLUTION.subn("", src)
            if n:
                removed += n
                if not new.strip():
                    continue
                cell = {**cell, "source": new}
        cells.append(cell)
    return {**nb, "cells": cells}, removed


# the chapters' "Open in Colab" badge: it opens the repository's notebook, solutions included
_COLAB_BADGE = re.compile(r"^\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)[ \t]*\n*", re.MULTILINE)


def _config(src: Path, execute: str, student: bool = False) -> None:
    cfg = (src / "_config.yml").read_text()
    cfg = re.sub(r"execute_notebooks:\s*\S+", f"execute_notebooks: {execute}", cfg)
    if student:  # no launch buttons: they too open the repository's notebooks, solutions included
        cfg, n = re.subn(r"^([ \t]+(?:binderhub_url|colab_url):).*$", r'\1 ""', cfg, flags=re.MULTILINE)
        if n != 2:
            raise SystemExit(f"build.py: expected binderhub_url and colab_url in {src / '_config.yml'}, found {n}")
    (src / "_config.yml").write_text(cfg)


def strip_launch_badges(nb: dict) -> tuple[dict, int]:
    """Return the notebook without its "Open in Colab" badge, and how many were removed."""
    cells, removed = [], 0
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            new, n = _COLAB_BADGE.subn("", src)
            if n:
                removed += n
                cell = {**cell, "source": new}
        cells.append(cell)
    return {**nb, "cells": cells}, removed


# pages the student edition leaves out: the instructors' page says how the edition is made and works
# one of ltkd.exercises' checks through to its answer
INSTRUCTOR_ONLY = ("instructors",)

# In a book page, text only one edition shows: the full edition's between
# <!-- full-edition --> and <!-- /full-edition -->, the student edition's inside
# <!-- student-edition ... --> (an HTML comment, so the full edition does not show it).
_FULL_ONLY = re.compile(r"<!-- full-edition -->\n?.*?<!-- /full-edition -->\n?", re.DOTALL)
_STUDENT_ONLY = re.compile(r"<!-- student-edition\n(.*?)-->\n?", re.DOTALL)


def edition_text(text: str, student: bool) -> str:
    """A page's text for one edition (see the markers above)."""
    if not student:
        return text
    return _STUDENT_ONLY.sub(lambda m: m.group(1), _FULL_ONLY.sub("", text))


def _drop_from_toc(src: Path, pages: tuple[str, ...]) -> None:
    toc = src / "_toc.yml"
    text = toc.read_text()
    for page in pages:
        text, n = re.subn(rf"^[ \t]*- file: {re.escape(page)}[ \t]*\n", "", text, flags=re.MULTILINE)
        if n != 1:
            raise SystemExit(f"build.py: expected one '- file: {page}' entry in {toc}, found {n}")
    toc.write_text(text)


def prepare(dest: Path, student: bool, execute: str) -> Path:
    """Copy the book's sources (and the notebooks, stripped for students) into ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for p in BOOK.iterdir():
        if p.name.startswith("_build") or p.name in ("notebooks", "build.py", "__pycache__"):
            continue
        if student and p.suffix == ".md" and p.stem in INSTRUCTOR_ONLY:
            continue
        if p.suffix == ".md":
            (dest / p.name).write_text(edition_text(p.read_text(), student))
        else:
            (shutil.copytree if p.is_dir() else shutil.copy2)(p, dest / p.name)
    if student:
        _drop_from_toc(dest, INSTRUCTOR_ONLY)
    (dest / "notebooks").mkdir()
    total = 0
    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(nb_path.read_text())
        nb.setdefault("metadata", {}).setdefault("language_info", {"name": "python"})
        if student:
            nb, n = strip_solutions(nb)
            nb, _ = strip_launch_badges(nb)
            total += n
        (dest / "notebooks" / nb_path.name).write_text(json.dumps(nb, indent=1))
    for extra in (ROOT / "notebooks").iterdir():  # data files a chapter reads, if any
        if extra.is_file() and extra.suffix != ".ipynb":
            shutil.copy2(extra, dest / "notebooks" / extra.name)
    # chapters read result files as ../experiments/results/...: give the copy the same neighbour
    (dest / "experiments").symlink_to(ROOT / "experiments", target_is_directory=True)
    _config(dest, execute, student)
    if student:
        print(f"student edition: removed {total} solution(s)")
    return dest


def build(student: bool = False, execute: str = "off", out: Path | None = None) -> Path:
    """Build a variant; return the folder holding ``index.html``."""
    name = "_build_student" if student else ("_build_noexec" if execute == "off" else "_build_exec")
    out = out or BOOK / name
    if student and (out / "_build").exists():  # a clean build: no page of an earlier build may stay behind
        shutil.rmtree(out / "_build")
    src = prepare(out / "src", student, execute)
    cmd = ["jupyter-book", "build", str(src), "--path-output", str(out), "-W", "-n", "--keep-going"]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    html = out / "_build" / "html"
    print(f"built {html / 'index.html'}")
    return html


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--student", action="store_true", help="drop all solutions")
    p.add_argument("--no-execute", action="store_true", help="use the committed outputs (the default for --student)")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    execute = "off" if (a.student or a.no_execute) else "cache"
    build(a.student, execute, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
