"""The book's own Sphinx extension (``sphinx.local_extensions`` in ``_config.yml``).

- The version of ``ltkd``, read from ``ltkd/__init__.py`` (its one source;
  ``pyproject.toml`` reads it too), shown in every page's footer and available to pages as
  ``{{ version }}``.
- Each script once. Jupyter Book lists every ``.js`` file under ``_static`` as a script of every
  page, once per static path, MathJax's included, and Sphinx 7 lists a script that an extension
  adds during the build twice (its ``None`` and ``''`` file names differ): the browser then loads
  MathJax twice and reports errors. MathJax is left to ``sphinx.ext.mathjax`` (the pages with math,
  with its configuration first), and a page's other scripts are kept once each.
"""

from __future__ import annotations

import re
from pathlib import Path

_VERSION = re.compile(r'^__version__ = "([^"]+)"$', re.MULTILINE)


def read_version(start: Path) -> str:
    """The version in the nearest ``ltkd/__init__.py`` at or above ``start`` (the book's folder,
    or the copy that ``book/build.py`` builds from), else the installed package's."""
    for folder in (start, *start.parents):
        init = folder / "ltkd" / "__init__.py"
        if init.is_file():
            match = _VERSION.search(init.read_text())
            if not match:
                raise RuntimeError(f'no __version__ = "..." line in {init}')
            return match.group(1)
    import ltkd

    return ltkd.__version__


def _version(app, config) -> None:
    version = read_version(Path(app.confdir).resolve())
    config.version = config.release = version
    repo = config.html_theme_options.get("repository_url", "").rstrip("/")
    files = f"{repo}/blob/{config.html_theme_options.get('repository_branch', 'main')}"
    footer = (
        f'<p class="ltkd-footer">Version <span class="ltkd-version">{version}</span> '
        f'(<a href="{files}/CHANGELOG.md">what changed</a>, '
        f'<a href="{files}/CITATION.cff">how to cite it</a>)</p>'
    )
    config.html_theme_options = {**config.html_theme_options, "extra_footer": footer}
    config.myst_substitutions = {**config.myst_substitutions, "version": version}


def _listed_scripts(app, config) -> None:
    scripts = []
    for entry in config.html_js_files:
        name = entry[0] if isinstance(entry, tuple) else entry
        if name != config.mathjax_path and entry not in scripts:
            scripts.append(entry)
    config.html_js_files = scripts


def _page_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts, seen = context.get("script_files"), set()
    if not isinstance(scripts, list):
        return
    unique = []
    for js in scripts:
        key = (getattr(js, "filename", js) or "", tuple(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


def setup(app) -> dict:
    app.connect("config-inited", _version)
    app.connect("config-inited", _listed_scripts)
    app.connect("html-page-context", _page_scripts, priority=900)  # after every script is added
    return {"parallel_read_safe": True, "parallel_write_safe": True}
