"""The student edition (``python book/build.py --student``, book/instructors.md) keeps every exercise and
drops every solution: the collapsed *Solution* boxes and the code cells that answer an exercise."""

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
spec = importlib.util.spec_from_file_location("ltkd_book_build", ROOT / "book" / "build.py")
build = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build)


def _src(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _exercise_cells(nb) -> list[dict]:
    """The cells from the chapter's "## Exercises" heading on (empty if it has none)."""
    start = next((i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "markdown" and "## Exercises" in _src(c)),
                 len(nb["cells"]))  # fmt: skip
    return nb["cells"][start:]


def _prompts(cells) -> list[str]:
    """Exercise prompts: numbered items ("1. ...") outside solution boxes."""
    text = build._SOLUTION.sub("", "\n".join(_src(c) for c in cells if c["cell_type"] == "markdown"))
    return re.findall(r"^(\d+)\. ", text, re.MULTILINE)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_exercise_code_is_tagged_as_a_solution(path):
    """A code cell in the exercises section answers an exercise (its output is the answer), so it must carry
    the ``solution`` tag that the student edition removes; untagged, students would see the answer. In the
    published book it is folded whole (``hide-cell``): ``hide-input`` would still print the answer."""
    nb = json.loads(path.read_text())
    untagged = [_src(c).splitlines()[0][:60] for c in _exercise_cells(nb)
                if c["cell_type"] == "code" and "solution" not in c["metadata"].get("tags", [])]  # fmt: skip
    assert not untagged, f"{path.name}: exercise code cells without the 'solution' tag: {untagged}"
    # ... and in the published book it stays folded, output included, like the Solution boxes
    shown = [_src(c).splitlines()[0][:60] for c in _exercise_cells(nb) if c["cell_type"] == "code"
             and not {"hide-cell", "remove-cell"} & set(c["metadata"].get("tags", []))]  # fmt: skip
    assert not shown, f"{path.name}: exercise code cells shown unfolded in the published book: {shown}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_edition_keeps_the_exercises_and_drops_the_solutions(path):
    nb = json.loads(path.read_text())
    before = _exercise_cells(nb)
    boxes = sum(len(build._SOLUTION.findall(_src(c))) for c in nb["cells"] if c["cell_type"] == "markdown")
    tagged = sum("solution" in c["metadata"].get("tags", []) for c in nb["cells"])
    stripped, removed = build.strip_solutions(nb)
    assert removed == boxes + tagged
    if before:
        assert boxes >= 1, f"{path.name}: exercises without a single solution box"
    after = _exercise_cells(stripped)
    assert _prompts(after) == _prompts(before) and len(_prompts(before)) >= (1 if before else 0)
    text = "\n".join(_src(c) for c in stripped["cells"])
    assert "{admonition} Solution" not in text
    assert not any("solution" in c["metadata"].get("tags", []) for c in stripped["cells"])
    assert not any(c["cell_type"] == "code" for c in after), "a code cell survived in the student's exercises"
    assert len(stripped["cells"]) < len(nb["cells"]) or not tagged


def test_strip_solutions_on_a_small_notebook():
    """The rule itself, on cells written here: a box is cut out of its cell, the rest of the cell stays."""
    md = lambda s, tags=(): {"cell_type": "markdown", "metadata": {"tags": list(tags)}, "source": s}
    code = lambda s, tags=(): {"cell_type": "code", "metadata": {"tags": list(tags)}, "source": s, "outputs": []}
    nb = {"cells": [
        md("## Exercises\n\n1. Prove it."),
        md("````{admonition} Solution 1\n:class: dropdown\n\n```python\nx = 1\n```\n````\n2. And this."),
        code("print('answer')", ["hide-input", "solution"]),
        md(":::{admonition} Solution 2\nBecause.\n:::\n"),
        code("print('kept')"),
    ]}  # fmt: skip
    out, removed = build.strip_solutions(nb)
    assert removed == 3
    assert [_src(c) for c in out["cells"]] == ["## Exercises\n\n1. Prove it.", "2. And this.", "print('kept')"]


def test_student_sources_leave_out_the_instructors_page_and_every_solution(tmp_path):
    """What `python book/build.py --student` hands to Jupyter Book (the build itself is the browser test's
    and CI's business; this checks the copied sources)."""
    src = build.prepare(tmp_path / "src", student=True, execute="off")
    assert not (src / "instructors.md").exists() and (src / "intro.md").is_file()
    toc = (src / "_toc.yml").read_text()
    assert "file: instructors" not in toc and "file: notation" in toc
    cfg = (src / "_config.yml").read_text()
    assert "execute_notebooks: off" in cfg
    # no way from the student edition to the repository's notebooks, which hold the solutions
    assert 'colab_url: ""' in cfg and 'binderhub_url: ""' in cfg
    for path in NOTEBOOKS:
        assert "colab.research.google.com" in path.read_text(), path.name  # the published chapter has its badge
        nb = json.loads((src / "notebooks" / path.name).read_text())
        text = "\n".join(_src(c) for c in nb["cells"])
        assert "colab.research.google.com" not in text and text.startswith("# Chapter"), path.name
        assert "{admonition} Solution" not in text, path.name
        assert not any("solution" in c["metadata"].get("tags", []) for c in nb["cells"]), path.name
    intro = (src / "intro.md").read_text()
    assert "Open in Colab" not in intro and "Upload the chapter's notebook" in intro and "edition" not in intro
    full = build.prepare(tmp_path / "full", student=False, execute="off")
    assert "*Open in Colab* badge" in (full / "intro.md").read_text()
    assert (full / "instructors.md").is_file() and "file: instructors" in (full / "_toc.yml").read_text()
    assert "colab_url: https://colab.research.google.com" in (full / "_config.yml").read_text()
    assert "colab.research.google.com" in (full / "notebooks" / NOTEBOOKS[0].name).read_text()


def test_python_in_the_text_compiles():
    """Code that the prose shows (```python blocks, mostly in solution boxes) is not executed by nbval;
    it must at least be valid Python."""
    pages = [(p.name, [_src(c) for c in json.loads(p.read_text())["cells"] if c["cell_type"] == "markdown"])
             for p in NOTEBOOKS] + [(p.name, [p.read_text()]) for p in sorted((ROOT / "book").glob("*.md"))]  # fmt: skip
    blocks = 0
    for name, texts in pages:
        for text in texts:
            for m in re.finditer(r"^(`{3,})python\n(.*?)^\1", text, re.MULTILINE | re.DOTALL):
                blocks += 1
                compile(m.group(2), f"{name} (a python block)", "exec")
    # not vacuous: some solution boxes and the instructors' page show code (most solutions are now code cells,
    # which nbval executes)
    assert blocks >= 3


def test_edition_blocks_in_a_page():
    page = ("Both.\n<!-- full-edition -->\nFull only.\n<!-- /full-edition -->\n"
            "<!-- student-edition\nStudents only.\n-->\nBoth again.\n")  # fmt: skip
    assert build.edition_text(page, student=False) == page  # the student block is an HTML comment there
    assert build.edition_text(page, student=True) == "Both.\nStudents only.\nBoth again.\n"
