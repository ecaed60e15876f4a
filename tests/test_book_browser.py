"""The built book, opened page by page in headless Chromium: every page of the build.

Builds the HTML from the committed notebooks (``python book/build.py --no-execute``; the
executed build is ``jupyter-book build book``), or reuses ``book/_build/html`` or
``book/_build_noexec`` when it is newer than every notebook and every file of the book. Visits every HTML page of the build (the table of contents' pages,
the index, the search page) and fails on any page with:

- an image that did not load (``naturalWidth`` 0), or a remote image other than the Colab badge;
- math left unrendered (a ``.math`` element without MathJax's output, or a MathJax error);
- a broken internal link: a link into the book to a file that is not there, or to an anchor
  (``#id``) that the target page does not have (links leaving the book are not followed);
- a launch button (Binder, Colab) or "Open in Colab" badge that does not open this chapter's
  notebook in the repository and branch of ``book/_config.yml``, or a chapter without them;
- a message logged to the browser's console at error level (the Colab badge's failure to load
  offline excepted);
- no title, a Python traceback in an output, or a chapter without a figure in its outputs.

``test_checks_catch_planted_errors`` plants a broken image, a link to a missing page and a link to
a missing anchor in a copy of the build and checks that each is reported. Screenshots go to
``book/_build/screenshots``. Skips, saying why, where Chromium, chromedriver or selenium is absent
(`.ci/run` installs them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REMOTE_OK = ("https://colab.research.google.com/assets/colab-badge.svg",)
# a console error about these is the offline browser failing to fetch the remote badge
CONSOLE_OK = REMOTE_OK

try:
    import selenium  # noqa: F401

    HAVE_SELENIUM = True
except ImportError:
    HAVE_SELENIUM = False

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER and HAVE_SELENIUM),
    reason="browser test needs Debian's chromium and chromium-driver and the selenium package "
    "(apt-get install chromium chromium-driver; pip install selenium)",
)


def _config() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "book" / "_config.yml").read_text())


def _toc_pages() -> list[str]:
    import yaml

    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        pages += [c["file"] for c in part.get("chapters", [])]
    return pages


def _html_pages(html_dir: Path) -> list[str]:
    """Every page of a build, as paths relative to it (Sphinx's own folders left out)."""
    return sorted(p.relative_to(html_dir).as_posix() for p in html_dir.rglob("*.html")
                  if not p.relative_to(html_dir).parts[0].startswith("_"))  # fmt: skip


@pytest.fixture(scope="module")
def html_dir() -> Path:
    out = ROOT / "book" / "_build_noexec"
    sources = [*NOTEBOOKS, ROOT / "ltkd" / "__init__.py", *(p for p in (ROOT / "book").rglob("*")
               if p.is_file() and not p.relative_to(ROOT / "book").parts[0].startswith("_build"))]  # fmt: skip
    newest = max(p.stat().st_mtime for p in sources)
    for built in (ROOT / "book" / "_build" / "html", out / "_build" / "html"):  # a build newer than its sources
        done = built / "searchindex.js"  # Sphinx writes it at the end of every build (index.html only once)
        if done.is_file() and done.stat().st_mtime > newest:
            return built
    subprocess.run([sys.executable, str(ROOT / "book" / "build.py"), "--no-execute", "--out", str(out)],
                   check=True, cwd=ROOT)  # fmt: skip
    return out / "_build" / "html"


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let selenium-manager download anything
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--allow-file-access-from-files", "--window-size=1280,1600",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):  # fmt: skip
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, read after each page
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(60)
    d.set_script_timeout(60)
    yield d
    d.quit()


# what one page shows, read in the browser after MathJax has finished
_READ_PAGE = """
const done = arguments[0];
const read = () => done({
  h1: (document.querySelector('main h1, article h1') || {textContent: ''}).textContent,
  title: document.title,
  images: Array.from(document.images).map(i => [i.getAttribute('src'), i.currentSrc || i.src, i.complete,
                                                  i.naturalWidth]),
  math: document.querySelectorAll('.math').length,
  mathRendered: document.querySelectorAll('mjx-container').length,
  mathRaw: Array.from(document.querySelectorAll('.math')).filter(e => !e.querySelector('mjx-container')).length,
  mathErrors: document.querySelectorAll('mjx-merror').length,
  outputs: Array.from(document.querySelectorAll('.cell_output, .output')).map(e => e.innerText).join('\\n'),
  errorOutputs: document.querySelectorAll('.output.traceback, .output.error').length,
  figures: document.querySelectorAll('.cell_output img').length,
  links: Array.from(document.querySelectorAll('a[href]')).map(a => [a.getAttribute('href'), a.href]),
  ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id)
       .concat(Array.from(document.querySelectorAll('a[name]')).map(a => a.name)),
});
const mathjax = document.querySelector('script[src*="mathjax"]');
if (!mathjax) { read(); }
else {
  const wait = () => (window.MathJax && MathJax.startup && MathJax.startup.promise)
    ? MathJax.startup.promise.then(read) : setTimeout(wait, 50);
  wait();
  setTimeout(read, 20000);
}
"""


def crawl(driver, html_dir: Path, pages: list[str], shots: Path | None = None) -> dict[str, dict]:
    """Open each page; return what each showed, its console messages included."""
    records = {}
    driver.get_log("browser")  # drop what an earlier page left
    for page in pages:
        driver.get((html_dir / page).as_uri())
        record = driver.execute_async_script(_READ_PAGE)
        record["console"] = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        if shots is not None:
            driver.save_screenshot(str(shots / (page.removesuffix(".html").replace("/", "_") + ".png")))
        records[page] = record
    return records


def _launch_problems(page: str, record: dict) -> list[str]:
    """A chapter's Colab badge and launch buttons must open its own notebook on the configured branch."""
    cfg = _config()
    repo = urlsplit(cfg["repository"]["url"]).path.strip("/")
    branch = cfg["repository"].get("branch", "main")
    stem = Path(page).stem
    notebook = f"notebooks/{stem}.ipynb"
    want = {
        "colab": f"{cfg['launch_buttons']['colab_url'].rstrip('/')}/github/{repo}/blob/{branch}/{notebook}",
        "binder": f"{cfg['launch_buttons']['binderhub_url'].rstrip('/')}/v2/gh/{repo}/{branch}?urlpath=tree/{notebook}",
    }
    problems = []
    if not (ROOT / notebook).is_file():
        problems.append(f"the launch buttons' notebook {notebook} is not in the repository")
    for kind, host in (("colab", "colab.research.google.com"), ("binder", "mybinder.org")):
        hrefs = [href for _, href in record["links"] if urlsplit(href).netloc == host]
        if not hrefs:
            problems.append(f"no {kind} link")
        problems += [f"{kind} link {h} should be {want[kind]}" for h in hrefs if h != want[kind]]
    return problems


def _link_problems(page: str, record: dict, html_dir: Path, ids: dict[str, set[str]]) -> list[str]:
    """Links into the book: the file must exist, and an anchor must be an id of the page it names."""
    problems, root = [], html_dir.resolve()
    for raw, href in record["links"]:
        parts = urlsplit(href)
        if parts.scheme != "file":
            continue  # the web, mail: not followed offline
        target = Path(unquote(parts.path)).resolve()
        if not target.is_relative_to(root):
            problems.append(f"link {raw!r} leaves the book ({target})")
            continue
        if target.is_dir():
            target = target / "index.html"
        rel = target.relative_to(root).as_posix()
        if not target.is_file():
            problems.append(f"link {raw!r}: {rel} does not exist")
        elif parts.fragment and rel in ids and unquote(parts.fragment) not in ids[rel]:
            problems.append(f"link {raw!r}: {rel} has no anchor #{unquote(parts.fragment)}")
        elif parts.fragment and rel.endswith(".html") and rel not in ids:
            problems.append(f"link {raw!r}: {rel} was not visited, so its anchor cannot be checked")
    return problems


def page_problems(page: str, record: dict, html_dir: Path, ids: dict[str, set[str]]) -> list[str]:
    """Everything wrong with one page, as sentences; empty when it is right."""
    problems = []
    if page not in ("index.html", "search.html", "genindex.html") and not record["h1"].strip():
        problems.append("no title")
    if not record["title"].strip():
        problems.append("no <title>")
    remote = [src for src, _, _, _ in record["images"] if src and src.startswith(("http://", "https://"))]
    problems += [f"remote image {src}" for src in remote if not src.startswith(REMOTE_OK)]
    problems += [f"image did not load: {src}" for src, _, complete, width in record["images"]
                 if src not in remote and not (complete and width > 0)]  # fmt: skip
    if record["math"] and not record["mathRendered"]:
        problems.append(f"{record['math']} math elements but MathJax rendered none")
    if record["mathRaw"]:
        problems.append(f"{record['mathRaw']} math elements left unrendered")
    if record["mathErrors"]:
        problems.append(f"{record['mathErrors']} MathJax errors")
    if "Traceback (most recent call last)" in record["outputs"] or record["errorOutputs"]:
        problems.append("an output shows a Python traceback")
    problems += [f"console error: {m}" for m in record["console"] if not any(ok in m for ok in CONSOLE_OK)]
    problems += _link_problems(page, record, html_dir, ids)
    if page.startswith("notebooks/"):
        problems += _launch_problems(page, record)
        if not record["figures"]:
            problems.append("a chapter without a single figure in its outputs")
    return problems


@pytest.fixture(scope="module")
def crawled(html_dir, driver) -> dict[str, dict]:
    shots = ROOT / "book" / "_build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    records = crawl(driver, html_dir, _html_pages(html_dir), shots)
    print(f"visited {len(records)} pages in {time.perf_counter() - start:.1f} s")
    return records


def test_every_toc_page_was_built_and_visited(crawled) -> None:
    want = {f"{p}.html" for p in _toc_pages()} | {"index.html", "genindex.html", "search.html"}
    assert want <= set(crawled), f"pages not built: {sorted(want - set(crawled))}"
    assert set(crawled) <= want, f"pages built but in no table of contents: {sorted(set(crawled) - want)}"


def test_every_page(crawled, html_dir) -> None:
    ids = {page: set(r["ids"]) for page, r in crawled.items()}
    problems = {page: page_problems(page, r, html_dir, ids) for page, r in crawled.items()}
    problems = {page: p for page, p in problems.items() if p}
    assert not problems, "\n".join(f"{page}: {p}" for page, ps in problems.items() for p in ps)


def test_the_version_is_on_every_page(crawled, html_dir) -> None:
    import re

    version = re.search(r'^__version__ = "([^"]+)"$', (ROOT / "ltkd" / "__init__.py").read_text(), re.MULTILINE)[1]
    for page in crawled:
        if page == "index.html":  # a redirect to the root page
            continue
        assert f'<span class="ltkd-version">{version}</span>' in (html_dir / page).read_text(), page


def test_checks_catch_planted_errors(html_dir, driver, tmp_path) -> None:
    """A broken image, links to a missing page and to missing anchors, a launch button to another
    chapter's notebook, a console error and TeX that MathJax cannot render, planted in a copy of the
    build."""
    copy = tmp_path / "html"
    shutil.copytree(html_dir, copy)
    page = "notebooks/01_long_tailed_data.html"
    text = (copy / page).read_text()
    plant = ('<img src="../_images/no-such-figure.png" alt="planted">'
             '<a href="../no-such-page.html">planted</a><a href="../intro.html#no-such-anchor">planted</a>'
             '<a href="02_gaussian_clouded_logits.html#chapter-2-typo">planted</a>'
             '<span class="math notranslate nohighlight">\\(\\frac{1}{\\)</span>'
             '<script>console.error("planted console error")</script>')  # fmt: skip
    binder = "?urlpath=tree/notebooks/01_long_tailed_data.ipynb"
    assert "</article>" in text and binder in text
    text = text.replace(binder, binder.replace("01_long_tailed_data", "02_gaussian_clouded_logits"))
    (copy / page).write_text(text.replace("</article>", plant + "</article>", 1))
    records = crawl(driver, copy, [page, "intro.html", "notebooks/02_gaussian_clouded_logits.html"])
    ids = {p: set(r["ids"]) for p, r in records.items()}
    problems = "\n".join(page_problems(page, records[page], copy, ids))
    assert "image did not load: ../_images/no-such-figure.png" in problems, problems
    assert "no-such-page.html does not exist" in problems, problems
    assert "intro.html has no anchor #no-such-anchor" in problems, problems
    assert "has no anchor #chapter-2-typo" in problems, problems
    assert "binder link https://mybinder.org/v2/gh/ltkd-book/ltkd/main?urlpath=tree/notebooks/02_" in problems, problems
    assert "console error" in problems and "planted console error" in problems, problems
    assert "1 math elements left unrendered" in problems, problems  # TeX that MathJax cannot typeset
    # the same checks on a page left as built find nothing (anchors of pages not visited aside)
    intro = page_problems("intro.html", records["intro.html"], copy, ids)
    assert [p for p in intro if not p.endswith("was not visited, so its anchor cannot be checked")] == []
