"""The shape of the code: imports run down the layers, functions fit on a screen, and a method of your own is
one new file (plus its test), trained from ``ltkd train``."""

import ast
import json
import sys
from pathlib import Path

import pytest

from ltkd.cli import main

PKG = Path(__file__).resolve().parents[1] / "ltkd"

# lowest first; a module may import its own layer or a lower one, never a higher one
LAYERS = [
    {"ltkd", "errors", "files"},
    {"checkpoint", "checks", "device", "outfolder", "progress"},
    {"data", "models", "profiles", "distributed", "grading"},
    {"metrics", "objective", "train", "viz"},
    {"methods"},
    {"experiment"},
    {"cli", "__main__"},
]


def _layer(module: str) -> int:
    """The layer of ``ltkd.X...`` (by its first part below ``ltkd``)."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "ltkd"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module}: in no layer of tests/test_architecture.py; add it to one")


def _imports(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, imported ltkd module)`` for every import of ``source`` (the module ``module``), at any depth,
    except under ``if TYPE_CHECKING:`` (annotations only: nothing runs)."""
    package = module if is_package else module.rpartition(".")[0]
    out: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            return
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "ltkd")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.split(".")[0] == "ltkd":
                if node.module is None or target in ("ltkd", "ltkd.methods"):  # from . import x: x is a module
                    out.extend((node.lineno, f"{target}.{a.name}") for a in node.names)
                else:
                    out.append((node.lineno, target))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return out


def _upward(source: str, module: str, is_package: bool = False) -> list[str]:
    me = _layer(module)
    return [f"{module}:{line} imports {target}" for line, target in _imports(source, module, is_package)
            if _layer(target) > me]  # fmt: skip


def test_imports_run_down_the_layers():
    """errors → checkpoint/device/progress → data/models/profiles/grading → metrics/objective/train → methods →
    experiment → cli: no module imports a higher layer (nothing in ltkd imports the command line)."""
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        is_package = rel.name == "__init__"
        module = ".".join(rel.parts[:-1] if is_package else rel.parts)
        bad += _upward(path.read_text(), module, is_package)
    assert not bad, "\n".join(bad)


def test_the_layer_check_finds_an_upward_import():
    """The check above can fail: an import of a higher layer, at the top or inside a function, is found; one
    under ``if TYPE_CHECKING:`` is not."""
    assert _upward("from ..experiment import run\n", "ltkd.methods.h2t") == ["ltkd.methods.h2t:1 imports ltkd.experiment"]
    assert _upward("def f():\n    from .cli import main\n", "ltkd.train") == ["ltkd.train:2 imports ltkd.cli"]
    assert _upward("from . import experiment\n", "ltkd.metrics") == ["ltkd.metrics:1 imports ltkd.experiment"]
    assert _upward("import ltkd.methods.gcl\n", "ltkd.data") == ["ltkd.data:1 imports ltkd.methods.gcl"]
    assert _upward("if TYPE_CHECKING:\n    from .data import ImageData\n", "ltkd.checkpoint") == []
    assert _upward("from ..data import ImageData\nfrom . import gcl\n", "ltkd.methods.h2t") == []


def test_no_function_is_longer_than_80_lines():
    long = []
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long.append(f"{path.relative_to(PKG.parent)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, long


def test_the_data_modules_fit_on_a_few_screens_and_do_not_import_checkpoint():
    """Each module of the ``ltkd.data`` package is under 500 lines, and data and checkpoint never import each other
    (not even for annotations): the atomic write they share sits below both, in ``ltkd.files``."""
    big = [f"{p.name} ({n} lines)" for p in sorted((PKG / "data").glob("*.py"))
           if (n := len(p.read_text().splitlines())) > 500]  # fmt: skip
    assert not big, big
    both = [(a, b) for a, b in (("data", "checkpoint"), ("checkpoint", "data"))
            for path in ([PKG / "checkpoint.py"] if a == "checkpoint" else sorted((PKG / "data").glob("*.py")))
            for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ImportFrom)
            and (node.module or "").split(".")[-1] == b]  # fmt: skip
    assert not both, both


TOY = '''"""A toy loss-only method: focal loss (Lin et al. 2017), FL = (1 − p_y)^γ · CE, as a method file of one's own."""

import torch
import torch.nn.functional as F

from ltkd.methods import NONNEGATIVE, Recipe, Stage, option, register
from ltkd.objective import LossObjective

option("toy_gamma", "number", 2.0, "toy focal loss: gamma", **NONNEGATIVE)


def focal(ctx):
    gamma = ctx.option("toy_gamma")

    def loss(logits, y):
        ce = F.cross_entropy(logits.float(), y, reduction="none")
        return ((1 - torch.exp(-ce)) ** gamma * ce).mean()

    return LossObjective(loss, name="focal")


register(Recipe("toy-focal", "focal loss (a test's toy method)", [Stage(objective=focal, name="stage1")]))
'''


@pytest.fixture
def toy_method(tmp_path):
    """The toy method file, written to a temporary folder; ltkd's registries forget it afterwards."""
    from ltkd.methods import METHODS, OPTIONS

    path = tmp_path / "toy_focal.py"
    path.write_text(TOY)
    yield path
    METHODS.pop("toy-focal", None)
    OPTIONS.pop("toy_gamma", None)
    sys.modules.pop("toy_focal", None)


def test_a_new_loss_only_method_is_one_file_trained_from_ltkd_train(toy_method, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--import", str(toy_method), "--method", "toy-focal", "--set", "toy_gamma=1",
               "--epochs", "2", "--out", str(out)])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "toy-focal" and m["options"] == {"toy_gamma": 1.0}
    assert "focal" in m["history"][0]  # its loss, logged under its own name
    assert all(r["focal"] > 0 for r in m["history"]) and 0 <= m["overall"] <= 1
    capsys.readouterr()
    assert main(["train", "--import", str(toy_method), "--method", "toy-focal", "--set", "toy_gamma=-1"]) == 2
    assert "option toy_gamma must be ≥ 0, got -1" in capsys.readouterr().err  # its option, checked as ltkd's are


def test_import_of_a_missing_method_file_is_one_error_line(tmp_path, capsys):
    assert main(["train", "--import", str(tmp_path / "nowhere.py"), "--method", "x"]) == 2
    assert capsys.readouterr().err.strip() == f"ltkd: error: --import {tmp_path / 'nowhere.py'}: no such file"
    assert main(["train", "--import", "no_such_module_here", "--method", "x"]) == 2
    assert "--import no_such_module_here: No module named" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["tissuenet-resnet-r", "binary-stack"])
def test_compact_networks_are_models_of_ltkd_train_and_distill(model, tmp_path):
    from ltkd.models import MODELS, build_model
    from ltkd.train import save_model

    assert model in MODELS
    assert main(["train", "--model", model, "--epochs", "1", "--out", str(tmp_path / "t")]) == 0
    assert json.loads((tmp_path / "t" / "metrics.json").read_text())["model"] == model
    teacher = build_model("cnn6x0.5", 10, 1)
    save_model(teacher, tmp_path / "teacher.pt", arch="cnn6x0.5", num_classes=10, in_channels=1, head="LinearHead")
    assert main(["distill", "--teacher", str(tmp_path / "teacher.pt"), "--student", model, "--epochs", "1",
                 "--out", str(tmp_path / "d")]) == 0  # fmt: skip
    m = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert m["model"] == model and m["teacher"]["model"] == "cnn6x0.5"


def test_one_check_for_a_setting_however_it_comes_in(capsys):
    """A method option is checked by its own declaration (Option.check) from --set, its flag and run(options=...)
    alike; a method that reads an option nobody declared fails at once."""
    from ltkd.errors import LtkdError
    from ltkd.experiment import run
    from ltkd.methods import Context, get_method
    from ltkd.profiles import get_profile

    with pytest.raises(LtkdError, match=r"^option fusion_ratio must be in \[0, 1\], got 2$"):
        run("h2t", options={"fusion_ratio": 2}, device="cpu", progress=False)
    assert main(["train", "--method", "h2t", "--set", "fusion_ratio=2"]) == 2
    assert capsys.readouterr().err.strip() == "ltkd: error: option fusion_ratio must be in [0, 1], got 2"
    assert main(["train", "--method", "h2t", "--fusion-ratio", "2"]) == 2
    assert capsys.readouterr().err.strip() == "ltkd: error: --fusion-ratio must be in [0, 1], got 2"
    ctx = Context(train=None, profile=get_profile("quick"), device="cpu")
    with pytest.raises(LtkdError, match="'no_such_option' is read but not declared"):
        ctx.option("no_such_option")
    assert get_method("gcl").stages[1].sampler(Context(train=None, profile=get_profile("quick"), device="cpu",
                                                       options={"gcl_sampler": "sqrt"})) == "sqrt"  # fmt: skip
