"""The book's edition: the version of ``ltkd``, read from ``ltkd/__init__.py`` (its one source;
``pyproject.toml`` reads it too), shown in every page's footer and available to pages as
``{{ version }}``."""

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
                raise RuntimeError(f"no __version__ = \"...\" line in {init}")
            return match.group(1)
    import ltkd

    return ltkd.__version__


def _config_inited(app, config) -> None:
    version = read_version(Path(app.confdir).resolve())
    config.version = config.release = version
    repo = config.html_theme_options.get("repository_url", "").rstrip("/")
    files = f"{repo}/blob/{config.html_theme_options.get('repository_branch', 'main')}"
    footer = (
        f'<p class="ltkd-edition">Edition <span class="ltkd-version">{version}</span> '
        f'(<a href="{files}/CHANGELOG.md">what changed</a>, '
        f'<a href="{files}/CITATION.cff">how to cite it</a>)</p>'
    )
    config.html_theme_options = {**config.html_theme_options, "extra_footer": footer}
    config.myst_substitutions = {**config.myst_substitutions, "version": version}


def setup(app):
    app.connect("config-inited", _config_inited)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
