"""What publishing the book rests on, checked offline.

- The GitHub workflows (``.github/workflows/``): valid against GitHub's workflow schema
  (``check-jsonschema --builtin-schema vendor.github-workflows``, the schema ships with the package),
  free of zizmor's security findings (``zizmor --offline``), hash-pinned actions, and doing what the
  README says (the book built with ``python book/build.py --no-execute`` and deployed to Pages; the
  tests run through ``.ci/run``). A planted error makes each linter fail.
- ``.ci/run`` runs apt-get through sudo when it is not root, and directly when it is.
- Binder's ``environment.yml``: every runtime dependency of ``pyproject.toml`` with the same lower
  bound, a CPU-only torch, no CUDA package, none of the book or test extras.
- One version: ``ltkd.__version__`` is what ``pyproject.toml`` (dynamic), ``CITATION.cff``, the newest
  ``CHANGELOG.md`` entry and the book's pages (``book/_ext/ltkd_book.py``) carry;
  ``CITATION.cff`` is valid Citation File Format.

The linters are in the ``test`` extra; where they are absent the tests that need them skip, saying so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own TOML reader
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
CHECK_JSONSCHEMA = shutil.which("check-jsonschema")
ZIZMOR = shutil.which("zizmor")
needs_schema = pytest.mark.skipif(not CHECK_JSONSCHEMA, reason="needs check-jsonschema (pip install -e '.[test]')")
needs_zizmor = pytest.mark.skipif(not ZIZMOR, reason="needs zizmor (pip install -e '.[test]')")


def _workflow_files() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.yml"))


def _schema_check(paths: list[Path], schema: str = "vendor.github-workflows") -> subprocess.CompletedProcess:
    return subprocess.run([CHECK_JSONSCHEMA, "--builtin-schema", schema, *map(str, paths)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def _zizmor(folder: Path) -> subprocess.CompletedProcess:
    files = sorted(folder.glob("*.yml"))  # by name: given a folder, zizmor looks for a repository in it
    assert files, f"no workflows in {folder}"
    return subprocess.run([ZIZMOR, "--offline", "--no-progress", *map(str, files)], capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def _plant(tmp_path: Path, name: str, old: str, new: str) -> Path:
    """A copy of the workflows with one error planted in ``name``."""
    folder = tmp_path / "workflows"
    shutil.copytree(WORKFLOWS, folder)
    text = (folder / name).read_text()
    assert old in text, f"{old!r} not in {name}"
    (folder / name).write_text(text.replace(old, new, 1))
    return folder


# ---------------------------------------------------------------- the workflows


def test_two_workflows() -> None:
    assert [p.name for p in _workflow_files()] == ["book.yml", "tests.yml"]


@needs_schema
def test_workflows_match_githubs_schema() -> None:
    proc = _schema_check(_workflow_files())
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_schema
@pytest.mark.parametrize(("name", "old", "new"), [
    ("book.yml", "runs-on: ubuntu-24.04", "runs_on: ubuntu-24.04"),       # a misspelt key
    ("tests.yml", "  pull_request:\n", "  pull-request:\n"),               # an event that does not exist
    ("book.yml", "      pages: write", "      pages: publish"),            # a permission level that does not exist
])  # fmt: skip
def test_schema_check_fails_on_a_planted_error(tmp_path: Path, name: str, old: str, new: str) -> None:
    folder = _plant(tmp_path, name, old, new)
    proc = _schema_check(sorted(folder.glob("*.yml")))
    assert proc.returncode != 0, f"the schema accepted {new!r}"
    assert name in proc.stdout + proc.stderr


@needs_zizmor
def test_workflows_have_no_security_findings() -> None:
    proc = _zizmor(WORKFLOWS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_zizmor
@pytest.mark.parametrize(("name", "old", "new", "audit"), [
    # a pull request's title pasted into a shell script
    ("tests.yml", "        run: bash .ci/run", '        run: echo "${{ github.event.pull_request.title }}" && bash .ci/run',
     "template-injection"),
    # an action by tag, not by commit
    ("book.yml", "actions/deploy-pages@cd2ce8fcbc39b97be8ca5fce6e763baed58fa128", "someone/deploy-pages@v5",
     "unpinned-uses"),
    # the token left in the checkout's git config
    ("tests.yml", "          persist-credentials: false\n", "          fetch-depth: 1\n", "artipacked"),
])  # fmt: skip
def test_zizmor_fails_on_a_planted_weakness(tmp_path: Path, name: str, old: str, new: str, audit: str) -> None:
    folder = _plant(tmp_path, name, old, new)
    proc = _zizmor(folder)
    assert proc.returncode != 0 and f"[{audit}]" in proc.stdout + proc.stderr, f"zizmor accepted {new!r}:\n{proc.stdout}"


def _load(name: str) -> dict:
    wf = yaml.safe_load((WORKFLOWS / name).read_text())
    wf["on"] = wf.pop(True, wf.get("on"))  # YAML 1.1 reads the key `on` as True
    return wf


def _steps(wf: dict) -> list[dict]:
    return [s for job in wf["jobs"].values() for s in job.get("steps", [])]


def test_every_action_is_pinned_to_a_commit() -> None:
    for path in _workflow_files():
        for step in _steps(_load(path.name)):
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", step["uses"]), f"{path.name}: {step['uses']}"


def test_book_workflow_builds_the_committed_book_and_deploys_it() -> None:
    wf = _load("book.yml")
    assert wf["permissions"] == {}, "least permissions: none at the top, each job asks for its own"
    assert wf["concurrency"]["group"] and wf["concurrency"]["cancel-in-progress"] is False
    build, deploy = wf["jobs"]["build"], wf["jobs"]["deploy"]
    assert build["permissions"] == {"contents": "read"}
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"} and deploy["needs"] == "build"
    runs = "\n".join(s.get("run", "") for s in build["steps"])
    readme = (ROOT / "README.md").read_text()
    assert "python book/build.py --no-execute" in runs and "python book/build.py --no-execute" in readme
    uploads = [s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact@")]
    assert uploads and uploads[0]["with"]["path"] == "book/_build_noexec/_build/html"  # where build.py writes it
    assert any(s.get("uses", "").startswith("actions/deploy-pages@") for s in deploy["steps"])
    assert wf["on"]["push"]["branches"] == ["main"]


def test_tests_workflow_runs_ci_run_on_push_and_pull_request() -> None:
    wf = _load("tests.yml")
    assert {"push", "pull_request"} <= set(wf["on"])
    assert wf["permissions"] == {"contents": "read"}
    assert any(s.get("run", "").strip() == "bash .ci/run" for s in _steps(wf))


# ---------------------------------------------------------------- .ci/run and sudo


def _ci_run_with_stubs(tmp_path: Path, uid: int, **env: str) -> list[str]:
    """Run ``.ci/run`` with stub ``id``, ``sudo``, ``apt-get`` and ``python3`` on a PATH that lacks
    chromium, and return what the stubs were asked to do."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    log = tmp_path / "calls.log"
    stubs = {
        "id": f'echo {uid}',
        "sudo": f'echo "sudo $*" >> {log}; [ "$1" = -E ] && shift; exec "$@"',
        "apt-get": f'echo "apt-get $*" >> {log}',
        "python3": f'echo "python3 $*" >> {log}',
    }
    for name, body in stubs.items():
        (bin_ / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_ / name).chmod(0o755)
    for tool in ("dirname", "cat"):
        (bin_ / tool).symlink_to(shutil.which(tool))
    proc = subprocess.run(["/bin/bash", str(ROOT / ".ci" / "run")], env={"PATH": str(bin_), **env}, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return log.read_text().splitlines()


def test_ci_run_uses_sudo_for_apt_get_when_not_root(tmp_path: Path) -> None:
    calls = _ci_run_with_stubs(tmp_path, uid=1000)
    assert any(c.startswith("sudo -E apt-get update") for c in calls), calls
    assert any(c.startswith("sudo -E apt-get install") and "chromium-driver" in c for c in calls), calls
    assert any(c.startswith("python3 -m pytest") for c in calls), calls


def test_ci_run_calls_apt_get_directly_as_root(tmp_path: Path) -> None:
    calls = _ci_run_with_stubs(tmp_path, uid=0)
    assert not [c for c in calls if c.startswith("sudo")], calls
    assert any(c.startswith("apt-get install") for c in calls), calls
    torch = [c for c in calls if c.startswith("python3 -m pip install") and "torch>=" in c]
    assert torch and "--index-url" not in torch[0], calls


def test_ci_run_takes_torch_from_the_named_index(tmp_path: Path) -> None:
    calls = _ci_run_with_stubs(tmp_path, uid=0, LTKD_TORCH_INDEX="https://example.org/whl/cpu")
    torch = [c for c in calls if c.startswith("python3 -m pip install") and "torch>=" in c]
    assert torch and "--index-url https://example.org/whl/cpu " in torch[0], calls


# ---------------------------------------------------------------- Binder


def _requirement(spec: str) -> tuple[str, str]:
    """(name, lower bound) of a PEP 508 requirement such as ``torch>=2.2``."""
    m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(?:>=\s*([\w.]+))?.*", spec.strip())
    assert m, spec
    return m.group(1).lower().replace("_", "-"), m.group(2) or ""


CONDA_NAME = {"torch": "pytorch"}  # conda-forge's names where PyPI's differ


def _environment() -> tuple[dict[str, str], list[str], list[str]]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda, pip = {}, []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip += dep["pip"]
        else:
            name, *rest = dep.split()
            conda[re.split(r"[=<>]", name)[0].lower()] = " ".join(rest)
    return conda, pip, env["channels"]


def test_binder_environment_has_every_runtime_dependency_and_no_cuda() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    conda, pip, channels = _environment()
    assert channels == ["conda-forge"]
    for spec in project["dependencies"]:
        name, lower = _requirement(spec)
        conda_name = CONDA_NAME.get(name, name)
        assert conda_name in conda, f"environment.yml lacks {conda_name} (pyproject.toml: {spec})"
        if lower:
            assert conda[conda_name].split()[0] == f">={lower}", f"{conda_name}: {conda[conda_name]!r}, pyproject {spec!r}"
    for name in ("pytorch", "torchvision"):  # conda-forge's CPU builds, by build string
        assert conda[name].split()[1:] == ["cpu_*"], f"{name} is not pinned to a CPU build: {conda[name]!r}"
    everything = " ".join([*conda, *conda.values(), *pip]).lower()
    assert not re.search(r"cuda|cudnn|nvidia|nccl|cupy", everything), f"a CUDA package in environment.yml: {everything}"
    assert pip == ["-e ."], f"pip installs only ltkd itself, without extras: {pip}"


def test_binder_environment_check_fails_on_a_cuda_torch(tmp_path: Path, monkeypatch) -> None:
    text = (ROOT / "environment.yml").read_text()
    for bad in (text.replace("pytorch >=2.2 cpu_*", "pytorch >=2.2"),
                text.replace("  - pip:\n", "  - pytorch-cuda\n  - pip:\n"),
                text.replace("      - -e .", '      - -e ".[dev]"'),
                text.replace("  - umap-learn >=0.5.5\n", "")):  # fmt: skip
        assert bad != text
        (tmp_path / "environment.yml").write_text(bad)
        (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
        monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
        with pytest.raises(AssertionError):
            test_binder_environment_has_every_runtime_dependency_and_no_cuda()
        monkeypatch.undo()


# ---------------------------------------------------------------- one version, citable


def _version() -> str:
    m = re.search(r'^__version__ = "([^"]+)"$', (ROOT / "ltkd" / "__init__.py").read_text(), re.MULTILINE)
    assert m, "ltkd/__init__.py has no __version__ line"
    return m.group(1)


def test_one_version_everywhere() -> None:
    version = _version()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "ltkd.__version__"}
    assert str(yaml.safe_load((ROOT / "CITATION.cff").read_text())["version"]) == version
    entries = re.findall(r"^## \[([^\]]+)\]", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert [e for e in entries if e != "Unreleased"][0] == version, f"newest CHANGELOG.md entry: {entries}"
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        from ltkd_book import read_version
    finally:
        sys.path.remove(str(ROOT / "book" / "_ext"))
    assert read_version(ROOT / "book") == version


@needs_schema
def test_citation_file_is_valid(tmp_path: Path) -> None:
    proc = _schema_check([ROOT / "CITATION.cff"], "vendor.citation-file-format")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bad = tmp_path / "CITATION.cff"  # a planted error: an author without a name
    bad.write_text((ROOT / "CITATION.cff").read_text().replace('  - name: "The ltkd authors"', "  - email: x"))
    assert _schema_check([bad], "vendor.citation-file-format").returncode != 0
