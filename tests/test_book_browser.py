"""The built book, opened page by page in headless Chromium.

Builds the HTML from the committed notebooks (``python book/build.py --no-execute``; the
executed build is ``jupyter-book build book``), or reuses ``book/_build/html`` when it is newer
than every notebook. Checks on every page: a title, every image loaded (naturalWidth > 0), math
rendered by MathJax, no Python traceback in an output, and on chapters a Colab link that points
at the chapter's notebook. Screenshots go to ``book/_build/screenshots``.

Skips, saying why, where Chromium, chromedriver or selenium is absent (`.ci/run` installs them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REMOTE_OK = ("https://colab.research.google.com/assets/colab-badge.svg",)

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


def _toc_pages() -> list[str]:
    import yaml

    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        pages += [c["file"] for c in part.get("chapters", [])]
    return pages


@pytest.fixture(scope="module")
def html_dir() -> Path:
    built = ROOT / "book" / "_build" / "html"
    newest_nb = max((p.stat().st_mtime for p in NOTEBOOKS), default=0)
    if (built / "index.html").is_file() and (built / "index.html").stat().st_mtime > newest_nb:
        return built
    out = ROOT / "book" / "_build_noexec"
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
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(60)
    d.set_script_timeout(60)
    yield d
    d.quit()


@pytest.mark.parametrize("page", _toc_pages())
def test_page_renders(page, html_dir, driver):
    path = html_dir / f"{page}.html"
    assert path.is_file(), f"{path} was not built"
    driver.get(path.as_uri())
    # wait for MathJax (local copy) to finish typesetting
    driver.execute_async_script(
        "const done = arguments[0];"
        "const wait = () => (window.MathJax && MathJax.startup && MathJax.startup.promise)"
        "  ? MathJax.startup.promise.then(() => done(true)) : setTimeout(wait, 100);"
        "wait(); setTimeout(() => done(false), 20000);"
    )
    shots = ROOT / "book" / "_build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(shots / (page.replace("/", "_") + ".png")))

    h1 = driver.execute_script("const h = document.querySelector('main h1, article h1'); return h ? h.textContent : ''")
    assert h1.strip(), f"{page}: no title"
    assert driver.title.strip()

    images = driver.execute_script(
        "return Array.from(document.querySelectorAll('main img, article img'))"
        ".map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);"
    )
    # the book's own images must load; the only remote image allowed is the Colab badge, which
    # cannot load offline (no network here) and is a link decoration, not content
    remote = [src for src, _, _ in images if src and src.startswith(("http://", "https://"))]
    assert all(src.startswith(REMOTE_OK) for src in remote), f"{page}: unexpected remote images {remote}"
    broken = [src for src, complete, w in images if src not in remote and not (complete and w > 0)]
    assert not broken, f"{page}: images that did not load: {broken}"

    n_math = driver.execute_script("return document.querySelectorAll('.math, span.math, div.math').length")
    if n_math:
        rendered = driver.execute_script("return document.querySelectorAll('mjx-container').length")
        assert rendered > 0, f"{page}: {n_math} math elements but MathJax rendered none"
        raw = driver.execute_script(
            "return Array.from(document.querySelectorAll('.math')).filter(e => !e.querySelector('mjx-container'))"
            ".length"
        )
        assert raw == 0, f"{page}: {raw} math elements left unrendered"

    outputs = driver.execute_script(
        "return Array.from(document.querySelectorAll('.cell_output, .output')).map(e => e.innerText).join('\\n')"
    )
    assert "Traceback (most recent call last)" not in outputs, f"{page}: an output shows a Python traceback"
    assert not driver.execute_script("return document.querySelectorAll('.output.traceback, .output.error').length")

    if page.startswith("notebooks/"):
        stem = page.split("/", 1)[1]
        links = driver.execute_script(
            "return Array.from(document.querySelectorAll('a')).map(a => a.href).filter(h => h.includes('colab.research.google.com'))"
        )
        assert links, f"{page}: no Colab link"
        want = f"github/ltkd-book/ltkd/blob/main/notebooks/{stem}.ipynb"
        assert all(h.endswith(want) for h in links), f"{page}: Colab links {links} should end with {want}"
        figures = driver.execute_script("return document.querySelectorAll('.cell_output img').length")
        assert figures > 0, f"{page}: a chapter without a single figure in its outputs"
