"""Prose bound to outputs: every decimal number a chapter's text states is one the chapter prints or reads.

For each chapter (``notebooks/0*.ipynb``) every decimal number in a markdown cell (``86.55``, ``3.7×``,
``0.25``; integers are not checked) must be *accounted for* by one of

* the chapter's outputs (every code cell's stream, text and HTML output, as committed);
* the chapter's code (a setting the chapter makes, such as ``lr=0.02`` or ``rho = 0.25``);
* a results file the chapter reads (a path ending in ``.json``, ``.csv`` or ``.md`` named in a code cell and
  present in the repository): its text, and each of its floats rendered as a fraction or a percentage at
  0–4 decimals;
* the published numbers (``tests/published_numbers/DOCUMENT.json``, e.g. ``02_gaussian_clouded_logits.json``,
  ``reproduction.json``; ``common.json`` for every document): numbers quoted from a paper or a library's
  documentation, or settings the package applies by default, each with its citation ``{"70.4": "Cao et al. 2019,
  Table 2: CE, CIFAR-10-LT IF 100"}``.

For a book page (``book/*.md``) the same holds with the files the page names (paths in its text) in place of the
chapter's outputs and code.

Numbers are compared as numbers at the prose's precision: "86.6" is accounted for by a printed "86.60" but not by a
printed "86.55" — one rounding per quantity. A number inside a LaTeX formula (``$…$``) or a code span is checked
like any other.

:data:`TO_BIND` lists the documents not yet bound, with their reason: the test reports their unaccounted numbers,
fails on any unaccounted number elsewhere, and fails when a listed document no longer has one (the list only
shrinks).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("0*.ipynb"))
PAGES = sorted((ROOT / "book").glob("*.md"))
PUBLISHED_DIR = ROOT / "tests" / "published_numbers"

# a decimal number not inside a longer token (a version "2.14.1", a file "s0.json", an identifier "x0.5")
NUMBER = re.compile(r"(?<![\w.])\d+\.\d+(?![\w]|\.\d)")
FILE = re.compile(r"[\w./-]+\.(?:json|csv|md)\b")

# documents whose prose is not yet bound to their outputs: name -> reason
TO_BIND: dict[str, str] = {}


def _published() -> dict[str, dict[str, str]]:
    """{document name or "*": {number: citation}} from tests/published_numbers/*.json."""
    data = {}
    for f in sorted(PUBLISHED_DIR.glob("*.json")):
        numbers = json.loads(f.read_text())
        for num, cite in numbers.items():
            assert NUMBER.fullmatch(num), f"{f.name}: {num!r} is not a decimal number"
            assert isinstance(cite, str) and len(cite) > 8, f"{f.name}: {num} needs its citation"
        docs = [d.name for d in (*CHAPTERS, *PAGES) if d.stem == f.stem]
        assert f.stem == "common" or docs, f"{f.name}: no chapter or page is named {f.stem}"
        data["*" if f.stem == "common" else docs[0]] = numbers
    return data


def _floats(obj) -> list[float]:
    if isinstance(obj, bool):
        return []
    if isinstance(obj, (int, float)):
        return [float(obj)]
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _floats(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in _floats(v)]
    return []


def _renderings(x: float) -> set[str]:
    """A stored float as prose could state it: itself or ×100 (a percentage), at 0–4 decimals."""
    out = set()
    for v in (x, 100 * x):
        if abs(v) < 1e7:
            for k in range(0, 5):
                out.add(f"{abs(v):.{k}f}")
    return out


def numbers_in(text: str) -> set[str]:
    return set(NUMBER.findall(text))


def _normal(token: str) -> str:
    """One spelling per value at its precision: '86.50' and '86.5' stay apart, '086.5' is '86.5'."""
    intpart, frac = token.split(".")
    return f"{int(intpart)}.{frac}"


def accounted(token: str, sources: set[str]) -> bool:
    """Whether ``token`` (as the prose writes it) appears in ``sources`` at the prose's precision.

    ``sources`` are number tokens as printed or rendered. A printed "3.70" accounts for prose "3.70" and "3.7"
    (the same value, the prose dropping a trailing zero); a printed "86.55" does not account for "86.6"."""
    want = Decimal(token)
    places = -want.as_tuple().exponent
    for s in sources:
        if "." not in s:
            continue
        got = Decimal(s)
        if got == want and -got.as_tuple().exponent >= places:
            return True
    return False


def _file_sources(paths: set[str], base: Path) -> set[str]:
    """Number tokens of the repository files named in ``paths``: their text, and each JSON float as prose may state it."""
    tokens = set()
    for name in sorted(paths):
        p = next((q for q in (ROOT / name, base / name, ROOT / "experiments" / name) if q.is_file()), None)
        if p is None or ROOT not in p.resolve().parents:
            continue
        text = p.read_text(errors="replace")
        tokens |= {_normal(t) for t in numbers_in(text)}
        if p.suffix == ".json":
            try:
                tokens |= {r for x in _floats(json.loads(text)) for r in _renderings(x) if "." in r}
            except json.JSONDecodeError:
                pass
    return tokens


def _output_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append("".join(out.get("text", "")))
        for mime in ("text/plain", "text/html", "text/markdown", "text/latex"):
            v = out.get("data", {}).get(mime)
            if v:
                parts.append(v if isinstance(v, str) else "".join(v))
    return "\n".join(parts)


def unaccounted_in_chapter(nb, name: str, published: dict) -> list[tuple[int, str]]:
    """(cell index, number) for every decimal number in a markdown cell the chapter does not account for."""
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    outputs = "\n".join(_output_text(c) for c in nb.cells if c.cell_type == "code")
    sources = {_normal(t) for t in numbers_in(code) | numbers_in(outputs)}
    sources |= _file_sources(set(FILE.findall(code)), ROOT / "notebooks")
    sources |= {_normal(n) for n in {**published.get("*", {}), **published.get(name, {})}}
    missing = []
    for i, c in enumerate(nb.cells):
        if c.cell_type == "markdown":
            missing += [(i, t) for t in sorted(numbers_in(c.source)) if not accounted(_normal(t), sources)]
    return missing


def unaccounted_in_page(text: str, name: str, published: dict) -> list[tuple[int, str]]:
    """(line, number) for every decimal number of a book page not in the files it names nor in PUBLISHED."""
    sources = _file_sources(set(FILE.findall(text)), ROOT / "book")
    sources |= {_normal(n) for n in {**published.get("*", {}), **published.get(name, {})}}
    missing = []
    for i, line in enumerate(text.splitlines(), 1):
        missing += [(i, t) for t in sorted(numbers_in(line)) if not accounted(_normal(t), sources)]
    return missing


def _check(name: str, missing: list) -> None:
    where = ", ".join(f"{n} (cell/line {i})" for i, n in missing[:40])
    if name in TO_BIND:
        assert missing, f"{name} is bound now: remove it from TO_BIND"
        pytest.xfail(f"{name}: {TO_BIND[name]} ({len(missing)} unaccounted: {where})")
    assert not missing, f"{name}: numbers in the prose that no output, code or file read gives: {where}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_prose_numbers(path):
    _check(path.name, unaccounted_in_chapter(nbformat.read(path, as_version=4), path.name, _published()))


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.stem)
def test_page_prose_numbers(path):
    _check(path.name, unaccounted_in_page(path.read_text(), path.name, _published()))


# ----------------------------------------------------------------------------------------------------------------
# The check itself: a planted number is found, a printed or read one is not
# ----------------------------------------------------------------------------------------------------------------
def _nb(markdown: str, code: str = "", output: str = ""):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(code)
    if output:
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=output)]
    nb.cells = [nbformat.v4.new_markdown_cell(markdown), cell]
    return nb


def test_planted_number_is_found():
    nb = _nb("CE reaches 86.55 % and cRT 89.31 %.", "print(acc)", "CE 86.55 %\n")
    assert unaccounted_in_chapter(nb, "x.ipynb", {}) == [(0, "89.31")]


def test_rounding_must_match_the_printed_one():
    nb = _nb("about 86.6 %, ratio 3.7×", "", "86.55 %, ratio 3.70×\n")
    assert unaccounted_in_chapter(nb, "x.ipynb", {}) == [(0, "86.6")]


def test_code_settings_and_published_numbers_are_accounted_for():
    nb = _nb("at lr 0.02; the paper reports 70.36 %; we get 1.25", "train(lr=0.02)", "")
    assert unaccounted_in_chapter(nb, "x.ipynb", {"x.ipynb": {"70.36": "Cao et al. 2019, Table 2"}}) == [(0, "1.25")]


def test_numbers_of_a_file_read_are_accounted_for():
    # the probe lives in the repository: only files inside it count as read
    rel = "tests/_prose_numbers_probe.json"
    f = ROOT / rel
    f.write_text(json.dumps({"overall": 0.86553, "ratio": 3.7012}))
    try:
        nb = _nb("CE 86.55 %, 86.6 %, ratio 3.70, and 12.34", f"load('{rel}')")
        assert unaccounted_in_chapter(nb, "x.ipynb", {}) == [(0, "12.34")]
        assert unaccounted_in_page(f"See `{rel}`: 86.55 % and 99.99 %.", "p.md", {}) == [(1, "99.99")]
    finally:
        f.unlink()


def test_versions_and_file_names_are_not_numbers():
    assert numbers_in("torch 2.14.1, file s0.json, model cnn6x0.5, value 0.25.") == {"0.25"}
