import numpy as np
import pytest
import torch

from ltkd.errors import LtkdError
from ltkd.metrics import accuracy_report, confusion_matrix, count_flops, count_params
from ltkd.models import MODELS, CosineHead, build_model, set_head


@pytest.mark.parametrize("name", list(MODELS))
def test_models_expose_features_embedding_head(name):
    m = build_model(name, num_classes=7, in_channels=1).eval()
    x = torch.randn(2, 1, 16, 16)
    f = m.features(x)
    assert f.ndim == 4 and f.shape[1] == m.feature_dim
    e = m.embed(x)
    assert e.shape == (2, m.feature_dim)
    torch.testing.assert_close(m(x), m.head(e))
    assert m(x).shape == (2, 7)


def test_resnet32_size_and_flops():
    m = build_model("resnet32", 10, 3)
    assert 0.45e6 < count_params(m) < 0.48e6
    # ~69 M multiply-adds for one 32×32 image → ~0.14 GFLOPs at 2 FLOPs per multiply-add
    assert 1.3e8 < count_flops(m, (3, 32, 32)) < 1.5e8


def test_resnet32_is_the_long_tail_papers_option_a_fan_in_network():
    """resnet32 is LDAM-DRW's / GCL's / H2T's ResNet-32: zero-padded identity shortcuts (no parameters; 464,154 of
    them with 10 classes, as their resnet_cifar.py) and kaiming_normal_ fan-in weights on convolutions and the
    linear head; resnet32b keeps the projection shortcuts and fan-out initialisation of the KD papers' ResNets."""
    from ltkd.models import ZeroPadShortcut

    torch.manual_seed(0)
    a, b = build_model("resnet32", 10, 3), build_model("resnet32b", 10, 3)
    assert count_params(a) == 464_154 and count_params(b) > count_params(a)
    block = a.layers[5]  # the first block of stage 2: 16 -> 32 channels, stride 2
    assert isinstance(block.shortcut, ZeroPadShortcut) and not list(block.shortcut.parameters())
    x = torch.randn(2, 16, 8, 8)
    s = block.shortcut(x)
    assert s.shape == (2, 32, 4, 4)
    torch.testing.assert_close(s[:, 8:24], x[:, :, ::2, ::2])  # planes // 4 = 8 zero channels on each side
    assert s[:, :8].abs().sum() == 0 and s[:, 24:].abs().sum() == 0
    assert isinstance(b.layers[5].shortcut[0], torch.nn.Conv2d)  # resnet32b: 1x1 projection
    for net, mode in ((a, "fan_in"), (b, "fan_out")):
        w = net.layers[10].conv1.weight  # stage 3: 32 in, 64 out channels, 3x3
        fan = w.shape[1] * 9 if mode == "fan_in" else w.shape[0] * 9
        assert abs(float(w.detach().std()) / (2 / fan) ** 0.5 - 1) < 0.05, mode
    assert abs(float(a.head.weight.detach().std()) / (2 / 64) ** 0.5 - 1) < 0.15  # the authors initialise nn.Linear too
    assert float(b.head.weight.detach().abs().max()) <= 64**-0.5  # PyTorch's default U(±1/sqrt(fan_in))


def test_kd_resnets_keep_projection_shortcuts():
    """resnet8, resnet20, resnet56, resnet8x4 and resnet32x4 stay as CRD / mdistiller build them."""
    for name in ("resnet8", "resnet20", "resnet56", "resnet8x4", "resnet32x4"):
        m = build_model(name, 10, 3)
        assert any(isinstance(s.shortcut, torch.nn.Sequential) and len(s.shortcut) == 2 for s in m.layers), name


def test_flops_of_a_linear_layer_count_two_per_multiply_add():
    class Lin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(5, 3, bias=False)

        def forward(self, x):
            return self.fc(x.flatten(1))

    assert count_flops(Lin(), (5,)) == 2 * 5 * 3


def test_cosine_head_and_swap():
    m = build_model("cnn6", 4, 1, head="cosine")
    assert isinstance(m.head, CosineHead)
    out = m(torch.randn(3, 1, 8, 8))
    assert out.abs().max() <= 1 + 1e-5
    set_head(m, "linear")
    assert isinstance(m.head, torch.nn.Linear)


def test_unknown_model():
    with pytest.raises(LtkdError, match="unknown model"):
        build_model("vgg99")


def test_accuracy_report_by_hand():
    # 3 classes with training counts 200 / 50 / 5: one class in each count group
    counts = [200, 50, 5]
    y = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    p = torch.tensor([0, 0, 0, 1, 1, 0, 0, 0])
    r = accuracy_report(p, y, counts)
    assert r["overall"] == pytest.approx(4 / 8)
    assert r["per_class"] == pytest.approx([0.75, 0.5, 0.0])
    assert r["balanced"] == pytest.approx((0.75 + 0.5 + 0) / 3)
    assert (r["many"], r["medium"], r["few"]) == pytest.approx((0.75, 0.5, 0.0))
    assert (r["head"], r["middle"], r["tail"]) == pytest.approx((0.75, 0.5, 0.0))
    cm = confusion_matrix(p, y, 3)
    assert cm.tolist() == [[3, 1, 0], [1, 1, 0], [2, 0, 0]]


def test_metrics_reject_mismatched_or_out_of_range_predictions():
    with pytest.raises(LtkdError, match="predictions must lie in 0..2"):
        confusion_matrix([5], [1], 3)  # would land in class 2's diagonal cell
    with pytest.raises(LtkdError, match="1 predictions for 4 labels"):
        accuracy_report(torch.tensor([0]), [0, 1, 2, 0], [10, 5, 1])
    with pytest.raises(LtkdError, match="labels must lie in 0..2"):
        accuracy_report(torch.tensor([0, 1]), [0, 3], [10, 5, 1])
    assert confusion_matrix([0, 2], [0, 1], 3).tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 0]]


def test_empty_group_is_none():
    r = accuracy_report(torch.tensor([0, 1]), torch.tensor([0, 1]), [500, 300])
    assert r["few"] is None and r["medium"] is None and r["many"] == 1.0
    assert np.isclose(r["overall"], 1.0)


def test_results_note_is_shown_wrapped_and_empty_without_one():
    from ltkd.viz import results_note

    note = "runs on the idle 2-core CPU; " * 10
    text = results_note({"note": note}, width=60)
    assert text.startswith("Note from the results file: runs on the idle")
    assert all(len(line) <= 60 for line in text.splitlines()) and len(text.splitlines()) > 3
    assert " ".join(text.split()) == " ".join(f"Note from the results file: {note}".split())
    assert results_note({}) == "" and results_note({"note": ""}) == ""


def test_test_curves_put_stages_in_sequence():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ltkd.viz import plot_test_curves

    hist = [{"stage": "stage1", "epoch": e, **({"test_acc": e / 10, "test_tail": e / 20} if e % 2 == 0 else {})}
            for e in range(1, 5)] + [{"stage": "crt", "epoch": 1, "test_acc": 0.5, "test_tail": 0.4}]  # fmt: skip
    axes = plot_test_curves({"a": hist})  # the second stage starts after the first's last logged epoch
    x, y = axes[1].lines[0].get_data()
    assert list(x) == [2, 4, 5] and list(y) == [10.0, 20.0, 40.0]  # tail third, in percent
    assert [ln.get_xdata()[0] for ln in axes[0].lines[1:]] == [4]  # the dotted line where cRT starts
    stage2_only = [{"stage": "crt", "epoch": 2, "test_acc": 0.5}]  # e.g. cRT on a stage 1 trained elsewhere
    axes = plot_test_curves({"b": stage2_only}, groups=["overall"], stage_epochs={"stage1": 200, "crt": 10})
    assert list(axes[0].lines[0].get_xdata()) == [202]
    plt.close("all")
    with pytest.raises(ValueError, match="unknown group"):
        plot_test_curves({"a": hist}, groups=["tails"])
