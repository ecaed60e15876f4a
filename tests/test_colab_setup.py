"""Each chapter's setup cell, run as Colab runs it.

A fresh Python (a virtual environment that sees this machine's packages, as Colab's Python has torch
and the scientific stack) with a stub ``google.colab`` module runs the chapter's first code cell with
``LTKD_REPO_URL`` pointed at a clone of this repository and ``LTKD_COLAB_DIR`` at a temporary folder
(Colab's ``/content/ltkd``). pip runs with ``PIP_NO_INDEX=1``: anything it tried to download, a
torch above all, would fail the cell. The test then checks that the cell cloned the repository,
installed ltkd from it into that Python and nothing else (no torch beside the machine's), moved into
the clone's ``notebooks/``, that the shipped models and result files the chapter names are there,
and that the chapter's next cell runs and the imports of the cell after it resolve (ltkd from the
installed copy, ``experiments/shipped.py`` from the clone).

The clone is of this checkout's last commit (``git clone``), as Colab clones the published branch.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# run in the chapter's fresh Python: the setup cell, the next cell and the imports of the cell after
# it (the chapter's own imports: ltkd from the installed copy, `shipped` from the clone), then report
RUNNER = textwrap.dedent(
    """
    import ast, json, os, sys, types
    sys.modules["google.colab"] = types.ModuleType("google.colab")  # what the cell looks for
    cells = json.load(open(sys.argv[1]))
    scope = {"__name__": "__main__"}
    exec(compile(cells[0], "setup cell", "exec"), scope)
    exec(compile(cells[1], "next cell", "exec"), scope)
    imports = [n for n in ast.parse(cells[2]).body if isinstance(n, (ast.Import, ast.ImportFrom))]
    exec(compile(ast.Module(body=imports, type_ignores=[]), "imports of the cell after", "exec"), scope)
    import ltkd
    shipped = sys.modules.get("shipped")
    print("REPORT" + json.dumps({"cwd": os.getcwd(), "ltkd": ltkd.__file__, "version": ltkd.__version__,
                                 "imports": len(imports), "shipped": shipped and shipped.__file__,
                                 "models": shipped and str(shipped.MODELS_DIR)}))
    """
)


def _code_cells(nb_path: Path) -> list[str]:
    nb = json.loads(nb_path.read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.fixture(scope="module")
def repo_url(tmp_path_factory) -> str:
    """A clone of this checkout, reachable as Colab reaches GitHub: by a URL (``file://``)."""
    dest = tmp_path_factory.mktemp("origin") / "ltkd"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True)
    return dest.as_uri()


def _site_packages(venv: Path) -> Path:
    out = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                         check=True, capture_output=True, text=True)  # fmt: skip
    return Path(out.stdout.strip())


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem[:2])
def test_setup_cell_in_colab(chapter: Path, repo_url: str, tmp_path: Path) -> None:
    cells = _code_cells(chapter)
    assert "google.colab" in cells[0], f"{chapter.name}: the first code cell is not the Colab setup cell"
    venv = tmp_path / "python"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    content = tmp_path / "content"  # Colab's working folder
    content.mkdir()
    home = content / "ltkd"
    (tmp_path / "cells.json").write_text(json.dumps(cells[:3]))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("PIP_")}
    env.update(LTKD_REPO_URL=repo_url, LTKD_COLAB_DIR=str(home), LTKD_THREADS="1", LTKD_PROGRESS="0",
               PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1")  # fmt: skip
    proc = subprocess.run([str(venv / "bin" / "python"), "-c", RUNNER, str(tmp_path / "cells.json")],
                          cwd=content, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, f"{chapter.name}: the setup cell failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout.rsplit("REPORT", 1)[1])

    # cloned, installed from the clone into this Python, and moved into the clone's notebooks/
    assert (home / ".git").is_dir(), "the cell did not clone the repository"
    assert Path(report["cwd"]) == home / "notebooks"
    site = _site_packages(venv)
    assert Path(report["ltkd"]).is_relative_to(site), f"ltkd imported from {report['ltkd']}, not the installed copy"
    init = (home / "ltkd" / "__init__.py").read_text()
    assert f'__version__ = "{report["version"]}"' in init
    # torch untouched: pinned to this Python's versions, and nothing of torch installed beside it
    pins = (home / "colab-pins.txt").read_text()
    assert pins.split() == [f"torch=={version('torch')}", f"torchvision=={version('torchvision')}"], pins
    installed = sorted(p.name for p in site.iterdir() if not p.name.startswith(("_", ".")))
    assert not [n for n in installed if n.lower().startswith(("torch", "nvidia"))], installed
    assert [n for n in installed if n.startswith("ltkd")], f"ltkd was not installed into the fresh Python: {installed}"

    # the shipped models and the result files this chapter reads are where it looks
    text = "\n".join(cells)
    results = sorted(set(re.findall(r"\.\./experiments/results/[\w.]+\.json", text)))
    for rel in results:
        assert (home / "notebooks" / rel).is_file(), f"{chapter.name} reads {rel}, missing in the clone"
    assert report["imports"] > 0, "the chapter's third code cell imports nothing: is it still the imports cell?"
    models = sorted(p.stem for p in (home / "experiments" / "models").glob("*.pt") if f'"{p.stem}"' in text)
    if models:  # the chapter loads shipped models through experiments/shipped.py, from the clone
        assert report["shipped"] == str(home / "experiments" / "shipped.py"), report["shipped"]
        assert report["models"] == str(home / "experiments" / "models"), report["models"]
        for name in models:
            for suffix in (".pt", ".json"):
                assert (home / "experiments" / "models" / f"{name}{suffix}").is_file(), name
