"""Every function an assignment asks for is defined as its chapter defines it: the master's reference solution is
compared, on shared inputs, with the chapter's own version — the function the chapter builds by hand where it
does (``kd_by_hand``, ``revise_by_hand``, ...), else the ``ltkd`` function the chapter calls (the test checks
that it calls it). Needs neither otter nor a build: it reads the masters and the chapters."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent


def _code(path: Path) -> list[str]:
    nb = json.loads(path.read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def _one(pattern: str) -> Path:
    (path,) = sorted(ROOT.glob(pattern))
    return path


def reference(assignment: str) -> dict:
    """The master's solution functions (the imports and ``def``s of its code cells that are not tests)."""
    ns: dict = {}
    for src in _code(_one(f"assignments/{assignment}_*.ipynb")):
        if "BEGIN TEST CONFIG" not in src:
            keep = [n for n in ast.parse(src).body if isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef))]
            exec(compile(ast.Module(keep, []), assignment, "exec"), ns)
    return ns


def chapter(number: str) -> tuple[str, dict]:
    """The chapter's code (as text) and its hand-built functions (top-level ``def``s named ``*by_hand`` or
    ``my_*``), defined with the chapter's constants."""
    cells = _code(_one(f"notebooks/{number}_*.ipynb"))
    ns: dict = {"np": np, "torch": torch, "F": F, "ETA": 0.8}
    for src in cells:
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and (node.name.endswith("by_hand") or node.name.startswith("my_")):
                exec(compile(ast.Module([node], []), number, "exec"), ns)
    return "\n".join(cells), ns


def _close(a, b, atol=1e-5) -> bool:
    a, b = torch.as_tensor(np.asarray(a, dtype=np.float64)), torch.as_tensor(np.asarray(b, dtype=np.float64))
    return a.shape == b.shape and bool(torch.allclose(a, b, atol=atol, rtol=1e-4))


def _logits(seed: int, b: int = 6, c: int = 5, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, generator=g), torch.randn(b, c, generator=g) * scale, torch.arange(b) % c


def test_a01_long_tailed_data():
    from ltkd import data as D

    ref, (text, _) = reference("a01"), chapter("01")
    assert "D.lt_counts(" in text and "D.shot_groups(" in text
    for args in ((5000, 10, 100), (500, 100, 100), (100, 3, 10)):
        assert [int(v) for v in ref["lt_counts"](*args)] == D.lt_counts(*args).tolist()
    counts = np.array([500, 150, 101, 100, 50, 20, 19, 5, 1])
    for k, v in D.shot_groups(counts).items():
        assert sorted(int(i) for i in ref["shot_groups"](counts)[k]) == v.tolist()
    for q in (0.0, 0.5, 1.0):
        assert _close(ref["sampler_probs"](counts, q), D.class_sampler_weights(counts, q=q))


def test_a02_gaussian_clouded_logits():
    from ltkd.methods.gcl import cloud_sizes

    ref, (text, ch) = reference("a02"), chapter("02")
    assert "cloud_sizes" in text and "gcl_loss_by_hand" in ch
    counts = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert _close(ref["cloud_sizes"](counts), cloud_sizes(counts))
    g = torch.Generator().manual_seed(0)
    cos, y = torch.rand(8, 10, generator=g) * 2 - 1, torch.arange(8)
    noise = (torch.randn(8, 10, generator=g) / 3).clamp(-1, 1)
    for s, eps, m in ((30.0, 0.5, 0.0), (20.0, 1.0, 0.2)):
        a = ref["cloud_sizes"](counts)
        got = ref["gcl_loss"](cos, y, a, noise, s, eps, m)
        assert _close(got, ch["gcl_loss_by_hand"](cos, y, counts, s=s, eps=eps, m=m, noise=noise))


def test_a03_head_to_tail_fusion():
    ref, (_, ch) = reference("a03"), chapter("03")
    g = torch.Generator().manual_seed(1)
    f1, f2 = torch.randn(2, 16, 3, 3, generator=g), torch.randn(2, 16, 3, 3, generator=g)
    for rho in (0.0, 0.29, 0.5, 1.0):
        fused, chosen = ch["my_fuse"](f1, f2, rho, generator=torch.Generator().manual_seed(2))
        assert ref["fused_channels"](16, rho) == len(chosen)
        assert _close(ref["fuse_channels"](f1, f2, chosen), fused)


def test_a04_knowledge_distillation():
    from ltkd.methods.distill import soften

    ref, (text, ch) = reference("a04"), chapter("04")
    assert "soften(" in text
    zs, zt, y = _logits(4)
    for T in (1.0, 4.0):
        assert _close(ref["soften"](zt, T), soften(zt, T))
        assert _close(ref["kd_loss"](zs, zt, T), ch["kd_by_hand"](zs, zt, y, T=T, w_ce=0.0, w_kd=1.0)[1])
        tckd, nckd = ch["dkd_by_hand"](zs, zt, y, alpha=1.0, beta=1.0, T=T)[:2]
        got = ref["dkd_parts"](zs, zt, y, T)
        assert _close(got[0], tckd.mean(), 1e-4) and _close(got[1], nckd.mean(), 1e-4)


def test_a05_label_revision_and_data_selection():
    from ltkd.methods.label_revision import select_fraction

    ref, (text, ch) = reference("a05"), chapter("05")
    assert "select_fraction" in text
    p = torch.softmax(_logits(5)[1], 1)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    assert _close(ref["revise"](p, y, 0.8), ch["revise_by_hand"](p, y, eta=0.8)[0])
    for s, f in ((torch.tensor([0.5, 0.5, 0.5, 0.1, 0.5]), 0.5), (torch.arange(7.0), 0.3)):
        assert ref["select_fraction"](s, f).tolist() == select_fraction(s, f).tolist()


def test_a06_stacking_basic_units():
    from ltkd.methods import tissuenet as tn

    ref, (text, _) = reference("a06"), chapter("06")
    assert "StackedLayer" in text and "tn.stacked_params(" in text
    torch.manual_seed(0)
    layer = tn.StackedLayer(8, 16, 4).eval()
    x = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        assert _close(ref["stacked_forward"](x, layer.units()), layer(x))
    for args in ((64, 64, 4, 16, 3), (8, 8, 2, 4, 1)):
        assert ref["stacked_params"](*args) == tn.stacked_params(*args)


def test_a07_binary_filter_stacking():
    from ltkd.methods import binary_stack as bs

    ref, (text, _) = reference("a07"), chapter("07")
    assert "bs.sign_ste(" in text and "bs.layer_storage_bits(" in text
    v1 = torch.tensor([-3.0, -0.7, 0.0, 0.2, 1.5], requires_grad=True)
    v2 = v1.detach().clone().requires_grad_()
    a, b = ref["sign_ste"](v1), bs.sign_ste(v2)
    (a * torch.arange(1.0, 6.0)).sum().backward()
    (b * torch.arange(1.0, 6.0)).sum().backward()
    assert _close(a.detach(), b.detach()) and _close(v1.grad, v2.grad)
    for args in ((16, 32, 5, 16, 3), (128, 128, 1, 16, 3)):
        assert ref["storage_bits"](*args) == bs.layer_storage_bits(*args)


def test_a08_putting_it_together():
    from ltkd.methods.label_revision import RevisionSplit, logit_mse, revise

    ref, (text, _) = reference("a08"), chapter("08")
    assert "kd_lr_ds_objective" in text and "ETA = 0.8" in text  # the chapter's loss: RevisionSplit, logit MSE
    zs, zt, y = _logits(8)
    zt[0, 0] = zt[1, 1] = 9.0
    assert _close(ref["revised_label"](zt, y, 0.8), revise(torch.softmax(zt, 1), y, 0.8))
    sel = torch.tensor([True, True, False, True, True, True])
    want = sum(RevisionSplit(0.8, 4.0, 1.0, right_term=logit_mse)(None, zs, zt, y, sel).values())
    assert _close(ref["kd_lr_ds_loss"](zs, zt, y, sel, 0.8, 4.0, 1.0), want, 1e-5)
    # the chapter's students and teacher: the stacked-units student the assignment measures is the chapter's
    assert 'TN.build(\n            "resnet",' in text and "m=4," in text and "widths=(16, 16, 32, 64)" in text


@pytest.mark.parametrize("path", sorted(ROOT.glob("notebooks/0*.ipynb")), ids=lambda p: p.stem)
def test_chapters_do_not_name_the_masters(path):
    assert "assignments/a0" not in path.read_text()
